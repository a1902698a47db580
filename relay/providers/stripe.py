"""Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=...]`, HMAC-SHA256 of `{t}.{body}`, key = `whsec_...`.

https://docs.stripe.com/webhooks#verify-manually
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from relay.providers import Described, Incoming, Signed, signature

if TYPE_CHECKING:
    from relay.config import Source

KIND = "stripe"
OPTIONS: dict[str, object] = {}
HEADER = "Stripe-Signature"


def check_options(options: Mapping[str, str]) -> dict[str, str]:
    return {}


def verify(source: Source, incoming: Incoming, now: float) -> None:
    # The key is the `whsec_...` string itself, prefix included (not base64-decoded like Standard Webhooks).
    signature.verify_stamped(source, incoming, now, name=HEADER, separator=",", stamp="t", key="v1", joiner=b".")


def describe(source: Source, incoming: Incoming) -> Described:
    payload = signature.json_object(incoming)
    return Described(type=signature.field(payload, "type"), id=signature.field(payload, "id"), payload=payload)


def sign(source: Source, body: bytes, now: float, event: str | None = None) -> Signed:
    stamp = str(int(now))
    hex_digest = signature.digest(source.secrets[0].reveal().encode(), stamp.encode() + b"." + body).hex()
    return Signed(headers={HEADER: f"t={stamp},v1={hex_digest}"})
