"""Every payload in npm's @octokit/webhooks-examples is verified, typed and stored (scripts/test installs it)."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest

from relay.store import EventFilter
from tests.conftest import ROOT, load_config, make_app, running

pytestmark = pytest.mark.anyio

INDEX = ROOT / "tests/.node/node_modules/@octokit/webhooks-examples/api.github.com/index.json"
CONFIG = """
version: 1
sources:
  github: {kind: github, secret: "It's a Secret to Everybody"}
routes: []
"""


def examples() -> list[tuple[str, dict[str, Any]]]:
    assert INDEX.exists(), f"{INDEX} is missing: ./scripts/test installs it with npm"
    return [(entry["name"], example) for entry in json.loads(INDEX.read_text()) for example in entry["examples"]]


def expected_type(name: str, payload: dict[str, Any]) -> str:
    action = payload.get("action")
    return f"{name}.{action}" if isinstance(action, str) and action else name


async def test_every_octokit_example_is_typed_and_stored(tmp_path: Path) -> None:
    cases = examples()
    assert len(cases) > 300
    app = make_app(load_config(tmp_path, CONFIG), tmp_path / "relay.db", deliver=False)
    async with running(app) as client:
        for number, (name, payload) in enumerate(cases):
            body = json.dumps(payload).encode()
            digest = hmac.new(b"It's a Secret to Everybody", body, hashlib.sha256).hexdigest()
            headers = {
                "X-Hub-Signature-256": f"sha256={digest}",
                "X-GitHub-Event": name,
                "X-GitHub-Delivery": f"delivery-{number}",
                "Content-Type": "application/json",
            }
            response = await client.post("/hooks/github", content=body, headers=headers)
            assert response.status_code == 200, (name, response.text)
        stored = await app.state.ctx.store.events(EventFilter())
    by_delivery = {event.event_id: event for event in stored}
    assert len(by_delivery) == len(cases)
    for number, (name, payload) in enumerate(cases):
        event = by_delivery[f"delivery-{number}"]
        assert event.type == expected_type(name, payload)
        assert json.loads(event.body) == payload
    assert {"pull_request.opened", "push", "ping", "issues.opened"} <= {event.type for event in stored}
