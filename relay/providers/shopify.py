"""Shopify: `X-Shopify-Hmac-Sha256` = base64 HMAC-SHA256 of the raw body; the topic and id ride in headers.

https://shopify.dev/docs/apps/build/webhooks/subscribe/https#step-2-validate-the-origin-of-your-webhook
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING

from relay.errors import PayloadInvalid
from relay.providers import Described, Incoming, Signed, signature

if TYPE_CHECKING:
    from relay.config import Source

KIND = "shopify"
OPTIONS: dict[str, object] = {}
HEADER = "X-Shopify-Hmac-Sha256"


def check_options(options: Mapping[str, str]) -> dict[str, str]:
    return {}


def verify(source: Source, incoming: Incoming, now: float) -> None:
    # Shopify signs no timestamp (X-Shopify-Triggered-At is unsigned), so replays are caught by dedupe only.
    given = signature.from_base64(signature.header(incoming, HEADER), name=HEADER)
    expected = (signature.digest(secret.reveal().encode(), incoming.body) for secret in source.secrets)
    signature.any_matches(expected, [given], name=HEADER)


def describe(source: Source, incoming: Incoming) -> Described:
    topic = incoming.headers.get("x-shopify-topic", "").strip()
    if not topic:
        raise PayloadInvalid("missing X-Shopify-Topic header (the event type, e.g. orders/create)")
    webhook_id = (
        incoming.headers.get("x-shopify-webhook-id", "").strip()
        or incoming.headers.get("x-shopify-event-id", "").strip()
    )
    if not webhook_id:
        raise PayloadInvalid("missing X-Shopify-Webhook-Id (or X-Shopify-Event-Id) header")
    return Described(type=topic, id=webhook_id, payload=signature.json_object(incoming))


def topic(event: str | None) -> str:
    """The topic for an event hint: `orders/create` as is; `orders.create` (a file name) -> that."""
    if not event:
        return "orders/create"
    return event if "/" in event else event.replace(".", "/", 1)


def sign(source: Source, body: bytes, now: float, event: str | None = None) -> Signed:
    digest = signature.digest(source.secrets[0].reveal().encode(), body)
    return Signed(
        headers={
            HEADER: base64.b64encode(digest).decode(),
            "X-Shopify-Topic": topic(event),
            "X-Shopify-Webhook-Id": str(uuid.uuid4()),
            "X-Shopify-Triggered-At": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        }
    )
