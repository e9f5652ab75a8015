"""The bash goldsmith renders into every apply script lives in hardening/bash as
files: shellcheck reads them as they are, and an installed wheel carries them."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

from hardening.shell import PRELUDE, RELOADS

REPO = Path(__file__).resolve().parents[3]
BASH = REPO / "hardening" / "bash"


def test_the_prelude_and_reloads_are_the_files_themselves() -> None:
    assert (BASH / "prelude.sh").read_text(encoding="utf-8") == PRELUDE
    assert "\n" + (BASH / "reloads.sh").read_text(encoding="utf-8") == RELOADS
    assert PRELUDE.startswith("# Rendered by goldsmith.") and "gs_begin()" in PRELUDE


def test_every_bash_file_is_package_data() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["hardening"]
    files = sorted(p.relative_to(REPO / "hardening").as_posix() for p in BASH.glob("*.sh"))
    assert files == ["bash/prelude.sh", "bash/reloads.sh"]
    for name in files:
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns), name


def test_make_lint_runs_shellcheck_on_them() -> None:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert "shellcheck -s bash hardening/bash/*.sh" in makefile
