"""What goes over the wire: request bodies in, JSON answers and server-sent events out. Pure functions.

The shapes are notte-sdk's models (notte_core.types): `StartFunctionRunRequest` in (the SDK spells the ids
`workflow_id` / `workflow_run_id`; both spellings are accepted), `FunctionRunResponse`,
`CreateFunctionRunResponse`, `GetFunctionRunResponse`, `UpdateFunctionRunResponse` and
`GetFunctionWithLinkResponse` out. No 2xx answer has a `detail` key: the SDK treats one as an error.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from relay.functions.catalog import FunctionInfo
from relay.functions.errors import BadRequest
from relay.functions.runs import Run

# The run's timeout in seconds, for callers that want another than the runtime's default. A header rather than
# a body field, so the same request stays valid for the Notte cloud (whose request model has no such field).
TIMEOUT_HEADER = "relay-run-timeout"
MAX_TIMEOUT = 86400.0

RUNTIMES = ("standard", "extended")
_ALIASES = {"workflow_id": "function_id", "workflow_run_id": "function_run_id"}
_KEYS = ("function_id", "function_run_id", "variables", "stream", "runtime")


@dataclass(frozen=True)
class StartRequest:
    variables: dict[str, Any]
    stream: bool = False
    function_run_id: str | None = None
    runtime: str | None = None


def parse_start(body: bytes, function_id: str, run_id: str | None = None) -> StartRequest:
    """The body of `runs/start` (or of `runs/{run_id}`, the path the SDK uses), checked key by key."""
    data = _json_object(body)
    fields: dict[str, Any] = {}
    for key, value in data.items():
        name = _ALIASES.get(key, key)
        if name not in _KEYS:
            raise BadRequest(f"unknown key {key!r} in the request body; expected keys: {', '.join(_KEYS)}")
        if name in fields and fields[name] != value:
            raise BadRequest(f"{key!r} and {name!r} differ in the request body: {value!r} != {fields[name]!r}")
        fields[name] = value
    body_function_id = fields.get("function_id")
    if body_function_id is not None and body_function_id != function_id:
        raise BadRequest(f"function_id {body_function_id!r} in the body does not match {function_id!r} in the path")
    variables = fields.get("variables")
    if variables is None:
        variables = {}
    if not isinstance(variables, dict):
        raise BadRequest(f"variables must be a JSON object, got {type(variables).__name__}: {variables!r:.80}")
    stream = fields.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest(f"stream must be true or false, got {stream!r:.80}")
    runtime = fields.get("runtime")
    if runtime is not None and runtime not in RUNTIMES:
        raise BadRequest(f"runtime must be one of {', '.join(RUNTIMES)} or null, got {runtime!r:.80}")
    function_run_id = fields.get("function_run_id")
    if function_run_id is not None and not isinstance(function_run_id, str):
        raise BadRequest(f"function_run_id must be a string, got {function_run_id!r:.80}")
    if run_id is not None:
        if function_run_id is not None and function_run_id != run_id:
            raise BadRequest(f"function_run_id {function_run_id!r} in the body does not match {run_id!r} in the path")
        function_run_id = run_id
    return StartRequest(variables=variables, stream=stream, function_run_id=function_run_id, runtime=runtime)


def _json_object(body: bytes) -> dict[str, Any]:
    if not body.strip():
        raise BadRequest('the request body is empty; expected a JSON object such as {"variables": {}}')
    try:
        data = json.loads(body)
    except ValueError as exc:  # also UnicodeDecodeError
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"the request body must be a JSON object, got {type(data).__name__}")
    return data


def parse_timeout(value: str | None, default: float) -> float:
    """The run's timeout: the `Relay-Run-Timeout` header (seconds) when given, else `default`."""
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds <= MAX_TIMEOUT:  # also rejects NaN
        raise BadRequest(
            f"the {TIMEOUT_HEADER} header must be seconds, above 0 and at most {MAX_TIMEOUT:g}; got {value!r:.40}"
        )
    return seconds


def run_answer(run: Run) -> dict[str, Any]:
    """`FunctionRunResponse`: the answer of runs/start, and the `result` event of a streamed run."""
    return {
        "function_id": run.function_id,
        "function_run_id": run.run_id,
        "session_id": None,  # the local runtime opens no browser session
        "result": run.result,
        "status": run.status.value,
    }


def run_detail(run: Run) -> dict[str, Any]:
    """`GetFunctionRunResponse`: the result is text there, so a non-string result is sent as its JSON."""
    result = run.result
    return {
        "function_id": run.function_id,
        "function_run_id": run.run_id,
        "created_at": run.created_at.isoformat(),
        "updated_at": run.updated_at.isoformat(),
        "status": run.status.value,
        "session_id": None,
        "logs": list(run.logs),
        "variables": run.variables,
        "result": result if isinstance(result, str) or result is None else json.dumps(result),
        "local": False,
    }


def created_answer(run: Run) -> dict[str, Any]:
    """`CreateFunctionRunResponse`."""
    return {
        "function_id": run.function_id,
        "function_run_id": run.run_id,
        "created_at": run.created_at.isoformat(),
        "status": "created",
    }


def stopped_answer(run: Run) -> dict[str, Any]:
    """`UpdateFunctionRunResponse`."""
    return {
        "function_id": run.function_id,
        "function_run_id": run.run_id,
        "updated_at": run.updated_at.isoformat(),
        "status": "stopped",
    }


def function_answer(info: FunctionInfo, code_url: str) -> dict[str, Any]:
    """`GetFunctionWithLinkResponse`: the function's metadata and where to download its code."""
    modified = info.modified_at.isoformat()
    variables = None
    if info.parameters is not None:
        variables = [{"name": p.name, "type": p.type, "default": p.default} for p in info.parameters]
    return {
        "function_id": info.function_id,
        "name": info.function_id,
        "description": info.description,
        "created_at": modified,
        "updated_at": modified,
        "latest_version": info.version,
        "versions": [info.version],
        "status": "active",
        "shared": False,
        "default_runtime": "standard",
        "variables": variables,
        "url": code_url,
    }


def sse(event_type: str, message: str) -> bytes:
    """One server-sent event: `data: {"type": ..., "message": ...}` and a blank line."""
    return b"data: " + json.dumps({"type": event_type, "message": message}).encode() + b"\n\n"
