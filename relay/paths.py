"""Paths into an event, shared by `when` conditions and variable templates.

A path starts at a root and walks keys and indexes:

    body.data.object.id      headers.x-github-event      body.items[0].sku
    body.metadata["order.id"]                            body['odd key'][-1]

- A bare key may hold letters, digits, `_`, `-`, `$` and `@` (so header names need no quoting).
- `[N]` indexes a list (negative counts from the end); `["..."]` or `['...']` quotes any key.
- Keys under `headers` are lower-cased at compile time, because HTTP header names are case-insensitive and
  the ingress stores them lower-case.

Nothing here evaluates code: a path is a tuple of keys, resolved by plain lookups.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

EVENT_FIELDS = ("id", "type", "source", "received_at")
_NAME = re.compile(r"[\w$@-]+")
_INDEX = re.compile(r"-?\d+")
_SIMPLE_KEY = re.compile(r"^[\w$@-]+$")
_KEYS_SHOWN = 10


class PathSyntaxError(Exception):
    """A path that cannot be parsed; `offset` is where in the text the problem is (0-based)."""

    def __init__(self, problem: str, offset: int) -> None:
        super().__init__(problem)
        self.problem = problem
        self.offset = offset


class Missing(Exception):
    """A path that does not lead to a value in this event; the message says where the walk stopped."""


@dataclass(frozen=True)
class Path:
    root: str
    keys: tuple[str | int, ...] = ()

    def __str__(self) -> str:
        return self.prefix(len(self.keys))

    def prefix(self, length: int) -> str:
        """The text of the path up to (not including) key number `length`, for messages."""
        out = self.root
        for key in self.keys[:length]:
            if isinstance(key, int):
                out += f"[{key}]"
            elif _SIMPLE_KEY.match(key):
                out += f".{key}"
            else:
                out += f"[{json.dumps(key, ensure_ascii=False)}]"
        return out

    def resolve(self, scope: Mapping[str, Any]) -> Any:
        """The value at this path; raise `Missing` naming the first step that fails."""
        if self.root not in scope:
            raise Missing(f"{self.root} is not available here")
        value = scope[self.root]
        for step, key in enumerate(self.keys):
            value = _step(value, key, self, step)
        return value

    def exists(self, scope: Mapping[str, Any]) -> bool:
        try:
            self.resolve(scope)
        except Missing:
            return False
        return True


def parse(text: str, start: int = 0) -> tuple[Path, int]:
    """Read a path from `text` at `start`; return it and the offset just after it."""
    match = _NAME.match(text, start)
    if not match:
        raise PathSyntaxError("expected a path such as body.id", start)
    root, pos = match.group(), match.end()
    keys: list[str | int] = []
    while pos < len(text) and text[pos] in ".[":
        if text[pos] == ".":
            match = _NAME.match(text, pos + 1)
            if not match:
                raise PathSyntaxError('expected a key after "." (quote odd keys: ["a.b"])', pos + 1)
            keys.append(match.group())
            pos = match.end()
        else:
            key, pos = _bracket(text, pos)
            keys.append(key)
    if root == "headers" and keys and isinstance(keys[0], str):
        keys[0] = keys[0].lower()
    return Path(root, tuple(keys)), pos


def parse_whole(text: str) -> Path:
    """Parse a string that must be a path and nothing else (a `when` key, a `$each` source)."""
    path, end = parse(text)
    if end != len(text):
        raise PathSyntaxError(f"unexpected {text[end]!r} after the path {path}", end)
    return path


def check_root(path: Path, allowed: frozenset[str]) -> str | None:
    """A problem message if `path` starts at a root not allowed here (or names an unknown event field)."""
    if path.root not in allowed:
        known = ", ".join(sorted(allowed))
        close = difflib.get_close_matches(path.root, sorted(allowed), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown root {path.root!r} (roots here: {known}){hint}"
    if path.root == "event" and path.keys and path.keys[0] not in EVENT_FIELDS:
        return f"event has no field {path.keys[0]!r} (fields: {', '.join(EVENT_FIELDS)})"
    return None


def _bracket(text: str, pos: int) -> tuple[str | int, int]:
    """`[0]`, `[-1]`, `["key"]` or `['key']` at `pos` -> (key, offset after `]`)."""
    inner = pos + 1
    key: str | int
    if inner < len(text) and text[inner] in "\"'":
        key, end = _quoted(text, inner)
    elif match := _INDEX.match(text, inner):
        key, end = int(match.group()), match.end()
    else:
        raise PathSyntaxError('expected an index or a quoted key inside [...], such as [0] or ["a.b"]', inner)
    if end >= len(text) or text[end] != "]":
        raise PathSyntaxError('expected "]"', end)
    return key, end + 1


def _quoted(text: str, start: int) -> tuple[str, int]:
    quote, pos, out = text[start], start + 1, []
    while pos < len(text):
        char = text[pos]
        if char == "\\" and pos + 1 < len(text):
            out.append(text[pos + 1])
            pos += 2
        elif char == quote:
            return "".join(out), pos + 1
        else:
            out.append(char)
            pos += 1
    raise PathSyntaxError(f"unclosed {quote} in a quoted key", start)


def _step(value: Any, key: str | int, path: Path, step: int) -> Any:
    # The happy path builds no strings: this runs for every variable of every event at ingest.
    if isinstance(key, str):
        if isinstance(value, Mapping):
            if key in value:
                return value[key]
            raise Missing(f"{key!r} not found under {path.prefix(step)} (keys: {_key_list(value)})")
        hint = " (index it with [0])" if isinstance(value, list) else ""
        raise Missing(f"cannot read {key!r}: {path.prefix(step)} is {type_name(value)}, not an object{hint}")
    if isinstance(value, list):
        if -len(value) <= key < len(value):
            return value[key]
        raise Missing(f"index {key} is out of range: {path.prefix(step)} has {len(value)} items")
    raise Missing(f"cannot take [{key}]: {path.prefix(step)} is {type_name(value)}, not a list")


def _key_list(mapping: Mapping[Any, Any]) -> str:
    keys = sorted(str(key) for key in mapping)
    shown = ", ".join(repr(key) for key in keys[:_KEYS_SHOWN])
    more = ", ..." if len(keys) > _KEYS_SHOWN else ""
    return f"[{shown}{more}]"


def type_name(value: Any) -> str:
    """`an object`, `a list`, `a string`, `a number`, `a boolean` or `null`, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def json_text(value: Any, limit: int = 80) -> str:
    """Compact JSON for messages, cut at `limit` characters."""
    text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."
