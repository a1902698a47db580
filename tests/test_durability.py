"""kill -9 in the middle of a load loses nothing that was acknowledged (real uvicorn, real SQLite file)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_socket

pytestmark = pytest.mark.anyio

CONFIG = """
version: 1
sources:
  github: {kind: github, secret: s3cret}
routes:
  - id: pushes
    source: github
    events: [push]
    targets: [{function_id: func_echo, variables: {ref: "{{ body.ref }}"}}]
"""


def start(tmp_path: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "NOTTE_API_URL": "http://127.0.0.1:9"}  # deliveries fail fast; not under test here
    command = [sys.executable, "-m", "relay", "serve", "--config", str(tmp_path / "routes.yaml")]
    command += ["--db", str(tmp_path / "relay.db"), "--port", str(port), "--log-level", "warning"]
    return subprocess.Popen(command, env=env, cwd=tmp_path)


def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "relay serve exited"
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError("relay serve did not become ready")


@pytest.fixture
def port() -> Iterator[int]:
    sock = free_socket()
    number: int = sock.getsockname()[1]
    sock.close()
    yield number


async def test_sigkill_after_last_ack_loses_nothing(tmp_path: Path, port: int) -> None:
    (tmp_path / "routes.yaml").write_text(CONFIG)
    url = f"http://127.0.0.1:{port}"
    process = start(tmp_path, port)
    try:
        wait_ready(url, process)
        acknowledged: list[str] = []

        async def send(client: httpx.AsyncClient, n: int) -> None:
            body = json.dumps({"ref": f"refs/heads/b{n}", "pad": "x" * 1500}).encode()
            digest = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
            headers = {
                "X-Hub-Signature-256": f"sha256={digest}",
                "X-GitHub-Event": "push",
                "X-GitHub-Delivery": f"d{n}",
            }
            response = await client.post(f"{url}/hooks/github", content=body, headers=headers)
            if response.status_code == 200:
                acknowledged.append(response.json()["id"])

        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:
            await asyncio.gather(*(send(client, n) for n in range(500)))
        process.send_signal(signal.SIGKILL)  # right after the last 2xx
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert len(acknowledged) == 500

    process = start(tmp_path, port)
    try:
        wait_ready(url, process)  # restarted on the same file
        listed = subprocess.run(
            [sys.executable, "-m", "relay", "events", "--json", "--db", str(tmp_path / "relay.db")],
            capture_output=True,
            check=True,
        )
    finally:
        process.terminate()
        process.wait(timeout=30)
    events = [json.loads(line) for line in listed.stdout.splitlines()]
    assert {event["id"] for event in events} >= set(acknowledged)
    assert all(event["type"] == "push" and len(event["deliveries"]) == 1 for event in events)
