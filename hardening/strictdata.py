"""The one strict reading layer for every JSON and YAML document goldsmith reads.

Specs, profiles, catalogs, policies, build records, validation runs, DSSE
envelopes and in-toto statements all pass through here, so the rules are
written once:

- regular files only (a FIFO or a device would hang or never end), opened
  non-blocking and read with a size cap;
- valid UTF-8, and no lone surrogates smuggled in through ``\\ud800`` escapes;
- duplicate mapping keys refused: two readers of one document must never see
  two documents (the first key for one tool, the last for another);
- bounded nesting, a bounded number of nodes (YAML aliases count once per use,
  so a "billion laughs" document is refused before anything walks it), bounded
  integers and no ``inf``/``nan``.

It lives in ``hardening`` because that is the package every other one may
import. Callers turn :class:`DataError` into their own one-line error naming
the file (exit 2 for a user's own file, "not trusted" inside an envelope).
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml

MAX_DEPTH = 64
MAX_NODES = 1_000_000
MAX_INT_DIGITS = 30  # far beyond any count, size or port; far below int()'s 4300
MAX_FILE = 16 * 1024 * 1024  # a spec, profile or policy is a few KiB
MAX_DOCUMENT = 64 * 1024 * 1024  # records and envelopes carry package lists


class DataError(ValueError):
    """A document breaks one of the rules above; the message says which."""


def read_regular(path: Path | str, limit: int = MAX_FILE) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes.

    Opened with O_NONBLOCK so that a FIFO cannot block the open, and checked
    with fstat on the open descriptor (not the name, which could change).
    Raises FileNotFoundError, OSError, or DataError for a non-regular or
    oversized file.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise DataError("not a regular file")
        if info.st_size > limit:
            raise DataError(f"larger than {limit} bytes")
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            total += len(chunk)
            if total > limit:  # grew while being read
                raise DataError(f"larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def decode_text(data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text (byte {exc.start})") from None
    return text.removeprefix("\ufeff")


# Strings and brackets: the nesting depth of a JSON text is read before the
# parser recurses into it (CPython's json recurses once per level). The string
# pattern is the unrolled loop: one alternation per character took 35 s over a
# 60 MB manifest, this form a fraction of a second.
_JSON_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)


def _json_depth(text: str) -> int:
    depth = deepest = 0
    for match in _JSON_TOKENS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                break
        elif token in "]}":
            depth -= 1
    return deepest


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DataError(f"duplicate key {escape(key)!r}")
        out[key] = value
    return out


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise DataError(f"an integer of more than {MAX_INT_DIGITS} digits")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise DataError(f"a number out of range ({text[:20]})")
    return value


def _constant(text: str) -> Any:
    raise DataError(f"{text} is not a JSON number")


def loads_json(data: bytes | str) -> Any:
    """A JSON document under the rules above."""
    text = decode_text(data) if isinstance(data, bytes) else data
    if _json_depth(text) > MAX_DEPTH:
        raise DataError(f"nested deeper than {MAX_DEPTH} levels")
    try:
        value = json.loads(
            text,
            object_pairs_hook=_pairs,
            parse_int=_int,
            parse_float=_float,
            parse_constant=_constant,
        )
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except RecursionError:
        raise DataError(f"nested deeper than {MAX_DEPTH} levels") from None
    _walk(value)
    return value


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that counts nesting while composing and refuses duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise DataError(f"nested deeper than {MAX_DEPTH} levels")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (LookupError, AttributeError):
            # PyYAML's own constructors fail this way on an explicitly tagged
            # scalar they cannot read: !!bool maybe (KeyError), !!int '' and
            # !!float '' (IndexError), !!timestamp x (AttributeError).
            tag = str(node.tag).replace("tag:yaml.org,2002:", "!!")
            shown = escape(repr(node.value), 60) if isinstance(node, yaml.ScalarNode) else "value"
            raise DataError(
                f"line {node.start_mark.line + 1}: {escape(tag, 60)} {shown} cannot be read"
            ) from None

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise DataError(f"line {key_node.start_mark.line + 1}: a key must be a scalar")
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise DataError(f"line {key_node.start_mark.line + 1}: merge keys (<<)")
                key = key_node.value
                if key in seen:
                    raise DataError(
                        f"line {key_node.start_mark.line + 1}: duplicate key {escape(key)!r}"
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: Any) -> int:
        digits = str(node.value).replace("_", "").lstrip("+-")
        if len(digits) > MAX_INT_DIGITS:
            raise DataError(
                f"line {node.start_mark.line + 1}: an integer of more than {MAX_INT_DIGITS} digits"
            )
        return int(super().construct_yaml_int(node))


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _StrictLoader.construct_yaml_int)


def loads_yaml(data: bytes | str) -> Any:
    """A YAML document (one, safe tags only) under the rules above."""
    text = decode_text(data) if isinstance(data, bytes) else data
    loader = None
    try:
        # The reader checks characters as the loader is made: a NUL is a YAMLError too.
        loader = _StrictLoader(text)
        value = loader.get_single_data()
    except DataError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = exc.problem or exc.context or "parse error"
        raise DataError(f"not valid YAML: {where}{problem}") from None
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "parse error"
        raise DataError(f"not valid YAML: {escape(first)}") from None
    except (RecursionError, ValueError, TypeError, OverflowError) as exc:
        raise DataError(f"not valid YAML: {exc}") from None
    finally:
        if loader is not None:
            loader.dispose()
    _walk(value)
    return value


def _walk(value: Any) -> None:
    """Count nodes as a reader would meet them (aliases once per use) and check
    every string and number; stops at the first offence."""
    budget = MAX_NODES
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        budget -= 1
        if budget < 0:
            raise DataError(f"more than {MAX_NODES} values (aliases count once per use)")
        if depth > MAX_DEPTH:
            raise DataError(f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, str):
            _check_string(item)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise DataError("inf or nan where a number is expected")
        elif isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str):
                    _check_string(key)
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)


def _check_string(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise DataError("a string with a lone surrogate (not valid Unicode)") from None


def load_json_file(path: Path | str, limit: int = MAX_DOCUMENT) -> Any:
    return loads_json(read_regular(path, limit))


def load_yaml_file(path: Path | str, limit: int = MAX_FILE) -> Any:
    return loads_yaml(read_regular(path, limit))


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def escape(text: str, limit: int = 200) -> str:
    """Text from a document, safe to print on a terminal or in a log line:
    control characters (escape sequences, carriage returns, newlines, bidi
    overrides) shown as \\xNN / \\uNNNN, and long values cut."""
    shown = _CONTROL.sub(
        lambda m: (
            f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256 else f"\\u{ord(m.group()):04x}"
        ),
        text,
    )
    try:
        shown.encode("utf-8")
    except UnicodeEncodeError:
        # Only the lone surrogates become \udXXX; other characters stay as
        # they are, so the result is valid UTF-8 but not always ASCII.
        shown = shown.encode("utf-8", "backslashreplace").decode("utf-8")
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."
