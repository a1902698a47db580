"""Provider verification: signatures made by the official libraries (or by hand per the provider's docs) pass,
and every way a request can be wrong is refused with the right exception, status and message.

Official signers: stripe (WebhookSignature.generate_signature_header), standardwebhooks (Webhook.sign),
slack_sdk (SignatureVerifier.generate_signature), twilio (RequestValidator.compute_signature/compute_hash).
GitHub, Shopify, GitLab, Linear, Paddle and the generic HMAC have no official Python verifier installed here,
so their requests are built with hmac/hashlib following each provider's documentation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from urllib.parse import urlencode

import pytest
import stripe
from slack_sdk.signature import SignatureVerifier
from standardwebhooks.webhooks import Webhook
from twilio.request_validator import RequestValidator

from relay import config, providers
from relay.config import Secret, Source
from relay.errors import PayloadInvalid, Rejected, SignatureInvalid, SignatureMissing, TimestampInvalid
from relay.providers import Incoming, generic_hmac, twilio

NOW = 1_736_950_000
ROOT = Path(__file__).resolve().parent.parent
SVIX_SECRET = "whsec_" + base64.b64encode(b"relay-test-secret-for-standard-w").decode()
SVIX_OTHER = "whsec_" + base64.b64encode(b"some-other-secret-32-bytes-long!").decode()
TWILIO_URL = "https://relay.example.com/hooks/twilio"
HMAC_OPTIONS = {"header": "X-Signature", "prefix": "sha256=", "timestamp_header": "X-Timestamp"}


def make_source(kind: str, *secrets: str, tolerance: float = 300, **options: str) -> Source:
    return Source(
        name=f"my-{kind}",
        kind=kind,
        secrets=tuple(Secret(secret) for secret in secrets),
        tolerance=tolerance,
        max_body=5 * 2**20,
        dedupe_window=604800,
        options=MappingProxyType(options),
    )


def request(body: bytes, headers: dict[str, str], query: dict[str, str] | None = None) -> Incoming:
    return Incoming(body=body, headers={k.lower(): v for k, v in headers.items()}, query=query or {})


def hmac_sha256(secret: str, message: bytes) -> bytes:
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


# -- how each provider signs, per its official library or documentation ----------------------------------------


def stripe_request(body: bytes, secret: str, ts: int) -> Incoming:
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret, timestamp=ts)
    return request(body, {"Stripe-Signature": header})


def github_request(body: bytes, secret: str, ts: int) -> Incoming:
    return request(
        body,
        {
            "X-Hub-Signature-256": "sha256=" + hmac_sha256(secret, body).hex(),
            "X-GitHub-Event": "pull_request",
            "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        },
    )


def svix_request(body: bytes, secret: str, ts: int) -> Incoming:
    msg_id = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
    signed = Webhook(secret).sign(msg_id, datetime.fromtimestamp(ts, tz=UTC), body)
    return request(body, {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": signed})


def slack_request(body: bytes, secret: str, ts: int) -> Incoming:
    signed = SignatureVerifier(secret).generate_signature(timestamp=str(ts), body=body)
    assert signed is not None
    return request(body, {"X-Slack-Signature": signed, "X-Slack-Request-Timestamp": str(ts)})


def shopify_request(body: bytes, secret: str, ts: int) -> Incoming:
    return request(
        body,
        {
            "X-Shopify-Hmac-Sha256": base64.b64encode(hmac_sha256(secret, body)).decode(),
            "X-Shopify-Topic": "orders/create",
            "X-Shopify-Webhook-Id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        },
    )


def gitlab_request(body: bytes, secret: str, ts: int) -> Incoming:
    return request(
        body,
        {
            "X-Gitlab-Token": secret,
            "X-Gitlab-Event": "Merge Request Hook",
            "X-Gitlab-Event-UUID": "13792a34-cac6-4fda-95a8-c58e00a3954e",
            "Idempotency-Key": "f5e5f430-f57b-4e6e-9fac-d9128cd7232f",
        },
    )


def linear_request(body: bytes, secret: str, ts: int) -> Incoming:
    payload = json.loads(body)
    payload["webhookTimestamp"] = ts * 1000
    body = json.dumps(payload).encode()
    return request(
        body,
        {
            "Linear-Signature": hmac_sha256(secret, body).hex(),
            "Linear-Delivery": "234d1a4e-b617-4388-90fe-adc3633d6b72",
        },
    )


def paddle_request(body: bytes, secret: str, ts: int) -> Incoming:
    h1 = hmac_sha256(secret, f"{ts}:".encode() + body).hex()
    return request(body, {"Paddle-Signature": f"ts={ts};h1={h1}"})


def twilio_request(body: bytes, secret: str, ts: int) -> Incoming:
    params = dict(json.loads(body))
    signed = RequestValidator(secret).compute_signature(TWILIO_URL, params)
    return request(urlencode(params).encode(), {"X-Twilio-Signature": signed, "I-Twilio-Idempotency-Token": "tok-1"})


def hmac_request(body: bytes, secret: str, ts: int) -> Incoming:
    signed = hmac_sha256(secret, f"{ts}.".encode() + body).hex()
    return request(body, {"X-Signature": f"sha256={signed}", "X-Timestamp": str(ts)})


def none_request(body: bytes, secret: str, ts: int) -> Incoming:
    return request(body, {})


@dataclass(frozen=True)
class Case:
    kind: str
    secret: str
    other_secret: str  # a well-formed secret that is not the right one
    body: bytes
    sign: Callable[[bytes, str, int], Incoming]
    type: str
    id: str | None  # None: the SHA-256 of the body
    options: dict[str, str] = field(default_factory=dict)
    tolerance: float = 300
    # header (lower-case) -> the exception when it is missing
    required: dict[str, type[Rejected]] = field(default_factory=dict)
    # (header, bad value, exception, message)
    malformed: tuple[tuple[str, str, type[Rejected], str], ...] = ()
    timestamp_name: str | None = None  # the name used in freshness messages; None: no signed timestamp
    body_signed: bool = True

    def source(self, *secrets: str) -> Source:
        return make_source(self.kind, *(secrets or (self.secret,)), tolerance=self.tolerance, **self.options)

    def __str__(self) -> str:
        return self.kind


STRIPE_BODY = json.dumps({"id": "evt_1Q", "object": "event", "type": "invoice.paid", "livemode": True}).encode()

CASES = [
    Case(
        "stripe",
        "whsec_test_3f9a2b",
        "whsec_test_other",
        STRIPE_BODY,
        stripe_request,
        "invoice.paid",
        "evt_1Q",
        required={"stripe-signature": SignatureMissing},
        malformed=(
            (
                "stripe-signature",
                "garbage",
                SignatureInvalid,
                "Stripe-Signature must look like 't=<unix time>,v1=<hex>'",
            ),
            ("stripe-signature", "t=1,v1=zz", SignatureInvalid, "Stripe-Signature v1 is not hexadecimal"),
            ("stripe-signature", "t=1,v0=abcd", SignatureInvalid, "Stripe-Signature has no v1 signature"),
            (
                "stripe-signature",
                "v1=abcd",
                TimestampInvalid,
                "Stripe-Signature must carry exactly one timestamp (t=...), found 0",
            ),
        ),
        timestamp_name="Stripe-Signature timestamp",
    ),
    Case(
        "github",
        "gh-secret",
        "gh-other",
        json.dumps({"action": "opened", "number": 7}).encode(),
        github_request,
        "pull_request.opened",
        "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        required={"x-hub-signature-256": SignatureMissing},
        malformed=(
            ("x-hub-signature-256", "sha1=abcd", SignatureInvalid, "X-Hub-Signature-256 must look like 'sha256=<hex>'"),
            ("x-hub-signature-256", "sha256=xyz", SignatureInvalid, "X-Hub-Signature-256 is not hexadecimal"),
        ),
    ),
    Case(
        "standard-webhooks",
        SVIX_SECRET,
        SVIX_OTHER,
        json.dumps({"type": "user.created", "data": {"id": "user_1"}}).encode(),
        svix_request,
        "user.created",
        "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
        required={
            "webhook-id": SignatureMissing,
            "webhook-signature": SignatureMissing,
            "webhook-timestamp": TimestampInvalid,
        },
        malformed=(
            ("webhook-signature", "v1a,abcd v2,abcd", SignatureInvalid, "webhook-signature has no v1 signature"),
            ("webhook-signature", "v1,not*base64", SignatureInvalid, "webhook-signature is not valid base64"),
            # Not what was signed: the signature fails first (a timestamp is judged only once authentic).
            ("webhook-timestamp", "soon", SignatureInvalid, "webhook-signature does not match any configured secret"),
        ),
        timestamp_name="webhook-timestamp",
    ),
    Case(
        "slack",
        "8f742231b10e8888abcd99yyyzzz85a5",
        "0000000000000000abcd99yyyzzz85a5",
        json.dumps(
            {"type": "event_callback", "event_id": "Ev0LAN670R", "event": {"type": "app_mention", "text": "hi"}}
        ).encode(),
        slack_request,
        "app_mention",
        "Ev0LAN670R",
        required={"x-slack-signature": SignatureMissing, "x-slack-request-timestamp": TimestampInvalid},
        malformed=(
            ("x-slack-signature", "v1=abcd", SignatureInvalid, "X-Slack-Signature must look like 'v0=<hex>'"),
            ("x-slack-signature", "v0=nothex", SignatureInvalid, "X-Slack-Signature is not hexadecimal"),
            (
                "x-slack-request-timestamp",
                "-5",
                SignatureInvalid,
                "X-Slack-Signature does not match any configured secret",
            ),
        ),
        timestamp_name="X-Slack-Request-Timestamp",
    ),
    Case(
        "shopify",
        "shpss_1a2b3c",
        "shpss_other",
        json.dumps({"id": 5832946401336, "email": "sam@example.com"}).encode(),
        shopify_request,
        "orders/create",
        "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        required={"x-shopify-hmac-sha256": SignatureMissing},
        malformed=(("x-shopify-hmac-sha256", "%%%", SignatureInvalid, "X-Shopify-Hmac-Sha256 is not valid base64"),),
    ),
    Case(
        "gitlab",
        "glpat-token-xyz",
        "glpat-token-abc",
        json.dumps({"object_kind": "merge_request", "object_attributes": {"action": "open", "iid": 4}}).encode(),
        gitlab_request,
        "merge_request.open",
        "f5e5f430-f57b-4e6e-9fac-d9128cd7232f",
        required={"x-gitlab-token": SignatureMissing},
        malformed=(
            (
                "x-gitlab-token",
                "glpat-token-xy",
                SignatureInvalid,
                "X-Gitlab-Token does not match any configured secret",
            ),
        ),
        body_signed=False,  # a token is not a signature: the body is not protected by it
    ),
    Case(
        "linear",
        "lin_wh_5e6f",
        "lin_wh_0000",
        json.dumps({"type": "Issue", "action": "create", "data": {"id": "i1"}, "webhookTimestamp": 0}).encode(),
        linear_request,
        "Issue.create",
        "234d1a4e-b617-4388-90fe-adc3633d6b72",
        tolerance=300,  # Linear's 60 s applies regardless: it is not set on the source itself
        required={"linear-signature": SignatureMissing},
        malformed=(("linear-signature", "sha256=abcd", SignatureInvalid, "Linear-Signature is not hexadecimal"),),
        timestamp_name="body.webhookTimestamp",
    ),
    Case(
        "paddle",
        "pdl_ntfset_01h_secret",
        "pdl_ntfset_01h_other",
        json.dumps({"event_id": "evt_01h", "event_type": "transaction.completed", "data": {}}).encode(),
        paddle_request,
        "transaction.completed",
        "evt_01h",
        required={"paddle-signature": SignatureMissing},
        malformed=(
            ("paddle-signature", "ts=1,h1=abcd", SignatureInvalid, "Paddle-Signature has no h1 signature"),
            ("paddle-signature", "ts=1;h1=xyz", SignatureInvalid, "Paddle-Signature h1 is not hexadecimal"),
            ("paddle-signature", "h1", SignatureInvalid, "Paddle-Signature must look like 'ts=<unix time>;h1=<hex>'"),
            (
                "paddle-signature",
                "ts=1;ts=2;h1=ab",
                TimestampInvalid,
                "Paddle-Signature must carry exactly one timestamp (ts=...), found 2",
            ),
        ),
        timestamp_name="Paddle-Signature timestamp",
    ),
    Case(
        "twilio",
        "twilio-auth-token-1",
        "twilio-auth-token-2",
        json.dumps({"MessageSid": "SM1", "MessageStatus": "delivered", "To": "+14155550100"}).encode(),
        twilio_request,
        "twilio.delivered",
        "tok-1",
        options={"public_url": TWILIO_URL},
        required={"x-twilio-signature": SignatureMissing},
        malformed=(("x-twilio-signature", "not base64!", SignatureInvalid, "X-Twilio-Signature is not valid base64"),),
    ),
    Case(
        "hmac",
        "hmac-secret",
        "hmac-other",
        json.dumps({"type": "order.created", "order": 1}).encode(),
        hmac_request,
        "order.created",
        None,
        options=HMAC_OPTIONS,
        required={"x-signature": SignatureMissing, "x-timestamp": TimestampInvalid},
        malformed=(
            ("x-signature", "sha1=abcd", SignatureInvalid, "X-Signature must start with 'sha256='"),
            ("x-signature", "sha256=zz", SignatureInvalid, "X-Signature is not hexadecimal"),
        ),
        timestamp_name="X-Timestamp",
    ),
]
SIGNED = [case for case in CASES if case.kind != "gitlab"]
TIMESTAMPED = [case for case in CASES if case.timestamp_name]
by_kind = pytest.mark.parametrize("case", CASES, ids=str)


def ident(value: object) -> str:
    if isinstance(value, type):
        return value.__name__
    return str(value)[:40]


def expected_id(case: Case, incoming: Incoming) -> str:
    return case.id or hashlib.sha256(incoming.body).hexdigest()


def rejected(case: Case, incoming: Incoming, now: float = NOW, source: Source | None = None) -> Rejected:
    with pytest.raises(Rejected) as caught:
        providers.KINDS[case.kind].verify(source or case.source(), incoming, now)
    message = str(caught.value)
    # Nothing secret in a message: not the secret, not the signature that would have been right.
    for secret in (case.secret, case.secret.removeprefix("whsec_")):
        assert secret not in message
    right = case.sign(case.body, case.secret, int(now))
    for value in right.headers.values():
        assert len(value) < 8 or value not in message
    return caught.value


# -- accepted ---------------------------------------------------------------------------------------------------


@by_kind
def test_official_signature_is_accepted_and_described(case: Case) -> None:
    incoming = case.sign(case.body, case.secret, NOW)
    module = providers.KINDS[case.kind]
    module.verify(case.source(), incoming, NOW)
    described = module.describe(case.source(), incoming)
    assert (described.type, described.id) == (case.type, expected_id(case, incoming))
    assert described.reply is None


@by_kind
def test_rotation_any_configured_secret_matches(case: Case) -> None:
    incoming = case.sign(case.body, case.secret, NOW)
    module = providers.KINDS[case.kind]
    module.verify(case.source(case.other_secret, case.secret), incoming, NOW)
    module.verify(case.source(case.secret, case.other_secret), incoming, NOW)


@by_kind
def test_sign_makes_what_verify_accepts(case: Case) -> None:
    module = providers.KINDS[case.kind]
    signed = module.sign(case.source(), case.body, NOW, None)
    incoming = request(signed.body or case.body, dict(signed.headers), dict(signed.query))
    module.verify(case.source(), incoming, NOW)
    module.verify(case.source(case.other_secret, case.secret), incoming, NOW)
    with pytest.raises(SignatureInvalid):
        module.verify(case.source(case.other_secret), incoming, NOW)
    assert module.describe(case.source(), incoming).type


def test_none_accepts_anything_and_describes_with_body_type_and_hash() -> None:
    module = providers.KINDS["none"]
    source = make_source("none")
    incoming = request(b'{"type": "ping"}', {})
    module.verify(source, incoming, NOW)
    described = module.describe(source, incoming)
    assert (described.type, described.id) == ("ping", hashlib.sha256(b'{"type": "ping"}').hexdigest())
    assert module.sign(source, b"{}", NOW).headers == {}


# -- refused ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", [case for case in CASES if case.body_signed], ids=str)
def test_one_byte_change_in_the_body_is_refused(case: Case) -> None:
    incoming = case.sign(case.body, case.secret, NOW)
    middle = len(incoming.body) // 2
    changed = incoming.body[:middle] + bytes([incoming.body[middle] ^ 0x01]) + incoming.body[middle + 1 :]
    error = rejected(case, replace(incoming, body=changed))
    assert isinstance(error, SignatureInvalid)
    assert error.status == 401


@by_kind
def test_wrong_secret_is_refused(case: Case) -> None:
    error = rejected(case, case.sign(case.body, case.other_secret, NOW))
    assert isinstance(error, SignatureInvalid)
    assert error.status == 401
    assert str(error).endswith("does not match any configured secret")


@pytest.mark.parametrize("case", TIMESTAMPED, ids=str)
@pytest.mark.parametrize("direction", ["old", "in the future"])
def test_timestamp_outside_the_tolerance_is_refused(case: Case, direction: str) -> None:
    tolerance = 60 if case.kind == "linear" else 300
    gap = tolerance + 100
    incoming = case.sign(case.body, case.secret, NOW - gap if direction == "old" else NOW + gap)
    error = rejected(case, incoming)
    assert isinstance(error, TimestampInvalid)
    assert error.status == 400
    assert str(error) == f"{case.timestamp_name} is {gap} s {direction}; the tolerance is {tolerance} s"


@pytest.mark.parametrize("case", TIMESTAMPED, ids=str)
def test_timestamp_at_the_edge_of_the_tolerance_is_accepted(case: Case) -> None:
    tolerance = 60 if case.kind == "linear" else 300
    for stamp in (NOW - tolerance, NOW + tolerance):
        providers.KINDS[case.kind].verify(case.source(), case.sign(case.body, case.secret, stamp), NOW)


@pytest.mark.parametrize(
    ("case", "header", "error"),
    [(case, header, error) for case in CASES for header, error in case.required.items()],
    ids=ident,
)
def test_missing_header_is_refused(case: Case, header: str, error: type[Rejected]) -> None:
    incoming = case.sign(case.body, case.secret, NOW)
    for value in ("", None):
        headers = {name: text for name, text in incoming.headers.items() if name != header}
        if value is not None:
            headers[header] = value
        caught = rejected(case, replace(incoming, headers=headers))
        assert type(caught) is error
        assert str(caught).startswith("missing ")
        assert header in str(caught).lower()


@pytest.mark.parametrize(
    ("case", "header", "value", "error", "message"),
    [(case, *bad) for case in CASES for bad in case.malformed],
    ids=ident,
)
def test_malformed_header_is_refused(case: Case, header: str, value: str, error: type[Rejected], message: str) -> None:
    incoming = case.sign(case.body, case.secret, NOW)
    caught = rejected(case, replace(incoming, headers={**incoming.headers, header: value}))
    assert type(caught) is error
    assert str(caught) == message


def authentic_with_timestamp(kind: str, secret: str, body: bytes, stamp: str) -> Incoming:
    """A request correctly signed over a timestamp text that is not a valid timestamp."""
    if kind == "stripe":
        return request(
            body, {"Stripe-Signature": f"t={stamp},v1={hmac_sha256(secret, f'{stamp}.'.encode() + body).hex()}"}
        )
    if kind == "paddle":
        return request(
            body, {"Paddle-Signature": f"ts={stamp};h1={hmac_sha256(secret, f'{stamp}:'.encode() + body).hex()}"}
        )
    if kind == "slack":
        signed = hmac_sha256(secret, f"v0:{stamp}:".encode() + body).hex()
        return request(body, {"X-Slack-Signature": f"v0={signed}", "X-Slack-Request-Timestamp": stamp})
    if kind == "standard-webhooks":
        key = base64.b64decode(secret.removeprefix("whsec_"))
        digest = hmac.new(key, f"msg_1.{stamp}.".encode() + body, hashlib.sha256).digest()
        signature = f"v1,{base64.b64encode(digest).decode()}"
        return request(body, {"webhook-id": "msg_1", "webhook-timestamp": stamp, "webhook-signature": signature})
    assert kind == "hmac"
    signed = hmac_sha256(secret, f"{stamp}.".encode() + body).hex()
    return request(body, {"X-Signature": f"sha256={signed}", "X-Timestamp": stamp})


@pytest.mark.parametrize("case", [case for case in TIMESTAMPED if case.kind != "linear"], ids=str)
def test_authentic_request_with_a_malformed_timestamp_is_timestamp_invalid(case: Case) -> None:
    """Only once the signature over it holds is a bad timestamp a 400; before that it is just a bad signature."""
    caught = rejected(case, authentic_with_timestamp(case.kind, case.secret, case.body, "1.7e9"))
    assert type(caught) is TimestampInvalid
    assert str(caught) == f"{case.timestamp_name} must be an integer timestamp, got '1.7e9'"
    assert caught.status == 400


def test_statuses_of_the_rejections() -> None:
    assert (SignatureMissing.status, SignatureInvalid.status) == (401, 401)
    assert (TimestampInvalid.status, PayloadInvalid.status) == (400, 400)


# -- Stripe -----------------------------------------------------------------------------------------------------


def test_stripe_ignores_v0_and_tries_every_v1() -> None:
    case = CASES[0]
    good = case.sign(case.body, case.secret, NOW).headers["stripe-signature"]
    stamp, v1 = good.split(",")
    header = f"{stamp},v1={'0' * 64},{v1},v0={'1' * 40}"
    providers.KINDS["stripe"].verify(case.source(), request(case.body, {"Stripe-Signature": header}), NOW)


def test_stripe_key_is_the_whole_whsec_string() -> None:
    body = STRIPE_BODY
    stripped = stripe.WebhookSignature.generate_signature_header(body.decode(), "test_3f9a2b", timestamp=NOW)
    with pytest.raises(SignatureInvalid):
        providers.KINDS["stripe"].verify(
            make_source("stripe", "whsec_test_3f9a2b"), request(body, {"Stripe-Signature": stripped}), NOW
        )


def test_stripe_event_without_type_is_payload_invalid() -> None:
    source = make_source("stripe", "whsec_x")
    with pytest.raises(PayloadInvalid, match=r"^body.type is missing; expected a non-empty string$"):
        providers.KINDS["stripe"].describe(source, request(b'{"id": "evt_1"}', {}))
    with pytest.raises(PayloadInvalid, match=r"^body must be a JSON object, got a JSON array$"):
        providers.KINDS["stripe"].describe(source, request(b"[1]", {}))
    with pytest.raises(PayloadInvalid, match=r"^body is not valid UTF-8 JSON$"):
        providers.KINDS["stripe"].describe(source, request(b"\xff", {}))
    with pytest.raises(PayloadInvalid, match=r"^body is JSON nested too deeply$"):
        providers.KINDS["stripe"].describe(source, request(b"[" * 100_000, {}))


# -- Standard Webhooks ------------------------------------------------------------------------------------------


def test_standard_webhooks_accepts_svix_headers_and_several_signatures() -> None:
    case = CASES[2]
    incoming = case.sign(case.body, case.secret, NOW)
    headers = {name.replace("webhook-", "svix-"): value for name, value in incoming.headers.items()}
    headers["svix-signature"] = f"v1a,{'A' * 88} v1,{base64.b64encode(b'x' * 32).decode()} {headers['svix-signature']}"
    svix = request(case.body, headers)
    for kind in ("standard-webhooks", "svix"):
        providers.KINDS[kind].verify(case.source(), svix, NOW)
        assert providers.KINDS[kind].describe(case.source(), svix).id == "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"


def test_standard_webhooks_secret_without_prefix_or_padding_is_accepted() -> None:
    case = CASES[2]
    incoming = case.sign(case.body, case.secret, NOW)
    bare = case.secret.removeprefix("whsec_").rstrip("=")
    providers.KINDS["standard-webhooks"].verify(make_source("standard-webhooks", bare), incoming, NOW)


def test_standard_webhooks_secret_that_is_not_base64_is_refused_without_leaking_it() -> None:
    case = CASES[2]
    incoming = case.sign(case.body, case.secret, NOW)
    source = make_source("standard-webhooks", "whsec_not base64 at all!")
    with pytest.raises(SignatureInvalid) as caught:
        providers.KINDS["standard-webhooks"].verify(source, incoming, NOW)
    assert str(caught.value) == (
        "the secret of source 'my-standard-webhooks' is not a Standard Webhooks secret "
        "('whsec_' followed by base64); copy it again from the sender"
    )


# -- Slack ------------------------------------------------------------------------------------------------------


def slack_describe(body: bytes) -> providers.Described:
    case = CASES[3]
    incoming = case.sign(body, case.secret, NOW)
    providers.KINDS["slack"].verify(case.source(), incoming, NOW)
    return providers.KINDS["slack"].describe(case.source(), incoming)


def test_slack_url_verification_is_answered_with_its_challenge() -> None:
    body = json.dumps(
        {"token": "t", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"}
    )
    described = slack_describe(body.encode())
    assert described.type == "url_verification"
    assert described.reply == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}


def test_slack_non_event_callback_uses_body_type_and_a_hash_id() -> None:
    body = json.dumps({"type": "app_rate_limited", "team_id": "T1", "minute_rate_limited": 1518467820}).encode()
    described = slack_describe(body)
    assert (described.type, described.id) == ("app_rate_limited", hashlib.sha256(body).hexdigest())


def test_slack_interactivity_form_uses_the_payload_type() -> None:
    inner = {"type": "block_actions", "user": {"id": "U1"}, "actions": [{"action_id": "approve"}]}
    body = urlencode({"payload": json.dumps(inner)}).encode()
    described = slack_describe(body)
    assert (described.type, described.payload) == ("block_actions", inner)


def test_slack_slash_command_form() -> None:
    body = b"token=x&team_id=T1&command=%2Fdeploy&text=api+prod&user_name=ana"
    described = slack_describe(body)
    assert described.type == "slash_command.deploy"
    assert described.payload["text"] == "api prod"
    assert described.id == hashlib.sha256(body).hexdigest()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"type": "url_verification"}', "url_verification needs a non-empty string body.challenge"),
        (b'{"type": "event_callback", "event": []}', "event_callback needs an object body.event"),
        (b'{"type": "event_callback", "event": {}}', "body.event.type is missing; expected a non-empty string"),
        (b"payload=%7Bnot+json", "the form field `payload` is not valid UTF-8 JSON"),
        (b"payload=%7B%7D", "payload.type is missing; expected a non-empty string"),
        (b"text=hello", "a Slack form needs a `payload` field (interactivity) or a `command` (slash command)"),
        (b"command=%ff", "body is not a UTF-8 form (application/x-www-form-urlencoded)"),
    ],
)
def test_slack_bodies_without_a_type_are_payload_invalid(body: bytes, message: str) -> None:
    with pytest.raises(PayloadInvalid) as caught:
        slack_describe(body)
    assert str(caught.value) == message


def test_slack_sign_sets_the_content_type_from_the_body() -> None:
    source = make_source("slack", "s")
    assert providers.KINDS["slack"].sign(source, b"{}", NOW).content_type == "application/json"
    assert providers.KINDS["slack"].sign(source, b"a=b", NOW).content_type == "application/x-www-form-urlencoded"


# -- Shopify, GitLab, Linear, Paddle ----------------------------------------------------------------------------


def test_shopify_event_id_header_is_the_fallback_id_and_topic_is_required() -> None:
    case = CASES[4]
    incoming = case.sign(case.body, case.secret, NOW)
    headers = {k: v for k, v in incoming.headers.items() if k != "x-shopify-webhook-id"}
    described = providers.KINDS["shopify"].describe(
        case.source(), replace(incoming, headers={**headers, "x-shopify-event-id": "e-1"})
    )
    assert described.id == "e-1"
    with pytest.raises(PayloadInvalid, match="missing X-Shopify-Webhook-Id"):
        providers.KINDS["shopify"].describe(case.source(), replace(incoming, headers=headers))
    del headers["x-shopify-topic"]
    with pytest.raises(PayloadInvalid, match="missing X-Shopify-Topic"):
        providers.KINDS["shopify"].describe(case.source(), replace(incoming, headers=headers))


def test_shopify_sign_turns_a_file_name_hint_into_a_topic() -> None:
    signed = providers.KINDS["shopify"].sign(make_source("shopify", "s"), b"{}", NOW, "orders.create")
    assert signed.headers["X-Shopify-Topic"] == "orders/create"
    signed = providers.KINDS["shopify"].sign(make_source("shopify", "s"), b"{}", NOW, "app/uninstalled")
    assert signed.headers["X-Shopify-Topic"] == "app/uninstalled"


@pytest.mark.parametrize(
    ("payload", "header", "expected"),
    [
        ({"object_kind": "push", "ref": "refs/heads/main"}, "Push Hook", "push"),
        ({"object_kind": "note", "object_attributes": {"note": "LGTM"}}, "Note Hook", "note"),
        ({"object_kind": "issue", "object_attributes": {"action": "close"}}, "Issue Hook", "issue.close"),
        ({"event_name": "project_create"}, "System Hook", "system"),
        ({"ref": "main"}, "Tag Push Hook", "tag_push"),
    ],
)
def test_gitlab_type_from_object_kind_else_header(payload: dict[str, object], header: str, expected: str) -> None:
    source = make_source("gitlab", "t")
    incoming = request(json.dumps(payload).encode(), {"X-Gitlab-Event": header, "X-Gitlab-Event-UUID": "u-1"})
    described = providers.KINDS["gitlab"].describe(source, incoming)
    assert (described.type, described.id) == (expected, "u-1")


def test_gitlab_needs_a_delivery_id() -> None:
    with pytest.raises(PayloadInvalid, match="^missing Idempotency-Key or X-Gitlab-Event-UUID header$"):
        providers.KINDS["gitlab"].describe(make_source("gitlab", "t"), request(b'{"object_kind": "push"}', {}))


@pytest.mark.parametrize(
    ("hint", "header"),
    [(None, "Merge Request Hook"), ("push", "Push Hook"), ("build", "Job Hook"), ("Pipeline Hook", "Pipeline Hook")],
)
def test_gitlab_sign_picks_the_event_header(hint: str | None, header: str) -> None:
    body = json.dumps({"object_kind": "merge_request"}).encode()
    assert (
        providers.KINDS["gitlab"].sign(make_source("gitlab", "t"), body, NOW, hint).headers["X-Gitlab-Event"] == header
    )


def test_linear_tolerance_written_on_the_source_overrides_the_60_s_default() -> None:
    case = CASES[6]
    incoming = case.sign(case.body, case.secret, NOW - 200)
    source = make_source("linear", case.secret, tolerance=300, tolerance_option="300")
    with pytest.raises(TimestampInvalid):
        providers.KINDS["linear"].verify(source, incoming, NOW)  # an unrelated option changes nothing
    written = replace(source, options=MappingProxyType({"tolerance": "300"}))
    providers.KINDS["linear"].verify(written, incoming, NOW)


@pytest.mark.parametrize(
    ("stamp", "error", "message"),
    [
        (None, TimestampInvalid, "body.webhookTimestamp must be a number of milliseconds, got null"),
        (
            "1736950000000",
            TimestampInvalid,
            "body.webhookTimestamp must be a number of milliseconds, got '1736950000000'",
        ),
        (True, TimestampInvalid, "body.webhookTimestamp must be a number of milliseconds, got True"),
    ],
)
def test_linear_webhook_timestamp_must_be_a_number(stamp: object, error: type[Rejected], message: str) -> None:
    body = json.dumps({"type": "Issue", "action": "create", "webhookTimestamp": stamp}).encode()
    incoming = request(body, {"Linear-Signature": hmac_sha256("k", body).hex()})
    with pytest.raises(error) as caught:
        providers.KINDS["linear"].verify(make_source("linear", "k"), incoming, NOW)
    assert str(caught.value) == message


def test_linear_signed_body_that_is_not_json_is_payload_invalid() -> None:
    incoming = request(b"not json", {"Linear-Signature": hmac_sha256("k", b"not json").hex()})
    with pytest.raises(PayloadInvalid):
        providers.KINDS["linear"].verify(make_source("linear", "k"), incoming, NOW)


def test_linear_sign_refreshes_the_webhook_timestamp() -> None:
    body = (ROOT / "examples/linear/issue.create.json").read_bytes()
    signed = providers.KINDS["linear"].sign(make_source("linear", "k"), body, NOW + 0.5)
    assert signed.body is not None
    assert json.loads(signed.body)["webhookTimestamp"] == NOW * 1000 + 500
    assert signed.headers["Linear-Event"] == "Issue"


def test_paddle_tries_every_h1() -> None:
    case = CASES[7]
    good = case.sign(case.body, case.secret, NOW).headers["paddle-signature"]
    header = good.replace(";h1=", f";h1={'0' * 64};h1=")
    providers.KINDS["paddle"].verify(case.source(), request(case.body, {"Paddle-Signature": header}), NOW)


# -- Twilio -----------------------------------------------------------------------------------------------------


def test_twilio_json_body_is_signed_through_body_sha256() -> None:
    body = json.dumps({"event": "studio.flow", "data": {"step": 3}}).encode()
    validator = RequestValidator("tw-token")
    digest = validator.compute_hash(body.decode())
    url = f"{TWILIO_URL}?bodySHA256={digest}"
    incoming = request(body, {"X-Twilio-Signature": validator.compute_signature(url, {})}, {"bodySHA256": digest})
    source = make_source("twilio", "tw-token", public_url=TWILIO_URL)
    providers.KINDS["twilio"].verify(source, incoming, NOW)
    described = providers.KINDS["twilio"].describe(source, incoming)
    assert (described.type, described.payload["data"]) == ("twilio.webhook", {"step": 3})
    with pytest.raises(SignatureInvalid, match="^the bodySHA256 query parameter does not match the body$"):
        providers.KINDS["twilio"].verify(source, replace(incoming, body=body + b" "), NOW)


def test_twilio_signs_the_configured_url_never_the_host_header() -> None:
    case = CASES[8]
    incoming = case.sign(case.body, case.secret, NOW)
    spoofed = {**incoming.headers, "host": "evil.example", "x-forwarded-host": "evil.example"}
    providers.KINDS["twilio"].verify(case.source(), replace(incoming, headers=spoofed), NOW)
    elsewhere = make_source("twilio", case.secret, public_url="https://other.example.com/hooks/twilio")
    with pytest.raises(SignatureInvalid):
        providers.KINDS["twilio"].verify(elsewhere, incoming, NOW)


def test_twilio_url_with_the_default_port_also_matches() -> None:
    params = {"CallSid": "CA1", "CallStatus": "completed"}
    signed = RequestValidator("tok").compute_signature("https://relay.example.com:443/hooks/twilio", params)
    incoming = request(urlencode(params).encode(), {"X-Twilio-Signature": signed})
    providers.KINDS["twilio"].verify(make_source("twilio", "tok", public_url=TWILIO_URL), incoming, NOW)


def test_twilio_shared_key_signature_settings_select_sha256() -> None:
    params = {"MessageSid": "SM1", "MessageStatus": "sent"}
    signed = RequestValidator("shared").compute_signature(TWILIO_URL, params, "HMAC_SHA256")
    settings = "key=webhooks_sharedkey_1,algorithm=HMAC_SHA256"
    incoming = request(
        urlencode(params).encode(),
        {"X-Twilio-Signature": signed, "X-Twilio-Webhooks-Signature-Settings": settings},
    )
    source = make_source("twilio", "shared", public_url=TWILIO_URL)
    providers.KINDS["twilio"].verify(source, incoming, NOW)
    bad = replace(incoming, headers={**incoming.headers, "x-twilio-webhooks-signature-settings": "algorithm=MD5"})
    with pytest.raises(SignatureInvalid, match="names an unsupported algorithm 'MD5'$"):
        providers.KINDS["twilio"].verify(source, bad, NOW)


@pytest.mark.parametrize(
    ("fields", "type_field", "expected"),
    [
        ({"MessageStatus": "Delivered", "SmsStatus": "sent"}, None, "twilio.delivered"),
        ({"CallStatus": "ringing"}, None, "twilio.ringing"),
        ({"EventType": "onMessageAdded", "MessageStatus": "x"}, "EventType", "twilio.onmessageadded"),
        ({"MessageStatus": "sent"}, "EventType", "twilio.sent"),
        ({"Body": "hi"}, None, "twilio.webhook"),
    ],
)
def test_twilio_type(fields: dict[str, str], type_field: str | None, expected: str) -> None:
    options = {"public_url": TWILIO_URL} | ({"type_field": type_field} if type_field else {})
    source = make_source("twilio", "t", **options)
    body = urlencode(fields).encode()
    described = providers.KINDS["twilio"].describe(source, request(body, {}))
    assert (described.type, described.id) == (expected, hashlib.sha256(body).hexdigest())
    assert described.payload == fields


def test_twilio_sign_form_encodes_flat_json_and_keeps_nested_json() -> None:
    source = make_source("twilio", "tok", public_url=TWILIO_URL)
    flat = providers.KINDS["twilio"].sign(source, b'{"MessageStatus": "sent", "NumMedia": 0}', NOW)
    assert (flat.body, flat.content_type) == (b"MessageStatus=sent&NumMedia=0", "application/x-www-form-urlencoded")
    validator = RequestValidator("tok")
    assert validator.validate(
        TWILIO_URL, {"MessageStatus": "sent", "NumMedia": "0"}, flat.headers["X-Twilio-Signature"]
    )
    nested = b'{"data": {"a": 1}}'
    signed = providers.KINDS["twilio"].sign(source, nested, NOW)
    assert signed.body is None and signed.content_type == "application/json"
    url = f"{TWILIO_URL}?{urlencode(signed.query)}"
    assert validator.validate(url, nested.decode(), signed.headers["X-Twilio-Signature"])


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("relay.example.com/hooks/twilio", "public_url must be the absolute http(s) URL Twilio posts to"),
        ("ftp://relay.example.com/x", "public_url must be the absolute http(s) URL Twilio posts to"),
        ("https://relay.example.com:port/x", "public_url must be the absolute http(s) URL Twilio posts to"),
        ("https://relay.example.com/x?a=1", "public_url must not have a query or fragment"),
    ],
)
def test_twilio_check_options(url: str, message: str) -> None:
    assert twilio.check_options({"public_url": url})["public_url"].startswith(message)
    assert twilio.check_options({"public_url": TWILIO_URL, "type_field": "MessageStatus"}) == {}


# -- generic HMAC ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "errors"),
    [
        ({"header": "X-Sig"}, {}),
        ({"header": "X-Sig", "algorithm": "sha512", "encoding": "base64", "signed": "{body}"}, {}),
        ({"header": "X Sig"}, {"header": "header must be an HTTP header name like X-Signature, got 'X Sig'"}),
        (
            {"header": "X-Sig", "algorithm": "md5"},
            {"algorithm": "algorithm must be one of sha1, sha256, sha512, got 'md5'"},
        ),
        ({"header": "X-Sig", "encoding": "b32"}, {"encoding": "encoding must be hex or base64, got 'b32'"}),
        (
            {"header": "X-Sig", "signed": "{id}.{body}"},
            {"signed": "signed may use only {body} and {timestamp}, got '{id}.{body}'"},
        ),
        (
            {"header": "X-Sig", "signed": "{timestamp}"},
            {"signed": "signed must include {body}, or the body is not protected; got '{timestamp}'"},
        ),
        (
            {"header": "X-Sig", "signed": "{timestamp}:{body}"},
            {"signed": "signed uses {timestamp}, so set timestamp_header (the header that carries it)"},
        ),
    ],
)
def test_generic_hmac_check_options(options: dict[str, str], errors: dict[str, str]) -> None:
    assert generic_hmac.check_options(options) == errors


@pytest.mark.parametrize(
    ("options", "signer"),
    [
        ({"header": "X-Sig"}, lambda key, body, ts: hmac.new(key, body, hashlib.sha256).hexdigest()),
        (
            {"header": "X-Sig", "algorithm": "sha1", "encoding": "base64"},
            lambda key, body, ts: base64.b64encode(hmac.new(key, body, hashlib.sha1).digest()).decode(),
        ),
        (
            {"header": "X-Sig", "algorithm": "sha512", "timestamp_header": "X-Ts", "signed": "v1:{timestamp}:{body}"},
            lambda key, body, ts: hmac.new(key, f"v1:{ts}:".encode() + body, hashlib.sha512).hexdigest(),
        ),
    ],
)
def test_generic_hmac_variants(options: dict[str, str], signer: Callable[[bytes, bytes, str], str]) -> None:
    body = b'{"type": "thing.happened"}'
    stamp = str(NOW * 1000)  # milliseconds are recognised by their size
    headers = {"X-Sig": signer(b"k", body, stamp), "X-Ts": stamp}
    source = make_source("hmac", "k", **options)
    providers.KINDS["hmac"].verify(source, request(body, headers), NOW)
    signed = providers.KINDS["hmac"].sign(source, body, NOW)
    providers.KINDS["hmac"].verify(source, request(body, dict(signed.headers)), NOW)


def test_generic_hmac_type_and_id_templates() -> None:
    text = """
version: 1
sources:
  shop:
    kind: hmac
    secret: k
    header: X-Signature
    type: "{{ body.event }}"
    id: "{{ headers.x-delivery }}-{{ query.attempt }}"
routes: []
"""
    source = config.loads(text, "routes.yaml", {}).sources["shop"]
    incoming = request(b'{"event": "order.created"}', {"X-Delivery": "d-7"}, {"attempt": "2"})
    described = providers.KINDS["hmac"].describe(source, incoming)
    assert (described.type, described.id) == ("order.created", "d-7-2")
    with pytest.raises(PayloadInvalid) as caught:
        providers.KINDS["hmac"].describe(source, request(b'{"kind": "x"}', {"X-Delivery": "d"}, {"attempt": "1"}))
    assert str(caught.value).startswith("type: ")
    assert "event" in str(caught.value)
    none_source = replace(source, kind="none", secrets=())
    assert providers.KINDS["none"].describe(none_source, incoming).type == "order.created"


def test_generic_hmac_template_that_renders_a_non_string_is_payload_invalid() -> None:
    text = 'version: 1\nsources:\n  s: {kind: none, type: "{{ body.data }}"}\nroutes: []\n'
    source = config.loads(text, "routes.yaml", {}).sources["s"]
    with pytest.raises(PayloadInvalid) as caught:
        providers.KINDS["none"].describe(source, request(b'{"data": {"a": 1}}', {}))
    assert str(caught.value) == "the source's `type:` template gave a JSON object; expected a non-empty string"


# -- the example payloads ---------------------------------------------------------------------------------------

EXAMPLES = {
    "stripe/invoice.paid.json": ("stripe", "invoice.paid"),
    "github/pull_request.opened.json": ("github", "pull_request.opened"),
    "svix/user.created.json": ("standard-webhooks", "user.created"),
    "slack/app_mention.json": ("slack", "app_mention"),
    "shopify/orders.create.json": ("shopify", "orders/create"),
    "gitlab/merge_request.json": ("gitlab", "merge_request.open"),
    "linear/issue.create.json": ("linear", "Issue.create"),
    "paddle/transaction.completed.json": ("paddle", "transaction.completed"),
    "twilio/message.json": ("twilio", "twilio.received"),
}


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_examples_sign_verify_and_describe(example: str) -> None:
    """What `relay send SOURCE examples/...` does: the file name is the event hint."""
    kind, expected = EXAMPLES[example]
    path = ROOT / "examples" / example
    body = path.read_bytes()
    assert len(body) < 3000
    case = next(case for case in CASES if case.kind == kind)
    module = providers.KINDS[kind]
    signed = module.sign(case.source(), body, NOW, path.name.removesuffix(".json"))
    incoming = request(signed.body or body, dict(signed.headers), dict(signed.query))
    module.verify(case.source(), incoming, NOW)
    assert module.describe(case.source(), incoming).type == expected


def test_hmac_example_matches_the_shipped_routes_yaml() -> None:
    body = (ROOT / "examples/hmac/order.json").read_bytes()
    assert json.loads(body)["event"] == "order.created"  # routes.yaml's shop-hmac source: type "{{ body.event }}"
