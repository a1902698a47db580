"""`POST /hooks/{source}`: read the raw bytes (bounded), verify, describe, plan, store durably, then answer.

Nothing here talks to the network: the answer goes out once the event and its planned deliveries are committed,
and the delivery workers take it from there.

`receive_hook` is a plain ASGI function (Starlette routes to it with the source in `path_params`): it reads the
body from `receive` and answers with two `send` calls. This is the hot path of relay; going without Request and
Response objects keeps it close to the cost of the HTTP server itself (see docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.types import Receive, Scope, Send

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


class HookEndpoint:
    """The ASGI app behind `POST /hooks/{source}`. (A class only so that Starlette mounts it as raw ASGI.)"""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        status, body, extra = await receive_hook(scope, receive)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers + extra})
        await send({"type": "http.response.body", "body": body})


async def receive_hook(scope: Scope, receive: Receive) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """Accept one webhook for the source named in the path; return the status, JSON body and extra headers."""
    ctx: Context = scope["app"].state.ctx
    name = scope["path_params"]["source"]
    source = ctx.config.sources.get(name)
    if source is None:
        return problem(404, "unknown_source", f"no source named {name!r} is configured")
    provider = providers.get(source.kind)
    assert provider is not None  # config.load() only builds sources of known kinds
    now = ctx.clock()
    headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}
    raw_query = scope["query_string"]
    query = dict(parse_qsl(raw_query.decode("latin-1"), keep_blank_values=True)) if raw_query else {}
    body = b""
    try:
        body = await read_body(receive, headers.get("content-length"), source.max_body)
        incoming = Incoming(body=body, headers=headers, query=query, path=scope["path"])
        provider.verify(source, incoming, now)
        described = provider.describe(source, incoming)
    except Rejected as exc:
        rejection = Rejection(name, exc.reason, exc.status, str(exc), now, redact(headers), body[:BODY_HEAD], len(body))
        await ctx.store.reject(rejection, keep=ctx.config.defaults.rejections_kept)
        return problem(exc.status, exc.reason, str(exc))
    if described.reply is not None:
        return 200, _json(dict(described.reply)), []

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
    roots = rules.roots(name, incoming, described, now)
    deliveries = [new_delivery(planned) for planned in rules.plan(ctx.config, name, roots)]
    try:
        stored = await ctx.store.ingest(event, deliveries)
    except StoreError:
        return problem(503, "store_unavailable", "the event could not be stored; retry later", retry_after=5)
    if stored.deliveries:
        ctx.wake()
    answer = {"id": stored.id, "event_id": stored.event_id, "duplicate": stored.duplicate}
    return 200, _json({**answer, "deliveries": stored.deliveries}), []


async def read_body(receive: Receive, declared: str | None, limit: int) -> bytes:
    """The body, refused with BodyTooLarge as soon as it passes `limit` bytes (it is never held whole)."""
    if declared is not None:
        if not declared.isdigit():
            raise Rejected(f"Content-Length must be a number of bytes, got {declared[:40]!r}", reason="bad_request")
        if int(declared) > limit:
            raise BodyTooLarge(f"body of {int(declared)} bytes is over this source's limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Rejected("the client went away before sending the whole body", reason="client_disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"body is over this source's limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def redact(headers: Mapping[str, str]) -> dict[str, str]:
    return {key: "[redacted]" if key in REDACTED_HEADERS else value for key, value in headers.items()}


def new_delivery(planned: rules.Planned) -> NewDelivery:
    """The delivery to store for a planned target (failed at once when its variables did not render)."""
    return NewDelivery(
        id=new_id("dlv"),
        route_id=planned.route_id,
        target_index=planned.target_index,
        function_id=planned.function_id,
        variables=planned.variables,
        stream=planned.stream,
        timeout=planned.timeout,
        retry=planned.retry.fields,
        runtime=planned.runtime,
        status=DeliveryStatus.FAILED if planned.error else DeliveryStatus.PENDING,
        error=planned.error,
    )


def problem(
    status: int, reason: str, message: str, *, retry_after: int | None = None, allow: str | None = None
) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """A JSON error answer: `{"error": reason, "message": ...}`. Messages never hold secrets or signatures."""
    headers = []
    if retry_after:
        headers.append((b"retry-after", str(retry_after).encode()))
    if allow:
        headers.append((b"allow", allow.encode("latin-1")))
    return status, _json({"error": reason, "message": message}), headers


def _json(content: dict[str, Any]) -> bytes:
    return orjson.dumps(content)
