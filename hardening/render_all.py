"""Render the bash goldsmith ships, so ``make lint`` can run shellcheck over it.

    python -m hardening.render_all DIR [PROFILE...]

Writes, for each shipped profile, for a profile selecting every control of the
catalog (a control no shipped profile selects is bash all the same), and for
each PROFILE file given (the examples' profiles, with their own controls):

- ``DIR/<id>.apply.sh``: the apply script as the build VM runs it, the prelude
  and every control's code included;
- ``DIR/<id>.check.sh``: the script that gathers every check's evidence in one
  command, as validation runs it (``bash -c``).

The paths written go to stdout, one a line. Bad input is one line and exit 2.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from hardening.apply import render_apply_script
from hardening.check import probes_for
from hardening.errors import ProfileError
from hardening.facts import render_gather_script
from hardening.profile import Profile, list_profiles, load_profile

EVERY_CONTROL = """\
id: every-control
version: 0.0.0
title: Every control of the catalog, for shellcheck
select:
  - all: true
"""

# A fixed marker: the rendered files are the same from one run to the next.
MARKER = "@@goldsmith-render-all@@"


def profiles(extra: list[Path]) -> list[Profile]:
    """The shipped profiles, one selecting every control, then ``extra``."""
    loaded = [load_profile(name) for name in list_profiles()]
    with tempfile.TemporaryDirectory() as folder:
        every = Path(folder) / "every-control.yaml"
        every.write_text(EVERY_CONTROL, encoding="utf-8")
        loaded.append(load_profile(every))
    return loaded + [load_profile(path) for path in extra]


def render_profile(profile: Profile, out: Path) -> list[Path]:
    """Write the profile's apply and check scripts under ``out``; their paths."""
    apply = out / f"{profile.id}.apply.sh"
    check = out / f"{profile.id}.check.sh"
    apply.write_text(render_apply_script(profile), encoding="utf-8")
    script, _ = render_gather_script(probes_for(profile.controls), MARKER)
    check.write_text(script, encoding="utf-8")
    return [apply, check]


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print("usage: python -m hardening.render_all DIR [PROFILE...]", file=sys.stderr)
        return 2
    out = Path(argv[0])
    try:
        out.mkdir(parents=True, exist_ok=True)
        for profile in profiles([Path(arg) for arg in argv[1:]]):
            for path in render_profile(profile, out):
                print(path)
    except ProfileError as exc:
        print(f"render_all: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"render_all: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
