"""Paddle Billing: `Paddle-Signature: ts=<unix>;h1=<hex>[;h1=...]`, HMAC-SHA256 of `{ts}:{body}`.

https://developer.paddle.com/webhooks/signature-verification
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from relay.errors import SignatureInvalid, TimestampInvalid
from relay.providers import Described, Incoming, Signed, signature

if TYPE_CHECKING:
    from relay.config import Source

KIND = "paddle"
OPTIONS: dict[str, object] = {}
HEADER = "Paddle-Signature"


def check_options(options: Mapping[str, str]) -> dict[str, str]:
    return {}


def verify(source: Source, incoming: Incoming, now: float) -> None:
    stamp, given = _parse(signature.header(incoming, HEADER))
    signed = stamp.encode() + b":" + incoming.body
    expected = (signature.digest(secret.reveal().encode(), signed) for secret in source.secrets)
    # Every h1 is tried: Paddle sends one per active secret while a secret is being rotated.
    signature.any_matches(expected, given, name=HEADER)
    signed_at = signature.timestamp(stamp, name=f"{HEADER} timestamp")
    signature.check_fresh(signed_at, now, source.tolerance, name=f"{HEADER} timestamp")


def _parse(value: str) -> tuple[str, list[bytes]]:
    stamps: list[str] = []
    given: list[bytes] = []
    for item in value.split(";"):
        key, equals, text = item.strip().partition("=")
        if not equals:
            raise SignatureInvalid(f"{HEADER} must look like 'ts=<unix time>;h1=<hex>'")
        if key == "ts":
            stamps.append(text)
        elif key == "h1":
            given.append(signature.from_hex(text, name=f"{HEADER} h1"))
    if len(stamps) != 1:
        raise TimestampInvalid(f"{HEADER} must carry exactly one timestamp (ts=...), found {len(stamps)}")
    if not given:
        raise SignatureInvalid(f"{HEADER} has no h1 signature")
    return stamps[0], given


def describe(source: Source, incoming: Incoming) -> Described:
    payload = signature.json_object(incoming)
    return Described(
        type=signature.field(payload, "event_type"), id=signature.field(payload, "event_id"), payload=payload
    )


def sign(source: Source, body: bytes, now: float, event: str | None = None) -> Signed:
    stamp = str(int(now))
    hex_digest = signature.digest(source.secrets[0].reveal().encode(), stamp.encode() + b":" + body).hex()
    return Signed(headers={HEADER: f"ts={stamp};h1={hex_digest}"})
