"""The checks a `when` applies to one field (`{gt: 0}`, `{in: [a, b]}`, ...), compiled once at load.

- Equality is strict JSON equality (`same`): `5` is not `"5"`, `true` is not `1`; numbers compare by value
  (`1` equals `1.0`: JSON has one number type); lists and objects compare element by element.
- Every check is false on a missing field except `exists: false`. A field that is present and null exists.
- `gt`/`gte`/`lt`/`lte` need a number operand; a field that is not a number makes them false.
- `prefix`, `suffix`, `glob` and `regex` hold only on strings. `glob` is shell-style (`fnmatch`, but
  case-sensitive): `*` any run of characters (`/` and `.` included), `?` one character, `[abc]` a set.
  `regex` must match the whole string and is compiled at load.
- `contains`: a string holds a substring, or a list holds an element (strict equality).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from relay import paths
from relay.yamlfile import Located

MISSING: Any = object()  # what a check sees for a field that is not in the event


def same(a: Any, b: Any) -> bool:
    """Strict JSON equality: booleans equal only booleans, numbers compare by value, no string coercion."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(same(a[key], b[key]) for key in a)
    return type(a) is type(b) and a == b


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class Check:
    """One compiled `{op: operand}`."""

    text: str  # `> 0`, `in ["a", "b"]`, `suffix "[bot]"`: how describe/explain show it
    holds: Callable[[Any], bool]  # called with the field's value, or MISSING
    expect: str  # what a failure says was expected


def _present(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is not MISSING and check(value)


def _strings(check: Callable[[str], bool]) -> Callable[[Any], bool]:
    return _present(lambda value: isinstance(value, str) and check(value))


def _numbers(check: Callable[[float], bool]) -> Callable[[Any], bool]:
    return _present(lambda value: _is_number(value) and check(value))


def _contains(operand: Any) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        if isinstance(value, str):
            return isinstance(operand, str) and operand in value
        return isinstance(value, list) and any(same(item, operand) for item in value)

    return _present(check)


_COMPARE: dict[str, tuple[str, Callable[[float, float], bool]]] = {
    "gt": (">", lambda a, b: a > b),
    "gte": (">=", lambda a, b: a >= b),
    "lt": ("<", lambda a, b: a < b),
    "lte": ("<=", lambda a, b: a <= b),
}
OPERATORS = (
    *("eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte"),
    *("prefix", "suffix", "glob", "regex", "exists", "contains"),
)


def equal(operand: Any) -> Check:
    shown = paths.json_text(operand)
    return Check(f"== {shown}", _present(lambda value: same(value, operand)), shown)


def compile_check(op: str, operand: Any, at: Located) -> Check | None:
    """Compile `{op: operand}` (`op` one of OPERATORS); report a wrongly typed operand on `at`, return None."""
    shown = paths.json_text(operand)
    if op == "eq":
        return equal(operand)
    if op == "ne":
        return Check(f"!= {shown}", _present(lambda value: not same(value, operand)), f"!= {shown}")
    if op in ("in", "not_in"):
        if not isinstance(operand, list) or (op == "in" and not operand):
            return _bad(op, operand, at, "a non-empty list" if op == "in" else "a list")
        inside = _present(lambda value: any(same(value, item) for item in operand))
        if op == "in":
            return Check(f"in {shown}", inside, f"one of {shown}")
        return Check(f"not in {shown}", _present(lambda value: not inside(value)), f"none of {shown}")
    if op in _COMPARE:
        if not _is_number(operand):
            return _bad(op, operand, at, "a number")
        symbol, compare = _COMPARE[op]
        return Check(f"{symbol} {shown}", _numbers(lambda value: compare(value, operand)), f"{symbol} {shown}")
    if op == "exists":
        if not isinstance(operand, bool):
            return _bad(op, operand, at, "true or false")
        text = "exists" if operand else "does not exist"
        return Check(text, lambda value: (value is not MISSING) is operand, "to exist" if operand else "not to exist")
    if op == "contains":
        return Check(f"contains {shown}", _contains(operand), f"contains {shown}")
    return _string_check(op, operand, at)


def _string_check(op: str, operand: Any, at: Located) -> Check | None:
    if not isinstance(operand, str):
        return _bad(op, operand, at, "a string")
    text = f"{op} {paths.json_text(operand)}"
    if op == "prefix":
        return Check(text, _strings(lambda value: value.startswith(operand)), text)
    if op == "suffix":
        return Check(text, _strings(lambda value: value.endswith(operand)), text)
    if op == "glob":
        match = re.compile(fnmatch.translate(operand)).match
        return Check(text, _strings(lambda value: match(value) is not None), text)
    try:
        pattern = re.compile(operand)
    except re.error as exc:
        at.error(f"invalid regex {operand!r}: {exc.msg} at position {exc.pos}")
        return None
    return Check(text, _strings(lambda value: pattern.fullmatch(value) is not None), text)


def _bad(op: str, operand: Any, at: Located, expected: str) -> Check | None:
    """Report a wrongly typed operand; returns None so callers can `return _bad(...)`."""
    hint = f" (write {operand} without quotes)" if isinstance(operand, str) and _numeric(operand) else ""
    at.error(f"`{op}` needs {expected}, got {paths.json_text(operand)}{hint}")
    return None


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
