"""The bash helpers every rendered apply script starts with (hardening/bash/
prelude.sh, a file shellcheck reads as bash), and quoting tools.

Each helper changes a file only when its content would differ, and records that
it did in GS_CHANGED, so a second run of the same script changes nothing and
says so. Files are rewritten through ``cat >`` so a symlink (Debian's
/etc/sysctl.d/99-sysctl.conf) keeps pointing where it did and ownership stays.
"""

from __future__ import annotations

import re
import shlex
from importlib import resources

q = shlex.quote

_ERE_SPECIAL = re.compile(r"([.\[\]()*+?{}|^$\\])")


def ere_escape(text: str) -> str:
    """Escape text for a POSIX extended regular expression (awk)."""
    return _ERE_SPECIAL.sub(r"\\\1", text)


def ere_nocase(word: str) -> str:
    """An ERE matching ``word`` in any case; mawk has no IGNORECASE."""
    out = []
    for char in word:
        if char.isalpha():
            out.append(f"[{char.upper()}{char.lower()}]")
        else:
            out.append(ere_escape(char))
    return "".join(out)


def heredoc(text: str) -> str:
    """A quoted here-document carrying ``text`` verbatim (no expansion)."""
    tag = "GOLDSMITH_EOF"
    while tag in text:
        tag += "_"
    body = text if text.endswith("\n") else text + "\n"
    return f"<<'{tag}'\n{body}{tag}"


def _read_bash(name: str) -> str:
    # Package data (hardening/bash/*.sh), so an installed wheel has them too.
    return (resources.files("hardening") / "bash" / name).read_text(encoding="utf-8")


# Every apply script starts with the prelude: strict mode, a trap that names the
# failing control, and the gs_* helpers the controls call.
PRELUDE = _read_bash("prelude.sh")

# The reloads the controls asked for (gs_reload_wanted), after them.
RELOADS = "\n" + _read_bash("reloads.sh")

DONE = 'echo "goldsmith: done"\n'
