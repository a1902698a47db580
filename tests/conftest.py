"""Shared fixtures: a config written to a real file, a running app (ASGI or real uvicorn on loopback)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from relay import config
from relay.app import create_app
from relay.store import Delivery, DeliveryStatus
from relay.store.sqlite import SQLiteStore

ROOT = Path(__file__).resolve().parent.parent


def in_flight(**fields: Any) -> Delivery:
    """A claimed delivery as a worker holds it: `func_a`, no attempt yet, no retry settings; `fields` change it."""
    base: dict[str, Any] = {
        "id": "dlv_1", "event": "evt_1", "route_id": "r", "target_index": 0, "function_id": "func_a",
        "status": DeliveryStatus.IN_FLIGHT, "attempts": 0, "rate_limited": 0, "next_attempt_at": 0.0,
        "variables": {}, "stream": False, "timeout": 30.0, "retry": {}, "runtime": None, "last_error": None,
        "function_run_id": None, "created_at": 0.0, "updated_at": 0.0,
    }  # fmt: skip
    return Delivery(**{**base, **fields})


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def load_config(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> config.Config:
    path = tmp_path / "routes.yaml"
    path.write_text(text)
    return config.load(path, env=env or {})


@contextlib.asynccontextmanager
async def running(app: Any, base_url: str = "http://relay.test") -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan entered, and a client that talks to it in-process."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield client


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.contextmanager
def serve_in_thread(app: Any, **options: Any) -> Iterator[str]:
    """Serve `app` with real uvicorn on 127.0.0.1 (a free port) in a thread; yield its base URL.

    `options` go to uvicorn.Config (with `ssl_certfile` the URL is https)."""
    sock = free_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        started = threading.Event()

        def wait() -> None:
            while not server.started and thread.is_alive():
                started.wait(0.01)

        wait()
        if not server.started:
            raise RuntimeError("uvicorn did not start")
        yield f"{'https' if options.get('ssl_certfile') else 'http'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "relay.db"


def make_app(cfg: config.Config, db: Path, **kwargs: Any) -> Any:
    return create_app(cfg, store=SQLiteStore(db), **kwargs)
