"""A profile's own controls.

A profile's ``controls`` list selects shipped controls by id and may also
define controls of its own, with every field a catalog entry has::

    controls:
      - kernel-aslr                          # a shipped control, selected
      - id: acme.nginx-server-tokens         # defined here, and so selected
        title: nginx does not reveal its version
        area: web
        rationale: ...
        references: {acme: [WEB-7]}
        mechanism: script
        params:
          expected: server_tokens off
          check: {file: controls/nginx-tokens.check.sh}
          apply: {file: controls/nginx-tokens.apply.sh}

Ids are ``<namespace>.<id>``; shipped ids never hold a dot, so a profile can
neither shadow a shipped control nor be shadowed by one goldsmith ships later.
The code keys of a mechanism (the script mechanism's ``apply`` and ``check``)
may be inline bash or ``{file: <path>}``: a regular file below the profile's
folder, reached without following a symlink, UTF-8 and at most
:data:`MAX_CODE_FILE` bytes. Its text is the control's code, so it is part of
the profile's digest like everything else the control says.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hardening.catalog import Catalog, load_catalog
from hardening.control import CodeFile, Control
from hardening.control_reader import parse_control
from hardening.errors import ProfileError
from hardening.mechanisms import MECHANISMS
from hardening.strictdata import DataError, decode_text

MAX_CODE_FILE = 64 * 1024
# One path component: plain characters, so the name reads the same in an error
# line, a digest record and a shell.
_COMPONENT = re.compile(r"[A-Za-z0-9_@+-][A-Za-z0-9_.@+-]{0,254}")
_FILE_SHAPE = "{file: <path relative to the profile's folder>} or inline bash"


def define_controls(
    items: Sequence[Any], path: Path, catalog: Catalog, key: str = "controls"
) -> tuple[Catalog, list[str]]:
    """``catalog`` with the controls the profile at ``path`` defines in
    ``items`` (the mappings among them) added after it, and their ids."""
    shipped = load_catalog()
    added: dict[str, Control] = {}
    types = {
        name: (spec, control.id)
        for control in catalog.values()
        for name, spec in control.parameter_types.items()
    }
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            continue  # a shipped or inherited id, selected by the caller
        field = f"{key}[{index}]"
        ident = item.get("id")
        if isinstance(ident, str) and ident in shipped:
            raise ProfileError(
                path,
                f"{field}.id",
                f"an id of the profile's own: {ident} is a shipped control "
                f"(select it by name, or name yours <namespace>.{ident})",
            )
        control = parse_profile_control(item, path, field)
        field = f"{field}({control.id})"
        known = added.get(control.id) or catalog.get(control.id)
        if known is not None:
            raise ProfileError(
                path, f"{field}.id", f"unique; {control.id} is also defined in {known.source}"
            )
        for name, spec in control.parameter_types.items():
            declared, owner = types.setdefault(name, (spec, control.id))
            if declared != spec:
                raise ProfileError(
                    path,
                    f"{field}.parameters.{name}",
                    f"the same type and default as in {owner} (or another name)",
                )
        added[control.id] = control
    return Catalog({**catalog, **added}), list(added)


def parse_profile_control(data: Mapping[str, Any], path: Path, field: str) -> Control:
    """One control a profile defines; code given as ``{file: ...}`` is read
    from beside the profile first."""
    ident = data.get("id")
    named = f"{field}({ident})" if isinstance(ident, str) else field
    mechanism = MECHANISMS.get(str(data.get("mechanism")))
    params = data.get("params")
    files: list[CodeFile] = []
    if mechanism is not None and isinstance(params, Mapping):
        resolved = dict(params)
        for key, value in params.items():
            if not isinstance(value, Mapping) or "file" not in value:
                continue
            where = f"{named}.params.{key}"
            if key not in mechanism.code_keys:
                raise ProfileError(
                    path,
                    where,
                    f"a value for {mechanism.name}; only code is read from a file "
                    "(the script mechanism's apply and check)",
                )
            if set(value) != {"file"}:
                raise ProfileError(path, where, _FILE_SHAPE)
            text, digest = read_code_file(path, value["file"], f"{where}.file")
            resolved[key] = text
            files.append(CodeFile(str(key), str(value["file"]), digest))
        data = {**data, "params": resolved}
    return parse_control(data, str(path), field, custom=True, files=files)


def read_code_file(profile: Path, relative: Any, field: str) -> tuple[str, str]:
    """The text and sha256 of ``relative``, below the folder of ``profile``.

    Walked one component at a time from the profile's folder with O_NOFOLLOW,
    so neither the file nor a folder on the way may be a symlink (one could
    point anywhere on the build host), and no name can be swapped for one
    between a check and the open. Opened non-blocking and checked with fstat,
    so a FIFO or a device is refused instead of hanging the load.
    """
    parts = _components(profile, relative, field)
    where = relative
    folder = profile.parent
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise ProfileError(profile, field, f"{where}: a readable folder ({exc.strerror})") from None
    try:
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
            flags |= os.O_NONBLOCK | os.O_NOCTTY if last else os.O_DIRECTORY
            try:
                child = os.open(part, flags, dir_fd=fd)
            except OSError as exc:
                raise ProfileError(
                    profile, field, f"{where}: {_why(exc, fd, part, last)}"
                ) from None
            os.close(fd)
            fd = child
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ProfileError(profile, field, f"{where}: a regular file")
        if info.st_size > MAX_CODE_FILE:
            raise ProfileError(profile, field, f"{where}: at most {MAX_CODE_FILE} bytes")
        data = _read_all(fd)
    finally:
        os.close(fd)
    if len(data) > MAX_CODE_FILE:  # grew while being read
        raise ProfileError(profile, field, f"{where}: at most {MAX_CODE_FILE} bytes")
    try:
        text = decode_text(data)
    except DataError as exc:
        raise ProfileError(profile, field, f"{where}: {exc}") from None
    return text, hashlib.sha256(data).hexdigest()


def _components(profile: Path, relative: Any, field: str) -> list[str]:
    expected = "a path relative to the profile's folder, like controls/check.sh"
    if not isinstance(relative, str) or not relative or len(relative) > 1024:
        raise ProfileError(profile, field, expected)
    if relative.startswith("/"):
        raise ProfileError(profile, field, f"{expected}, not an absolute path")
    parts = relative.split("/")
    if any(part == ".." for part in parts):
        raise ProfileError(profile, field, f"{expected}, inside that folder (no ..)")
    if not all(_COMPONENT.fullmatch(part) for part in parts):
        raise ProfileError(
            profile, field, f"{expected} (letters, digits and _ . @ + - between slashes)"
        )
    return parts


def _why(exc: OSError, fd: int, name: str, last: bool) -> str:
    try:
        info = os.stat(name, dir_fd=fd, follow_symlinks=False)
    except OSError:
        info = None
    if info is not None and stat.S_ISLNK(info.st_mode):
        return "a regular file, not a symlink" if last else "a folder, not a symlink"
    if exc.errno == errno.ENOENT:
        return "an existing file" if last else f"an existing folder ({name} is missing)"
    if exc.errno == errno.ENOTDIR:
        return f"a path through folders ({name} is not one)"
    return f"readable ({exc.strerror})"


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while total <= MAX_CODE_FILE:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)
