"""Standard Webhooks (and Svix): `webhook-signature: v1,<base64> ...` over `{id}.{timestamp}.{body}`.

The key is the base64 text after `whsec_`, decoded. `svix-id`, `svix-timestamp` and `svix-signature` are
accepted in place of the `webhook-*` headers, so the kind also answers to the alias `svix`.

https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING

from relay.errors import PayloadInvalid, SignatureInvalid, SignatureMissing, TimestampInvalid
from relay.providers import Described, Incoming, Signed, signature

if TYPE_CHECKING:
    from relay.config import Source

KIND = "standard-webhooks"
OPTIONS: dict[str, object] = {}
PREFIX = "whsec_"


def check_options(options: Mapping[str, str]) -> dict[str, str]:
    return {}


def verify(source: Source, incoming: Incoming, now: float) -> None:
    _, msg_id = _header(incoming, "id")
    stamp_name, stamp = _header(incoming, "timestamp")
    sig_name, sig_value = _header(incoming, "signature")
    given = [
        signature.from_base64(encoded, name=sig_name)
        for version, _, encoded in (entry.partition(",") for entry in sig_value.split())
        # Other versions (`v1a`, asymmetric ed25519) are for other verifiers; a sender may send several.
        if version == "v1"
    ]
    if not given:
        raise SignatureInvalid(f"{sig_name} has no v1 signature")
    signed = f"{msg_id}.{stamp}.".encode() + incoming.body
    expected = (signature.digest(key(source.name, secret.reveal()), signed) for secret in source.secrets)
    signature.any_matches(expected, given, name=sig_name)
    # The timestamp is judged only once the signature over it holds: a TimestampInvalid then means "authentic,
    # but malformed or stale" (clock skew, a replay), and anything unauthenticated stays a 401.
    signature.check_fresh(signature.timestamp(stamp, name=stamp_name), now, source.tolerance, name=stamp_name)


def key(source_name: str, secret: str) -> bytes:
    """The HMAC key: the base64 after `whsec_` (a secret without the prefix is base64 too); `=` optional."""
    text = secret.removeprefix(PREFIX).strip()
    try:
        decoded = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if not decoded:
        # A configuration problem; the message names the source, never the secret.
        raise SignatureInvalid(
            f"the secret of source {source_name!r} is not a Standard Webhooks secret "
            f"('{PREFIX}' followed by base64); copy it again from the sender"
        )
    return decoded


def _header(incoming: Incoming, part: str) -> tuple[str, str]:
    """(`webhook-<part>` or `svix-<part>`, its value); errors name `webhook-<part>` when neither is set."""
    for name in (f"webhook-{part}", f"svix-{part}"):
        value = incoming.headers.get(name, "").strip()
        if value:
            return name, value
    if part == "timestamp":
        raise TimestampInvalid("missing webhook-timestamp header")
    raise SignatureMissing(f"missing webhook-{part} header")


def describe(source: Source, incoming: Incoming) -> Described:
    msg_id = incoming.headers.get("webhook-id", "").strip() or incoming.headers.get("svix-id", "").strip()
    if not msg_id:
        raise PayloadInvalid("missing webhook-id header")
    payload = signature.json_object(incoming)
    return Described(type=signature.field(payload, "type"), id=msg_id, payload=payload)


def sign(source: Source, body: bytes, now: float, event: str | None = None) -> Signed:
    msg_id = f"msg_{secrets.token_urlsafe(18)}"
    stamp = str(int(now))
    signed = f"{msg_id}.{stamp}.".encode() + body
    digest = signature.digest(key(source.name, source.secrets[0].reveal()), signed)
    return Signed(
        headers={
            "webhook-id": msg_id,
            "webhook-timestamp": stamp,
            "webhook-signature": f"v1,{base64.b64encode(digest).decode()}",
        }
    )
