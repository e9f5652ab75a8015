"""How one observed value is judged: a small vocabulary shared by the key/value
mechanisms (sshd options, login.defs, pwquality, sysctl ...)."""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Mapping
from typing import Any

from hardening.errors import ParamError


class Op(enum.StrEnum):
    eq = "eq"  # equal (case-insensitive, whitespace-normalised)
    ne = "ne"
    max = "max"  # integer <= value
    min = "min"  # integer >= value
    range = "range"  # integer within [low, high]
    one_of = "one_of"  # equal to one of the values
    subset = "subset"  # every listed item observed is among the values
    includes = "includes"  # every value is among the items observed
    includes_any = "includes_any"  # at least one value is among the items observed
    excludes = "excludes"  # no item observed matches any of the regular expressions
    absent = "absent"  # not set at all
    present = "present"  # set, whatever the value (a flag such as enforce_for_root)


_LIST_OPS = {Op.one_of, Op.subset, Op.includes, Op.includes_any, Op.excludes}
_SYMBOL = {
    Op.eq: "=",
    Op.ne: "!=",
    Op.max: "<=",
    Op.min: ">=",
}


def _norm(text: str) -> str:
    return " ".join(text.split()).lower()


def split_items(text: str) -> list[str]:
    return [item for item in re.split(r"[,\s]+", text.strip()) if item]


def _as_int(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


@dataclasses.dataclass(frozen=True)
class Expect:
    op: Op
    value: Any = None  # str | int | tuple[str, ...] | tuple[int, int]

    @classmethod
    def parse(cls, data: Mapping[str, Any], field: str) -> Expect:
        """From ``{value: ..., match: ...}``; ``match`` defaults to ``eq``."""
        raw_op = data.get("match", "eq")
        try:
            op = Op(str(raw_op))
        except ValueError:
            choices = ", ".join(o.value for o in Op)
            raise ParamError(f"{field}.match", f"one of {choices}") from None
        value = data.get("value")
        if op in (Op.absent, Op.present):
            return cls(op)
        if value is None:
            raise ParamError(f"{field}.value", f"a value for match {op}")
        if op in (Op.max, Op.min):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ParamError(f"{field}.value", f"an integer for match {op}")
            return cls(op, value)
        if op is Op.range:
            ok = (
                isinstance(value, list)
                and len(value) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            )
            if not ok:
                raise ParamError(f"{field}.value", "a list [low, high] of integers")
            return cls(op, (int(value[0]), int(value[1])))
        if op in _LIST_OPS:
            if not isinstance(value, list) or not value:
                raise ParamError(f"{field}.value", f"a non-empty list for match {op}")
            items = tuple(render_scalar(v) for v in value)
            if op is Op.excludes:
                for item in items:
                    try:
                        re.compile(item)
                    except re.error:
                        raise ParamError(f"{field}.value", "valid regular expressions") from None
            return cls(op, items)
        if isinstance(value, list | dict):
            raise ParamError(f"{field}.value", f"a single value for match {op}")
        return cls(op, render_scalar(value))

    def describe(self) -> str:
        """The expectation as text following a key, e.g. '<= 4'."""
        if self.op in _SYMBOL:
            return f"{_SYMBOL[self.op]} {self.value}"
        if self.op is Op.range:
            low, high = self.value
            return f"in {low}..{high}"
        if self.op is Op.one_of:
            return "one of " + "|".join(self.value)
        if self.op is Op.subset:
            return "only from " + ",".join(self.value)
        if self.op is Op.includes:
            return "including " + ",".join(self.value)
        if self.op is Op.includes_any:
            return "including one of " + "|".join(self.value)
        if self.op is Op.excludes:
            return "none matching " + "|".join(self.value)
        if self.op is Op.present:
            return "set"
        return "not set"

    def test(self, observed: str | None) -> bool:
        if self.op is Op.absent:
            return observed is None
        if observed is None:
            return False
        if self.op is Op.present:
            return True
        if self.op is Op.eq:
            return _norm(observed) == _norm(str(self.value))
        if self.op is Op.ne:
            return _norm(observed) != _norm(str(self.value))
        if self.op in (Op.max, Op.min, Op.range):
            number = _as_int(observed)
            if number is None:
                return False
            if self.op is Op.max:
                return bool(number <= self.value)
            if self.op is Op.min:
                return bool(number >= self.value)
            low, high = self.value
            return bool(low <= number <= high)
        if self.op is Op.one_of:
            return _norm(observed) in {_norm(v) for v in self.value}
        items = [i.lower() for i in split_items(observed)]
        allowed = {v.lower() for v in self.value}
        if self.op is Op.subset:
            return bool(items) and all(i in allowed for i in items)
        if self.op is Op.includes:
            return allowed <= set(items)
        if self.op is Op.includes_any:
            return bool(allowed & set(items))
        patterns = [re.compile(v, re.IGNORECASE) for v in self.value]
        return not any(p.search(i) for p in patterns for i in items)

    def apply_value(self) -> str | None:
        """The value the apply side writes to satisfy this expectation, if any."""
        if self.op in (Op.eq, Op.max, Op.min):
            return str(self.value)
        if self.op is Op.range:
            return str(self.value[1])
        if self.op is Op.one_of:
            return str(self.value[0])
        if self.op in (Op.subset, Op.includes):
            return ",".join(self.value)
        if self.op is Op.present:
            return ""
        # excludes and includes_any judge a list without naming it whole: the
        # list is written by an explicit write, or by another control.
        return None


def render_scalar(value: Any) -> str:
    """YAML scalars as a config file spells them (booleans as yes/no)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)
