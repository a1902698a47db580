"""`when` conditions: compiled once at load, then pure functions of the event.

    when: {body.livemode: true, body.data.object.amount_paid: {gt: 0}}
    when: {any: [{body.action: opened}, {body.action: {in: [reopened, edited]}}]}
    when: {not: {body.pull_request.user.login: {suffix: "[bot]"}}}

- A key is a path from a root (`body`, `headers`, `query`, `event`) or `all`/`any`/`not`.
- A scalar value means strict equality; a mapping holds operators (see `relay.operators`); several keys in
  one mapping must all hold.
- A missing field makes a test false, whatever the operator (`ne` and `not_in` included), except
  `exists: false`; wrap in `not` to mean "missing or different".
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from relay import paths
from relay.operators import MISSING, OPERATORS, Check, compile_check, equal
from relay.yamlfile import Located

WHEN_ROOTS = frozenset({"body", "headers", "query", "event"})


# -- the condition tree --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Field:
    path: paths.Path
    checks: tuple[Check, ...]

    def holds(self, roots: Mapping[str, Any]) -> bool:
        value = self._value(roots)
        return all(check.holds(value) for check in self.checks)

    def reason(self, roots: Mapping[str, Any]) -> str | None:
        value = self._value(roots)
        for check in self.checks:
            if not check.holds(value):
                if value is MISSING:
                    return f"{self.path} is missing"
                return f"{self.path} is {paths.json_text(value)}, expected {check.expect}"
        return None

    def negated_reason(self, roots: Mapping[str, Any]) -> str:
        value = self._value(roots)
        shown = "missing" if value is MISSING else paths.json_text(value)
        texts = [check.text for check in self.checks]
        expected = texts[0] if len(texts) == 1 else "(" + " and ".join(texts) + ")"
        return f"{self.path} is {shown}, expected not {expected}"

    def describe(self) -> str:
        return " and ".join(f"{self.path} {check.text}" for check in self.checks)

    def _value(self, roots: Mapping[str, Any]) -> Any:
        try:
            return self.path.resolve(roots)
        except paths.Missing:
            return MISSING


@dataclass(frozen=True)
class _All:
    children: tuple[_Node, ...]

    def holds(self, roots: Mapping[str, Any]) -> bool:
        return all(child.holds(roots) for child in self.children)

    def reason(self, roots: Mapping[str, Any]) -> str | None:
        return next((r for child in self.children if (r := child.reason(roots)) is not None), None)

    def describe(self) -> str:
        return "(" + " and ".join(child.describe() for child in self.children) + ")"


@dataclass(frozen=True)
class _Any:
    children: tuple[_Node, ...]

    def holds(self, roots: Mapping[str, Any]) -> bool:
        return any(child.holds(roots) for child in self.children)

    def reason(self, roots: Mapping[str, Any]) -> str | None:
        reasons = [child.reason(roots) for child in self.children]
        if any(r is None for r in reasons):
            return None
        return "no branch of `any` holds: " + "; ".join(r for r in reasons if r)

    def describe(self) -> str:
        return "(" + " or ".join(child.describe() for child in self.children) + ")"


@dataclass(frozen=True)
class _Not:
    child: _Node

    def holds(self, roots: Mapping[str, Any]) -> bool:
        return not self.child.holds(roots)

    def reason(self, roots: Mapping[str, Any]) -> str | None:
        if not self.child.holds(roots):
            return None
        if isinstance(self.child, _Field):
            return self.child.negated_reason(roots)
        return f"expected not {self.child.describe()}, but it holds"

    def describe(self) -> str:
        return f"not {self.child.describe()}"


_Node = _Field | _All | _Any | _Not


@dataclass(frozen=True)
class Condition:
    """A compiled `when`. Pure: the same roots always give the same answer."""

    node: _Node

    def evaluate(self, roots: Mapping[str, Any]) -> bool:
        """True when the condition holds for `{"body": ..., "headers": ..., "query": ..., "event": ...}`."""
        return self.node.holds(roots)

    def explain(self, roots: Mapping[str, Any]) -> str | None:
        """None when the condition holds, else one line naming the first failing test and the value found."""
        return self.node.reason(roots)

    def describe(self) -> str:
        """The condition as one line, e.g. `(body.livemode == true and body.amount > 0)`."""
        return self.node.describe()

    def __repr__(self) -> str:
        return f"Condition({self.describe()!r})"


# -- compiling -----------------------------------------------------------------------------------------------


def compile_when(raw: Any, at: Located) -> Condition:
    """Compile a `when` mapping; every problem is reported on `at` (or below it) with its position."""
    return Condition(_mapping(raw, at))


def _mapping(raw: Any, at: Located) -> _Node:
    if not isinstance(raw, dict) or not raw:
        at.error(f"a condition must be a non-empty mapping such as {{body.livemode: true}}, got {paths.json_text(raw)}")
        return _All(())
    nodes = [_entry(key, value, at.child(key)) for key, value in raw.items()]
    return nodes[0] if len(nodes) == 1 else _All(tuple(nodes))


def _entry(key: str, value: Any, at: Located) -> _Node:
    if key in ("all", "any"):
        if not isinstance(value, list) or not value:
            at.error(f"`{key}` needs a non-empty list of conditions, got {paths.json_text(value)}")
            return _All(())
        children = tuple(_mapping(item, at.child(i)) for i, item in enumerate(value))
        return _All(children) if key == "all" else _Any(children)
    if key == "not":
        return _Not(_mapping(value, at))
    try:
        path = paths.parse_whole(key)
    except paths.PathSyntaxError as exc:
        at.error(f"invalid path {key!r}: {exc.problem} (at character {exc.offset + 1})")
        return _All(())
    if problem := paths.check_root(path, WHEN_ROOTS):
        at.error(f"{problem}; a condition key is a path such as body.type, or all/any/not")
    return _Field(path, _checks(value, at))


def _checks(value: Any, at: Located) -> tuple[Check, ...]:
    if isinstance(value, list):
        at.error(
            f"a list is ambiguous here: write {{in: {paths.json_text(value)}}} to accept any of these "
            "values, or {eq: [...]} to compare the whole list"
        )
        return ()
    if not isinstance(value, dict):
        return (equal(value),)
    if not value:
        at.error("an empty operator mapping; write an operator such as {gt: 0}")
    checks: list[Check] = []
    for op, operand in value.items():
        if op not in OPERATORS:
            close = difflib.get_close_matches(op, OPERATORS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            at.child(op).error(f"unknown operator {op!r} (operators: {', '.join(OPERATORS)}){hint}")
        elif check := compile_check(op, operand, at.child(op)):
            checks.append(check)
    return tuple(checks)
