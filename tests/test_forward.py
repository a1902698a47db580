"""The forward to runs/start: the request (checked against notte-sdk's own model), JSON and SSE answers, cURL.

The answers come from a real server on loopback (a Starlette app under uvicorn whose reply each test sets), and
once from relay's own Functions runtime.
"""

from __future__ import annotations

import asyncio
import json
import socket
import textwrap
import threading
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from relay import forward, functions
from relay.config import Notte, Secret
from relay.errors import DeliveryError
from relay.store import Delivery
from tests.conftest import in_flight, serve_in_thread

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # notte-core's own pydantic v1-style config, at import
    from notte_core.types import FunctionRunResponse, StartFunctionRunRequest

pytestmark = pytest.mark.anyio

KEY = "sk_test_abcd1234"
NOTTE = Notte(api_url="http://notte.test", api_key=Secret(KEY), max_concurrent_runs=4)
RUN = {"function_id": "func_a", "function_run_id": "run_1", "session_id": "ses_1", "result": {"n": 2}}

Reply = Callable[[Request], Awaitable[Response]]


def delivery(**changes: Any) -> Delivery:
    variables = {"invoice_id": "in_1", "amount": 1200, "email": None, "note": "it's paid"}
    return in_flight(**{"id": "dlv_01", "variables": variables, **changes})


@dataclass
class FakeNotte:
    """runs/start on loopback: answers with `reply` and keeps the headers of every request."""

    url: str = ""
    reply: Reply | None = None
    headers: list[dict[str, str]] = field(default_factory=list)

    async def runs_start(self, request: Request) -> Response:
        self.headers.append(dict(request.headers))
        await request.body()
        assert self.reply is not None
        return await self.reply(request)

    def notte(self) -> Notte:
        return replace(NOTTE, api_url=self.url)

    async def exchange(self, reply: Reply, item: Delivery | None = None) -> forward.Answer:
        self.reply = reply
        return await send(item or delivery(), self.notte())


@pytest.fixture
def notte() -> Iterator[FakeNotte]:
    fake = FakeNotte()
    app = Starlette(routes=[Route("/functions/{function_id}/runs/start", fake.runs_start, methods=["POST"])])
    with serve_in_thread(app) as url:
        fake.url = url
        yield fake


async def send(item: Delivery, notte: Notte) -> forward.Answer:
    async with forward.client(notte) as http:
        return await forward.send(http, item, notte)


def run(status: str) -> Reply:
    """A 200 answer holding a run in `status`."""

    async def reply(request: Request) -> Response:
        return JSONResponse({**RUN, "status": status})

    return reply


def raw(status: int, content: bytes = b"", headers: dict[str, str] | None = None) -> Reply:
    async def reply(request: Request) -> Response:
        return Response(content, status_code=status, headers=headers)

    return reply


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + json.dumps(event).encode() + b"\n\n" for event in events)


def stream_of(*chunks: bytes, gap: float = 0.0, pause: float = 0.0) -> Reply:
    """An event stream of `chunks`, `gap` seconds apart; with `pause`, it then stays open that long, silent."""

    async def reply(request: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            for n, chunk in enumerate(chunks):
                if n and gap:
                    await asyncio.sleep(gap)  # so that the client reads each chunk on its own
                yield chunk
            if pause:
                await asyncio.sleep(pause)

        return StreamingResponse(body(), media_type="text/event-stream")

    return reply


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the request ---------------------------------------------------------------------------------------------------


def test_request_is_spec_4() -> None:
    request = forward.build(delivery(), NOTTE)
    assert request.url == "http://notte.test/functions/func_a/runs/start"
    assert dict(request.headers) == {
        "Authorization": "Bearer sk_test_abcd1234",
        "x-notte-api-key": "sk_test_abcd1234",
        "Content-Type": "application/json",
        "Accept": "application/json",
        "Idempotency-Key": "dlv_01",
        "Relay-Run-Timeout": "30",
        "User-Agent": f"relay/{forward.__version__}",
    }
    assert json.loads(request.content) == {
        "function_id": "func_a",
        "variables": {"invoice_id": "in_1", "amount": 1200, "email": None, "note": "it's paid"},
        "stream": False,
    }


@pytest.mark.parametrize(
    "changes",
    [{}, {"stream": True}, {"runtime": "extended"}, {"variables": None}, {"variables": {"data": {"deep": [1, 2]}}}],
)
def test_body_validates_with_notte_sdk_request_model(changes: dict[str, Any]) -> None:
    item = delivery(**changes)
    sent = json.loads(forward.build(item, NOTTE).content)
    model = StartFunctionRunRequest.model_validate(sent)  # extra="forbid": an unknown key would fail here
    assert model.function_id == item.function_id
    assert model.variables == (item.variables or {})
    assert model.stream is item.stream
    assert model.runtime == item.runtime
    assert ("runtime" in sent) is (item.runtime is not None)


def test_a_key_notte_sdk_does_not_know_is_refused_by_its_model() -> None:
    # The check above can fail: the SDK's model forbids extra keys.
    with pytest.raises(ValueError, match="extra"):
        StartFunctionRunRequest.model_validate({"function_id": "f", "variables": {}, "stream": False, "x": 1})


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ([1, 2], "variables must render to a JSON object (the function's keyword arguments), got a list: [1, 2]"),
        ("text", 'variables must render to a JSON object (the function\'s keyword arguments), got a str: "text"'),
    ],
)
async def test_variables_that_are_not_an_object_are_a_permanent_error(
    variables: Any, message: str, notte: FakeNotte
) -> None:
    with pytest.raises(DeliveryError) as raised:
        forward.build(delivery(variables=variables), NOTTE)
    assert str(raised.value) == message
    got = await notte.exchange(raw(500), delivery(variables=variables))
    assert (got.status, got.error, got.permanent) == (None, message, True)
    assert notte.headers == []  # nothing was sent


def test_curl_command_text() -> None:
    assert forward.curl_command(delivery(), NOTTE) == (
        "curl --request POST http://notte.test/functions/func_a/runs/start \\\n"
        '  --header "Authorization: Bearer $NOTTE_API_KEY" \\\n'
        '  --header "x-notte-api-key: $NOTTE_API_KEY" \\\n'
        "  --header 'Content-Type: application/json' \\\n"
        "  --header 'Accept: application/json' \\\n"
        "  --header 'Idempotency-Key: dlv_01' \\\n"
        "  --header 'Relay-Run-Timeout: 30' \\\n"
        f"  --header 'User-Agent: relay/{forward.__version__}' \\\n"
        "  --max-time 35 \\\n"
        '  --data-raw \'{"function_id":"func_a","variables":{"invoice_id":"in_1","amount":1200,'
        '"email":null,"note":"it\'"\'"\'s paid"},"stream":false}\''
    )


def test_curl_command_never_shows_the_key_and_streams_without_buffering() -> None:
    text = forward.curl_command(delivery(stream=True, timeout=300), NOTTE)
    assert "sk_test_abcd1234" not in text and "1234" not in text
    assert "--no-buffer" in text and "--max-time 305" in text and "'Accept: text/event-stream'" in text


@pytest.mark.parametrize(("timeout", "limit"), [(300.0, 305.0), (30.0, 35.0), (5.0, 10.0), (2.0, 4.0), (0.2, 0.4)])
def test_relay_waits_a_little_longer_than_the_run_may_take(timeout: float, limit: float) -> None:
    assert forward.answer_limit(delivery(timeout=timeout)) == limit
    assert forward.build(delivery(timeout=timeout), NOTTE).headers["Relay-Run-Timeout"] == f"{timeout:g}"


def test_body_with_an_integer_beyond_64_bits_is_still_sent() -> None:
    request = forward.build(delivery(variables={"id": 2**70}), NOTTE)
    assert json.loads(request.content)["variables"] == {"id": 2**70}


# -- JSON answers --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["closed", "active", "failed"])
async def test_json_run(status: str, notte: FakeNotte) -> None:
    FunctionRunResponse.model_validate({**RUN, "status": status})  # the fixture is what notte-sdk itself accepts
    got = await notte.exchange(run(status))
    assert (got.status, got.error, got.run_status) == (200, None, status)
    assert (got.function_run_id, got.session_id, got.result) == ("run_1", "ses_1", {"n": 2})
    assert got.latency_ms > 0


async def test_the_request_on_the_wire(notte: FakeNotte) -> None:
    await notte.exchange(run("closed"), delivery(timeout=30))
    (headers,) = notte.headers
    assert headers["authorization"] == f"Bearer {KEY}" and headers["x-notte-api-key"] == KEY
    assert (headers["idempotency-key"], headers["relay-run-timeout"]) == ("dlv_01", "30")
    assert (headers["content-type"], headers["accept"]) == ("application/json", "application/json")


async def test_json_run_with_legacy_workflow_keys(notte: FakeNotte) -> None:
    run = {"workflow_id": "func_a", "workflow_run_id": "run_9", "session_id": None, "result": 1, "status": "closed"}
    got = await notte.exchange(raw(200, json.dumps(run).encode(), {"Content-Type": "application/json"}))
    assert (got.function_run_id, got.session_id, got.run_status) == ("run_9", None, "closed")


@pytest.mark.parametrize(
    ("content", "shown"),
    [(b"<html>gateway</html>", "<html>gateway</html>"), (b'{"ok": true}', '{"ok": true}'), (b"[1]", "[1]")],
)
async def test_2xx_that_is_not_a_run(content: bytes, shown: str, notte: FakeNotte) -> None:
    got = await notte.exchange(raw(200, content))
    assert got.status == 200 and got.run_status is None
    assert got.error == f"HTTP 200 from runs/start is not a function run: {shown}"


async def test_error_answer_keeps_the_start_of_the_body_and_retry_after(notte: FakeNotte) -> None:
    got = await notte.exchange(raw(429, b"x" * 10_000, {"Retry-After": "3"}))
    assert got.status == 429 and got.retry_after == "3"
    assert got.body == "x" * forward.ERROR_BODY_BYTES


async def test_a_redirect_is_not_followed(notte: FakeNotte) -> None:
    got = await notte.exchange(raw(307, b"moved", {"Location": "/elsewhere"}))
    assert (got.status, got.body) == (307, "moved")
    assert len(notte.headers) == 1


async def test_cookies_from_one_answer_are_not_sent_with_the_next_request(notte: FakeNotte) -> None:
    async def cookie(request: Request) -> Response:
        response = JSONResponse({**RUN, "status": "closed"})
        response.set_cookie("session", "abc")
        return response

    notte.reply = cookie
    async with forward.client(notte.notte()) as http:
        await forward.send(http, delivery(), notte.notte())
        await forward.send(http, delivery(), notte.notte())
    assert [headers.get("cookie") for headers in notte.headers] == [None, None]


async def test_connection_refused() -> None:
    port = closed_port()
    got = await send(delivery(), replace(NOTTE, api_url=f"http://127.0.0.1:{port}"))
    assert got.status is None
    assert (
        got.error == f"cannot connect to http://127.0.0.1:{port}: [Errno 111] Connect call failed ('127.0.0.1', {port})"
    )


async def test_broken_connection() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        got = await send(delivery(), replace(NOTTE, api_url=f"http://127.0.0.1:{port}"))
    assert (got.status, got.error) == (
        None,
        "request to runs/start failed: the server closed the connection without answering",
    )


async def test_timeout_bounds_the_whole_run(notte: FakeNotte) -> None:
    released = threading.Event()  # the target answers only once the test has its result

    async def slow(request: Request) -> Response:
        await asyncio.to_thread(released.wait, 10)
        return JSONResponse({**RUN, "status": "closed"})

    try:
        got = await notte.exchange(slow, delivery(timeout=0.1))
    finally:
        released.set()
    assert (got.status, got.error) == (None, "timed out after 0.2 s")  # the run's 0.1 s, and as much again
    assert 200 <= got.latency_ms < 2000


async def test_the_runtime_answers_a_run_over_its_timeout_before_relay_gives_up(tmp_path: Path) -> None:
    # The race this avoids: both sides timing out at the same moment, relay recording a cut connection.
    folder = tmp_path / "functions"
    folder.mkdir()
    (folder / "func_a.py").write_text(
        textwrap.dedent(
            """
            import threading

            def run(**variables):
                threading.Event().wait(60)  # runs until the runtime kills it at its timeout
            """
        )
    )
    runtime = functions.create_app(folder, max_concurrent=1, api_key=KEY)
    with serve_in_thread(runtime) as url:
        got = await send(delivery(timeout=1), replace(NOTTE, api_url=url))
    assert (got.status, got.run_status, got.result, got.error) == (200, "failed", "timed out after 1 s", None)


# -- SSE answers ---------------------------------------------------------------------------------------------------


async def test_sse_logs_session_and_result(notte: FakeNotte) -> None:
    result = json.dumps({**RUN, "status": "closed"})
    content = sse(
        {"type": "log", "message": "Starting function..."},
        {"type": "session_start", "message": "ses_7"},
        {"type": "log", "message": "Navigation complete"},
        {"type": "result", "message": result},
    )
    got = await notte.exchange(stream_of(content), delivery(stream=True))
    assert got.logs == ("Starting function...", "Navigation complete")
    assert (got.status, got.run_status, got.function_run_id, got.result) == (200, "closed", "run_1", {"n": 2})
    assert got.session_id == "ses_1"  # the run's own answer wins over the session_start event
    assert notte.headers[0]["accept"] == "text/event-stream"


async def test_sse_parsing_follows_the_event_stream_format(notte: FakeNotte) -> None:
    result = {**RUN, "session_id": None, "status": "failed"}
    content = (
        b": a comment\nevent: message\n"
        b'data: {"type": "log",\ndata:  "message": "two lines"}\n\n'  # one event over two data lines
        b'data:{"type": "session_start", "message": "ses_3"}\r\n\r\n'  # no space after the colon, CRLF
        b'data: {"type": "progress", "message": 50}\r\rdata: not json\n\n'  # CR alone ends a line too
        b"data: " + json.dumps({"type": "result", "message": result}).encode()  # unterminated last event
    )
    got = await notte.exchange(stream_of(content), delivery(stream=True))
    assert got.logs == ("two lines", "[progress] 50", "not json")
    assert (got.run_status, got.session_id) == ("failed", "ses_3")


async def test_sse_lines_split_anywhere_across_chunks(notte: FakeNotte) -> None:
    text = (
        'data: {"type": "log",\r\ndata: "message": "h\u00e9"}\r\n\r\n'  # one event, two data lines
        + "data: "
        + json.dumps({"type": "result", "message": json.dumps({**RUN, "result": "x" * 200_000, "status": "closed"})})
    )  # the last line far longer than any read buffer
    content = text.encode()
    cuts = [0, content.index(b"\r\n") + 1, content.index("\u00e9".encode()) + 1, len(content)]  # CRLF, é cut in two
    chunks = [content[start:end] for start, end in zip(cuts, cuts[1:], strict=False)]
    got = await notte.exchange(stream_of(*chunks, gap=0.05), delivery(stream=True))
    assert got.logs == ("h\u00e9",)
    assert (got.run_status, got.result) == ("closed", "x" * 200_000)


async def test_sse_without_result(notte: FakeNotte) -> None:
    got = await notte.exchange(stream_of(sse({"type": "log", "message": "Starting"})), delivery(stream=True))
    assert got.status == 200 and got.run_status is None and got.logs == ("Starting",)
    assert got.error == "the SSE stream from runs/start ended without a result event (HTTP 200)"


async def test_sse_log_lines_are_capped(notte: FakeNotte) -> None:
    lines = [{"type": "log", "message": f"line {n}"} for n in range(forward.MAX_LOG_LINES + 5)]
    content = sse(*lines, {"type": "result", "message": json.dumps({**RUN, "status": "closed"})})
    got = await notte.exchange(stream_of(content), delivery(stream=True))
    assert len(got.logs) == forward.MAX_LOG_LINES + 1
    assert got.logs[-1] == "... 5 more log lines not kept"


async def test_sse_logs_before_a_timeout_are_kept(notte: FakeNotte) -> None:
    reply = stream_of(sse({"type": "log", "message": "Starting"}), pause=2)
    got = await notte.exchange(reply, delivery(stream=True, timeout=0.2))
    assert (got.status, got.error, got.logs) == (None, "timed out after 0.4 s", ("Starting",))


# -- the client ----------------------------------------------------------------------------------------------------


async def test_client_pool_is_sized_to_the_concurrency_cap() -> None:
    async with forward.client(NOTTE) as http:
        assert http.limit == 4  # what the limit does is tested in test_client.py
