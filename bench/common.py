"""What the benchmarks in bench/ share: the signed GitHub payload, wrk with unique delivery ids, and processes.

The scripts import it by name (`from common import ...`): Python puts a script's own folder first on sys.path.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SECRET = "bench-secret"

SOURCE_AND_ROUTE = """
sources:
  github: {kind: github, secret: bench-secret}
routes:
  - id: pushes
    source: github
    events: [push]
    targets:
      - function_id: func_build
        variables: {ref: "{{ body.ref }}", after: "{{ body.after }}", repo: "{{ body.repository.full_name }}"}
"""

# Each wrk thread and connection gets its own prefix, so every request has a unique X-GitHub-Delivery and none is
# answered as a duplicate. GitHub does not sign that header, so the body and the signature stay fixed.
WRK_SCRIPT = """
local counter = 0
local prefix = ""
function setup(thread)
  thread:set("prefix", tostring(math.random(1, 1e9)))
end
function init(args)
  prefix = prefix .. "-" .. tostring(math.random(1, 1e9))
end
request = function()
  counter = counter + 1
  wrk.headers["X-GitHub-Delivery"] = prefix .. "-" .. counter
  return wrk.format("POST", nil, nil, nil)
end
"""

# The fast local target of bench/deliver and bench/client: a raw ASGI app under uvicorn (uvloop, httptools) that
# answers every runs/start at once with a closed run. Run as `python sink.py PORT`.
SINK = """
import sys
import uvicorn

RUN = b'{"function_id":"func_build","function_run_id":"run_1","session_id":"ses_1","result":"ok","status":"closed"}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(RUN)).encode())]


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": RUN})


uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools", lifespan="off",
            log_level="warning", access_log=False)
"""


def config(notte: str = "") -> str:
    """routes.yaml for the benchmarks: one GitHub source, one route planning one delivery per `push`."""
    return f"version: 1\n{notte}{SOURCE_AND_ROUTE}"


def payload() -> bytes:
    """A GitHub `push` body padded to 1,600 bytes."""
    body = {
        "ref": "refs/heads/main",
        "before": "0" * 40,
        "after": "a" * 40,
        "repository": {"id": 1, "full_name": "acme/shop", "private": False, "html_url": "https://github.com/acme/shop"},
        "pusher": {"name": "ana", "email": "ana@example.com"},
        "commits": [
            {"id": "a" * 40, "message": "Fix the invoice rounding " + "x" * 200, "author": {"name": "ana"}},
        ],
        "head_commit": {"id": "a" * 40, "message": "Fix the invoice rounding", "timestamp": "2026-12-04T10:00:00Z"},
    }
    raw = json.dumps(body)
    pad = 1600 - len(raw) - len(', "pad": ""')
    body["pad"] = "p" * max(pad, 0)
    return json.dumps(body).encode()


def github_headers(body: bytes, secret: str = SECRET) -> dict[str, str]:
    """The headers GitHub sends with a `push`, but X-GitHub-Delivery (wrk's script sets that one per request)."""
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": signature, "X-GitHub-Event": "push", "Content-Type": "application/json"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_up(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Until `port` on 127.0.0.1 accepts connections; exits the benchmark if `process` dies or never gets there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server on {port} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"server on {port} did not start")


def relay_serve(config_path: Path, db: Path, port: int, *options: str) -> subprocess.Popen[bytes]:
    """`relay serve` in its own process on 127.0.0.1 (uvicorn picks uvloop and httptools), logging warnings only."""
    command = [PYTHON, "-m", "relay", "serve", "--config", str(config_path), "--db", str(db), "--port", str(port)]
    return subprocess.Popen([*command, "--log-level", "warning", *options], cwd=ROOT)


def stop(*processes: subprocess.Popen[bytes]) -> None:
    """SIGTERM each process, then wait for it (a relay lets its runs in flight finish first)."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wrk(url: str, body: Path, script: Path, duration: int, connections: int, headers: dict[str, str]) -> float:
    """Requests per second wrk (one thread) gets posting `body` to `url`; exits on any non-2xx answer."""
    lua = script.read_text() + f"\nwrk.method = 'POST'\nwrk.body = io.open('{body}', 'rb'):read('*a')\n"
    lua += "".join(f"wrk.headers['{name}'] = '{value}'\n" for name, value in headers.items())
    full = script.with_suffix(".run.lua")
    full.write_text(lua)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "-s", str(full), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit(f"{non2xx.group(1)} non-2xx answers from {url}:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not match:
        raise SystemExit(f"cannot read wrk output:\n{out}")
    return float(match.group(1))
