"""The functions a runtime serves: the files `{directory}/{function_id}.py`, each with a `run(**variables)`.

Nothing here imports or runs a function's code; the runner does that, in its own process. `describe` reads the
`run` signature with `ast`, so a file with a syntax error still has metadata (without variables) and fails only
when it runs, with a message that says where. Files are looked up on every request, so functions can be added or
edited while the runtime is up.
"""

from __future__ import annotations

import ast
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from relay.functions.errors import UnknownFunction

# Letters, digits, '_' and '-': an id is a file name, so it can never hold '/', '.' or '..'.
FUNCTION_ID = re.compile(r"[A-Za-z0-9_-]{1,200}")


@dataclass(frozen=True)
class FunctionFile:
    function_id: str
    path: Path


@dataclass(frozen=True)
class Parameter:
    """One parameter of `run`, as notte-sdk's `ParameterInfo`: annotation and default as source text."""

    name: str
    type: str | None
    default: str | None


@dataclass(frozen=True)
class FunctionInfo:
    function_id: str
    version: str  # the first 12 hex digits of the file's SHA-256
    modified_at: datetime
    description: str | None  # the first line of the module docstring
    parameters: tuple[Parameter, ...] | None  # None when the file does not parse or defines no run()
    source: bytes


def locate(directory: Path, function_id: str) -> FunctionFile:
    """The file of `function_id`; `UnknownFunction` when the id is not a file name or the file is missing."""
    if not FUNCTION_ID.fullmatch(function_id):
        raise UnknownFunction(
            f"unknown function {function_id!r}: a function id is 1 to 200 letters, digits, '_' or '-' "
            f"(it names the file {directory}/<function_id>.py)"
        )
    path = directory / f"{function_id}.py"
    if not path.is_file():
        raise UnknownFunction(
            f"unknown function {function_id!r}: there is no file {path} "
            f"(the runtime serves the .py files in {directory})"
        )
    return FunctionFile(function_id, path)


def describe(function: FunctionFile) -> FunctionInfo:
    """Metadata of a function file: version, modification time, docstring, `run` parameters."""
    source = function.path.read_bytes()
    modified_at = datetime.fromtimestamp(function.path.stat().st_mtime, UTC)
    try:
        tree: ast.Module | None = ast.parse(source)
    except (SyntaxError, ValueError):  # ValueError: null bytes in the source
        tree = None
    docstring = ast.get_docstring(tree) if tree is not None else None
    return FunctionInfo(
        function_id=function.function_id,
        version=hashlib.sha256(source).hexdigest()[:12],
        modified_at=modified_at,
        description=docstring.strip().splitlines()[0] if docstring and docstring.strip() else None,
        parameters=parameters(tree) if tree is not None else None,
        source=source,
    )


def parameters(tree: ast.Module) -> tuple[Parameter, ...] | None:
    """The named parameters of the module's top-level `run` (`*args` and `**kwargs` left out)."""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "run":
            return _signature(node.args)
    return None


def _signature(args: ast.arguments) -> tuple[Parameter, ...]:
    positional = [*args.posonlyargs, *args.args]
    # Defaults belong to the last positional parameters; keyword-only ones have one slot each (None: no default).
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    pairs = [*zip(positional, defaults, strict=True), *zip(args.kwonlyargs, args.kw_defaults, strict=True)]
    return tuple(
        Parameter(
            name=arg.arg,
            type=ast.unparse(arg.annotation) if arg.annotation is not None else None,
            default=ast.unparse(default) if default is not None else None,
        )
        for arg, default in pairs
    )
