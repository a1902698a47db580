"""Known-answer vectors published by the providers, each checked against the official library where there is one,
then against relay's verifier; and relay's `sign()` checked by the official verifiers.

Sources of the vectors:
- GitHub: https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries#testing-the-webhook-payload-validation
- Standard Webhooks: the reference libraries' test suites (standard-webhooks/standard-webhooks, e.g.
  libraries/python/standardwebhooks/tests); the same vector is in Svix's docs and libraries.
- Slack: https://api.slack.com/authentication/verifying-requests-from-slack (the worked example).
- Twilio: https://www.twilio.com/docs/usage/webhooks/webhooks-security (the worked example).
Every vector reproduced with the installed official library (stripe 16, standardwebhooks 1.3, slack_sdk 3.48,
twilio 9.13); none had to be corrected.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from types import MappingProxyType
from urllib.parse import urlencode

import pytest
import stripe
from slack_sdk.signature import Clock, SignatureVerifier
from standardwebhooks.webhooks import Webhook
from twilio.request_validator import RequestValidator

from relay import providers
from relay.config import Secret, Source
from relay.errors import SignatureInvalid
from relay.providers import Incoming


def make_source(kind: str, secret: str, **options: str) -> Source:
    return Source(
        name=kind,
        kind=kind,
        secrets=(Secret(secret),),
        tolerance=300,
        max_body=5 * 2**20,
        dedupe_window=604800,
        options=MappingProxyType(options),
    )


def request(body: bytes, headers: dict[str, str], query: dict[str, str] | None = None) -> Incoming:
    return Incoming(body=body, headers={k.lower(): v for k, v in headers.items()}, query=query or {})


# -- GitHub -----------------------------------------------------------------------------------------------------

GITHUB_SECRET = "It's a Secret to Everybody"
GITHUB_BODY = b"Hello, World!"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_github_docs_vector() -> None:
    # GitHub publishes no Python library; the docs give the digest, which plain hmac reproduces.
    assert "sha256=" + hmac.new(GITHUB_SECRET.encode(), GITHUB_BODY, hashlib.sha256).hexdigest() == GITHUB_SIGNATURE
    source = make_source("github", GITHUB_SECRET)
    providers.KINDS["github"].verify(source, request(GITHUB_BODY, {"X-Hub-Signature-256": GITHUB_SIGNATURE}), 0)
    assert providers.KINDS["github"].sign(source, GITHUB_BODY, 0).headers["X-Hub-Signature-256"] == GITHUB_SIGNATURE
    off_by_one = GITHUB_SIGNATURE[:-1] + "f"
    with pytest.raises(SignatureInvalid):
        providers.KINDS["github"].verify(source, request(GITHUB_BODY, {"X-Hub-Signature-256": off_by_one}), 0)


# -- Standard Webhooks ------------------------------------------------------------------------------------------

SW_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SW_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SW_TIMESTAMP = 1614265330
SW_BODY = b'{"test": 2432232314}'
SW_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_standard_webhooks_spec_vector() -> None:
    signed = Webhook(SW_SECRET).sign(SW_ID, datetime.fromtimestamp(SW_TIMESTAMP, tz=UTC), SW_BODY)
    assert signed == SW_SIGNATURE
    for prefix in ("webhook", "svix"):
        headers = {f"{prefix}-id": SW_ID, f"{prefix}-timestamp": str(SW_TIMESTAMP), f"{prefix}-signature": SW_SIGNATURE}
        providers.KINDS["standard-webhooks"].verify(
            make_source("standard-webhooks", SW_SECRET), request(SW_BODY, headers), SW_TIMESTAMP
        )
    tampered = {"webhook-id": SW_ID, "webhook-timestamp": str(SW_TIMESTAMP + 1), "webhook-signature": SW_SIGNATURE}
    with pytest.raises(SignatureInvalid):
        providers.KINDS["standard-webhooks"].verify(
            make_source("standard-webhooks", SW_SECRET), request(SW_BODY, tampered), SW_TIMESTAMP
        )


def test_standard_webhooks_sign_is_accepted_by_the_reference_library() -> None:
    now = datetime.now(tz=UTC).timestamp()  # the reference library reads the wall clock itself
    signed = providers.KINDS["standard-webhooks"].sign(make_source("standard-webhooks", SW_SECRET), SW_BODY, now)
    assert Webhook(SW_SECRET).verify(SW_BODY, dict(signed.headers)) == {"test": 2432232314}


# -- Slack ------------------------------------------------------------------------------------------------------

SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_TIMESTAMP = 1531420618
SLACK_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
    b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
    b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
SLACK_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


class FixedClock(Clock):
    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


def test_slack_docs_vector() -> None:
    verifier = SignatureVerifier(SLACK_SECRET)
    assert verifier.generate_signature(timestamp=str(SLACK_TIMESTAMP), body=SLACK_BODY) == SLACK_SIGNATURE
    incoming = request(
        SLACK_BODY, {"X-Slack-Signature": SLACK_SIGNATURE, "X-Slack-Request-Timestamp": str(SLACK_TIMESTAMP)}
    )
    source = make_source("slack", SLACK_SECRET)
    providers.KINDS["slack"].verify(source, incoming, SLACK_TIMESTAMP + 10)
    described = providers.KINDS["slack"].describe(source, incoming)
    assert described.type == "slash_command.webhook-collect"
    assert described.payload["response_url"].startswith("https://hooks.slack.com/commands/")


def test_slack_sign_is_accepted_by_slack_sdk() -> None:
    source = make_source("slack", SLACK_SECRET)
    signed = providers.KINDS["slack"].sign(source, SLACK_BODY, SLACK_TIMESTAMP)
    verifier = SignatureVerifier(SLACK_SECRET, clock=FixedClock(SLACK_TIMESTAMP + 1))
    assert signed.headers["X-Slack-Signature"] == SLACK_SIGNATURE
    assert verifier.is_valid_request(SLACK_BODY, dict(signed.headers))


# -- Twilio -----------------------------------------------------------------------------------------------------

TWILIO_TOKEN = "12345"
TWILIO_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
TWILIO_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+12349013030",
    "Digits": "1234",
    "From": "+12349013030",
    "To": "+18005551212",
}
TWILIO_SIGNATURE = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_twilio_docs_vector() -> None:
    assert RequestValidator(TWILIO_TOKEN).compute_signature(TWILIO_URL, TWILIO_PARAMS) == TWILIO_SIGNATURE
    # The configured public URL has no query; the request's own query (?foo=1&bar=2) is appended for signing.
    source = make_source("twilio", TWILIO_TOKEN, public_url="https://mycompany.com/myapp.php")
    incoming = request(
        urlencode(TWILIO_PARAMS).encode(), {"X-Twilio-Signature": TWILIO_SIGNATURE}, {"foo": "1", "bar": "2"}
    )
    providers.KINDS["twilio"].verify(source, incoming, 0)
    with pytest.raises(SignatureInvalid):
        providers.KINDS["twilio"].verify(source, Incoming(incoming.body, incoming.headers, {"foo": "1"}), 0)


def test_twilio_sign_is_accepted_by_the_request_validator() -> None:
    source = make_source("twilio", TWILIO_TOKEN, public_url="https://mycompany.com/myapp.php")
    signed = providers.KINDS["twilio"].sign(source, urlencode(TWILIO_PARAMS).encode(), 0)
    assert RequestValidator(TWILIO_TOKEN).validate(
        "https://mycompany.com/myapp.php", TWILIO_PARAMS, signed.headers["X-Twilio-Signature"]
    )


# -- Stripe (no published vector: cross-checked with the library both ways) ------------------------------------


def test_stripe_library_and_relay_agree() -> None:
    secret = "whsec_test_secret"
    body = b'{"id": "evt_1", "type": "invoice.paid"}'
    now = 1_700_000_000
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret, timestamp=now)
    source = make_source("stripe", secret)
    assert providers.KINDS["stripe"].sign(source, body, now).headers["Stripe-Signature"] == header
    providers.KINDS["stripe"].verify(source, request(body, {"Stripe-Signature": header}), now)
    # verify_header's tolerance check reads the wall clock; without a tolerance it checks the signature only.
    assert stripe.WebhookSignature.verify_header(body, header, secret)
