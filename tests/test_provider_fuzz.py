"""Property: whatever arrives, `verify` and `describe` raise nothing but `relay.errors.Rejected` subclasses.

Three shapes of input per kind: arbitrary headers (the kind's own header names with arbitrary values, plus
random names) with arbitrary bodies; requests validly signed by `sign()` over arbitrary bodies, so `describe`
sees bodies that pass verification; and signed requests with one header value replaced.
The runs are derandomized and bounded so the suite stays fast and repeatable.
"""

from __future__ import annotations

import base64
import json
from types import MappingProxyType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay import providers
from relay.config import Secret, Source
from relay.errors import Rejected
from relay.providers import Incoming

NOW = 1_736_950_000.0
FUZZ = settings(
    max_examples=100,  # per kind and per test: 200 per kind in all
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

SECRETS = {
    "standard-webhooks": "whsec_" + base64.b64encode(b"fuzz-secret-32-bytes-long-000000").decode(),
    "svix": "whsec_" + base64.b64encode(b"fuzz-secret-32-bytes-long-000000").decode(),
}
OPTIONS = {
    "twilio": {"public_url": "https://relay.example.com/hooks/twilio", "type_field": "EventType"},
    "hmac": {"header": "X-Signature", "prefix": "sha256=", "timestamp_header": "X-Timestamp"},
}
HEADERS = [
    "stripe-signature",
    "x-hub-signature-256",
    "x-github-event",
    "x-github-delivery",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "svix-id",
    "svix-timestamp",
    "svix-signature",
    "x-slack-signature",
    "x-slack-request-timestamp",
    "x-shopify-hmac-sha256",
    "x-shopify-topic",
    "x-shopify-webhook-id",
    "x-shopify-event-id",
    "x-gitlab-token",
    "x-gitlab-event",
    "x-gitlab-event-uuid",
    "idempotency-key",
    "linear-signature",
    "linear-delivery",
    "paddle-signature",
    "x-twilio-signature",
    "x-twilio-webhooks-signature-settings",
    "i-twilio-idempotency-token",
    "x-signature",
    "x-timestamp",
    "content-type",
]
KINDS = sorted(providers.KINDS)


def make_source(kind: str) -> Source:
    return Source(
        name=f"fuzz-{kind}",
        kind=kind,
        secrets=(Secret(SECRETS.get(kind, "fuzz-secret")), Secret(SECRETS.get(kind, "fuzz-secret") + "-old")),
        tolerance=300,
        max_body=5 * 2**20,
        dedupe_window=604800,
        options=MappingProxyType(OPTIONS.get(kind, {})),
    )


# Header values as they reach the app: any text (starlette decodes latin-1; tests widen that to any Unicode).
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=80)
shaped = st.builds(
    lambda prefix, rest: prefix + rest,
    st.sampled_from(["", "t=", "t=1736950000,v1=", "v1,", "v0=", "sha256=", "ts=1736950000;h1=", "algorithm="]),
    text | st.text("0123456789abcdef", max_size=70) | st.text("ABCDEFabcdef0123456789+/=", max_size=60),
)
header_values = text | shaped | st.sampled_from(["1736950000", "1736950000000", "-1", "9" * 30, " ", "\x00"])
headers = st.dictionaries(st.sampled_from(HEADERS) | text.map(str.lower), header_values, max_size=8)
query = st.dictionaries(st.sampled_from(["bodySHA256", "foo", ""]) | text, text, max_size=3)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["type", "id", "event"]) | text, inner),
    max_leaves=12,
)
typed_objects = st.fixed_dictionaries(
    {},
    optional={
        "type": json_values | st.sampled_from(["event_callback", "url_verification", "Issue"]),
        "id": json_values,
        "event": json_values | st.fixed_dictionaries({"type": json_values}),
        "event_id": json_values,
        "event_type": json_values,
        "action": json_values,
        "challenge": json_values,
        "object_kind": json_values,
        "object_attributes": json_values | st.fixed_dictionaries({"action": json_values}),
        "webhookTimestamp": json_values | st.just(NOW * 1000),
        "MessageStatus": json_values,
    },
)
bodies = (
    st.binary(max_size=300)
    | json_values.map(lambda value: json.dumps(value).encode())
    | typed_objects.map(lambda value: json.dumps(value).encode())
    | st.sampled_from([b"payload=%7B%7D", b"command=%2Fdo&text=x", b"payload=%ff", b"[" * 5000, b"a=%zz&&=="])
)


def only_rejected(kind: str, incoming: Incoming) -> None:
    module = providers.KINDS[kind]
    source = make_source(kind)
    try:
        module.verify(source, incoming, NOW)
    except Rejected:
        pass
    try:
        module.describe(source, incoming)
    except Rejected:
        pass


@pytest.mark.parametrize("kind", KINDS)
@FUZZ
@given(body=bodies, headers=headers, query=query)
def test_arbitrary_requests_raise_only_rejected(
    kind: str, body: bytes, headers: dict[str, str], query: dict[str, str]
) -> None:
    only_rejected(kind, Incoming(body=body, headers=headers, query=query))


@pytest.mark.parametrize("kind", KINDS)
@FUZZ
@given(body=bodies, data=st.data())
def test_signed_requests_raise_only_rejected(kind: str, body: bytes, data: st.DataObject) -> None:
    source = make_source(kind)
    try:
        signed = providers.KINDS[kind].sign(source, body, NOW, data.draw(st.none() | text))
    except Rejected:
        return  # sign() may refuse what it cannot send (a Twilio body that is not a form)
    sent = {name.lower(): value for name, value in signed.headers.items()}
    if sent and data.draw(st.booleans()):
        name = data.draw(st.sampled_from(sorted(sent)))
        sent[name] = data.draw(header_values)
    only_rejected(kind, Incoming(body=signed.body or body, headers=sent, query=dict(signed.query)))
