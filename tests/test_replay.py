"""The operator's recovery tools: relay replay, relay retry and relay purge, on real SQLite files."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from relay.cli import main
from relay.delivery import counted_attempts
from relay.store import Attempt, DeliveryStatus, EventFilter, Outcome, RetryFilter
from relay.store.sqlite import SQLiteStore
from tests.conftest import load_config, make_app, running

pytestmark = pytest.mark.anyio

BROKEN = """
version: 1
sources:
  github: {kind: github, secret: s3cret}
routes:
  - id: pushes
    source: github
    events: [push]
    targets:
      - {function_id: func_build, variables: {ref: "{{ body.ref }}", sha: "{{ body.head_sha }}"}}
"""
FIXED = BROKEN.replace("body.head_sha", "body.after")
PUSH = json.dumps({"ref": "refs/heads/main", "after": "abc123"}).encode()


async def run(*args: str) -> tuple[int, str, str]:
    """The CLI runs its own event loop, so it runs in a thread here, as it would in its own process."""
    result = await asyncio.to_thread(CliRunner().invoke, main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


async def ingest_push(tmp_path: Path, config_text: str, delivery: str = "d-1") -> str:
    app = make_app(load_config(tmp_path, config_text), tmp_path / "relay.db", deliver=False)
    digest = hmac.new(b"s3cret", PUSH, hashlib.sha256).hexdigest()
    headers = {"X-Hub-Signature-256": f"sha256={digest}", "X-GitHub-Event": "push", "X-GitHub-Delivery": delivery}
    async with running(app) as client:
        response = await client.post("/hooks/github", content=PUSH, headers=headers)
    assert response.status_code == 200
    event_id: str = response.json()["id"]
    return event_id


async def test_replay_after_fixing_a_rule_plans_a_working_delivery(tmp_path: Path) -> None:
    event_id = await ingest_push(tmp_path, BROKEN)
    store = SQLiteStore(tmp_path / "relay.db")
    await store.open()
    (failed,) = (await store.event(event_id)).deliveries
    await store.close()
    assert failed.status == DeliveryStatus.FAILED
    assert failed.last_error == (
        "routes[0](pushes).targets[0](func_build).variables.sha: 'head_sha' not found under body "
        "(keys: ['after', 'ref'])"
    )

    code, _, err = await run("retry", failed.id, "--db", str(tmp_path / "relay.db"))
    assert (code, err.strip()) == (0, "0 deliveries queued")  # never rendered: retry cannot help, replay can

    (tmp_path / "routes.yaml").write_text(FIXED)
    code, out, _ = await run(
        "replay", event_id, "--config", str(tmp_path / "routes.yaml"), "--db", str(tmp_path / "relay.db")
    )
    assert code == 0
    assert out.startswith(f"{event_id}: 1 deliveries planned: dlv_") and out.rstrip().endswith("(func_build)")

    await store.open()
    try:
        deliveries = (await store.event(event_id)).deliveries
        due = await store.claim("w", limit=10, now=time.time() + 1, lease=30, max_in_flight=10)
    finally:
        await store.close()
    assert sorted(d.status for d in deliveries) == ["failed", "pending"]
    assert [d.variables for d in due] == [{"ref": "refs/heads/main", "sha": "abc123"}]


async def test_replay_of_an_unknown_event_or_source(tmp_path: Path) -> None:
    event_id = await ingest_push(tmp_path, FIXED)
    code, _, err = await run(
        "replay", "evt_nope", "--config", str(tmp_path / "routes.yaml"), "--db", str(tmp_path / "relay.db")
    )
    assert code == 1 and "no event with id 'evt_nope'" in err
    (tmp_path / "other.yaml").write_text("version: 1\nsources:\n  gitlab: {kind: gitlab, secret: t}\nroutes: []\n")
    code, _, err = await run(
        "replay", event_id, "--config", str(tmp_path / "other.yaml"), "--db", str(tmp_path / "relay.db")
    )
    assert code == 1
    assert f"{event_id} came from source 'github', which {tmp_path / 'other.yaml'} no longer defines" in err


async def test_retry_gives_a_dead_delivery_a_fresh_budget(tmp_path: Path) -> None:
    event_id = await ingest_push(tmp_path, FIXED)
    db = tmp_path / "relay.db"
    store = SQLiteStore(db)
    await store.open()
    try:
        now = time.time()
        for number in (1, 2):
            (claimed,) = await store.claim("w", limit=1, now=now + number, lease=30, max_in_flight=10)
            status = DeliveryStatus.RETRYING if number == 1 else DeliveryStatus.DEAD
            attempt = Attempt(number, now + number, 5.0, status.value, http_status=500, error="HTTP 500")
            await store.finish(claimed, "w", attempt, Outcome(status, now + 2 if number == 1 else None, "HTTP 500"))
        (dead,) = (await store.event(event_id)).deliveries
        assert (dead.status, counted_attempts(dead)) == ("dead", 2)
    finally:
        await store.close()

    code, out, err = await run("retry", "--status", "dead", "--dry-run", "--db", str(db))
    assert (code, out.split(), err.strip()) == (0, [dead.id], "1 deliveries would be retried")
    code, out, err = await run("retry", "--function", "func_build", "--db", str(db))
    assert (code, out.split(), err.strip()) == (0, [dead.id], "1 deliveries queued")

    await store.open()
    try:
        again = await store.delivery(dead.id)
        assert again.status == DeliveryStatus.PENDING
        assert (again.attempts, counted_attempts(again), len(again.history)) == (2, 0, 2)
        assert await store.retry(RetryFilter(), time.time()) == []  # nothing failed any more
    finally:
        await store.close()


async def test_purge_deletes_old_events_and_frees_their_provider_ids(tmp_path: Path) -> None:
    await ingest_push(tmp_path, FIXED)
    db = tmp_path / "relay.db"
    code, out, _ = await run("purge", "--older-than", "1h", "--db", str(db))
    assert (code, out.strip()) == (0, "deleted 0 events and 0 rejections older than 1h")
    store = SQLiteStore(db)
    await store.open()
    try:
        assert await store.purge(time.time() + 1) == (1, 0)
        assert await store.events(EventFilter()) == []
    finally:
        await store.close()
    again = await ingest_push(tmp_path, FIXED)  # the same X-GitHub-Delivery is a new event now
    assert again
    code, _, err = await run("purge", "--older-than", "soon", "--db", str(db))
    assert code == 2 and "'soon' is not a duration like 30d or 12h" in err
