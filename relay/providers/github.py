"""GitHub: `X-Hub-Signature-256: sha256=<hex>` over the raw body; type from `X-GitHub-Event` (+ `.action`).

https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING

from relay.errors import PayloadInvalid, SignatureInvalid
from relay.providers import Described, Incoming, Signed, signature

if TYPE_CHECKING:
    from relay.config import Source

KIND = "github"
OPTIONS: dict[str, object] = {}
HEADER = "X-Hub-Signature-256"


def check_options(options: Mapping[str, str]) -> dict[str, str]:
    return {}


def verify(source: Source, incoming: Incoming, now: float) -> None:
    value = signature.header(incoming, HEADER)
    scheme, _, hex_digest = value.partition("=")
    if scheme != "sha256" or not hex_digest:
        raise SignatureInvalid(f"{HEADER} must look like 'sha256=<hex>'")
    given = signature.from_hex(hex_digest, name=HEADER)
    expected = (signature.digest(secret.reveal().encode(), incoming.body) for secret in source.secrets)
    signature.any_matches(expected, [given], name=HEADER)


def describe(source: Source, incoming: Incoming) -> Described:
    event = incoming.headers.get("x-github-event", "").strip()
    delivery = incoming.headers.get("x-github-delivery", "").strip()
    if not event or not delivery:
        raise PayloadInvalid("missing X-GitHub-Event or X-GitHub-Delivery header")
    payload = signature.json_object(incoming)
    action = payload.get("action")
    event_type = f"{event}.{action}" if isinstance(action, str) and action else event
    return Described(type=event_type, id=delivery, payload=payload)


def sign(source: Source, body: bytes, now: float, event: str | None = None) -> Signed:
    hex_digest = signature.digest(source.secrets[0].reveal().encode(), body).hex()
    return Signed(
        headers={
            HEADER: f"sha256={hex_digest}",
            "X-GitHub-Event": (event or "ping").split(".")[0],
            "X-GitHub-Delivery": str(uuid.uuid4()),
        }
    )
