"""Reading YAML the way routes.yaml needs it: safely, with positions, and with `${VAR}` from the environment.

- A safe loader where only `true`/`false` are booleans (`on`, `off`, `yes`, `no` stay strings) and dates stay
  strings, so `when: {body.status: on}` compares with the string the provider sends.
- Every value keeps the line and column it came from, so each problem is reported as `file:line:col`.
- `${VAR}` and `${VAR:-default}` are replaced inside string scalars after parsing (so a variable can never inject
  YAML structure); `$${` writes a literal `${`. A missing variable without a default is an error naming it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from relay.errors import ConfigIssue

_BOOL = "tag:yaml.org,2002:bool"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MAX_NODES = 200_000  # guards against alias bombs ("billion laughs")


class _Loader(yaml.SafeLoader):
    pass


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL, _TIMESTAMP)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))

_ENV_REF = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

Path = tuple[str | int, ...]


@dataclass
class Document:
    """A parsed YAML file: plain Python data plus the position of every value, and the issues found so far."""

    file: str
    data: Any
    positions: dict[Path, tuple[int, int]] = field(default_factory=dict)  # where each value starts
    key_positions: dict[Path, tuple[int, int]] = field(default_factory=dict)  # where each mapping key starts
    issues: list[ConfigIssue] = field(default_factory=list)

    def at(self, *path: str | int) -> Located:
        return Located(self, tuple(path))

    def position(self, path: Path) -> tuple[int, int]:
        """Where the entry at `path` starts: its key in a mapping, the value itself in a list."""
        while path and path not in self.key_positions and path not in self.positions:
            path = path[:-1]
        return self.key_positions.get(path) or self.positions.get(path, (0, 0))


@dataclass(frozen=True)
class Located:
    """A place in a document; compilers report problems against it so each one carries `file:line:col`."""

    doc: Document
    path: Path

    def child(self, key: str | int) -> Located:
        return Located(self.doc, (*self.path, key))

    def error(self, message: str) -> None:
        self._add(message, "error")

    def warn(self, message: str) -> None:
        self._add(message, "warning")

    def _add(self, message: str, severity: str) -> None:
        line, column = self.doc.position(self.path)
        self.doc.issues.append(ConfigIssue(self.doc.file, line, column, message, severity))

    @property
    def dotted(self) -> str:
        """`routes[0].targets[1].variables.email`, for messages."""
        out = ""
        for key in self.path:
            out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else key)
        return out


def parse(text: str, file: str, env: Mapping[str, str]) -> Document:
    """Parse `text`; syntax problems and missing environment variables land in `Document.issues`."""
    doc = Document(file, None)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            counter = [0]
            doc.data = _convert(node, (), loader, doc, env, counter)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        problem = " ".join(part for part in (exc.context, exc.problem) if part)
        doc.issues.append(ConfigIssue(file, line, column, f"YAML syntax: {problem}"))
    except yaml.YAMLError as exc:
        doc.issues.append(ConfigIssue(file, 0, 0, f"YAML syntax: {exc}"))
    finally:
        loader.dispose()
    return doc


def _convert(
    node: yaml.Node, path: Path, loader: _Loader, doc: Document, env: Mapping[str, str], counter: list[int]
) -> Any:
    counter[0] += 1
    if counter[0] > _MAX_NODES:
        raise yaml.YAMLError(f"document has more than {_MAX_NODES} values (alias expansion?)")
    doc.positions.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            key_path = (*path, str(key))
            key_at = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if not isinstance(key, str):
                doc.issues.append(
                    ConfigIssue(doc.file, *key_at, f"keys must be strings, got {type(key).__name__} {key!r}")
                )
                key = str(key)
            if key in out:
                doc.issues.append(ConfigIssue(doc.file, *key_at, f"duplicate key {key!r}"))
                continue
            doc.key_positions[key_path] = key_at
            out[key] = _convert(value_node, key_path, loader, doc, env, counter)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, i), loader, doc, env, counter) for i, item in enumerate(node.value)]
    value = loader.construct_object(node, deep=True)
    if isinstance(value, str) and "$" in value:
        return _interpolate(value, Located(doc, path), env)
    return value


def _interpolate(value: str, at: Located, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        at.error(f"environment variable {name} is not set (set it, or write ${{{name}:-}} to allow an empty value)")
        return match.group(0)  # keep the reference: this error should not cascade into "no secret"

    return _ENV_REF.sub(replace, value)
