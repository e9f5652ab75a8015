"""Where a parameter's expansion in bash is not double-quoted.

Script controls receive parameter values as shell variables, so a value is
never parsed as code. An unquoted ``$name`` is still split on whitespace and
expanded as a glob: ``rm -f $path`` with a path holding a space or a ``*``
removes other files. The loader therefore refuses code in which a declared
parameter is expanded outside double quotes.

This is a small model of bash quoting, not a parser: '...', "...", $'...',
backslashes, $(...) and backticks (inside double quotes too), $((...))
arithmetic (not split), comments and here-documents (an unquoted
here-document's expansions are not split, a quoted one has none). It errs on
the strict side: ``x=$name`` and ``[[ $name ]]``, which bash does not split,
are still reported, and quoting them costs nothing.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection

_REF = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
_HEREDOC = re.compile(r"<<(-?)\s*(['\"]?)([A-Za-z0-9_]+)\2")


class QuotingError(ValueError):
    """The code is not shell this model can follow (an unterminated quote, say)."""


@dataclasses.dataclass(frozen=True)
class Expansion:
    name: str
    line: int  # 1-based
    text: str  # the line it is on, stripped

    def describe(self) -> str:
        return f"line {self.line}: ${self.name} unquoted in {self.text[:80]!r}"


@dataclasses.dataclass
class _Context:
    kind: str  # "top", "dq" (double quotes), "cmd" ($( )), "bt" (backticks)
    parens: int = 0


def unquoted_expansions(code: str, names: Collection[str]) -> list[Expansion]:
    """Each expansion of one of ``names`` in ``code`` that bash would split
    and glob, in order. QuotingError when the code's quoting never ends."""
    found: list[Expansion] = []
    stack = [_Context("top")]
    heredocs: list[tuple[str, bool]] = []  # (terminator, tabs stripped)
    i = 0
    while i < len(code):
        context = stack[-1]
        char = code[i]
        if context.kind == "dq":
            if char == "\\":
                i += 2
            elif char == '"':
                stack.pop()
                i += 1
            elif code.startswith("$((", i):
                i = _skip_arithmetic(code, i)
            elif code.startswith("$(", i):
                stack.append(_Context("cmd"))
                i += 2
            elif char == "`":
                stack.append(_Context("bt"))
                i += 1
            else:
                i += 1
            continue
        # Unquoted: the top level, or inside $( ) or backticks.
        if char == "\n" and heredocs:
            i = _skip_heredocs(code, i, heredocs)
            heredocs = []
            continue
        if char == "'" or code.startswith("$'", i):
            start = i + (1 if char == "'" else 2)
            i = _end_of_single_quotes(code, start, ansi=char != "'")
            continue
        if char == "\\":
            i += 2
            continue
        if char == '"':
            stack.append(_Context("dq"))
        elif char == "`":
            if context.kind == "bt":
                stack.pop()
            else:
                stack.append(_Context("bt"))
        elif char == "#" and (i == 0 or code[i - 1] in " \t\n;|&("):
            end = code.find("\n", i)
            i = len(code) if end < 0 else end
            continue
        elif code.startswith("<<<", i):
            i += 3
            continue
        elif code.startswith("<<", i):
            match = _HEREDOC.match(code, i)
            if not match:
                raise QuotingError(f"line {_line(code, i)}: a here-document without a terminator")
            heredocs.append((match.group(3), match.group(1) == "-"))
            i = match.end()
            continue
        elif code.startswith("$((", i):
            i = _skip_arithmetic(code, i)
            continue
        elif code.startswith("$(", i):
            stack.append(_Context("cmd"))
            i += 2
            continue
        elif char == "(" and context.kind == "cmd":
            context.parens += 1
        elif char == ")" and context.kind == "cmd":
            if context.parens == 0:
                stack.pop()
            else:
                context.parens -= 1
        elif char == "$":
            match = _REF.match(code, i)
            if match and match.group(1) in names:
                found.append(Expansion(match.group(1), _line(code, i), _line_text(code, i)))
        i += 1
    if len(stack) > 1:
        raise QuotingError(f"unterminated {_NAMES[stack[-1].kind]}")
    if heredocs:
        raise QuotingError(f"here-document {heredocs[0][0]} never ends")
    return found


_NAMES = {"dq": "double quote", "cmd": "$( ... )", "bt": "backtick"}


def _line(code: str, i: int) -> int:
    return code.count("\n", 0, i) + 1


def _line_text(code: str, i: int) -> str:
    start = code.rfind("\n", 0, i) + 1
    end = code.find("\n", i)
    return code[start : len(code) if end < 0 else end].strip()


def _end_of_single_quotes(code: str, start: int, *, ansi: bool) -> int:
    i = start
    while i < len(code):
        if ansi and code[i] == "\\":
            i += 2
            continue
        if code[i] == "'":
            return i + 1
        i += 1
    raise QuotingError(f"line {_line(code, start)}: unterminated single quote")


def _skip_arithmetic(code: str, i: int) -> int:
    """Past the ``))`` closing ``$((`` at ``i``: arithmetic is not split."""
    depth = 0
    j = i + 1
    while j < len(code):
        if code[j] == "(":
            depth += 1
        elif code[j] == ")":
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    raise QuotingError(f"line {_line(code, i)}: unterminated $((")


def _skip_heredocs(code: str, i: int, heredocs: list[tuple[str, bool]]) -> int:
    """Past the bodies of the here-documents started on the line ending at ``i``."""
    for tag, tabs in heredocs:
        indent = r"\t*" if tabs else ""
        end = re.compile(rf"^{indent}{re.escape(tag)}$", re.MULTILINE).search(code, i + 1)
        if end is None:
            raise QuotingError(f"here-document {tag} never ends")
        i = end.end()
    return i
