"""`POST /hooks/{source}`: read the raw bytes (bounded), verify, describe, plan, store durably, then answer.

Nothing here talks to the network: the answer goes out once the event and its planned deliveries are committed,
and the delivery workers take it from there.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from relay import providers, rules
from relay.context import Context
from relay.errors import BodyTooLarge, Rejected, StoreError
from relay.providers import Incoming
from relay.store import DeliveryStatus, NewDelivery, NewEvent, Rejection, new_id

# Credential headers are never stored; signature headers are kept (they are not secrets, and they help debugging).
REDACTED_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "x-gitlab-token", "x-api-key", "x-notte-api-key"}
)
BODY_HEAD = 512  # bytes of a rejected body kept for inspection


async def receive(request: Request) -> Response:
    """Accept one webhook for the source named in the path."""
    ctx: Context = request.app.state.ctx
    name = request.path_params["source"]
    source = ctx.config.sources.get(name)
    if source is None:
        return problem(404, "unknown_source", f"no source named {name!r} is configured")
    provider = providers.get(source.kind)
    assert provider is not None  # config.load() only builds sources of known kinds
    now = ctx.clock()
    headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in request.scope["headers"]}
    query = dict(request.query_params) if request.scope["query_string"] else {}
    body = b""
    try:
        body = await read_body(request, source.max_body)
        incoming = Incoming(body=body, headers=headers, query=query, path=request.scope["path"])
        provider.verify(source, incoming, now)
        described = provider.describe(source, incoming)
    except Rejected as exc:
        await ctx.store.reject(
            Rejection(
                source=name,
                reason=exc.reason,
                status=exc.status,
                message=str(exc),
                received_at=now,
                headers=redact(headers),
                body_head=body[:BODY_HEAD],
                body_size=len(body),
            ),
            keep=ctx.config.defaults.rejections_kept,
        )
        return problem(exc.status, exc.reason, str(exc))
    if described.reply is not None:
        return JSONResponse(dict(described.reply))

    event = NewEvent(
        id=new_id("evt", now),
        source=name,
        event_id=described.id,
        type=described.type,
        received_at=now,
        headers=redact(headers),
        query=query,
        body=body,
        dedupe_until=now + source.dedupe_window,
    )
    roots = {
        "body": described.payload,
        "headers": headers,
        "query": event.query,
        "event": {"id": event.event_id, "type": event.type, "source": name, "received_at": now},
    }
    deliveries = [_delivery(planned, now) for planned in rules.plan(ctx.config, name, roots)]
    try:
        stored = await ctx.store.ingest(event, deliveries)
    except StoreError:
        return problem(503, "store_unavailable", "the event could not be stored; retry later", retry_after=5)
    if stored.deliveries:
        ctx.wake()
    return JSONResponse(
        {
            "id": stored.id,
            "event_id": stored.event_id,
            "duplicate": stored.duplicate,
            "deliveries": stored.deliveries,
        }
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with BodyTooLarge as soon as it passes `limit` bytes (it is never held whole)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Rejected(f"Content-Length must be a number of bytes, got {declared[:40]!r}", reason="bad_request")
        if int(declared) > limit:
            raise BodyTooLarge(f"body of {int(declared)} bytes is over this source's limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"body is over this source's limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def redact(headers: dict[str, str]) -> dict[str, str]:
    return {key: "[redacted]" if key in REDACTED_HEADERS else value for key, value in headers.items()}


def _delivery(planned: rules.Planned, now: float) -> NewDelivery:
    retry = planned.retry
    return NewDelivery(
        id=new_id("dlv", now),
        route_id=planned.route_id,
        target_index=planned.target_index,
        function_id=planned.function_id,
        variables=planned.variables,
        stream=planned.stream,
        timeout=planned.timeout,
        retry={
            "max_attempts": retry.max_attempts,
            "base": retry.base,
            "cap": retry.cap,
            "max_age": retry.max_age,
            "on_function_failure": retry.on_function_failure,
        },
        runtime=planned.runtime,
        status=DeliveryStatus.FAILED if planned.error else DeliveryStatus.PENDING,
        error=planned.error,
    )


def problem(
    status: int, reason: str, message: str, *, retry_after: int | None = None, allow: str | None = None
) -> Response:
    """A JSON error answer: `{"error": reason, "message": ...}`. Messages never hold secrets or signatures."""
    headers = {}
    if retry_after:
        headers["Retry-After"] = str(retry_after)
    if allow:
        headers["Allow"] = allow
    content: dict[str, Any] = {"error": reason, "message": message}
    return Response(json.dumps(content), status_code=status, headers=headers, media_type="application/json")
