"""`create_app()`: the relay as an ASGI app. The lifespan owns the store, the HTTP client and the workers."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from relay import forward, ingress
from relay.config import Config
from relay.context import Context
from relay.errors import StoreError
from relay.store import Store
from relay.worker import Worker


def create_app(
    config: Config,
    *,
    store: Store,
    clock: Callable[[], float] = time.time,
    deliver: bool = True,
) -> Starlette:
    """The relay app. `store` is opened and closed by the app's lifespan."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await store.open()
        app.state.ctx = ctx = Context(config=config, store=store, clock=clock)
        app.state.worker = None
        try:
            async with contextlib.AsyncExitStack() as stack:
                if deliver:
                    http = await stack.enter_async_context(forward.client(config.notte))
                    app.state.worker = worker = Worker(ctx, http)
                    await worker.recover()
                    await worker.start()
                    stack.push_async_callback(worker.stop)  # before the client closes and the store shuts
                yield
        finally:
            await store.close()

    routes = [
        Route("/hooks/{source}", ingress.HookEndpoint(), methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})


async def healthz(request: Request) -> Response:
    """The process is up."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """The process can take events: its store answers."""
    ctx: Context = request.app.state.ctx
    try:
        await ctx.store.ping()
    except StoreError as exc:
        return JSONResponse({"status": "unavailable", "reason": str(exc)}, status_code=503)
    return JSONResponse({"status": "ready"})


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    reasons = {404: "not_found", 405: "method_not_allowed"}
    reason = reasons.get(exc.status_code, "http_error")
    status, body, headers = ingress.problem(exc.status_code, reason, exc.detail, allow=(exc.headers or {}).get("Allow"))
    return Response(
        body, status_code=status, headers={k.decode(): v.decode() for k, v in headers}, media_type="application/json"
    )
