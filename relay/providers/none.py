"""No verification: every request is accepted. It must be written out (`kind: none`) and `relay check` warns.

For senders that cannot sign (internal tools on a private network). The event type and id come from the
source's `type:`/`id:` templates, else `body.type` and the SHA-256 of the body, as for the `hmac` kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from relay.providers import Described, Incoming, Signed, generic_hmac

if TYPE_CHECKING:
    from relay.config import Source

KIND = "none"
OPTIONS: dict[str, object] = {}


def check_options(options: Mapping[str, str]) -> dict[str, str]:
    return {}


def verify(source: Source, incoming: Incoming, now: float) -> None:
    return None


def describe(source: Source, incoming: Incoming) -> Described:
    return generic_hmac.from_templates(source, incoming)


def sign(source: Source, body: bytes, now: float, event: str | None = None) -> Signed:
    return Signed(headers={})
