"""The HTTP side of the local Functions runtime: a Starlette app with plain endpoints in one routes list.

`create_app` builds it and `serve` runs it with uvicorn; the package docstring (`relay.functions`) describes the
contract. The lifespan owns the run registry and, on shutdown, kills whatever still runs.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import cast

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from relay.functions import wire
from relay.functions.catalog import FunctionFile, describe, locate
from relay.functions.errors import FunctionsError, Unauthorized
from relay.functions.runs import Listener, Run, Runs

logger = logging.getLogger("relay.functions")


@dataclass(frozen=True)
class Settings:
    directory: Path
    default_timeout: float
    api_key: str | None


def create_app(
    directory: str | Path,
    *,
    max_concurrent: int = 10,
    default_timeout: float = 300,
    api_key: str | None = None,
    keep_runs: int = 1000,
) -> Starlette:
    """The runtime app, serving the functions in `directory` (see the `relay.functions` docstring)."""
    if not default_timeout > 0:
        raise ValueError(f"default_timeout must be above 0 seconds, got {default_timeout!r}")
    settings = Settings(Path(directory), float(default_timeout), api_key or None)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, object]]:
        runs = Runs(max_concurrent=max_concurrent, keep=keep_runs)
        try:
            yield {"settings": settings, "runs": runs}
        finally:
            await runs.close()

    return Starlette(
        routes=ROUTES,
        lifespan=lifespan,
        exception_handlers={FunctionsError: _refused, HTTPException: _http_error},
    )


def serve(
    directory: str | Path,
    host: str = "127.0.0.1",
    port: int = 8001,
    max_concurrent: int = 10,
    *,
    default_timeout: float = 300,
    api_key: str | None = None,
) -> None:
    """Run the runtime with uvicorn until interrupted (blocking).

    On Ctrl+C (SIGINT/SIGTERM), requests still waiting on a run get 5 seconds; then uvicorn cuts them (a JSON
    caller gets a 500, a stream ends without its result event: both retryable for the relay, which is right,
    since the function did not fail) and the lifespan kills the runs still going. If the runtime dies without
    a shutdown, its runs notice (their stdin closes) and exit.
    """
    if api_key is None and not _is_loopback(host):
        logger.warning("serving functions on %s without an API key: anyone who can reach it can run them", host)
    app = create_app(directory, max_concurrent=max_concurrent, default_timeout=default_timeout, api_key=api_key)
    uvicorn.run(app, host=host, port=port, ws="none", lifespan="on", timeout_graceful_shutdown=5)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def function_detail(request: Request) -> Response:
    function = _function(request)
    info = describe(function)
    url = str(request.url_for("function_code", function_id=function.function_id))
    if (token := _code_token(_settings(request), function.function_id)) is not None:
        url += f"?token={token}"
    return JSONResponse(wire.function_answer(info, url))


async def function_code(request: Request) -> Response:
    # The SDK downloads code without credentials (the cloud hands out a presigned URL), so the link that
    # function_detail gives out carries its own token.
    token = _code_token(_settings(request), request.path_params["function_id"])
    if token is None or not hmac.compare_digest(request.query_params.get("token", ""), token):
        _authorize(request)
    function = locate(_settings(request).directory, request.path_params["function_id"])
    return PlainTextResponse(function.path.read_bytes(), media_type="text/x-python")


async def create_run(request: Request) -> Response:
    function = _function(request)
    return JSONResponse(wire.created_answer(_runs(request).create(function)))


async def start_run(request: Request) -> Response:
    """POST runs/start (run_id in the body or none) and POST runs/{run_id} (the path notte-sdk uses)."""
    function = _function(request)
    settings = _settings(request)
    start = wire.parse_start(await request.body(), function.function_id, request.path_params.get("run_id"))
    timeout = wire.parse_timeout(request.headers.get(wire.TIMEOUT_HEADER), settings.default_timeout)
    listener: Listener | None = asyncio.Queue() if start.stream else None
    run = _runs(request).start(
        function,
        variables=start.variables,
        timeout=timeout,
        runtime=start.runtime,
        run_id=start.function_run_id,
        listener=listener,
    )
    if listener is None:
        await run.finished.wait()
        return JSONResponse(wire.run_answer(run))
    return StreamingResponse(
        _events(run, listener), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


async def _events(run: Run, listener: Listener) -> AsyncIterator[bytes]:
    try:
        while (line := await listener.get()) is not None:
            yield wire.sse("log", line)
        yield wire.sse("result", json.dumps(wire.run_answer(run)))
    finally:
        run.listeners.remove(listener)


async def run_resource(request: Request) -> Response:
    """One run: GET reads it, POST starts it (a run made by runs/create), DELETE stops it."""
    if request.method == "GET":
        return await get_run(request)
    if request.method == "DELETE":
        return await stop_run(request)
    return await start_run(request)


async def get_run(request: Request) -> Response:
    _authorize(request)
    run = _runs(request).get(request.path_params["function_id"], request.path_params["run_id"])
    return JSONResponse(wire.run_detail(run))


async def stop_run(request: Request) -> Response:
    _authorize(request)
    run = await _runs(request).stop(request.path_params["function_id"], request.path_params["run_id"])
    return JSONResponse(wire.stopped_answer(run))


def _function(request: Request) -> FunctionFile:
    _authorize(request)
    return locate(_settings(request).directory, request.path_params["function_id"])


def _authorize(request: Request) -> None:
    """With an API key configured, require `Authorization: Bearer <key>` or `x-notte-api-key: <key>`."""
    key = _settings(request).api_key
    if key is None:
        return
    bearer = request.headers.get("authorization", "")
    given = [bearer[7:] if bearer[:7].lower() == "bearer " else "", request.headers.get("x-notte-api-key", "")]
    # No early exit: the time taken does not tell which header matched.
    matched = False
    for value in given:
        matched |= hmac.compare_digest(value.encode(), key.encode())
    if not matched:
        raise Unauthorized(
            "missing or wrong API key: send it as 'Authorization: Bearer <key>' or 'x-notte-api-key: <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


def _code_token(settings: Settings, function_id: str) -> str | None:
    if settings.api_key is None:
        return None
    return hmac.new(settings.api_key.encode(), f"code:{function_id}".encode(), sha256).hexdigest()


def _settings(request: Request) -> Settings:
    return cast(Settings, request.state.settings)


def _runs(request: Request) -> Runs:
    return cast(Runs, request.state.runs)


async def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FunctionsError)
    return JSONResponse({"detail": str(exc), "error": exc.code}, status_code=exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse({"detail": exc.detail, "error": code}, status_code=exc.status_code, headers=exc.headers)


ROUTES = [
    Route("/health", health, methods=["GET"]),
    Route("/functions/{function_id}", function_detail, methods=["GET"]),
    Route("/functions/{function_id}/code", function_code, methods=["GET"], name="function_code"),
    Route("/functions/{function_id}/runs/create", create_run, methods=["POST"]),
    Route("/functions/{function_id}/runs/start", start_run, methods=["POST"]),
    Route("/functions/{function_id}/runs/{run_id}", run_resource, methods=["GET", "POST", "DELETE"]),
]
