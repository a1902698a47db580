"""Linear: `Linear-Signature` = hex HMAC-SHA256 of the raw body; `body.webhookTimestamp` (ms) must be recent.

https://linear.app/developers/webhooks#securing-webhooks

Linear asks receivers to accept a `webhookTimestamp` within 60 s of their clock (both directions). A
`tolerance` written on the source itself overrides that; the global `defaults.tolerance` does not, because its
300 s would silently widen the window Linear documents.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING

from relay.errors import PayloadInvalid, TimestampInvalid
from relay.providers import Described, Incoming, Signed, signature

if TYPE_CHECKING:
    from relay.config import Source

KIND = "linear"
# `tolerance` is also a key of every source; listing it here records whether this source set it explicitly
# (config keeps the parsed seconds in `Source.tolerance`).
OPTIONS: dict[str, object] = {"tolerance": None}
HEADER = "Linear-Signature"
TOLERANCE = 60.0


def check_options(options: Mapping[str, str]) -> dict[str, str]:
    return {}  # the value itself is parsed and checked by config, like every source's `tolerance`


def verify(source: Source, incoming: Incoming, now: float) -> None:
    given = signature.from_hex(signature.header(incoming, HEADER), name=HEADER)
    expected = (signature.digest(secret.reveal().encode(), incoming.body) for secret in source.secrets)
    signature.any_matches(expected, [given], name=HEADER)
    # The timestamp is inside the signed body, so it is read only once the body is known to be Linear's.
    payload = signature.json_object(incoming)
    stamp = payload.get("webhookTimestamp")
    if isinstance(stamp, bool) or not isinstance(stamp, int | float) or not math.isfinite(stamp):
        raise TimestampInvalid(
            f"body.webhookTimestamp must be a number of milliseconds, got {signature.describe_value(stamp)}"
        )
    tolerance = source.tolerance if "tolerance" in source.options else TOLERANCE
    signature.check_fresh(stamp / 1000, now, tolerance, name="body.webhookTimestamp")


def describe(source: Source, incoming: Incoming) -> Described:
    delivery = incoming.headers.get("linear-delivery", "").strip()
    if not delivery:
        raise PayloadInvalid("missing Linear-Delivery header")
    payload = signature.json_object(incoming)
    event_type = f"{signature.field(payload, 'type')}.{signature.field(payload, 'action')}"
    return Described(type=event_type, id=delivery, payload=payload)


def sign(source: Source, body: bytes, now: float, event: str | None = None) -> Signed:
    """Sign as Linear sends: a JSON object body gets `webhookTimestamp` set to `now` (ms) first."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        payload = None
    if isinstance(payload, dict):
        payload["webhookTimestamp"] = int(now * 1000)
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    hex_digest = signature.digest(source.secrets[0].reveal().encode(), body).hex()
    return Signed(
        headers={
            HEADER: hex_digest,
            "Linear-Delivery": str(uuid.uuid4()),
            "Linear-Event": signature.peek(body, "type") or (event or "Issue").split(".")[0],
        },
        body=body,
    )
