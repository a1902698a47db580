"""The child side of the local Functions runtime: load one function file and call its `run(**variables)`.

`relay.functions.runs` starts it as `python -u runner.py FILE`, by path: it imports nothing from relay, so it
works whatever the child's `sys.path`. The function's directory goes first on `sys.path`, so a function can import
helper modules that sit next to it. The protocol:

- stdin: one line of JSON, `{"variables": {...}}`. The runtime then keeps stdin open: end of file means the
  runtime is gone, and the child exits at once rather than run on unsupervised. The function itself sees an
  empty stdin.
- stdout, the file descriptor inherited as 1: exactly one JSON document, written when `run` returned or raised,
  `{"ok": true, "result": <value>}` or `{"ok": false, "error": "<summary>"}`.
- stderr: everything else. Descriptor 1 is pointed at stderr before the function loads, so `print`, `logging`
  (configured at INFO), warnings and tracebacks all become the run's log lines, in the order they were written.

`run` may be `async def`. Its return value must be JSON (no NaN): anything else fails the run with a message
saying so. When `run` is done the process ends with `os._exit`, so threads the function left running do not keep
the run alive (and `atexit` handlers do not run).
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import json
import logging
import os
import sys
import threading
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO

EXIT_ORPHANED = 70  # the runtime went away before the function finished


class LoadError(Exception):
    """The function file cannot be loaded, or defines no `run`; the message is the run's result."""


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: runner.py FUNCTION_FILE  (JSON {'variables': {...}} on stdin)", file=sys.stderr)
        return 2
    path = Path(argv[1])
    # sys.path[0] is this file's directory (relay's internals); the function's own directory replaces it.
    sys.path[0] = str(path.resolve().parent)
    results = _take_stdout()
    request = _read_request()
    _exit_when_orphaned()
    sys.stdin = open(os.devnull)  # the function's stdin, open for the life of the process
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    variables = request.get("variables") or {}
    outcome = call(path, variables)
    # Every log line is in the pipe before the result: the runtime reads the result last.
    sys.stdout.flush()
    sys.stderr.flush()
    results.write(encode(outcome))
    results.flush()
    return 0


def _take_stdout() -> TextIO:
    """Keep the real stdout for the result, and send what the function writes to descriptor 1 to stderr."""
    results = os.fdopen(os.dup(1), "w", encoding="utf-8")  # os.dup: not inherited by the function's children
    os.dup2(2, 1)
    return results


def _read_request() -> dict[str, Any]:
    """The one line of JSON on stdin, read without buffering ahead (stdin stays open afterwards)."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(0, 65536)
        if not chunk:
            break
        data += chunk
    request = json.loads(data or b"{}")
    return request if isinstance(request, dict) else {}


def _exit_when_orphaned() -> None:
    def watch() -> None:
        while os.read(0, 65536):
            pass
        os._exit(EXIT_ORPHANED)

    threading.Thread(target=watch, name="relay-runtime-watch", daemon=True).start()


def call(path: Path, variables: dict[str, Any]) -> dict[str, Any]:
    """Load `path` and call its `run(**variables)`: the outcome document (not yet encoded)."""
    try:
        run = load(path)
    except LoadError as exc:
        return {"ok": False, "error": str(exc)}
    # The runner is the edge between user code and the runtime: whatever the function raises, even
    # SystemExit, is the run's result, with the traceback in the logs.
    try:
        result = run(**variables)
        if inspect.isawaitable(result):
            result = asyncio.run(_wait_for(result))
    except BaseException as exc:
        _print_traceback(exc)
        return {"ok": False, "error": summary(exc)}
    return {"ok": True, "result": result}


def load(path: Path) -> Callable[..., Any]:
    """Import the file as a module named after it and return its `run`."""
    # A function called like a module already imported here (json.py, os.py) must not replace it.
    name = path.stem if path.stem not in sys.modules else f"relay_function_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise LoadError(f"cannot load {path.name}: not a Python source file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickle look classes up by module name
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        where = f" at line {exc.lineno}" if exc.lineno else ""
        raise LoadError(f"cannot load {path.name}: {type(exc).__name__}{where}: {exc.msg}") from None
    except BaseException as exc:
        _print_traceback(exc)
        raise LoadError(f"cannot load {path.name}: {summary(exc)}") from None
    run = getattr(module, "run", None)
    if not callable(run):
        raise LoadError(f"{path.name} defines no run() function: add `def run(**variables): ...`")
    return run  # type: ignore[no-any-return]


async def _wait_for(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def summary(exc: BaseException) -> str:
    """`ValueError: amount must be positive`; the type alone when the message is empty."""
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _print_traceback(exc: BaseException) -> None:
    # Leave out the runner's own frame: the log starts where the function's code does.
    tb = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
    traceback.print_exception(type(exc), exc, tb, file=sys.stderr)


def encode(outcome: dict[str, Any]) -> str:
    """The outcome as JSON; a result that is not JSON fails the run with a message that says why."""
    try:
        return json.dumps(outcome, allow_nan=False)
    except (TypeError, ValueError) as exc:
        return json.dumps({"ok": False, "error": f"run() returned a value that is not JSON: {exc}"})


if __name__ == "__main__":
    code = main(sys.argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
