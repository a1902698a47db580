"""Slack: `X-Slack-Signature: v0=<hex>`, HMAC-SHA256 of `v0:{X-Slack-Request-Timestamp}:{body}`.

https://api.slack.com/authentication/verifying-requests-from-slack

Bodies are JSON (Events API) or forms. Event types:
- JSON `event_callback`: `body.event.type` (`app_mention`); other JSON: `body.type` (`url_verification`).
- form with a `payload` field (interactivity): the `type` of that JSON (`block_actions`, `view_submission`).
- plain form (slash command): `slash_command.` + the command without its `/` (`slash_command.deploy`).
The event id is `body.event_id` when present, else the SHA-256 of the body (a retry resends the same bytes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from relay.errors import PayloadInvalid, SignatureInvalid, TimestampInvalid
from relay.providers import Described, Incoming, Signed, signature

if TYPE_CHECKING:
    from relay.config import Source

KIND = "slack"
OPTIONS: dict[str, object] = {}
HEADER = "X-Slack-Signature"
TIMESTAMP = "X-Slack-Request-Timestamp"
FORM = "application/x-www-form-urlencoded"


def check_options(options: Mapping[str, str]) -> dict[str, str]:
    return {}


def verify(source: Source, incoming: Incoming, now: float) -> None:
    value = signature.header(incoming, HEADER)
    version, _, hex_digest = value.partition("=")
    if version != "v0" or not hex_digest:
        raise SignatureInvalid(f"{HEADER} must look like 'v0=<hex>'")
    given = signature.from_hex(hex_digest, name=HEADER)
    stamp = incoming.headers.get(TIMESTAMP.lower(), "").strip()
    if not stamp:
        raise TimestampInvalid(f"missing {TIMESTAMP} header")
    signed = f"v0:{stamp}:".encode() + incoming.body
    expected = (signature.digest(secret.reveal().encode(), signed) for secret in source.secrets)
    signature.any_matches(expected, [given], name=HEADER)
    signature.check_fresh(signature.timestamp(stamp, name=TIMESTAMP), now, source.tolerance, name=TIMESTAMP)


def describe(source: Source, incoming: Incoming) -> Described:
    body_hash = hashlib.sha256(incoming.body).hexdigest()
    if _is_json(incoming.body):
        payload = signature.json_object(incoming)
        kind = signature.field(payload, "type")
        if kind == "url_verification":
            challenge = payload.get("challenge")
            if not isinstance(challenge, str) or not challenge:
                raise PayloadInvalid("url_verification needs a non-empty string body.challenge")
            return Described(type=kind, id=body_hash, payload=payload, reply={"challenge": challenge})
        if kind == "event_callback":
            event = payload.get("event")
            if not isinstance(event, dict):
                raise PayloadInvalid("event_callback needs an object body.event")
            kind = signature.field(event, "type", at="body.event")
        event_id = payload.get("event_id")
        return Described(
            type=kind, id=event_id if isinstance(event_id, str) and event_id else body_hash, payload=payload
        )
    form = dict(signature.form_pairs(incoming.body))
    if "payload" in form:
        inner: Any = signature.parse_json(form["payload"], what="the form field `payload`")
        if not isinstance(inner, dict):
            raise PayloadInvalid("the form field `payload` must be a JSON object")
        return Described(type=signature.field(inner, "type", at="payload"), id=body_hash, payload=inner)
    command = form.get("command", "").strip().lstrip("/")
    if not command:
        raise PayloadInvalid("a Slack form needs a `payload` field (interactivity) or a `command` (slash command)")
    return Described(type=f"slash_command.{command}", id=body_hash, payload=form)


def _is_json(body: bytes) -> bool:
    return body.lstrip()[:1] in (b"{", b"[")


def sign(source: Source, body: bytes, now: float, event: str | None = None) -> Signed:
    stamp = str(int(now))
    hex_digest = signature.digest(source.secrets[0].reveal().encode(), f"v0:{stamp}:".encode() + body).hex()
    return Signed(
        headers={HEADER: f"v0={hex_digest}", TIMESTAMP: stamp},
        content_type="application/json" if _is_json(body) else FORM,
    )
