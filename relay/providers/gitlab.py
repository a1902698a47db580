"""GitLab: `X-Gitlab-Token` carries the secret itself, compared in constant time; nothing is signed.

https://docs.gitlab.com/user/project/integrations/webhooks/#validate-payloads-by-using-a-secret-token

The event type is `body.object_kind` (+ `.` + `object_attributes.action` when present: `merge_request.open`),
else the `X-Gitlab-Event` header in the same spelling (`Push Hook` -> `push`).
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING

from relay.errors import PayloadInvalid, SignatureInvalid
from relay.providers import Described, Incoming, Signed, signature

if TYPE_CHECKING:
    from relay.config import Source

KIND = "gitlab"
OPTIONS: dict[str, object] = {}
HEADER = "X-Gitlab-Token"
# object_kind -> X-Gitlab-Event where the header is not simply the kind in title case + " Hook".
_HEADERS = {"build": "Job Hook"}


def check_options(options: Mapping[str, str]) -> dict[str, str]:
    return {}


def verify(source: Source, incoming: Incoming, now: float) -> None:
    given = hashlib.sha256(signature.header(incoming, HEADER, what="secret token").encode()).digest()
    found = False
    for secret in source.secrets:
        # Comparing digests (equal length) keeps even the secret's length out of the timing.
        found |= hmac.compare_digest(hashlib.sha256(secret.reveal().encode()).digest(), given)
    if not found:
        raise SignatureInvalid(f"{HEADER} does not match any configured secret")


def describe(source: Source, incoming: Incoming) -> Described:
    event_id = (
        incoming.headers.get("idempotency-key", "").strip() or incoming.headers.get("x-gitlab-event-uuid", "").strip()
    )
    if not event_id:
        raise PayloadInvalid("missing Idempotency-Key or X-Gitlab-Event-UUID header")
    payload = signature.json_object(incoming)
    kind = payload.get("object_kind")
    if not isinstance(kind, str) or not kind:
        header = incoming.headers.get("x-gitlab-event", "").strip()
        if not header:
            raise PayloadInvalid("body.object_kind is missing and there is no X-Gitlab-Event header")
        kind = header.removesuffix(" Hook").strip().lower().replace(" ", "_")
    attributes = payload.get("object_attributes")
    action = attributes.get("action") if isinstance(attributes, dict) else None
    event_type = f"{kind}.{action}" if isinstance(action, str) and action else kind
    return Described(type=event_type, id=event_id, payload=payload)


def event_header(kind: str) -> str:
    """`merge_request` -> `Merge Request Hook`, the X-Gitlab-Event GitLab sends for that object_kind."""
    return _HEADERS.get(kind) or kind.replace("_", " ").title() + " Hook"


def sign(source: Source, body: bytes, now: float, event: str | None = None) -> Signed:
    """`event` is an X-Gitlab-Event value (`Push Hook`) or an event type (`merge_request.open`)."""
    event = event or signature.peek(body, "object_kind") or "push"
    header = event if event.endswith(" Hook") else event_header(event.split(".")[0])
    delivery = str(uuid.uuid4())
    return Signed(
        headers={
            HEADER: source.secrets[0].reveal(),
            "X-Gitlab-Event": header,
            "X-Gitlab-Event-UUID": delivery,
            "Idempotency-Key": delivery,
        }
    )
