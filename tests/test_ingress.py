"""POST /hooks/{source} through the whole app: answers, durability, dedupe, rejections, limits."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe
from slack_sdk.signature import SignatureVerifier

from relay.app import create_app
from relay.errors import StoreUnavailable
from relay.store import EventFilter, Store
from relay.store.sqlite import SQLiteStore
from tests.conftest import load_config, make_app, running

pytestmark = pytest.mark.anyio

CONFIG = """
version: 1
defaults: {max_body: 64KiB, rejections_kept: 3}
sources:
  github: {kind: github, secret: gh-secret}
  stripe: {kind: stripe, secrets: ["whsec_old", "whsec_new"]}
  slack: {kind: slack, secret: slack-secret}
  gitlab: {kind: gitlab, secret: gl-token}
routes:
  - id: pr
    source: github
    events: [pull_request.opened]
    targets:
      - function_id: func_review
        variables: {number: "{{ body.number }}"}
  - id: paid
    source: stripe
    events: [invoice.paid]
    targets:
      - {function_id: func_billing, variables: {id: "{{ body.data.object.id }}"}}
      - {function_id: func_audit, variables: {email: "{{ body.data.object.customer_email }}"}}
"""


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = make_app(load_config(tmp_path, CONFIG), tmp_path / "relay.db", deliver=False)
    async with running(app) as client:
        yield client


def store_of(client: httpx.AsyncClient) -> Store:
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    app: Any = transport.app
    store: Store = app.state.ctx.store
    return store


def github(
    body: bytes, event: str = "pull_request", delivery: str = "d-1", secret: str = "gh-secret"
) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "X-GitHub-Event": event, "X-GitHub-Delivery": delivery}


def stripe_headers(body: bytes, secret: str = "whsec_new", at: int | None = None) -> dict[str, str]:
    at = int(time.time()) if at is None else at
    signature = stripe.WebhookSignature._compute_signature(f"{at}.{body.decode()}", secret)
    return {"Stripe-Signature": f"t={at},v1={signature}", "Content-Type": "application/json"}


PR = json.dumps({"action": "opened", "number": 7, "pull_request": {"user": {"login": "ana"}}}).encode()
INVOICE = json.dumps(
    {"id": "evt_1", "type": "invoice.paid", "data": {"object": {"id": "in_1", "customer_email": "a@b.c"}}}
).encode()


async def test_accepted_event_is_stored_with_its_deliveries(client: httpx.AsyncClient) -> None:
    response = await client.post("/hooks/stripe", content=INVOICE, headers=stripe_headers(INVOICE))
    assert response.status_code == 200
    answer = response.json()
    assert answer["event_id"] == "evt_1" and answer["duplicate"] is False and answer["deliveries"] == 2
    event = await store_of(client).event(answer["id"])
    assert (event.source, event.type, event.body) == ("stripe", "invoice.paid", INVOICE)
    assert sorted((d.function_id, d.variables) for d in event.deliveries) == [
        ("func_audit", {"email": "a@b.c"}),
        ("func_billing", {"id": "in_1"}),
    ]


async def test_rotated_secret_is_accepted(client: httpx.AsyncClient) -> None:
    response = await client.post("/hooks/stripe", content=INVOICE, headers=stripe_headers(INVOICE, "whsec_old"))
    assert response.status_code == 200


async def test_duplicate_is_answered_without_new_deliveries(client: httpx.AsyncClient) -> None:
    first = await client.post("/hooks/github", content=PR, headers=github(PR))
    again = await client.post("/hooks/github", content=PR, headers=github(PR))
    assert first.json()["deliveries"] == 1
    assert again.status_code == 200
    assert again.json() == {"id": first.json()["id"], "event_id": "d-1", "duplicate": True, "deliveries": 0}
    assert len(await store_of(client).events(EventFilter())) == 1


async def test_unmatched_event_is_stored_unrouted(client: httpx.AsyncClient) -> None:
    body = b'{"zen": "Keep it logically awesome."}'
    response = await client.post("/hooks/github", content=body, headers=github(body, event="ping"))
    assert response.status_code == 200 and response.json()["deliveries"] == 0
    event = await store_of(client).event(response.json()["id"])
    assert (event.type, event.status) == ("ping", "unrouted")


@pytest.mark.parametrize(
    ("headers", "status", "reason"),
    [
        ({}, 401, "signature_missing"),
        ({"Stripe-Signature": "garbage"}, 401, "signature_invalid"),
        ({"Stripe-Signature": "t=abc,v1=00"}, 401, "signature_invalid"),
        ({"Stripe-Signature": "t=1,v1=zz"}, 401, "signature_invalid"),
    ],
)
async def test_bad_signatures_are_refused(
    client: httpx.AsyncClient, headers: dict[str, str], status: int, reason: str
) -> None:
    response = await client.post("/hooks/stripe", content=INVOICE, headers=headers)
    assert response.status_code == status
    assert response.json()["error"] == reason
    assert await store_of(client).events(EventFilter()) == []


async def test_wrong_secret_is_401_and_leaks_nothing(client: httpx.AsyncClient) -> None:
    headers = stripe_headers(INVOICE, "whsec_wrong")
    response = await client.post("/hooks/stripe", content=INVOICE, headers=headers)
    assert response.status_code == 401
    expected = stripe.WebhookSignature._compute_signature(
        f"{headers['Stripe-Signature'].split(',')[0][2:]}.{INVOICE.decode()}", "whsec_new"
    )
    for leaked in ("whsec_new", "whsec_old", expected, "Traceback"):
        assert leaked not in response.text


async def test_stale_and_future_timestamps_are_400(client: httpx.AsyncClient) -> None:
    for skew in (-301, 301):
        headers = stripe_headers(INVOICE, at=int(time.time()) + skew)
        response = await client.post("/hooks/stripe", content=INVOICE, headers=headers)
        assert response.status_code == 400
        assert response.json()["error"] == "timestamp_invalid"


async def test_one_changed_byte_is_refused(client: httpx.AsyncClient) -> None:
    headers = stripe_headers(INVOICE)
    response = await client.post("/hooks/stripe", content=INVOICE.replace(b"in_1", b"in_2"), headers=headers)
    assert response.status_code == 401


async def test_rejections_are_counted_and_last_ones_kept(client: httpx.AsyncClient) -> None:
    for _ in range(5):
        await client.post("/hooks/stripe", content=INVOICE, headers={"Stripe-Signature": "t=1,v1=00"})
    await client.post("/hooks/github", content=PR, headers=github(PR))  # a commit after the queued rejections
    store = store_of(client)
    assert await store.rejection_counts() == {("stripe", "signature_invalid"): 5}
    kept = await store.rejections("stripe")
    assert len(kept) == 3
    assert kept[0].body_head == INVOICE and kept[0].headers["stripe-signature"] == "t=1,v1=00"


async def test_unknown_source_is_404(client: httpx.AsyncClient) -> None:
    response = await client.post("/hooks/nope", content=b"{}")
    assert response.status_code == 404
    assert response.json() == {"error": "unknown_source", "message": "no source named 'nope' is configured"}


async def test_wrong_method_is_405(client: httpx.AsyncClient) -> None:
    response = await client.get("/hooks/github")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["error"] == "method_not_allowed"


async def test_body_over_limit_is_413_by_content_length(client: httpx.AsyncClient) -> None:
    body = b"x" * (64 * 1024 + 1)
    response = await client.post("/hooks/github", content=body, headers=github(body))
    assert response.status_code == 413
    assert response.json()["message"] == "body of 65537 bytes is over this source's limit of 65536 bytes"


async def test_streamed_body_over_limit_is_refused_while_reading(client: httpx.AsyncClient) -> None:
    sent = 0

    async def fifty_megabytes() -> AsyncIterator[bytes]:
        nonlocal sent
        chunk = b"x" * 65536
        for _ in range(800):
            sent += len(chunk)
            yield chunk

    response = await client.post("/hooks/github", content=fifty_megabytes(), headers={"X-GitHub-Event": "push"})
    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"


async def test_bad_content_length_is_400(client: httpx.AsyncClient) -> None:
    # ASGI servers refuse a non-numeric Content-Length themselves; in-process we can still send one.
    response = await client.post("/hooks/github", content=PR, headers={**github(PR), "Content-Length": "12x"})
    assert response.status_code == 400


async def test_non_json_body_with_valid_signature_is_400(client: httpx.AsyncClient) -> None:
    body = b"\xff\xfe not json"
    response = await client.post("/hooks/github", content=body, headers=github(body))
    assert response.status_code == 400
    assert response.json()["error"] == "payload_invalid"


async def test_slack_url_verification_is_answered_and_not_stored(client: httpx.AsyncClient) -> None:
    body = json.dumps({"type": "url_verification", "challenge": "3eZbrw1aBm", "token": "t"}).encode()
    at = str(int(time.time()))
    signature = SignatureVerifier("slack-secret").generate_signature(timestamp=at, body=body)
    headers = {
        "X-Slack-Signature": signature,
        "X-Slack-Request-Timestamp": at,
        "Content-Type": "application/json",
    }
    response = await client.post("/hooks/slack", content=body, headers=headers)
    assert response.status_code == 200
    assert response.json() == {"challenge": "3eZbrw1aBm"}
    assert await store_of(client).events(EventFilter()) == []


async def test_credential_headers_are_not_stored(client: httpx.AsyncClient) -> None:
    body = json.dumps({"object_kind": "push"}).encode()
    headers = {
        "X-Gitlab-Token": "gl-token",
        "X-Gitlab-Event": "Push Hook",
        "X-Gitlab-Event-UUID": "u-1",
        "Authorization": "Bearer abc",
    }
    response = await client.post("/hooks/gitlab", content=body, headers=headers)
    assert response.status_code == 200
    event = await store_of(client).event(response.json()["id"])
    assert event.headers["x-gitlab-token"] == "[redacted]"
    assert event.headers["authorization"] == "[redacted]"
    assert "gl-token" not in json.dumps(dict(event.headers))


async def test_store_that_cannot_commit_answers_503(tmp_path: Path) -> None:
    class FullDisk(SQLiteStore):
        # A disk that refuses writes cannot be arranged portably in a test; this is the one fault we fake.
        async def ingest(self, event: Any, deliveries: Any) -> Any:
            raise StoreUnavailable("disk I/O error")

    app = create_app(load_config(tmp_path, CONFIG), store=FullDisk(tmp_path / "x.db"), deliver=False)
    async with running(app) as client:
        response = await client.post("/hooks/github", content=PR, headers=github(PR))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["error"] == "store_unavailable"


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json() == {"status": "ready"}
