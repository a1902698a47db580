"""The forward to runs/start: the request (checked against notte-sdk's own model), JSON and SSE answers, cURL."""

from __future__ import annotations

import asyncio
import json
import warnings
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx
import pytest

from relay import forward
from relay.config import Notte, Secret
from relay.errors import DeliveryError
from relay.store import Delivery, DeliveryStatus

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # notte-core's own pydantic v1-style config, at import
    from notte_core.types import FunctionRunResponse, StartFunctionRunRequest

pytestmark = pytest.mark.anyio

NOTTE = Notte(api_url="http://notte.test", api_key=Secret("sk_test_abcd1234"), max_concurrent_runs=4)
RUN = {"function_id": "func_a", "function_run_id": "run_1", "session_id": "ses_1", "result": {"n": 2}}


def delivery(**changes: Any) -> Delivery:
    base = Delivery(
        id="dlv_01",
        event="evt_1",
        route_id="r",
        target_index=0,
        function_id="func_a",
        status=DeliveryStatus.IN_FLIGHT,
        attempts=0,
        rate_limited=0,
        next_attempt_at=0.0,
        variables={"invoice_id": "in_1", "amount": 1200, "email": None, "note": "it's paid"},
        stream=False,
        timeout=30.0,
        retry={},
        runtime=None,
        last_error=None,
        function_run_id=None,
        created_at=0.0,
        updated_at=0.0,
    )
    return replace(base, **changes)


async def exchange(handler: Callable[[httpx.Request], Any], item: Delivery | None = None) -> forward.Answer:
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        return await forward.send(http, item or delivery(), NOTTE)


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + json.dumps(event).encode() + b"\n\n" for event in events)


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
async def test_variables_that_are_not_an_object_are_a_permanent_error(variables: Any, message: str) -> None:
    with pytest.raises(DeliveryError) as raised:
        forward.build(delivery(variables=variables), NOTTE)
    assert str(raised.value) == message
    answer = await exchange(lambda request: httpx.Response(500), delivery(variables=variables))
    assert (answer.status, answer.error, answer.permanent) == (None, message, True)


def test_curl_command_text() -> None:
    assert forward.curl_command(delivery(), NOTTE) == (
        "curl --request POST http://notte.test/functions/func_a/runs/start \\\n"
        '  --header "Authorization: Bearer $NOTTE_API_KEY" \\\n'
        '  --header "x-notte-api-key: $NOTTE_API_KEY" \\\n'
        "  --header 'Content-Type: application/json' \\\n"
        "  --header 'Accept: application/json' \\\n"
        "  --header 'Idempotency-Key: dlv_01' \\\n"
        f"  --header 'User-Agent: relay/{forward.__version__}' \\\n"
        "  --max-time 30 \\\n"
        '  --data-raw \'{"function_id":"func_a","variables":{"invoice_id":"in_1","amount":1200,'
        '"email":null,"note":"it\'"\'"\'s paid"},"stream":false}\''
    )


def test_curl_command_never_shows_the_key_and_streams_without_buffering() -> None:
    text = forward.curl_command(delivery(stream=True, timeout=300), NOTTE)
    assert "sk_test_abcd1234" not in text and "1234" not in text
    assert "--no-buffer" in text and "--max-time 300" in text and "'Accept: text/event-stream'" in text


# -- JSON answers --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["closed", "active", "failed"])
async def test_json_run(status: str) -> None:
    run = {**RUN, "status": status}
    FunctionRunResponse.model_validate(run)  # the fixture is what notte-sdk itself accepts
    answer = await exchange(lambda request: httpx.Response(200, json=run))
    assert (answer.status, answer.error, answer.run_status) == (200, None, status)
    assert (answer.function_run_id, answer.session_id, answer.result) == ("run_1", "ses_1", {"n": 2})
    assert answer.latency_ms > 0


async def test_json_run_with_legacy_workflow_keys() -> None:
    run = {"workflow_id": "func_a", "workflow_run_id": "run_9", "session_id": None, "result": 1, "status": "closed"}
    answer = await exchange(lambda request: httpx.Response(200, json=run))
    assert (answer.function_run_id, answer.session_id, answer.run_status) == ("run_9", None, "closed")


@pytest.mark.parametrize(
    ("content", "shown"),
    [(b"<html>gateway</html>", "<html>gateway</html>"), (b'{"ok": true}', '{"ok": true}'), (b"[1]", "[1]")],
)
async def test_2xx_that_is_not_a_run(content: bytes, shown: str) -> None:
    answer = await exchange(lambda request: httpx.Response(200, content=content))
    assert answer.status == 200 and answer.run_status is None
    assert answer.error == f"HTTP 200 from runs/start is not a function run: {shown}"


async def test_error_answer_keeps_the_start_of_the_body_and_retry_after() -> None:
    answer = await exchange(lambda request: httpx.Response(429, headers={"Retry-After": "3"}, text="x" * 10_000))
    assert answer.status == 429 and answer.retry_after == "3"
    assert answer.body == "x" * forward.ERROR_BODY_BYTES


async def test_connection_refused() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    answer = await exchange(refuse)
    assert (answer.status, answer.error) == (
        None,
        "cannot connect to http://notte.test: [Errno 111] Connection refused",
    )


async def test_broken_connection() -> None:
    def drop(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)

    answer = await exchange(drop)
    assert answer.error == (
        "request to runs/start failed (RemoteProtocolError): Server disconnected without sending a response."
    )


async def test_timeout_bounds_the_whole_run() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, json={**RUN, "status": "closed"})

    answer = await exchange(slow, delivery(timeout=0.1))
    assert (answer.status, answer.error) == (None, "timed out after 0.1 s")
    assert 100 <= answer.latency_ms < 2000


# -- SSE answers ---------------------------------------------------------------------------------------------------


def stream_of(content: bytes) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(200, headers={"Content-Type": "text/event-stream"}, content=content)


async def test_sse_logs_session_and_result() -> None:
    result = json.dumps({**RUN, "status": "closed"})
    content = sse(
        {"type": "log", "message": "Starting function..."},
        {"type": "session_start", "message": "ses_7"},
        {"type": "log", "message": "Navigation complete"},
        {"type": "result", "message": result},
    )
    answer = await exchange(stream_of(content), delivery(stream=True))
    assert answer.logs == ("Starting function...", "Navigation complete")
    assert (answer.status, answer.run_status, answer.function_run_id, answer.result) == (
        200,
        "closed",
        "run_1",
        {"n": 2},
    )
    assert answer.session_id == "ses_1"  # the run's own answer wins over the session_start event


async def test_sse_parsing_follows_the_event_stream_format() -> None:
    result = {**RUN, "session_id": None, "status": "failed"}
    content = (
        b": a comment\nevent: message\n"
        b'data: {"type": "log",\ndata:  "message": "two lines"}\n\n'  # one event over two data lines
        b'data:{"type": "session_start", "message": "ses_3"}\r\n\r\n'  # no space after the colon, CRLF
        b'data: {"type": "progress", "message": 50}\n\n'
        b"data: not json\n\n"
        b"data: " + json.dumps({"type": "result", "message": result}).encode()  # unterminated last event
    )
    answer = await exchange(stream_of(content), delivery(stream=True))
    assert answer.logs == ("two lines", "[progress] 50", "not json")
    assert (answer.run_status, answer.session_id) == ("failed", "ses_3")


async def test_sse_without_result() -> None:
    answer = await exchange(stream_of(sse({"type": "log", "message": "Starting"})), delivery(stream=True))
    assert answer.status == 200 and answer.run_status is None and answer.logs == ("Starting",)
    assert answer.error == "the SSE stream from runs/start ended without a result event (HTTP 200)"


async def test_sse_log_lines_are_capped() -> None:
    lines = [{"type": "log", "message": f"line {n}"} for n in range(forward.MAX_LOG_LINES + 5)]
    content = sse(*lines, {"type": "result", "message": json.dumps({**RUN, "status": "closed"})})
    answer = await exchange(stream_of(content), delivery(stream=True))
    assert len(answer.logs) == forward.MAX_LOG_LINES + 1
    assert answer.logs[-1] == "... 5 more log lines not kept"


async def test_sse_logs_before_a_timeout_are_kept() -> None:
    async def chunks() -> Any:
        yield sse({"type": "log", "message": "Starting"})
        await asyncio.sleep(5)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Type": "text/event-stream"}, content=chunks())

    answer = await exchange(handler, delivery(stream=True, timeout=0.2))
    assert (answer.status, answer.error, answer.logs) == (None, "timed out after 0.2 s", ("Starting",))


def test_client_pool_is_sized_to_the_concurrency_cap() -> None:
    http = forward.client(NOTTE)
    pool = http._transport._pool  # type: ignore[attr-defined]
    assert (pool._max_connections, pool._max_keepalive_connections) == (4, 4)
    assert http.follow_redirects is False
