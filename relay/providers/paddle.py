"""Paddle Billing: `Paddle-Signature: ts=<unix>;h1=<hex>[;h1=...]`, HMAC-SHA256 of `{ts}:{body}`.

https://developer.paddle.com/webhooks/signature-verification
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from relay.providers import Described, Incoming, Signed, signature

if TYPE_CHECKING:
    from relay.config import Source

KIND = "paddle"
OPTIONS: dict[str, object] = {}
HEADER = "Paddle-Signature"


def check_options(options: Mapping[str, str]) -> dict[str, str]:
    return {}


def verify(source: Source, incoming: Incoming, now: float) -> None:
    # Every h1 is tried: Paddle sends one per active secret while a secret is being rotated.
    signature.verify_stamped(source, incoming, now, name=HEADER, separator=";", stamp="ts", key="h1", joiner=b":")


def describe(source: Source, incoming: Incoming) -> Described:
    payload = signature.json_object(incoming)
    return Described(
        type=signature.field(payload, "event_type"), id=signature.field(payload, "event_id"), payload=payload
    )


def sign(source: Source, body: bytes, now: float, event: str | None = None) -> Signed:
    stamp = str(int(now))
    hex_digest = signature.digest(source.secrets[0].reveal().encode(), stamp.encode() + b":" + body).hex()
    return Signed(headers={HEADER: f"ts={stamp};h1={hex_digest}"})
