"""One small module per provider kind. Each module is pure (no I/O, clock passed in) and exposes:

    KIND: str                                  the `kind:` written in routes.yaml
    OPTIONS: dict[str, object]                 extra source keys it accepts -> default (REQUIRED, None, a str)
    check_options(options) -> dict[str, str]   option name -> error message, for `relay check`
    verify(source, incoming, now) -> None      raise a `relay.errors.Rejected` subclass, nothing else
    describe(source, incoming) -> Described    event type, provider event id, payload; or raise PayloadInvalid
    sign(source, body, now, event=None) -> Signed
                                               what the provider would send (signature, id and event headers);
                                               `event` is a hint such as GitHub's X-GitHub-Event; used by
                                               `relay send` and by tests

`verify` sees the raw bytes before anything parses them and compares in constant time (`hmac.compare_digest`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from relay.config import Source

REQUIRED: Any = object()


@dataclass(frozen=True)
class Incoming:
    """An HTTP request as the verifiers see it. Header names are lower-case."""

    body: bytes
    headers: Mapping[str, str]
    query: Mapping[str, str] = field(default_factory=dict)
    path: str = "/"


@dataclass(frozen=True)
class Described:
    """What a provider says an event is. `payload` is the `body` root for rules and templates.

    `reply`, when set, is answered instead of storing the event (Slack's `url_verification` handshake).
    """

    type: str
    id: str
    payload: Any
    reply: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Signed:
    """The headers (and query parameters, for Twilio's JSON form) a provider would send with `body`.

    `body`, when set, replaces the bytes given to `sign` (a form-encoded Twilio body, a refreshed Linear
    `webhookTimestamp`).
    """

    headers: Mapping[str, str]
    query: Mapping[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    body: bytes | None = None


class Provider(Protocol):
    KIND: str
    OPTIONS: dict[str, object]

    def check_options(self, options: Mapping[str, str]) -> dict[str, str]: ...

    def verify(self, source: Source, incoming: Incoming, now: float) -> None: ...

    def describe(self, source: Source, incoming: Incoming) -> Described: ...

    def sign(self, source: Source, body: bytes, now: float, event: str | None = None) -> Signed: ...


def _load() -> dict[str, ModuleType]:
    from relay.providers import (
        generic_hmac,
        github,
        gitlab,
        linear,
        none,
        paddle,
        shopify,
        slack,
        standard_webhooks,
        stripe,
        twilio,
    )

    modules = [
        stripe,
        github,
        standard_webhooks,
        slack,
        shopify,
        gitlab,
        linear,
        paddle,
        twilio,
        generic_hmac,
        none,
    ]
    kinds = {module.KIND: module for module in modules}
    kinds["svix"] = standard_webhooks
    return kinds


KINDS: dict[str, ModuleType] = _load()


def get(kind: str) -> Provider | None:
    module = KINDS.get(kind)
    return module
