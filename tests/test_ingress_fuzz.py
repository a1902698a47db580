"""Property: whatever headers and body reach the running app (real uvicorn), the answer is deliberate: no 500."""

from __future__ import annotations

from pathlib import Path

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay import config
from relay.app import create_app
from relay.store.sqlite import SQLiteStore
from tests.conftest import ROOT, serve_in_thread

HEADER_NAMES = [
    "stripe-signature", "x-hub-signature-256", "x-github-event", "x-github-delivery", "webhook-id",
    "webhook-timestamp", "webhook-signature", "svix-id", "svix-timestamp", "svix-signature", "x-slack-signature",
    "x-slack-request-timestamp", "x-shopify-hmac-sha256", "x-shopify-topic", "x-shopify-webhook-id",
    "x-gitlab-token", "x-gitlab-event", "x-gitlab-event-uuid", "idempotency-key", "linear-signature",
    "linear-delivery", "paddle-signature", "x-twilio-signature", "i-twilio-idempotency-token", "x-signature",
    "content-type",
]  # fmt: skip
PREFIXES = ["", "t=", "t=1,v1=", "v1,", "v0=", "sha256=", "ts=1;h1=", "whsec_", "=", ",", ";", " "]

header_value = st.builds(
    lambda prefix, rest: (prefix + rest).strip() or "x",
    st.sampled_from(PREFIXES),
    st.text(st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"), max_size=80),
)
headers = st.dictionaries(st.sampled_from(HEADER_NAMES), header_value, max_size=6)
bodies = st.one_of(
    st.binary(max_size=300),
    st.sampled_from([b"{}", b"[]", b"null", b'{"type": 5}', b'{"id": {}, "type": []}', b"a=b&c=%ff", b"\xff\xfe"]),
)
SOURCES = sorted(config.load(ROOT / "routes.yaml", env={}).sources) + ["unknown"]


def test_no_request_gets_a_500(tmp_path: Path) -> None:
    app = create_app(config.load(ROOT / "routes.yaml", env={}), store=SQLiteStore(tmp_path / "r.db"), deliver=False)
    with serve_in_thread(app) as url, httpx.Client(base_url=url) as client:

        @settings(max_examples=600, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
        @given(
            source=st.sampled_from(SOURCES),
            headers=headers,
            body=bodies,
            query=st.sampled_from(["", "?a=1", "?bodySHA256=00"]),
        )
        def post(source: str, headers: dict[str, str], body: bytes, query: str) -> None:
            raw = {name: value.encode("latin-1") for name, value in headers.items()}  # non-ASCII bytes, as sent
            response = client.post(f"/hooks/{source}{query}", content=body, headers=raw)
            assert response.status_code in {200, 400, 401, 404}, (response.status_code, response.text)
            assert response.headers["content-type"] == "application/json"
            assert "Traceback" not in response.text

        post()
