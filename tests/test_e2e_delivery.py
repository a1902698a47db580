"""At least once, for real: `relay serve` is killed with SIGKILL while runs are in flight on `relay functions`, and
after a restart every event is delivered."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import httpx

from relay import config, providers
from tests.processes import RELAY, answers, clean_env, events, free_port, relay, started, wait_for

EVENTS = 20
KEY = "sk_e2e_runtime_key"
SLOW = '''\
"""Runs until the test lets it finish (a file appears), so a relay killed meanwhile has it in flight."""

import pathlib
import time


def run(n: int) -> dict[str, int]:
    release, deadline = pathlib.Path(__file__).with_name("release"), time.monotonic() + 60
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return {"n": n}
'''


def rules(functions_url: str) -> str:
    return (
        "version: 1\n"
        f'notte: {{api_url: "{functions_url}", api_key: "${{NOTTE_API_KEY}}", max_concurrent_runs: 10}}\n'
        "defaults: {retry: {max_attempts: 12, base: 0.2, cap: 1}}\n"
        "sources: {stripe: {kind: stripe, secret: whsec_e2e_secret}}\n"
        "routes:\n"
        "  - id: slow\n"
        "    source: stripe\n"
        "    events: [test.slow]\n"
        '    targets: [{function_id: func_slow, variables: {n: "{{ body.data.n }}"}}]\n'
    )


def statuses(found: list[dict[str, Any]]) -> list[str]:
    return [delivery["status"] for event in found for delivery in event["deliveries"]]


def test_runs_in_flight_when_relay_is_killed_are_delivered_after_a_restart(tmp_path: Path) -> None:
    functions = tmp_path / "functions"
    functions.mkdir()
    (functions / "func_slow.py").write_text(SLOW)
    port, functions_port = free_port(), free_port()
    functions_url, relay_url = f"http://127.0.0.1:{functions_port}", f"http://127.0.0.1:{port}"
    routes = tmp_path / "routes.yaml"
    routes.write_text(rules(functions_url))
    db = tmp_path / "relay.db"
    env = clean_env(NOTTE_API_KEY=KEY)
    serve = [*RELAY, "serve", "--config", routes, "--db", db, "--port", str(port), "--log-level", "warning"]
    runtime = [*RELAY, "functions", "--dir", functions, "--port", str(functions_port), "--max-concurrent", "20"]

    with started(runtime, log=tmp_path / "functions.log", env=env, cwd=tmp_path):
        wait_for(lambda: answers(f"{functions_url}/health"), timeout=30, what="relay functions to answer")
        with started(serve, log=tmp_path / "serve-1.log", env=env, cwd=tmp_path) as first:
            wait_for(lambda: answers(f"{relay_url}/readyz"), timeout=30, what="relay serve to answer")
            send_events(routes, relay_url)
            wait_for(
                lambda: statuses(events(db, env, tmp_path)).count("in_flight") >= 5,
                timeout=30,
                what="runs in flight",
            )
            first.signal(signal.SIGKILL)
            assert first.wait(timeout=10) == -signal.SIGKILL

        interrupted = [
            event["id"] for event in events(db, env, tmp_path) if event["deliveries"][0]["status"] == "in_flight"
        ]
        assert interrupted, "no run was in flight when relay was killed"
        (functions / "release").touch()  # from now on every run finishes at once

        with started(serve, log=tmp_path / "serve-2.log", env=env, cwd=tmp_path):
            wait_for(
                lambda: statuses(events(db, env, tmp_path)) == ["succeeded"] * EVENTS,
                timeout=60,
                what=f"all {EVENTS} deliveries to succeed",
                interval=0.2,
            )

    found = events(db, env, tmp_path)
    assert sorted(event["event_id"] for event in found) == sorted(f"evt_e2e_{n:02d}" for n in range(EVENTS))
    assert all(event["deliveries"][0]["function_run_id"] for event in found)
    for event_id in interrupted:
        shown = relay("show", event_id, "--json", "--db", str(db), env=env, cwd=tmp_path)
        history = json.loads(shown.stdout)["deliveries"][0]["history"]
        assert history[-1]["function_status"] == "closed"
        assert history[-1]["result"] is not None


def send_events(routes: Path, relay_url: str) -> None:
    """POST the events signed as Stripe would sign them; each is stored (200) with one delivery planned."""
    loaded = config.load(routes, env={"NOTTE_API_KEY": KEY})
    source = loaded.sources["stripe"]
    provider = providers.get(source.kind)
    assert provider is not None
    with httpx.Client(base_url=relay_url, timeout=30) as client:
        for n in range(EVENTS):
            body = f'{{"id": "evt_e2e_{n:02d}", "type": "test.slow", "data": {{"n": {n}}}}}'.encode()
            signed = provider.sign(source, body, time.time())
            answer = client.post("/hooks/stripe", content=body, headers=dict(signed.headers))
            assert answer.status_code == 200, answer.text
            assert answer.json()["deliveries"] == 1
