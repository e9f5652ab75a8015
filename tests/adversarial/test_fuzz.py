"""Property-based fuzzing of every reader: any input gives a result or one line.

goldsmith's rule for what it reads: a document either loads, or the reader
raises goldsmith's own error naming what is wrong in one line (exit 2 for the
user's own files, NOT TRUSTED and exit 1 inside a signed envelope or
statement); never a traceback, never a hang. Each reader here meets

- arbitrary bytes;
- structured but wrong documents: trees of mappings, lists and scalars (huge
  integers, nan and inf, lone surrogates, control characters, dates, nasty
  strings), duplicate keys written as raw text, deep nesting, anchors and
  aliases, explicit tags, written as YAML (block or flow) or JSON;
- mutations of a valid document (a shipped spec, profiles with controls of
  their own, a policy, a signed envelope, its statement, the records, the
  SBOM and provenance envelopes): one to four edits, each a value tweaked
  (a control character slipped in, cut, too long, a number at a boundary, a
  time at the end of the calendar, a pattern re cannot compile), replaced,
  deleted, added (twice, as a duplicate key) or aliased.

The readers: the strict layer (hardening.strictdata), the spec with its
provisioning steps, profiles with their own controls (and the bash quoting
model they pass), the verify policy, DSSE envelopes, the statement as verify
reads it (after a trusted signature) and as ``outdated`` and ``report`` read
it (decoded, not verified), validation.json, build.json and the build key;
and the commands that read them through click's CliRunner: verify (envelope,
statement, policy, pins, attestations), report, outdated, history, sign
(records, and a second approver over a signed statement), build and lint
with a bad spec or profile (the build stops before any VM, outdated before
any mirror), profile show.

Examples per test: $GOLDSMITH_FUZZ_EXAMPLES (default below, sized for CI);
set it to thousands for a long local run. Hypothesis prints the falsifying
example and a @reproduce_failure blob on failure; pin each fixed finding with
@example so it stays fixed.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import dataclasses
import datetime
import hashlib
import json
import math
import os
import re
import shutil
import signal
import tempfile
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import pytest
import yaml
from click.testing import Result
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from builder.errors import BuildError, GoldsmithError, InputError
from builder.spec import load_spec
from hardening.errors import ProfileError
from hardening.profile import load_profile
from hardening.strictdata import DataError, escape, loads_json, loads_yaml
from validate.claims import VerificationError, read_claims
from validate.dsse import PAYLOAD_TYPE_IN_TOTO, EnvelopeError, parse_envelope, sign_envelope
from validate.keys import load_private_key
from validate.manifest import BuildRecord, load_validation
from validate.policy import Policy
from validate.results import RecordError, ValidationRun
from validate.statement import decode_statement

from .validate_helpers import Signed, error_lines, goldsmith, make_key, sign

ROOT = Path(__file__).resolve().parents[2]
# 100 per test: the whole file in about 30 s on two cores (27 tests); a long
# local run sets thousands.
EXAMPLES = int(os.environ.get("GOLDSMITH_FUZZ_EXAMPLES", "100"))
# No input may keep a reader busy this long: a hang is a failure, not a slow CI.
HANG_SECONDS = 30.0

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    # Not Phase.explain: it traces every line while shrinking (sys.settrace
    # before Python 3.12), and a reader walking a million aliased nodes then
    # takes minutes and reads as a hang.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    derandomize=False,
    database=None,  # nothing written into the work tree; the blob reproduces a failure
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,  # fixtures are set up once; examples restore them
    ],
)


# --- judging ---------------------------------------------------------------------


class Hang(Exception):
    """A reader still busy after HANG_SECONDS. An Exception, so Hypothesis
    shrinks and reports the input like any other failure (and the CLI runner
    hands it back as the command's exception)."""


@contextlib.contextmanager
def no_hang(seconds: float = HANG_SECONDS) -> Iterator[None]:
    def alarm(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"no result after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def message_of(exc: BaseException) -> str:
    return exc.message if isinstance(exc, GoldsmithError) else str(exc)


def assert_one_line_error(exc: BaseException) -> None:
    """The message says something, and shown as the CLI shows document text
    (escaped: every command that prints these passes them through escape())
    it is one line; so is the hint."""
    message = message_of(exc)
    assert message.strip(), f"{type(exc).__name__} with an empty message"
    assert len(escape(message, 2000).splitlines()) == 1, repr(message)
    hint = getattr(exc, "hint", None)
    if hint:
        assert len(escape(hint, 2000).splitlines()) == 1, repr(hint)


T = TypeVar("T")


def judge(call: Callable[[], T], *allowed: type[BaseException]) -> T | None:
    """``call()`` returns, or raises one of ``allowed`` with a one-line message.
    Any other exception propagates: its traceback is the finding."""
    with no_hang():
        try:
            return call()
        except allowed as exc:
            assert_one_line_error(exc)
            return None


# What must never reach a terminal raw from a document: C0 and C1 controls
# (escape sequences, carriage returns), DEL, line and paragraph separators,
# bidirectional overrides and isolates, lone surrogates. escape() shows them.
TERMINAL_CONTROL = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


def judge_cli(
    result: Result, codes: set[int], *, verdict: bool = False, text_out: bool = True
) -> None:
    """A command's outcome: an expected exit code, no traceback, and on failure
    exactly one error line on stderr (progress and "  hint:" lines aside), or
    for ``verdict`` commands one NOT TRUSTED line on stdout. Nothing a document
    says may reach the terminal as a raw control character."""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        exc = result.exception
        shown = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        raise AssertionError(f"the command raised {type(exc).__name__}:\n{shown}")
    code = result.exit_code
    assert code in codes, (code, result.output)
    assert "Traceback" not in result.output, result.output
    # Searched across lines: splitlines() would take a carriage return, or a
    # \x1c or \x85, for a line end and hide it.
    assert not TERMINAL_CONTROL.search(result.stderr.replace("\n", "")), repr(result.stderr)
    errors = error_lines(result.stderr)
    if code == 0:
        assert errors == [], result.stderr
    elif verdict and code == 1:
        assert errors == [], result.stderr
        assert result.stdout.count("\n") == 1, repr(result.stdout)
        assert result.stdout.startswith("NOT TRUSTED: "), result.stdout
    elif code == 1 and not verdict and result.stdout:
        assert errors == [], result.stderr  # outdated: rebuild, with its reasons on stdout
    else:
        assert len(errors) == 1, result.stderr
        assert errors[0].startswith("goldsmith: error: "), errors[0]
    if text_out:
        assert not TERMINAL_CONTROL.search(result.stdout.replace("\n", "")), repr(result.stdout)


# --- values ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Raw:
    """Text put into a document as it stands: what no serialiser would write."""

    text: str


@dataclasses.dataclass(frozen=True)
class Pairs:
    """A mapping written with its pairs as given: one key twice included."""

    items: tuple[tuple[Any, Any], ...]


@dataclasses.dataclass(frozen=True)
class Anchored:
    """A YAML node with an anchor (&name), for an alias elsewhere to repeat."""

    name: str
    value: Any


NASTY_TEXT = [
    "",
    " ",
    "\t",
    "\n",
    "\r\n",
    "\x00",
    "a\x00b",
    "\x1b[2J\x1b[1;1HTRUSTED",
    "\x1b]8;;http://x\x07link",
    "\r",
    "\x85",
    "\x0b\x0c",
    "\x1c\x1d\x1e",
    "\u2028",
    "\u2029",
    "\u202e",
    "\u2066",
    "\ufeff",
    "\x7f",
    "\x9b",
    "\ud800",
    "\udfff\ud800",
    "a\nb",
    "~",
    "null",
    "yes",
    "no",
    "on",
    "off",
    "true",
    ".inf",
    ".nan",
    "-.inf",
    "0x10",
    "0o17",
    "0b101",
    "1_000",
    "1:30",
    "1e400",
    "-0",
    "..",
    "../..",
    "/",
    "//",
    "/etc/passwd",
    "../../../../etc/shadow",
    "/dev/zero",
    "/proc/self/environ",
    "a" * 300,
    "a" * 300 + ".yaml",
    "a/" * 100,
    "x" * 5000,
    "${x}",
    "${ssh_allow_groups}",
    "$ssh_allow_groups",
    "$(touch /tmp/goldsmith-fuzz-pwned)",
    "`id`",
    "'",
    '"',
    "\\",
    "%s%n",
    "{}",
    "[]",
    "&a",
    "*a",
    "<<",
    "!!python/object/apply:os.system",
    "2024-02-30",
    "2026-11-27",
    "0001-01-01",
    "9999-12-31",
    "0001-01-01T00:00:00+01:00",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59-23:59",
    "9999-12-31T23:59:59+00:00",
    "2026-01-01T00:00:00",
    "2026-13-01T00:00:00Z",
    "2026-11-27T08:00:00Z",
    "sha256:" + "0" * 64,
    "sha256:" + "A" * 64,
    "0" * 64,
    "f" * 128,
    "1.0.0",
    "1.2",
    "1.2.0",
    "999999999.999999999",
    "1" * 40,
    "1.0-rc1",
    "http://",
    "http://[::1",
    "http://a:99999/",
    "http://a:0/",
    "https://user:pw@host/",
    "http://deb.debian.org/debian",
    "file:///etc/passwd",
    "ftp://x/y",
    "é",
    "💥",
    "\U0010ffff",
    "e\u0301",
    "baseline",
    "cis-level1-server",
    "approved",
    "passed",
    "failed",
    "waived",
    "qcow2",
    "debian-12-baseline",
    PAYLOAD_TYPE_IN_TOTO,
    "https://in-toto.io/Statement/v1",
    "https://goldsmith.dev/template/v1",
    "https://goldsmith.dev/build/v1",
    "https://goldsmith.dev/validation/v1",
    "acme.x",
    "goldsmith.x",
    "kernel-aslr",
    "script",
    "sysctl",
    "matches",
    "a{99999999999}",
    "(" * 1000 + ")" * 1000,
    "[",
    "(?P<",
    "acme_banner",
    "$acme_banner",
    "${acme_banner",
    'echo "$acme_banner',
    "echo $acme_banner",
    "$(echo $acme_port)",
    "`echo $acme_port`",
    "$((acme_min + 1))",
    "cat <<EOF\n$acme_banner\nEOF\n",
    "cat <<'EOF'\n$acme_banner\n",
    "cat <<-EOF\n\t$acme_port\n\tEOF\n",
    "echo $'\\'' $acme_port",
    "# $acme_port\n",
]

NASTY_NUMBERS: list[Any] = [
    0,
    -1,
    1,
    2,
    3,
    16,
    17,
    64,
    99,
    100,
    255,
    256,
    512,
    3650,
    3651,
    65535,
    2**31,
    2**63,
    -(2**63),
    10**29,
    10**30 - 1,
    10**30,
    10**31,
    10**100,
    1e308,
    -1e308,
    5e-324,
    0.5,
    -0.0,
    1.5,
    math.nan,
    math.inf,
    -math.inf,
    True,
    False,
    None,
]

# Inline YAML that no tree above holds: tags, aliases, odd numbers.
YAML_TOKENS = [
    "!!python/object/apply:os.system ['true']",
    "!!python/name:os.system",
    "!!binary aGVsbG8=",
    "!!binary ***",
    "!!set {a, b}",
    "!!omap [a: 1, b: 2]",
    "!!pairs [a: 1, a: 2]",
    "!!timestamp 2024-02-30",
    "!!timestamp x",
    "!!float nan",
    "!!float ''",
    "!!int ''",
    "!!int 0x",
    "!!int 1:60:70",
    "!!bool maybe",
    "!<tag:yaml.org,2002:bool> x",
    "!!null x",
    "!!str [a]",
    "!!map [a]",
    "!!merge x",
    "!local x",
    "*undefined",
    "&anchor 1",
    "1" + "0" * 5000,
    "0x" + "f" * 40,
    "1e400",
    "-.inf",
    "190:20:30",
    "'unterminated",
    '"\\ud800"',
    '"\\x1b[31m"',
    '"\\0"',
    "2001-12-14t21:59:43.10-05:00",
    "[" * 70 + "]" * 70,
    "{a: " * 70 + "1" + "}" * 70,
]

# Paths a fuzzed spec or profile may name, each a different kind of trouble.
WORKSPACE_NAMES = [
    "base.qcow2",
    "files/ca.crt",
    "files/www",
    "files/script.sh",
    "files/latin1.sh",
    "files/odd",
    "keys/repo.asc",
    "keys/bad.key",
    "ansible/site.yml",
    "fifo",
    "fifo.yaml",
    "link",
    "zero",
    "zero.yaml",
    "dir",
    "profile.yaml",
    "parent.yaml",
    "cycle.yaml",
    "bad-profile.yaml",
    "missing.yaml",
    "fuzzed.yaml",
    "controls/nginx-server-tokens.check.sh",
    "controls/nginx-server-tokens.apply.sh",
    "controls/link.sh",
    "controls/fifo.sh",
    "controls/big.sh",
    "controls/latin1.sh",
    "controls/crlf.sh",
    "controls/dir",
    "controls/zero",
    "controls/../profile.yaml",
    "./controls//nginx-server-tokens.check.sh",
]

INTERESTING = st.sampled_from(NASTY_TEXT + WORKSPACE_NAMES) | st.sampled_from(NASTY_NUMBERS)

TEXT = st.text(
    st.characters(codec="utf-8")
    | st.characters(max_codepoint=0x9F)
    | st.characters(categories=["Cs"])
    | st.sampled_from(["\u2028", "\u202e", "\x1b", "\ufeff"]),
    max_size=40,
)

DATES = st.dates(min_value=datetime.date(1, 1, 1)) | st.datetimes(
    timezones=st.sampled_from(
        [
            datetime.UTC,
            datetime.timezone(datetime.timedelta(hours=23, minutes=59)),
            datetime.timezone(-datetime.timedelta(hours=23, minutes=59)),
        ]
    )
)

SCALARS: st.SearchStrategy[Any] = st.one_of(
    INTERESTING,
    INTERESTING,
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(),
    TEXT,
    DATES,
)

KEYS: st.SearchStrategy[Any] = st.one_of(
    TEXT, st.sampled_from(NASTY_TEXT), st.integers(), st.none(), st.booleans(), st.floats()
)


def trees(keys: st.SearchStrategy[Any] = KEYS, *, leaves: int = 25) -> st.SearchStrategy[Any]:
    """Mappings, lists and scalars, any shape, with duplicate-key mappings."""

    def extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.one_of(
            st.lists(children, max_size=6),
            st.dictionaries(keys, children, max_size=6),
            st.lists(st.tuples(keys, children), min_size=2, max_size=5).map(
                lambda items: Pairs((*items, (items[0][0], items[-1][1])))
            ),
            st.builds(Raw, st.sampled_from(YAML_TOKENS)),
        )

    return st.recursive(SCALARS, extend, max_leaves=leaves)


# --- writing documents -----------------------------------------------------------


def to_json(value: Any, *, ascii_only: bool = True) -> str:
    """JSON text of a tree; Pairs keep their duplicates, Raw goes in as it is,
    nan and inf become the NaN/Infinity that strict JSON readers refuse."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Anchored):
        return to_json(value.value, ascii_only=ascii_only)
    if isinstance(value, Pairs | dict):
        items = value.items if isinstance(value, Pairs) else value.items()
        return (
            "{"
            + ", ".join(
                json.dumps(k if isinstance(k, str) else str(k), ensure_ascii=ascii_only)
                + ": "
                + to_json(v, ascii_only=ascii_only)
                for k, v in items
            )
            + "}"
        )
    if isinstance(value, list | tuple | set | frozenset):
        return "[" + ", ".join(to_json(v, ascii_only=ascii_only) for v in value) + "]"
    if isinstance(value, datetime.date):
        return json.dumps(value.isoformat())
    if isinstance(value, bytes):
        return json.dumps(value.decode("latin-1"), ensure_ascii=ascii_only)
    return json.dumps(value, ensure_ascii=ascii_only)


_PLAIN = re.compile(r"[A-Za-z0-9_.~+/][A-Za-z0-9_.~+/ -]*(?<! )")


def yaml_scalar(value: Any) -> str:
    if isinstance(value, Raw):
        return value.text
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        return yaml.safe_dump(value).split("\n", 1)[0]
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, str) and _PLAIN.fullmatch(value):
        return value  # plain, so YAML's implicit types apply: yes, 1.0, 2024-01-01
    if isinstance(value, bytes):
        return "!!binary " + base64.b64encode(value).decode("ascii")
    return json.dumps(str(value))


def yaml_flow(value: Any) -> str:
    if isinstance(value, Anchored):
        return f"&{value.name} {yaml_flow(value.value)}"
    if isinstance(value, Pairs | dict):
        items = value.items if isinstance(value, Pairs) else value.items()
        return "{" + ", ".join(f"{yaml_scalar(k)}: {yaml_flow(v)}" for k, v in items) + "}"
    if isinstance(value, list | tuple | set | frozenset):
        return "[" + ", ".join(yaml_flow(v) for v in value) + "]"
    return yaml_scalar(value)


def _collection(value: Any) -> bool:
    return isinstance(value, Pairs | dict | list) and bool(
        value.items if isinstance(value, Pairs) else value
    )


def yaml_block(value: Any, indent: int = 0) -> list[str]:
    pad = " " * indent
    if isinstance(value, Pairs | dict) and _collection(value):
        lines = []
        items = value.items if isinstance(value, Pairs) else value.items()
        for k, v in items:
            if _collection(v):
                lines.append(f"{pad}{yaml_scalar(k)}:")
                lines += yaml_block(v, indent + 2)
            else:
                lines.append(f"{pad}{yaml_scalar(k)}: {yaml_flow(v)}")
        return lines
    if isinstance(value, list) and value:
        lines = []
        for item in value:
            if _collection(item):
                lines.append(f"{pad}-")
                lines += yaml_block(item, indent + 2)
            else:
                lines.append(f"{pad}- {yaml_flow(item)}")
        return lines
    return [pad + yaml_flow(value)]


@st.composite
def as_yaml(draw: st.DrawFn, tree: Any) -> str:
    style = draw(st.sampled_from(["block", "flow", "json"]))
    if style == "block":
        return "\n".join(yaml_block(tree)) + "\n"
    if style == "flow":
        return yaml_flow(tree) + "\n"
    return to_json(tree, ascii_only=draw(st.booleans())) + "\n"


@st.composite
def encoded(draw: st.DrawFn, text: str) -> bytes:
    """The text's bytes: UTF-8 (a lone surrogate written as its own invalid
    bytes), sometimes with a byte order mark, as UTF-16, or cut short."""
    how = draw(st.sampled_from(["utf-8"] * 6 + ["bom", "utf-16", "cut"]))
    data = text.encode("utf-8", "surrogatepass")
    if how == "bom":
        return b"\xef\xbb\xbf" + data
    if how == "utf-16":
        return text.encode("utf-16", "surrogatepass")
    if how == "cut" and data:
        return data[: draw(st.integers(0, len(data) - 1))]
    return data


# --- documents -------------------------------------------------------------------


def _odd_yaml(size: int, token: str) -> list[str]:
    laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n"
        for i in range(min(size, 9))
    )
    return [
        laughs,
        "[" * size + "]" * size + "\n",
        "{a: " * size + "1" + "}" * size + "\n",
        "".join("  " * i + "- \n" for i in range(size)) + "  " * size + "- 1\n",
        "".join("  " * i + f"k{i}:\n" for i in range(size)) + "  " * size + "v: 1\n",
        "a: &a [*a]\n",
        "a: &a {b: *a}\n",
        f"a: {token}\n",
        f"- {token}\n",
        f"{token}\n",
        f"{token}: 1\n",
        "a: 1\n---\na: 2\n",
        "%YAML 1.1\n---\na: 1\n",
        "%YAML 2.0\n---\na: 1\n",
        "--- !!python/object:os.system\n",
        "? [a]\n: 1\n",
        "? {a: 1}\n: 1\n",
        "a:\n\t- 1\n",
        "a: 'b\n",
        'a: "\\ud800"\n',
        "a: |\n  x\n\x00\n",
        "base: &b {x: 1}\nother:\n  <<: *b\n",
        "a: 1\na: 2\n",
        "a: {b: 1, b: 2}\n",
        "- {a: 1, a: 1}\n",
        '{"a": 1, "a": 2}\n',
        "a: " + "1" * 31 + "\n",
        "a: -" + "9" * 30 + "\n",
        "a: " + "1" + "0" * 5000 + "\n",
        "\ufeff\ufeffa: 1\n",
        "a: 1\r\nb: 2\r\n",
        "a: \x85\n",
        "a: b\u2028c: d\n",
    ]


@st.composite
def odd_yaml(draw: st.DrawFn) -> bytes:
    size = draw(st.sampled_from([1, 2, 8, 9, 63, 64, 65, 66, 200, 1000]))
    token = draw(st.sampled_from(YAML_TOKENS))
    text = draw(st.sampled_from(_odd_yaml(size, token)))
    return draw(encoded(text))


@st.composite
def odd_json(draw: st.DrawFn) -> bytes:
    size = draw(st.sampled_from([1, 63, 64, 65, 66, 1000, 100_000]))
    text = draw(
        st.sampled_from(
            [
                "[" * size + "]" * size,
                '{"a":' * size + "1" + "}" * size,
                "[" * size,
                '{"a": 1, "a": 2}',
                '{"a": {"b": 1, "b": 1}}',
                '{"a": NaN}',
                '{"a": Infinity}',
                '{"a": -Infinity}',
                '{"a": 1e400}',
                '{"a": ' + "1" * 31 + "}",
                '{"a": 1' + "0" * 5000 + "}",
                '{"a": "\\ud800"}',
                '{"\\udfff": 1}',
                '{"a": "\\u0000\\u001b[31m"}',
                "\ufeff{}",
                '{"a": 1}{"a": 2}',
                '{"a": 1} trailing',
                "",
                " ",
                "null",
                "[]",
                '"text"',
                "1",
                '{"a": "' + "\\" * size + '"}',
            ]
        )
    )
    return draw(encoded(text))


def key_pool(*docs: Any) -> list[Any]:
    """Every mapping key the valid documents use, so that structured and
    mutated documents get past "unknown key" and reach what the keys hold."""
    found: set[Any] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            found.update(value)
            for child in value.values():
                walk(child)
        elif isinstance(value, list):
            for child in value:
                walk(child)

    for doc in docs:
        walk(doc)
    return sorted(found, key=str)


def _nodes(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _nodes(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _nodes(child, (*path, index))


def _get(root: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        root = root[part]
    return root


def _put(root: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    _get(root, path[:-1])[path[-1]] = value
    return root


# Put inside a string: each is trouble somewhere (a new line of sources.list
# or shell, a repainted terminal, a cut C string, a path that climbs out).
INJECTED = [
    "\x00",
    "\n",
    "\r",
    "\t",
    "\x1b[2J",
    "\x1b]0;x\x07",
    "\x85",
    "\x9b",
    "\u2028",
    "\u202e",
    "\ufeff",
    "\ud800",
    "\x7f",
    " ",
    "'",
    '"',
    "\\",
    "$(id)",
    "${x}",
    "/..",
    "/",
    "%",
    ":",
    "#",
    "*",
    "é",
]
EXTREME_TIMES = [
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-23:59",
    "0001-01-01",
    "9999-12-31",
    "2026-02-30",
]


# What a tweak tries first where a value looks like a time, a path or a
# regular expression (a fuzzing dictionary: random text seldom hits these).
REGEXES = ["a{99999999999}", "(" * 1000 + ")" * 1000, "[", "(?P<", "\\", "(?<=a+)b", "x**"]
TOO_LONG_NAMES = ["a" * 256, "a" * 300 + ".yaml", "files/" + "a" * 300, "a/" * 2100]
_TIME_LIKE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_PATH_LIKE = re.compile(r".*(/|\.(ya?ml|sh|asc|crt|qcow2|json)$)")


@st.composite
def tweaked(draw: st.DrawFn, value: Any, key: Any = None) -> Any:
    """A value of the same kind as ``value``, just wrong: a character slipped
    into a string, a string cut or made too long, a number at a boundary, a
    time at the end of the calendar, a pattern re cannot compile."""
    if isinstance(value, bool):
        return draw(st.sampled_from([not value, "true", 1, None]))
    if isinstance(value, int):
        near = st.integers(value - 2, value + 2) | st.sampled_from(
            [-value, str(value), float(value)]
        )
        return draw(near | st.sampled_from([v for v in NASTY_NUMBERS if isinstance(v, int)]))
    if isinstance(value, float):
        whole = int(value) if math.isfinite(value) else 0
        return draw(st.sampled_from([math.nan, math.inf, -value, 1e308, whole]))
    if isinstance(value, datetime.date):
        return draw(st.sampled_from([*EXTREME_TIMES, value.isoformat(), datetime.date(1, 1, 1)]))
    if isinstance(value, str):
        hows = ["inject", "inject", "inject", "nasty", "cut", "long"]
        if _TIME_LIKE.match(value):
            hows += ["time"] * 3
        if _PATH_LIKE.match(value):
            hows += ["too long"] * 3
        if key == "pattern":
            hows += ["regex"] * 3
        how = draw(st.sampled_from(hows))
        if how == "inject":
            at = draw(st.integers(0, len(value)))
            return value[:at] + draw(st.sampled_from(INJECTED)) + value[at:]
        if how == "cut":
            return value[: draw(st.integers(0, max(len(value) - 1, 0)))]
        if how == "long":
            return value + "a" * draw(st.sampled_from([64, 255, 300, 5000]))
        if how == "time":
            return draw(st.sampled_from(EXTREME_TIMES))
        if how == "too long":
            return draw(st.sampled_from(TOO_LONG_NAMES + WORKSPACE_NAMES))
        if how == "regex":
            return draw(st.sampled_from(REGEXES))
        return draw(st.sampled_from(NASTY_TEXT + WORKSPACE_NAMES))
    if isinstance(value, list):
        return draw(st.sampled_from([[], value[:-1], value + value[-1:], [value]]))
    if isinstance(value, dict):
        return draw(st.sampled_from([{}, [value], None]))
    return draw(SCALARS)


@st.composite
def mutated_tree(draw: st.DrawFn, doc: Any, keys: Sequence[Any], *, yaml_only: bool) -> Any:
    """``doc`` with one to four edits: a value tweaked (same kind, just
    wrong) or replaced (by a nasty value, a random tree or another part of the
    document), a key deleted, a key added (one it already has, written
    twice), an alias in place of a value."""
    root = copy.deepcopy(doc)
    values = st.one_of(SCALARS, trees(st.sampled_from(keys) | KEYS, leaves=8))
    for _ in range(draw(st.integers(1, 4))):
        paths = list(_nodes(root))
        # Tweaks go to the leaves, where a reader meets the value itself.
        leaves = [p for p in paths if not isinstance(_get(root, p), dict | list)]
        ops = ["tweak"] * 5 + ["replace", "replace", "copy", "add", "delete", "delete"]
        ops += ["alias"] if yaml_only and len(paths) > 2 else []
        op = draw(st.sampled_from(ops))
        path = draw(st.sampled_from(leaves if op == "tweak" and leaves else paths))
        if op == "delete" and not path:
            op = "replace"
        node = _get(root, path)
        if op == "tweak":
            root = _put(root, path, draw(tweaked(node, path[-1] if path else None)))
        elif op == "replace":
            root = _put(root, path, draw(values))
        elif op == "copy":
            root = _put(root, path, copy.deepcopy(_get(root, draw(st.sampled_from(paths)))))
        elif op == "delete":
            del _get(root, path[:-1])[path[-1]]
        elif op == "alias":
            other = draw(st.sampled_from(paths))
            if other[: len(path)] == path or path[: len(other)] == other:
                continue
            root = _put(root, path, Anchored("a", node))
            root = _put(root, other, Raw("*a"))
            break  # the tree now holds emitter nodes that later edits cannot walk
        elif isinstance(node, dict):
            key = draw(st.sampled_from(keys) | KEYS)
            value = draw(values)
            if key in node:  # the key again: a duplicate, written as raw pairs
                root = _put(root, path, Pairs((*node.items(), (key, value))))
                break
            node[key] = value
        elif isinstance(node, list):
            node.insert(draw(st.integers(0, len(node))), draw(values))
        else:
            root = _put(root, path, draw(values))
    return root


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@st.composite
def yaml_documents(draw: st.DrawFn, valid: Sequence[Any], keys: Sequence[Any]) -> bytes:
    """Bytes for a YAML reader: arbitrary, structured but wrong, odd YAML, or a
    mutation of one of the ``valid`` documents."""
    kind = draw(st.sampled_from(["bytes", "structured", "odd", "mutated", "mutated", "mutated"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "odd":
        return draw(odd_yaml())
    if kind == "structured":
        key = st.sampled_from(list(keys)) | KEYS
        top = st.dictionaries(key, trees(key, leaves=12), max_size=8)
        tree = draw(top | trees(key))
        return draw(encoded(draw(as_yaml(tree))))
    doc = draw(st.sampled_from(list(valid)))
    tree = draw(mutated_tree(doc, keys, yaml_only=True))
    if draw(st.booleans()) and _plain_data(tree):
        text = yaml.safe_dump(tree, allow_unicode=draw(st.booleans()), sort_keys=False)
    else:
        text = draw(as_yaml(tree))
    return draw(encoded(text))


def _plain_data(tree: Any) -> bool:
    if isinstance(tree, Raw | Pairs | Anchored):
        return False
    if isinstance(tree, dict):
        return all(_plain_data(k) and _plain_data(v) for k, v in tree.items())
    if isinstance(tree, list):
        return all(_plain_data(v) for v in tree)
    return True


def edited(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    """A copy of ``doc`` with the value at ``path`` replaced (pinned examples)."""
    return _put(copy.deepcopy(doc), path, value)


@st.composite
def json_documents(draw: st.DrawFn, valid: Sequence[Any], keys: Sequence[Any]) -> bytes:
    """Bytes for a JSON reader, as yaml_documents."""
    kind = draw(st.sampled_from(["bytes", "structured", "odd", "mutated", "mutated", "mutated"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "odd":
        return draw(odd_json())
    if kind == "structured":
        key = st.sampled_from(list(keys)) | KEYS
        tree = draw(st.dictionaries(key, trees(key, leaves=12), max_size=8) | trees(key))
        return draw(encoded(to_json(tree, ascii_only=draw(st.booleans()))))
    doc = draw(st.sampled_from(list(valid)))
    tree = draw(mutated_tree(doc, keys, yaml_only=False))
    return draw(encoded(to_json(tree, ascii_only=draw(st.booleans()))))


# --- the valid documents ---------------------------------------------------------

PGP_KEY = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQ==\n-----END PGP PUBLIC KEY BLOCK-----\n"
BASE_SHA256 = "ab" * 32

# A spec with every provisioning step, valid in the workspace below.
PROVISION_SPEC = f"""\
name: fuzz-web
version: 1.0.0
base:
  file: {{path: base.qcow2, sha256: {BASE_SHA256}}}
profile: profile.yaml
packages: [nginx-light]
upgrade: false
disk_size: 2G
vm: {{memory: 1024, cpus: 1}}
timeouts: {{boot: 300, step: 600, shutdown: 60}}
provision:
  - name: ca
    file: {{source: files/ca.crt, destination: /usr/local/share/ca.crt, mode: "0644"}}
  - name: site
    file:
      source: files/www
      destination: /var/www/site
      owner: root
      group: www-data
      mode: "0640"
  - shell: {{inline: "echo hi\\n", env: {{SITE: web, COUNT: 3}}}}
  - shell: {{script: files/script.sh, env_from_host: [FUZZ_TOKEN]}}
  - apt:
      name: tools
      uri: http://10.0.2.2:8765/tools
      suite: stable
      components: [main]
      key: keys/repo.asc
      packages: [agent]
  - ansible: {{playbook: ansible/site.yml, env_from_host: [FUZZ_TOKEN]}}
  - reboot: {{}}
"""

# The spec outdated and the CLI tests read beside the signed artifact's manifest.
FILE_SPEC = f"""\
name: debian-12-baseline
version: 1.2.0
base:
  file: {{path: base.qcow2, sha256: {BASE_SHA256}}}
profile: baseline
compression: zlib
"""

# A profile defining a control of its own with typed parameters, inline bash
# that expands them (quoted, so the quoting model passes it), a pattern, and
# every other field; it extends parent.yaml beside it.
OWN_PROFILE = """\
id: fuzz-own
version: 1.0.0-rc1
title: Own controls with parameters
extends: parent.yaml
select: [{area: kernel}]
exclude: [kernel-aslr]
parameters:
  acme_banner: Authorised use only
  acme_port: 8443
controls:
  - kernel-ptrace-scope
  - id: acme.banner
    title: The banner is set
    area: acme
    severity: high
    rationale: Users are told the rules before they log in.
    references: {acme: [WEB-1, 7], other-std: ["A.1"]}
    devsec: [os-01]
    anssi: [R12, R80]
    needs: [cron]
    phase: 50
    only_if: {param_set: acme_banner}
    mechanism: script
    parameters:
      acme_banner: {type: text, default: hello}
      acme_port: {type: port, default: 443}
      acme_paths: {type: path_list, default: [/etc/issue, /etc/issue.net]}
      acme_min: {type: int, min: 1, max: 10, default: 3}
    params:
      expected: the banner reads ${acme_banner} on port ${acme_port}
      pass_if: matches
      pattern: "^ok( [0-9]+)?$"
      not_applicable_exit: 3
      check: |
        grep -qx -- "${acme_banner}" /etc/issue && echo "ok $acme_port"
        [ "${acme_min}" -gt 0 ] || echo 'no'  # a comment with $acme_port
      apply: |
        printf '%s\\n' "${acme_banner}" > /etc/issue
        IFS=, ; for p in $(echo "$acme_paths"); do :; done
        cat <<EOF >/etc/issue.net
        $acme_banner
        EOF
waivers:
  - control: acme.banner
    reason: A waiver with a date
    expires: 2030-01-01
"""

POLICY = {
    "required_profile": "baseline",
    "required_profile_digest": "sha256:" + "22" * 32,
    "required_name": "debian-12-baseline",
    "required_version": "1.2.0",
    "min_version": "1.0.0",
    "required_result": "approved",
    "max_age_days": 30,
    "required_controls": ["SSH-01", "SYSCTL-01"],
    "revoked_keys": ["ab" * 32],
    "threshold": 1,
}

SPECS = [
    _load(ROOT / "templates" / "debian-12-baseline.yaml"),
    _load(ROOT / "templates" / "debian-12-cis-level1.yaml"),
    yaml.safe_load(PROVISION_SPEC),
    yaml.safe_load(FILE_SPEC),
]
PROFILES = [
    _load(ROOT / "hardening" / "data" / "profiles" / "baseline.yaml"),
    _load(ROOT / "hardening" / "data" / "profiles" / "cis-level1-server.yaml"),
    _load(ROOT / "examples" / "custom-profile.yaml"),
    _load(ROOT / "examples" / "webserver" / "profile.yaml"),
    yaml.safe_load(OWN_PROFILE),
]


def make_workspace(root: Path) -> Path:
    """A folder holding what the valid spec and profiles name, and the kinds
    of file a fuzzed one may name instead: FIFOs, symlinks to devices and to
    files outside, folders, oversized and non-UTF-8 files."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "base.qcow2").write_bytes(b"")
    files = root / "files"
    (files / "www").mkdir(parents=True)
    (files / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n")
    (files / "www" / "index.html").write_text("<h1>hi</h1>\n")
    (files / "script.sh").write_text("#!/bin/sh\necho register\n")
    (files / "latin1.sh").write_bytes(b"echo caf\xe9\n")
    (files / "odd").mkdir()
    (files / "odd" / "x\x1by").write_text("odd name\n")
    (root / "keys").mkdir()
    (root / "keys" / "repo.asc").write_text(PGP_KEY)
    (root / "keys" / "bad.key").write_text("not a key\n")
    (root / "ansible").mkdir()
    (root / "ansible" / "site.yml").write_text("- hosts: all\n  tasks: []\n")
    os.mkfifo(root / "fifo")
    os.mkfifo(root / "fifo.yaml")
    (root / "link").symlink_to("/etc/passwd")
    (root / "zero").symlink_to("/dev/zero")
    (root / "zero.yaml").symlink_to("/dev/zero")
    (root / "dir").mkdir()
    shutil.copy(ROOT / "examples" / "webserver" / "profile.yaml", root / "profile.yaml")
    (root / "parent.yaml").write_text(
        "id: parent\nversion: 1.0.0\ntitle: A parent\ncontrols: [kernel-aslr]\n"
    )
    (root / "cycle.yaml").write_text("extends: fuzzed.yaml\n")
    (root / "bad-profile.yaml").write_text("id: [\n")
    controls = root / "controls"
    shutil.copytree(ROOT / "examples" / "webserver" / "controls", controls)
    (controls / "link.sh").symlink_to("/etc/passwd")
    os.mkfifo(controls / "fifo.sh")
    (controls / "big.sh").write_text("#" * (70 * 1024) + "\n")
    (controls / "latin1.sh").write_bytes(b"echo caf\xe9\n")
    (controls / "crlf.sh").write_bytes(b"true\r\n")
    (controls / "dir").mkdir()
    (controls / "zero").symlink_to("/dev/zero")
    (root / "spec.yaml").write_text(PROVISION_SPEC)
    (root / "own.yaml").write_text(OWN_PROFILE)
    return root


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FUZZ_TOKEN", "s3cret")
    return make_workspace(tmp_path / "ws")


def test_the_valid_documents_are_valid(workspace: Path) -> None:
    """Mutations start from documents that load: otherwise the fuzzing would
    only ever meet the first error."""
    spec = load_spec(workspace / "spec.yaml")
    assert [s.kind for s in spec.provision] == [
        "file",
        "file",
        "shell",
        "shell",
        "apt",
        "ansible",
        "reboot",
    ]
    for doc in PROFILES:
        path = workspace / "fuzzed.yaml"
        path.write_text(yaml.safe_dump(doc))
        load_profile(path)
    Policy.from_dict(POLICY, workspace / "policy.yaml")


# --- the strict layer ------------------------------------------------------------

ANY_KEYS = key_pool(*SPECS, *PROFILES, POLICY)


@FUZZ
@given(data=yaml_documents(SPECS + PROFILES + [POLICY], ANY_KEYS))
# PyYAML's constructors failed on these explicit tags with KeyError,
# IndexError and AttributeError (strictdata now names the tag and line).
@example(data=b"!!bool maybe\n")
@example(data=b"a: [!!int '']\n")
@example(data=b"a: {b: !!float ''}\n")
@example(data=b"!!timestamp x\n")
@example(data=b"!<tag:yaml.org,2002:bool> x\n")
def test_strict_yaml(data: bytes) -> None:
    judge(lambda: loads_yaml(data), DataError)


@FUZZ
@given(data=json_documents(SPECS + PROFILES + [POLICY], ANY_KEYS))
def test_strict_json(data: bytes) -> None:
    judge(lambda: loads_json(data), DataError)


# --- spec, profile, policy -------------------------------------------------------

SPEC_KEYS = key_pool(*SPECS)


TOO_LONG = "a" * 300  # one name longer than the file system takes: ENAMETOOLONG


@FUZZ
@given(data=yaml_documents(SPECS, SPEC_KEYS))
# Path.is_file() and .exists() raised OSError (File name too long) for these;
# the spec and provisioning readers now ask os.path, which says no.
@example(data=PROVISION_SPEC.replace("files/ca.crt", TOO_LONG).encode())
@example(data=PROVISION_SPEC.replace("ansible/site.yml", TOO_LONG).encode())
@example(data=PROVISION_SPEC.replace("path: base.qcow2", f"path: {TOO_LONG}").encode())
@example(data=PROVISION_SPEC.replace("profile.yaml", f"{TOO_LONG}.yaml").encode())
def test_spec(workspace: Path, data: bytes) -> None:
    path = workspace / "fuzzed.yaml"
    path.write_bytes(data)
    judge(lambda: load_spec(path), InputError)


PROFILE_KEYS = key_pool(*PROFILES)


@FUZZ
@given(data=yaml_documents(PROFILES, PROFILE_KEYS))
@example(data=f"extends: {TOO_LONG}.yaml\n".encode())  # OSError (profile._locate)
@example(data=f"extends: {TOO_LONG}\n".encode())
# re.compile raised OverflowError and RecursionError for these patterns
# (hardening/mechanisms/script.py now refuses them as invalid).
@example(data=OWN_PROFILE.replace('"^ok( [0-9]+)?$"', '"a{99999999999}"').encode())
@example(data=OWN_PROFILE.replace('"^ok( [0-9]+)?$"', '"' + "(" * 1000 + ")" * 1000 + '"').encode())
def test_profile(workspace: Path, data: bytes) -> None:
    path = workspace / "fuzzed.yaml"
    path.write_bytes(data)
    judge(lambda: load_profile(path), ProfileError)


@pytest.mark.parametrize(
    "value", ['"$(touch /tmp/pwned)"', '"3"', "0", "1", "126", "-1", "true", "3.5", "[3]", "{a: 3}"]
)
def test_a_bad_not_applicable_exit_is_refused_in_one_line(workspace: Path, value: str) -> None:
    """A script check's "does not apply" status is an exit status from 2 to 125,
    never a verdict (0, 1), the shell's own (126+), text or another type."""
    path = workspace / "own.yaml"
    path.write_text(OWN_PROFILE.replace("not_applicable_exit: 3", f"not_applicable_exit: {value}"))
    with pytest.raises(ProfileError) as raised:
        load_profile(path)
    assert_one_line_error(raised.value)
    assert "not_applicable_exit" in str(raised.value)
    assert "pwned" not in str(raised.value)


BASH = st.lists(
    st.sampled_from(list("\"'`$(){}[]\\<>|&;#-= \t\nEOFx,"))
    | st.sampled_from(
        ["$acme_banner", "${acme_port}", "<<EOF", "<<-'EOF'", "EOF", "$((", "$'", "$(", "\r"]
    ),
    max_size=60,
).map("".join)


@FUZZ
@given(code=BASH | st.sampled_from(NASTY_TEXT) | TEXT)
def test_bash_quoting_model(code: str) -> None:
    """The quoting model every profile's own bash passes through at load."""
    from hardening.mechanisms.quoting import QuotingError, unquoted_expansions

    found = judge(
        lambda: unquoted_expansions(code + "\n", {"acme_banner", "acme_port"}), QuotingError
    )
    for expansion in found or []:
        assert expansion.name in {"acme_banner", "acme_port"}
        assert len(expansion.describe().splitlines()) == 1


POLICY_KEYS = key_pool(POLICY)


@FUZZ
@given(data=yaml_documents([POLICY], POLICY_KEYS))
def test_policy(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "policy.yaml"
    path.write_bytes(data)
    judge(lambda: Policy.load(path), InputError)


# --- envelope and statement ------------------------------------------------------


@pytest.fixture
def signed(tmp_path: Path) -> Signed:
    """A signed artifact of this test's own, with FILE_SPEC beside it."""
    template = sign(tmp_path)
    make_workspace(tmp_path / "ws")
    (tmp_path / "ws" / "fuzzed.yaml").write_text(FILE_SPEC)
    return template


ATTESTATION_FILES = ("sbom.dsse.json", "provenance.dsse.json")
BOM_FILE = "sbom.cdx.json"


def _valid_documents() -> tuple[Any, Any, Any, Any, dict[str, Any]]:
    """A signed artifact's envelope, statement, validation.json and build.json,
    and beside them the SBOM and provenance envelopes, their statements and
    the CycloneDX file."""
    with tempfile.TemporaryDirectory() as scratch:
        template = sign(Path(scratch))
        beside: dict[str, Any] = {}
        for name in ATTESTATION_FILES:
            envelope = json.loads((template.artifact / name).read_bytes())
            beside[name] = envelope
            beside[name + ":statement"] = json.loads(base64.b64decode(envelope["payload"]))
        beside[BOM_FILE] = json.loads((template.artifact / BOM_FILE).read_bytes())
        return (
            template.envelope(),
            template.statement(),
            json.loads((template.artifact / "validation.json").read_bytes()),
            json.loads((template.artifact / "build.json").read_bytes()),
            beside,
        )


ENVELOPE, STATEMENT, VALIDATION, BUILD, BESIDE = _valid_documents()
ENVELOPE_KEYS = key_pool(ENVELOPE)
STATEMENT_KEYS = key_pool(STATEMENT)
# Times whose offset carries them out of range in UTC: verify (format_time in
# the refusal) and report (its "when" filter) raised OverflowError on them.
# The manifest's own attestation entries and CycloneDX file digest: verify
# compared digests holding non-ASCII text with hmac.compare_digest on str
# (TypeError); report asked Path.is_file() about a name too long for the
# file system (OSError).
ATTESTATION_DIGEST = to_json(
    edited(STATEMENT, ("predicate", "attestations", 0, "payloadDigest", "sha256"), "é" * 64)
).encode()
BOM_DIGEST = to_json(
    edited(STATEMENT, ("predicate", "sbom", "cyclonedx", "digest", "sha256"), "é" * 64)
).encode()
ATTESTATION_NAME = to_json(
    edited(STATEMENT, ("predicate", "attestations", 0, "name"), "sbom.dsse.json" + "a" * 300)
).encode()
OUT_OF_RANGE = [
    to_json(edited(STATEMENT, ("predicate", "approval", field), moment)).encode()
    for field, moment in (
        ("validUntil", "0001-01-01T00:00:00+01:00"),
        ("time", "9999-12-31T23:59:59-23:59"),
    )
]


@FUZZ
@given(data=json_documents([ENVELOPE], ENVELOPE_KEYS))
def test_envelope(data: bytes) -> None:
    judge(lambda: parse_envelope(data, "manifest.dsse.json"), EnvelopeError)


def _wrap(payload: bytes) -> bytes:
    """An envelope around ``payload`` (signed by nobody anyone trusts)."""
    doc = {
        "payloadType": PAYLOAD_TYPE_IN_TOTO,
        "payload": base64.b64encode(payload).decode("ascii"),
        "signatures": [{"keyid": "", "sig": base64.b64encode(b"\0" * 64).decode("ascii")}],
    }
    return json.dumps(doc).encode()


@FUZZ
@given(data=json_documents([STATEMENT], STATEMENT_KEYS))
@example(data=OUT_OF_RANGE[0])
@example(data=OUT_OF_RANGE[1])
def test_statement_as_verify_reads_it(data: bytes) -> None:
    """After a trusted signature: anything wrong is NOT TRUSTED, nothing else."""
    judge(lambda: read_claims(data, Path("manifest.dsse.json")), VerificationError)


@FUZZ
@given(data=json_documents([STATEMENT], STATEMENT_KEYS))
@example(data=OUT_OF_RANGE[0])
@example(data=OUT_OF_RANGE[1])
def test_statement_as_outdated_and_report_read_it(tmp_path: Path, data: bytes) -> None:
    """Decoded, not verified: anything wrong is bad input (exit 2)."""
    from builder.outdated import read_manifest
    from validate.manifest_report import read_claims as report_claims
    from validate.manifest_report import render_claims

    path = tmp_path / "manifest.dsse.json"
    path.write_bytes(_wrap(data))
    envelope = parse_envelope(path.read_bytes(), path)
    judge(lambda: decode_statement(path, envelope), EnvelopeError)
    judge(lambda: read_manifest(path), InputError)
    claims = judge(lambda: report_claims(path), InputError)
    if claims is not None:
        page = judge(lambda: render_claims(claims))
        assert page is None or "</html>" in page


# --- the records -----------------------------------------------------------------


BUILD["build_key"] = "sha256:" + "cd" * 32
BUILD["provision"] = [
    {
        "index": 0,
        "kind": "file",
        "name": "ca",
        "inputs": [{"path": "files/ca.crt", "sha256": "ef" * 32}],
        "env_from_host": ["FUZZ_TOKEN"],
        "seconds": 1.5,
    }
]


@FUZZ
@given(data=json_documents([VALIDATION], key_pool(VALIDATION)))
def test_validation_record(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "validation.json"
    path.write_bytes(data)
    doc = judge(lambda: loads_json(data), DataError)
    if doc is not None:
        judge(lambda: ValidationRun.from_dict(doc), RecordError)
    judge(lambda: load_validation(path), GoldsmithError)


@FUZZ
@given(data=json_documents([BUILD], key_pool(BUILD)))
def test_build_record(tmp_path: Path, data: bytes) -> None:
    from builder.buildkey import recorded_build_key

    path = tmp_path / "build.json"
    path.write_bytes(data)
    doc = judge(lambda: loads_json(data), DataError)
    if doc is not None:
        judge(lambda: BuildRecord.from_dict(doc, path), InputError)
    key = judge(lambda: recorded_build_key(tmp_path))
    assert key is None or key.startswith("sha256:")


# --- the commands ----------------------------------------------------------------


@contextlib.contextmanager
def replaced(path: Path, data: bytes | None = None) -> Iterator[Path]:
    """``path`` holding ``data`` for the duration (if given), then its own bytes again."""
    original = path.read_bytes()
    if data is not None:
        path.write_bytes(data)
    try:
        yield path
    finally:
        path.write_bytes(original)


@FUZZ
@given(data=json_documents([ENVELOPE], ENVELOPE_KEYS))
def test_cli_verify_envelope(signed: Signed, data: bytes) -> None:
    """An envelope not made by the signer: NOT TRUSTED, unless what it carries
    is still the very payload the trusted key signed."""
    original = parse_envelope(signed.manifest.read_bytes(), signed.manifest).payload
    with replaced(signed.manifest, data):
        result = goldsmith("verify", signed.artifact, "--key", signed.pub)
    judge_cli(result, {0, 1}, verdict=True)
    if result.exit_code == 0:
        assert parse_envelope(data, signed.manifest).payload == original


def _signed_by(signed: Signed, payload: bytes) -> bytes:
    key = load_private_key(signed.key)
    return sign_envelope(PAYLOAD_TYPE_IN_TOTO, payload, [key]).to_json()


@FUZZ
@given(data=json_documents([STATEMENT], STATEMENT_KEYS))
@example(data=OUT_OF_RANGE[0])
@example(data=OUT_OF_RANGE[1])
@example(data=ATTESTATION_DIGEST)
@example(data=BOM_DIGEST)
def test_cli_verify_statement(signed: Signed, data: bytes) -> None:
    """A statement the trusted key signed, whatever it says: trusted or NOT
    TRUSTED (exit 1), never bad input and never a traceback."""
    with replaced(signed.manifest, _signed_by(signed, data)):
        result = goldsmith("verify", signed.artifact, "--key", signed.pub, "--min-version", "1")
    judge_cli(result, {0, 1}, verdict=True)


@FUZZ
@given(data=yaml_documents([POLICY], POLICY_KEYS))
def test_cli_verify_policy(signed: Signed, data: bytes) -> None:
    policy = signed.artifact.parent / "policy.yaml"
    policy.write_bytes(data)
    result = goldsmith("verify", signed.artifact, "--key", signed.pub, "--policy", policy)
    judge_cli(result, {0, 1, 2}, verdict=True)
    if result.exit_code == 2:
        assert str(policy) in result.stderr


@FUZZ
@given(
    data=json_documents([ENVELOPE], ENVELOPE_KEYS)
    | json_documents([STATEMENT], STATEMENT_KEYS).map(_wrap)
)
@example(data=_wrap(OUT_OF_RANGE[0]))
@example(data=_wrap(OUT_OF_RANGE[1]))
@example(data=_wrap(ATTESTATION_NAME))
def test_cli_report(signed: Signed, data: bytes) -> None:
    with replaced(signed.manifest, data):
        result = goldsmith("report", signed.manifest)
    judge_cli(result, {0, 2}, text_out=False)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No mirror is ever asked: a fuzzed spec may name one."""
    from builder import outdated
    from builder.outdated import MirrorError

    def refuse(*args: object, **kwargs: object) -> Any:
        raise MirrorError("fuzz: no mirror is asked in these tests")

    monkeypatch.setattr(outdated, "fetch_index", refuse)


@FUZZ
@given(
    data=json_documents([STATEMENT], STATEMENT_KEYS).map(_wrap)
    | json_documents([ENVELOPE], ENVELOPE_KEYS)
)
def test_cli_outdated_manifest(signed: Signed, offline: None, data: bytes) -> None:
    spec = signed.artifact.parent / "ws" / "fuzzed.yaml"
    with replaced(signed.manifest, data):
        result = goldsmith("outdated", spec, "--manifest", signed.manifest)
    judge_cli(result, {0, 1, 2, 3})


@FUZZ
@given(data=yaml_documents(SPECS, SPEC_KEYS))
@example(data=b"!!timestamp x\n")  # was a traceback (strictdata)
def test_cli_outdated_spec(signed: Signed, offline: None, data: bytes) -> None:
    spec = signed.artifact.parent / "ws" / "fuzzed.yaml"
    with replaced(spec, data):
        result = goldsmith("outdated", spec, "--manifest", signed.manifest)
    judge_cli(result, {0, 1, 2, 3})


@pytest.fixture
def no_vm(monkeypatch: pytest.MonkeyPatch) -> None:
    """A spec that loads stops where the build VM would start."""
    from builder import build

    def stop(*args: object, **kwargs: object) -> Any:
        raise BuildError("fuzz: the build stops before any VM")

    monkeypatch.setattr(build, "_build_into", stop)


@FUZZ
@given(data=yaml_documents(SPECS, SPEC_KEYS))
@example(data=PROVISION_SPEC.replace("files/www", TOO_LONG).encode())
def test_cli_build_spec(workspace: Path, no_vm: None, data: bytes) -> None:
    spec = workspace / "fuzzed.yaml"
    spec.write_bytes(data)
    out = workspace / "out"
    try:
        result = goldsmith("build", spec, "--out", out)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    judge_cli(result, {1, 2})
    if result.exit_code == 1:
        assert "fuzz: the build stops before any VM" in result.stderr


@FUZZ
@given(data=yaml_documents(PROFILES, PROFILE_KEYS))
def test_cli_build_profile(workspace: Path, no_vm: None, data: bytes) -> None:
    """The spec's profile (with controls of its own) through the build's planning."""
    (workspace / "fuzzed.yaml").write_bytes(data)
    spec = workspace / "spec.yaml"
    spec.write_text(PROVISION_SPEC.replace("profile: profile.yaml", "profile: fuzzed.yaml"))
    out = workspace / "out"
    try:
        result = goldsmith("build", spec, "--out", out)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    judge_cli(result, {1, 2})
    if result.exit_code == 1:
        assert "fuzz: the build stops before any VM" in result.stderr


@FUZZ
@given(data=yaml_documents(PROFILES, PROFILE_KEYS))
def test_cli_profile_show(workspace: Path, data: bytes) -> None:
    path = workspace / "fuzzed.yaml"
    path.write_bytes(data)
    judge_cli(goldsmith("profile", "show", path), {0, 2})


@FUZZ
@given(
    record=st.sampled_from(["validation.json", "build.json"]),
    data=json_documents([VALIDATION, BUILD], key_pool(VALIDATION, BUILD)),
)
def test_cli_sign_records(signed: Signed, record: str, data: bytes) -> None:
    """sign reads validation.json and build.json: signed, refused or bad input."""
    with replaced(signed.artifact / record, data), replaced(signed.manifest):
        result = goldsmith("sign", signed.artifact, "--key", signed.key)
    judge_cli(result, {0, 1, 2})


@FUZZ
@given(data=yaml_documents(SPECS, SPEC_KEYS))
def test_cli_lint_spec(workspace: Path, data: bytes) -> None:
    """lint reads a spec as a build does (profile, inputs, secrets, scripts)."""
    spec = workspace / "fuzzed.yaml"
    spec.write_bytes(data)
    judge_cli(goldsmith("lint", spec), {0, 2})


@FUZZ
@given(
    data=json_documents([STATEMENT], STATEMENT_KEYS).map(_wrap)
    | json_documents([ENVELOPE], ENVELOPE_KEYS)
)
# history printed a manifest's approval time (and previousManifest, packages)
# raw: a carriage return painted over the line (builder/lineage.py escapes now).
@example(
    data=_wrap(to_json(edited(STATEMENT, ("predicate", "approval", "time"), "1\rTRUSTED")).encode())
)
def test_cli_history(signed: Signed, data: bytes) -> None:
    """history reads every manifest (and build.json) under a folder."""
    with replaced(signed.manifest, data):
        result = goldsmith("history", signed.artifact.parent)
    judge_cli(result, {0, 2})


@FUZZ
@given(
    option=st.sampled_from(
        ["--name", "--version", "--min-version", "--profile", "--profile-digest"]
    ),
    value=st.sampled_from(NASTY_TEXT) | TEXT,
)
def test_cli_verify_pins(signed: Signed, option: str, value: str) -> None:
    """The deployer's own pins: trusted, NOT TRUSTED, or bad input in one line."""
    result = goldsmith("verify", signed.artifact, "--key", signed.pub, f"{option}={value}")
    judge_cli(result, {0, 1, 2}, verdict=True)


def _attestation_cases() -> st.SearchStrategy[tuple[str, str, bytes]]:
    """(file, how, bytes): an envelope not made by the signer, a statement the
    trusted key signed (and the manifest, re-signed, names), or a CycloneDX
    file the manifest, re-signed, names by its digest."""
    cases = [
        st.tuples(
            st.sampled_from(ATTESTATION_FILES),
            st.just("envelope"),
            json_documents([BESIDE[n] for n in ATTESTATION_FILES], ENVELOPE_KEYS),
        ),
        st.tuples(
            st.just(BOM_FILE),
            st.just("file"),
            json_documents([BESIDE[BOM_FILE]], key_pool(BESIDE[BOM_FILE])),
        ),
    ]
    for name in ATTESTATION_FILES:
        statement = BESIDE[name + ":statement"]
        cases.append(
            st.tuples(
                st.just(name),
                st.just("statement"),
                json_documents([statement], key_pool(statement)),
            )
        )
    return st.one_of(cases)


def _name_in_manifest(signed: Signed, name: str, data: bytes) -> None:
    """The manifest, re-signed by the trusted key, naming ``data`` as ``name``."""

    def edit(statement: dict[str, Any]) -> None:
        digest = hashlib.sha256(data).hexdigest()
        predicate = statement["predicate"]
        if name == BOM_FILE:
            predicate["sbom"]["cyclonedx"]["digest"]["sha256"] = digest
        for entry in predicate["attestations"]:
            if entry["name"] == name:
                entry["payloadDigest"]["sha256"] = digest

    signed.edit_statement(edit)


def _signed_attestation(name: str, path: tuple[Any, ...], value: Any) -> tuple[str, str, bytes]:
    statement = edited(BESIDE[name + ":statement"], ("predicate", *path), value)
    return name, "statement", to_json(statement).encode()


@FUZZ
@given(case=_attestation_cases())
# report summarised a provenance or SBOM predicate assuming each level's type:
# AttributeError on a digest or externalParameters that is no mapping,
# TypeError iterating components or properties that are no list.
@example(
    case=_signed_attestation(
        "provenance.dsse.json", ("buildDefinition", "resolvedDependencies", 0, "digest"), None
    )
)
@example(
    case=_signed_attestation(
        "provenance.dsse.json", ("buildDefinition", "externalParameters"), ["spec"]
    )
)
@example(
    case=_signed_attestation("provenance.dsse.json", ("buildDefinition", "resolvedDependencies"), 7)
)
@example(case=_signed_attestation("sbom.dsse.json", ("components",), 7))
@example(case=_signed_attestation("sbom.dsse.json", ("components", 0, "properties"), 7))
def test_cli_attestations(signed: Signed, case: tuple[str, str, bytes]) -> None:
    """The SBOM and provenance envelopes and the CycloneDX file beside the
    manifest, as verify and report read them."""
    name, how, data = case
    path = signed.artifact / name
    with replaced(signed.manifest), replaced(path):
        if how == "statement":
            path.write_bytes(_signed_by(signed, data))
            _name_in_manifest(signed, name, data)
        else:
            path.write_bytes(data)
            if how == "file":
                _name_in_manifest(signed, name, data)
        verified = goldsmith("verify", signed.artifact, "--key", signed.pub)
        reported = goldsmith("report", signed.manifest)
    judge_cli(verified, {0, 1}, verdict=True)
    judge_cli(reported, {0, 2}, text_out=False)


@contextlib.contextmanager
def kept(folder: Path) -> Iterator[None]:
    """Every file in ``folder`` as it was before, new ones removed, afterwards."""
    before = {p: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    try:
        yield
    finally:
        for path in folder.iterdir():
            if path.is_file() and path not in before:
                path.unlink()
        for path, data in before.items():
            path.write_bytes(data)


def _statement_with(path: tuple[Any, ...], value: Any) -> bytes:
    return to_json(edited(STATEMENT, path, value)).encode()


@FUZZ
@given(data=json_documents([STATEMENT], STATEMENT_KEYS))
# A second approver's sign reads the statement already signed: a subject that
# is a mapping (KeyError), attestations that are a number (TypeError), an
# approval that is a list (AttributeError), an approval time without an
# offset (TypeError subtracting it) were tracebacks in validate/approvals.py.
@example(data=_statement_with(("subject",), {"a": 1}))
@example(data=_statement_with(("predicate", "attestations"), 7))
@example(data=_statement_with(("predicate", "approval"), ["time"]))
@example(data=_statement_with(("predicate", "approval", "time"), "2026-11-27T08:00:00"))
def test_cli_sign_second_approver(signed: Signed, data: bytes) -> None:
    """sign with a second key adds a signature to the statement signed already
    (here one the first key signed whatever it says): signed, refused or bad
    input, in one line."""
    second = signed.artifact.parent / "second.pem"
    if not second.exists():
        make_key(signed.artifact.parent, "second")
    with kept(signed.artifact):
        signed.manifest.write_bytes(_signed_by(signed, data))
        result = goldsmith("sign", signed.artifact, "--key", second)
    judge_cli(result, {0, 1, 2})


def test_sign_second_approver_with_a_fifo_bom(signed: Signed) -> None:
    """The CycloneDX file read while a second approver signs: a FIFO in its
    place blocked the read for ever (validate/approvals.py reads it as a
    regular file now)."""
    second = make_key(signed.artifact.parent, "second")
    bom = signed.artifact / BOM_FILE
    bom.unlink()
    os.mkfifo(bom)
    with no_hang():
        result = goldsmith("sign", signed.artifact, "--key", second)
    judge_cli(result, {1, 2})
    assert BOM_FILE in result.stderr
