"""One forward to Notte Functions: the request (SPEC 4), the exchange, and the JSON or SSE answer read back.

`build()` is the only place the request is made, so `send()` and `curl_command()` cannot drift apart.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from relay import __version__
from relay.config import Notte
from relay.delivery import Answer
from relay.errors import DeliveryError
from relay.store import Delivery

RUN_STATUSES = frozenset({"closed", "active", "failed"})
KEY_VARIABLE = "$NOTTE_API_KEY"
MAX_LOG_LINES = 1000
ERROR_BODY_BYTES = 4096  # of a non-2xx answer: enough for the message, never the whole of a huge error page


@dataclass(frozen=True)
class Request:
    url: str
    headers: Mapping[str, str]
    content: bytes


def client(notte: Notte, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """The one HTTP client of a running relay: a keep-alive pool sized to `max_concurrent_runs`.

    encode/httpx#3215 reports the pool slowing down with many requests in flight; the pool is left as it is
    until a benchmark says otherwise.
    """
    size = notte.max_concurrent_runs
    limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
    return httpx.AsyncClient(transport=transport, limits=limits, follow_redirects=False)


def body(delivery: Delivery) -> dict[str, Any]:
    """The `runs/start` body; it validates against notte-sdk's `StartFunctionRunRequest`."""
    variables = {} if delivery.variables is None else delivery.variables
    if not isinstance(variables, dict):
        kind = type(variables).__name__
        raise DeliveryError(
            f"variables must render to a JSON object (the function's keyword arguments), got a {kind}: "
            f"{json.dumps(variables)[:100]}"
        )
    out: dict[str, Any] = {"function_id": delivery.function_id, "variables": variables, "stream": delivery.stream}
    if delivery.runtime is not None:
        out["runtime"] = delivery.runtime
    return out


def build(delivery: Delivery, notte: Notte, *, key: str | None = None) -> Request:
    """The request for `delivery`, signed with `key` (default: the configured API key)."""
    token = notte.api_key.reveal() if key is None else key
    headers = {
        "Authorization": f"Bearer {token}",
        "x-notte-api-key": token,  # the runtime reads the caller's key here (Authorization is not forwarded)
        "Content-Type": "application/json",
        "Accept": "text/event-stream" if delivery.stream else "application/json",
        "Idempotency-Key": delivery.id,
        "User-Agent": f"relay/{__version__}",
    }
    content = json.dumps(body(delivery), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Request(f"{notte.api_url}/functions/{delivery.function_id}/runs/start", headers, content)


def curl_command(delivery: Delivery, notte: Notte) -> str:
    """The cURL command that repeats the forward of `delivery`; the key is read from `$NOTTE_API_KEY`."""
    request = build(delivery, notte, key=KEY_VARIABLE)
    lines = [f"curl --request POST {shlex.quote(request.url)}"]
    for name, value in request.headers.items():
        header = f"{name}: {value}"
        # Double quotes let the shell expand the key variable; the rest of these values is plain text.
        lines.append(f'--header "{header}"' if KEY_VARIABLE in value else f"--header {shlex.quote(header)}")
    lines.append(f"--max-time {delivery.timeout:g}")
    if delivery.stream:
        lines.append("--no-buffer")
    lines.append(f"--data-raw {shlex.quote(request.content.decode('utf-8'))}")
    return " \\\n  ".join(lines)


async def send(http: httpx.AsyncClient, delivery: Delivery, notte: Notte) -> Answer:
    """POST `delivery` to runs/start and read the answer. Never raises for what the network or Notte does."""
    try:
        request = build(delivery, notte)
    except DeliveryError as exc:
        return Answer(None, error=str(exc), permanent=True)
    stream = _Stream()
    started = time.perf_counter()
    try:
        # httpx's timeout bounds each read; the outer one bounds the whole run (an SSE stream keeps reading).
        async with asyncio.timeout(delivery.timeout):
            answer = await _exchange(http, request, delivery.timeout, stream)
    except (TimeoutError, httpx.TimeoutException):
        answer = stream.partial(f"timed out after {delivery.timeout:g} s")
    except httpx.ConnectError as exc:
        answer = stream.partial(f"cannot connect to {notte.api_url}: {_reason(exc)}")
    except httpx.HTTPError as exc:
        answer = stream.partial(f"request to runs/start failed ({type(exc).__name__}): {_reason(exc)}")
    return replace(answer, latency_ms=(time.perf_counter() - started) * 1000)


async def _exchange(http: httpx.AsyncClient, request: Request, timeout: float, stream: _Stream) -> Answer:
    async with http.stream(
        "POST", request.url, headers=dict(request.headers), content=request.content, timeout=timeout
    ) as response:
        status = response.status_code
        retry_after = response.headers.get("retry-after")
        if not 200 <= status < 300:
            head = await _head(response, ERROR_BODY_BYTES)
            return Answer(status, retry_after=retry_after, body=head)
        stream.status = status
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            async for line in response.aiter_lines():
                stream.feed(line)
            stream.feed("")
            return stream.answer()
        return _run(status, await response.aread(), ())


def _run(status: int, raw: Any, logs: tuple[str, ...], session_id: str | None = None) -> Answer:
    """A 2xx answer read as a function run (`{"function_run_id", "session_id", "result", "status"}`)."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    try:
        data = json.loads(text) if isinstance(text, str) else text
    except json.JSONDecodeError:
        data = None
    run_status = data.get("status") if isinstance(data, dict) else None
    if not isinstance(data, dict) or run_status not in RUN_STATUSES:
        shown = text if isinstance(text, str) else json.dumps(text, default=str)
        error = f"HTTP {status} from runs/start is not a function run: {shown[:200]}"
        return Answer(status, error=error, logs=logs, session_id=session_id, body=shown[:200])
    return Answer(
        status,
        run_status=run_status,
        function_run_id=_text(data.get("function_run_id", data.get("workflow_run_id"))),
        session_id=_text(data.get("session_id")) or session_id,
        result=data.get("result"),
        logs=logs,
    )


@dataclass
class _Stream:
    """Server-Sent Events as runs/start sends them: `data: {"type": "log"|"session_start"|"result", ...}`."""

    status: int | None = None
    logs: list[str] = field(default_factory=list)
    dropped: int = 0
    session_id: str | None = None
    result: Any = None
    _data: list[str] = field(default_factory=list)

    def feed(self, line: str) -> None:
        """One line of the stream; a blank line ends an event (its `data:` lines joined by newlines)."""
        if line == "":
            if self._data:
                self._event("\n".join(self._data))
                self._data.clear()
            return
        if line.startswith("data:"):
            value = line[5:]
            self._data.append(value[1:] if value.startswith(" ") else value)
        # `event:`, `id:`, `retry:` and `:` comments carry nothing runs/start uses

    def _event(self, data: str) -> None:
        try:
            message = json.loads(data)
        except json.JSONDecodeError:
            self._log(data)
            return
        if not isinstance(message, dict):
            self._log(data)
            return
        kind, text = message.get("type"), message.get("message")
        if kind == "result":
            self.result = text if text is not None else ""
        elif kind == "session_start":
            self.session_id = _text(text)
        elif kind == "log":
            self._log(text if isinstance(text, str) else json.dumps(text))
        else:
            self._log(f"[{kind}] {text if isinstance(text, str) else json.dumps(text)}")

    def _log(self, line: str) -> None:
        if len(self.logs) < MAX_LOG_LINES:
            self.logs.append(line)
        else:
            self.dropped += 1

    def kept_logs(self) -> tuple[str, ...]:
        if self.dropped:
            return (*self.logs, f"... {self.dropped} more log lines not kept")
        return tuple(self.logs)

    def answer(self) -> Answer:
        assert self.status is not None
        if self.result is None:
            error = f"the SSE stream from runs/start ended without a result event (HTTP {self.status})"
            return Answer(self.status, error=error, logs=self.kept_logs(), session_id=self.session_id)
        return _run(self.status, self.result, self.kept_logs(), self.session_id)

    def partial(self, error: str) -> Answer:
        """No usable answer: keep what the stream said before it broke off (logs, the session)."""
        return Answer(None, error=error, logs=self.kept_logs(), session_id=self.session_id)


async def _head(response: httpx.Response, limit: int) -> str:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit].decode("utf-8", errors="replace")


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__
