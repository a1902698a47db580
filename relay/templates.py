"""Variable templates: JSON values with `{{ path }}` references, compiled once at load, pure at render.

- A string that is exactly `"{{ path }}"` yields the value with its JSON type (object, list, number, ...).
- In any other string each `{{ path }}` is replaced by text: a string as it is, every other value as its
  compact JSON text (`5`, `1.5`, `true`, `null`, `{"a":1}`), so `"Invoice {{ body.number }}"` never fails on
  the type of what it finds.
- `{{ path ?? <JSON literal> }}` gives a default when the path is missing or null (nullish coalescing, as
  `??` means in JavaScript and C#): `?? null`, `?? 0`, `?? "n/a"`, `?? []`.
- `{$each: path, value: template}` maps a list; inside `value` the root `item` is the element and `index` its
  position. The path may also be written `"{{ path }}"` and may carry `?? []`.
- Mapping keys are literal; there is no expression language, and nothing is evaluated as code.

Render errors name the place in the rendered output (`variables.lines[2].sku: ...`); the planner prefixes the
target label, e.g. `routes[0](invoice-paid).targets[0](func_billing).variables.email: ...`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from relay import paths
from relay.errors import TemplateError
from relay.yamlfile import Located

TEMPLATE_ROOTS = frozenset({"body", "headers", "query", "event"})
SOURCE_ROOTS = frozenset({"body", "headers", "query"})  # `type:`/`id:` of a source run before `event` exists
EACH_ROOTS = frozenset({"item", "index"})
_NO_DEFAULT: Any = object()


class _Syntax(Exception):
    def __init__(self, problem: str, offset: int) -> None:
        super().__init__(problem)
        self.problem = problem
        self.offset = offset


# -- compiled nodes ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Expr:
    """`path ?? default` inside `{{ }}`."""

    path: paths.Path
    default: Any = _NO_DEFAULT

    def value(self, scope: Mapping[str, Any]) -> Any:
        try:
            found = self.path.resolve(scope)
        except paths.Missing:
            if self.default is _NO_DEFAULT:
                raise
            return copy.deepcopy(self.default)
        if found is None and self.default is not _NO_DEFAULT:
            return copy.deepcopy(self.default)
        return found


@dataclass(frozen=True)
class _Literal:
    value: Any

    def render(self, scope: Mapping[str, Any], where: str | None) -> Any:
        return copy.deepcopy(self.value)


@dataclass(frozen=True)
class _Ref:
    expr: _Expr

    def render(self, scope: Mapping[str, Any], where: str | None) -> Any:
        return _value(self.expr, scope, where)


@dataclass(frozen=True)
class _Text:
    parts: tuple[str | _Expr, ...]

    def render(self, scope: Mapping[str, Any], where: str | None) -> Any:
        return "".join(part if isinstance(part, str) else _text(_value(part, scope, where)) for part in self.parts)


@dataclass(frozen=True)
class _Object:
    items: tuple[tuple[str, _Node], ...]

    def render(self, scope: Mapping[str, Any], where: str | None) -> Any:
        if where is None:
            return {key: node.render(scope, None) for key, node in self.items}
        return {key: node.render(scope, _child(where, key)) for key, node in self.items}


@dataclass(frozen=True)
class _List:
    items: tuple[_Node, ...]

    def render(self, scope: Mapping[str, Any], where: str | None) -> Any:
        return [node.render(scope, _index(where, i)) for i, node in enumerate(self.items)]


@dataclass(frozen=True)
class _Each:
    source: _Expr
    value: _Node

    def render(self, scope: Mapping[str, Any], where: str | None) -> Any:
        items = _value(self.source, scope, where)
        if not isinstance(items, list):
            if where is None:
                raise _Retrace
            raise TemplateError(f"{where}: $each needs a list, but {self.source.path} is {paths.type_name(items)}")
        return [
            self.value.render({**scope, "item": item, "index": i}, _index(where, i)) for i, item in enumerate(items)
        ]


_Node = _Literal | _Ref | _Text | _Object | _List | _Each


class _Retrace(Exception):
    """Raised by the fast render (which tracks no output path); `Template.render` renders again to name it."""


def _value(expr: _Expr, scope: Mapping[str, Any], where: str | None) -> Any:
    try:
        return expr.value(scope)
    except paths.Missing as exc:
        if where is None:
            raise _Retrace from None
        raise TemplateError(f"{where}: {exc}") from None


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _child(where: str, key: str) -> str:
    return paths.Path(where, (key,)).prefix(1)


def _index(where: str | None, index: int) -> str | None:
    return None if where is None else f"{where}[{index}]"


@dataclass(frozen=True)
class Template:
    """A compiled template; `render(roots)` returns JSON-ready data or raises `TemplateError`."""

    node: _Node = field(repr=False)
    name: str  # first part of render-error paths: "variables", or "type"/"id" for a source
    raw: Any = None

    def render(self, roots: Mapping[str, Any]) -> Any:
        """Render against `{"body": ..., "headers": ..., "query": ..., "event": ...}`."""
        try:
            return self.node.render(roots, None)  # fast: no output paths built
        except _Retrace:
            return self.node.render(roots, self.name)  # raises TemplateError naming where it failed


# -- compiling -----------------------------------------------------------------------------------------------


def compile_template(raw: Any, at: Located, *, roots: frozenset[str] = TEMPLATE_ROOTS) -> Template:
    """Compile `raw` (any JSON-like YAML value); problems are reported on `at` with their exact sub-path."""
    name = at.path[-1] if at.path and isinstance(at.path[-1], str) else "template"
    return Template(_compile(raw, at, roots), name, raw)


def _compile(raw: Any, at: Located, roots: frozenset[str]) -> _Node:
    if isinstance(raw, str):
        return _compile_string(raw, at, roots)
    if isinstance(raw, dict):
        if "$each" in raw:
            return _compile_each(raw, at, roots)
        return _Object(tuple((str(key), _compile(value, at.child(key), roots)) for key, value in raw.items()))
    if isinstance(raw, list):
        return _List(tuple(_compile(value, at.child(i), roots) for i, value in enumerate(raw)))
    if raw is None or isinstance(raw, bool | int | float):
        return _Literal(raw)
    at.error(f"a template holds JSON values only (objects, lists, strings, numbers, booleans, null), got {raw!r}")
    return _Literal(None)


def _compile_string(text: str, at: Located, roots: frozenset[str]) -> _Node:
    try:
        parts = _parse_string(text, roots)
    except _Syntax as exc:
        at.error(f"invalid template {text!r}: {exc.problem} (at character {exc.offset + 1})")
        return _Literal(text)
    if not parts:
        return _Literal("")
    if len(parts) == 1 and isinstance(parts[0], _Expr):
        return _Ref(parts[0])  # exactly "{{ path }}": keep the JSON type
    if len(parts) == 1 and isinstance(parts[0], str):
        return _Literal(parts[0])
    return _Text(tuple(parts))


def _parse_string(text: str, roots: frozenset[str]) -> list[str | _Expr]:
    parts: list[str | _Expr] = []
    pos = 0
    while (start := text.find("{{", pos)) >= 0:
        if start > pos:
            parts.append(text[pos:start])
        expr, pos = _parse_expr(text, start + 2, roots, closing="}}")
        parts.append(expr)
    if pos < len(text):
        parts.append(text[pos:])
    return parts


def _parse_expr(text: str, pos: int, roots: frozenset[str], closing: str) -> tuple[_Expr, int]:
    """Parse `path [?? default]` at `pos`, then `closing` ("}}", or "" for the end of text)."""
    start = _skip_space(text, pos)
    try:
        path, pos = paths.parse(text, start)
    except paths.PathSyntaxError as exc:
        raise _Syntax(exc.problem, exc.offset) from None
    if problem := _root_problem(path, roots):
        raise _Syntax(problem, start)
    pos = _skip_space(text, pos)
    default = _NO_DEFAULT
    if text.startswith("??", pos):
        default, pos = _parse_default(text, _skip_space(text, pos + 2))
        pos = _skip_space(text, pos)
    if closing and not text.startswith(closing, pos):
        expected = f'"{closing}"' if default is not _NO_DEFAULT else f'"{closing}" or "?? <default>"'
        raise _Syntax(f"expected {expected} after {path}", pos)
    if not closing and pos != len(text):
        raise _Syntax(f"unexpected {text[pos]!r} after {path}", pos)
    return _Expr(path, default), pos + len(closing)


def _root_problem(path: paths.Path, roots: frozenset[str]) -> str | None:
    if path.root in EACH_ROOTS and path.root not in roots:
        return f"{path.root!r} is only available inside $each"
    return paths.check_root(path, roots)


def _parse_default(text: str, pos: int) -> tuple[Any, int]:
    try:
        return json.JSONDecoder(parse_constant=_reject_constant).raw_decode(text, pos)
    except ValueError:
        raise _Syntax('the default after "??" must be a JSON literal such as null, 0, "text" or []', pos) from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _compile_each(raw: dict[str, Any], at: Located, roots: frozenset[str]) -> _Node:
    for key in raw:
        if key not in ("$each", "value"):
            at.child(key).error(f"unknown key {key!r} next to $each (allowed: $each, value)")
    if "value" not in raw:
        at.error("$each needs `value`, the template for each item: {$each: body.items, value: '{{ item.id }}'}")
    source = raw["$each"]
    where = at.child("$each")
    if not isinstance(source, str):
        where.error(f"$each must be a path to a list, such as body.items, got {paths.json_text(source)}")
        return _Literal([])
    text = source.strip()
    if text.startswith("{{") and text.endswith("}}"):
        text = text[2:-2]  # `$each: "{{ body.items }}"` reads the same as `$each: body.items`
    try:
        expr, _ = _parse_expr(text, 0, roots, closing="")
    except _Syntax as exc:
        where.error(f"invalid $each path {source!r}: {exc.problem}")
        return _Literal([])
    value = _compile(raw.get("value"), at.child("value"), roots | EACH_ROOTS)
    return _Each(expr, value)
