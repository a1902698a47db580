"""Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=...]`, HMAC-SHA256 of `{t}.{body}`, key = `whsec_...`.

https://docs.stripe.com/webhooks#verify-manually
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from relay.errors import SignatureInvalid, TimestampInvalid
from relay.providers import Described, Incoming, Signed, signature

if TYPE_CHECKING:
    from relay.config import Source

KIND = "stripe"
OPTIONS: dict[str, object] = {}
HEADER = "Stripe-Signature"


def check_options(options: Mapping[str, str]) -> dict[str, str]:
    return {}


def verify(source: Source, incoming: Incoming, now: float) -> None:
    stamp, given = _parse(signature.header(incoming, HEADER))
    signed = stamp.encode() + b"." + incoming.body
    # The key is the `whsec_...` string itself, prefix included (not base64-decoded like Standard Webhooks).
    expected = (signature.digest(secret.reveal().encode(), signed) for secret in source.secrets)
    signature.any_matches(expected, given, name=HEADER)
    signed_at = signature.timestamp(stamp, name=f"{HEADER} timestamp")
    signature.check_fresh(signed_at, now, source.tolerance, name=f"{HEADER} timestamp")


def _parse(value: str) -> tuple[str, list[bytes]]:
    """The timestamp text and the decoded `v1` signatures; `v0` (legacy) and unknown schemes are ignored."""
    stamps: list[str] = []
    given: list[bytes] = []
    for item in value.split(","):
        key, equals, text = item.strip().partition("=")
        if not equals:
            raise SignatureInvalid(f"{HEADER} must look like 't=<unix time>,v1=<hex>'")
        if key == "t":
            stamps.append(text)
        elif key == "v1":
            given.append(signature.from_hex(text, name=f"{HEADER} v1"))
    if len(stamps) != 1:
        raise TimestampInvalid(f"{HEADER} must carry exactly one timestamp (t=...), found {len(stamps)}")
    if not given:
        raise SignatureInvalid(f"{HEADER} has no v1 signature")
    return stamps[0], given


def describe(source: Source, incoming: Incoming) -> Described:
    payload = signature.json_object(incoming)
    return Described(type=signature.field(payload, "type"), id=signature.field(payload, "id"), payload=payload)


def sign(source: Source, body: bytes, now: float, event: str | None = None) -> Signed:
    stamp = str(int(now))
    hex_digest = signature.digest(source.secrets[0].reveal().encode(), stamp.encode() + b"." + body).hex()
    return Signed(headers={HEADER: f"t={stamp},v1={hex_digest}"})
