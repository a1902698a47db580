"""One forward to Notte Functions: the request (SPEC 4), the exchange, and the JSON or SSE answer read back.

`build()` is the only place the request is made, so `send()` and `curl_command()` cannot drift apart.

The client is relay's own (relay/client.py: keep-alive connections on asyncio, httptools parsing): per request
it costs the event loop about a third of what aiohttp costs, and httpx's pool slows down with many requests in
flight (encode/httpx#3215). The figures are in docs/benchmarks.md (bench/client, bench/deliver).

Timeouts: the run's own limit travels as `Relay-Run-Timeout` (relay's local runtime ends the run then and
answers "timed out"; Notte's API ignores the header), and relay waits `ANSWER_GRACE` longer for the whole answer,
so the runtime's answer, not a connection cut by relay, is what gets recorded.
"""

from __future__ import annotations

import codecs
import functools
import json
import re
import shlex
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import orjson

from relay import __version__
from relay.client import Client, ClientError, ConnectError, Response
from relay.config import Notte
from relay.delivery import Answer
from relay.errors import DeliveryError
from relay.store import Delivery

RUN_STATUSES = frozenset({"closed", "active", "failed"})
KEY_VARIABLE = "$NOTTE_API_KEY"
MAX_LOG_LINES = 1000
ERROR_BODY_BYTES = 4096  # of a non-2xx answer: enough for the message, never the whole of a huge error page
ANSWER_GRACE = 5.0  # seconds relay waits past the run's timeout (at most the timeout itself: short ones in tests)
_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class Request:
    url: str
    headers: Mapping[str, str]
    content: bytes


def client(notte: Notte) -> Client:
    """The one HTTP client of a running relay: keep-alive connections, at most `max_concurrent_runs` of them.

    It keeps no cookies (one delivery's answer must not change the next one's request) and follows no redirects.
    Create it in the event loop that uses it and close it there (`async with`).
    """
    return Client(limit=notte.max_concurrent_runs)


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
        "Relay-Run-Timeout": f"{delivery.timeout:g}",  # relay's local runtime ends the run then; Notte ignores it
        "User-Agent": f"relay/{__version__}",
    }
    content = _dumps(body(delivery))
    return Request(f"{notte.api_url}/functions/{_quoted(delivery.function_id)}/runs/start", headers, content)


@functools.lru_cache(maxsize=1024)
def _quoted(function_id: str) -> str:
    return quote(function_id, safe="")


def answer_limit(delivery: Delivery) -> float:
    """Seconds relay waits for the whole answer: the run's timeout, plus ANSWER_GRACE (or the timeout if shorter)."""
    return delivery.timeout + min(ANSWER_GRACE, delivery.timeout)


def curl_command(delivery: Delivery, notte: Notte) -> str:
    """The cURL command that repeats the forward of `delivery`; the key is read from `$NOTTE_API_KEY`."""
    request = build(delivery, notte, key=KEY_VARIABLE)
    lines = [f"curl --request POST {shlex.quote(request.url)}"]
    for name, value in request.headers.items():
        header = f"{name}: {value}"
        # Double quotes let the shell expand the key variable; the rest of these values is plain text.
        lines.append(f'--header "{header}"' if KEY_VARIABLE in value else f"--header {shlex.quote(header)}")
    lines.append(f"--max-time {answer_limit(delivery):g}")
    if delivery.stream:
        lines.append("--no-buffer")
    lines.append(f"--data-raw {shlex.quote(request.content.decode('utf-8'))}")
    return " \\\n  ".join(lines)


async def send(http: Client, delivery: Delivery, notte: Notte) -> Answer:
    """POST `delivery` to runs/start and read the answer. Never raises for what the network or Notte does."""
    try:
        request = build(delivery, notte)
    except DeliveryError as exc:
        return Answer(None, error=str(exc), permanent=True)
    stream = _Stream()
    limit = answer_limit(delivery)
    started = time.perf_counter()
    try:
        answer = await _exchange(http, request, limit, stream)
    except TimeoutError:
        answer = stream.partial(f"timed out after {limit:g} s")
    except ConnectError as exc:
        answer = stream.partial(f"cannot connect to {notte.api_url}: {_reason(exc.os_error)}")
    except ClientError as exc:
        answer = stream.partial(f"request to runs/start failed: {_reason(exc)}")
    answer.latency_ms = (time.perf_counter() - started) * 1000
    return answer


async def _exchange(http: Client, request: Request, limit: float, stream: _Stream) -> Answer:
    # The limit covers connecting, sending and the whole body (an SSE stream keeps reading).
    async with http.post(request.url, request.headers.items(), request.content, timeout=limit) as response:
        status = response.status
        if not 200 <= status < 300:
            head = await _head(response, ERROR_BODY_BYTES)
            return Answer(status, retry_after=response.headers.get("retry-after"), body=head)
        stream.status = status
        if response.content_type == "text/event-stream":
            async for line in _lines(response):
                stream.feed(line)
            stream.feed("")
            return stream.answer()
        return _run(status, await response.read(), ())


def _run(status: int, raw: Any, logs: tuple[str, ...], session_id: str | None = None) -> Answer:
    """A 2xx answer read as a function run (`{"function_run_id", "session_id", "result", "status"}`)."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    try:
        data = orjson.loads(text) if isinstance(text, str) else text
    except orjson.JSONDecodeError:
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


async def _head(response: Response, limit: int) -> str:
    return (await response.read(limit)).decode("utf-8", errors="replace")


async def _lines(response: Response) -> AsyncIterator[str]:
    """The body's lines, as an event stream ends them (CRLF, LF or CR), without a limit on a line's length
    (the `result` event holds the whole run on one line)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    rest = ""
    async for chunk in response.chunks():
        text = rest + decoder.decode(chunk)
        held = "\r" if text.endswith("\r") else ""  # maybe the first half of a CRLF split across chunks
        *lines, rest = _LINE_END.split(text.removesuffix(held))
        rest += held
        for line in lines:
            yield line
    lines = _LINE_END.split(rest + decoder.decode(b"", final=True))
    for line in lines if lines[-1] else lines[:-1]:
        yield line


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # what orjson refuses (integers beyond 64 bits) the standard library writes
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__
