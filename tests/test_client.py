"""relay's HTTP/1.1 client (relay/client.py): keep-alive, its connection limit, and every way a server may answer.

Well-behaved servers are real uvicorn on loopback. Misbehaving ones (a connection closed at the wrong moment,
chunked or close-delimited bodies, interim answers, garbage) are small asyncio servers on loopback that write
exactly the bytes each test needs: uvicorn never sends those.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trustme
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from relay.client import Client, ClientError, ConnectError, Disconnected, ProtocolError, Timeout, Unanswered
from tests.conftest import serve_in_thread

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "uvloop"])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, bool]]:
    """Each test on both event loops: `relay serve` runs on uvloop, the tests and `relay dev` on asyncio's own."""
    return "asyncio", {"use_uvloop": request.param == "uvloop"}


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'


@asynccontextmanager
async def raw_server(handle: Handler) -> AsyncIterator[tuple[str, list[int]]]:
    """An asyncio server on 127.0.0.1 running `handle` for each connection; yields its URL and a list that
    gets one entry per connection accepted."""
    connections: list[int] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(len(connections))
        try:
            await handle(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/functions/f/runs/start", connections


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One request: its head, and a body of Content-Length bytes. b"" once the client closed the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return b""
    length = next(
        (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0
    )
    return head + await reader.readexactly(length)


async def post(http: Client, url: str, body: bytes = b"{}", limit: int | None = None) -> tuple[int, bytes]:
    async with http.post(url, [("Content-Type", "application/json")], body) as response:
        return response.status, await response.read(limit)


# -- well-behaved servers ------------------------------------------------------------------------------------------


def echo_app(seen: list[dict[str, object]]) -> Starlette:
    async def echo(request: Request) -> Response:
        body = await request.body()
        assert request.client is not None
        seen.append({"port": request.client.port, "headers": dict(request.headers), "url": str(request.url)})
        return JSONResponse({"got": body.decode()}, headers={"X-Answer": "Yes"})

    return Starlette(routes=[Route("/{path:path}", echo, methods=["POST"])])


async def test_a_request_on_the_wire_and_its_answer() -> None:
    seen: list[dict[str, object]] = []
    with serve_in_thread(echo_app(seen)) as url:
        async with Client(limit=2) as http:
            async with http.post(f"{url}/a/b?c=1", [("X-One", "1")], b'{"n": 1}') as response:
                assert (response.status, response.content_type) == (200, "application/json")
                assert response.headers["x-answer"] == "Yes"  # names lower-cased
                assert await response.read() == b'{"got":"{\\"n\\": 1}"}'
    headers = seen[0]["headers"]
    assert isinstance(headers, dict)
    port = url.rsplit(":", 1)[1]
    assert headers["host"] == f"127.0.0.1:{port}" and headers["x-one"] == "1" and headers["content-length"] == "8"
    assert headers["user-agent"].startswith("relay/")
    assert seen[0]["url"] == f"{url}/a/b?c=1"


async def test_sequential_requests_reuse_one_connection() -> None:
    seen: list[dict[str, object]] = []
    with serve_in_thread(echo_app(seen)) as url:
        async with Client(limit=4) as http:
            for n in range(5):
                assert await post(http, url, str(n).encode()) == (200, f'{{"got":"{n}"}}'.encode())
            assert http.idle == 1
    assert len({entry["port"] for entry in seen}) == 1


async def test_never_more_than_limit_connections() -> None:
    inside, most, ports = 0, 0, set()
    three_in = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def slow(request: Request) -> Response:
        nonlocal inside, most
        assert request.client is not None
        ports.add(request.client.port)
        inside += 1
        most = max(most, inside)
        if inside == 3:
            loop.call_soon_threadsafe(three_in.set)
        while not three_in.is_set():
            await asyncio.sleep(0.01)
        inside -= 1
        return JSONResponse({})

    with serve_in_thread(Starlette(routes=[Route("/", slow, methods=["POST"])])) as url:
        async with Client(limit=3) as http:
            answers = await asyncio.gather(*(post(http, f"{url}/") for _ in range(10)))
    assert [status for status, _ in answers] == [200] * 10
    assert most == 3 and len(ports) == 3  # ten requests, three connections


# -- connections closed by the server ------------------------------------------------------------------------------


async def test_a_connection_closed_by_the_server_while_idle_is_not_reused() -> None:
    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(OK)  # keep-alive by default in HTTP/1.1 ... and then gone
        await writer.drain()

    async with raw_server(once) as (url, connections), Client(limit=2) as http:
        assert await post(http, url) == (200, b'{"ok":true}')
        while http._idle and any(c.open for conns in http._idle.values() for c in conns):
            await asyncio.sleep(0.01)  # until the client has seen the close
        assert await post(http, url) == (200, b'{"ok":true}')
    assert len(connections) == 2


async def test_a_reused_connection_closed_as_the_request_went_out_is_sent_again_on_a_new_one() -> None:
    requests: list[bytes] = []

    async def one_then_hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await read_request(reader))
        writer.write(OK)
        await writer.drain()
        requests.append(await read_request(reader))  # the second request is read, never answered

    async with raw_server(one_then_hang_up) as (url, connections), Client(limit=2) as http:
        assert await post(http, url, b'{"n":1}') == (200, b'{"ok":true}')
        assert await post(http, url, b'{"n":2}') == (200, b'{"ok":true}')
    assert len(connections) == 2
    bodies = [request.partition(b"\r\n\r\n")[2] for request in requests if request]
    assert bodies == [b'{"n":1}', b'{"n":2}', b'{"n":2}']  # the second request twice: once unanswered


async def test_a_new_connection_closed_without_an_answer_is_an_error_and_not_sent_twice() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    async with raw_server(hang_up) as (url, connections), Client(limit=2) as http:
        with pytest.raises(Unanswered, match="closed the connection without answering"):
            await post(http, url)
        assert http.idle == 0
    assert len(connections) == 1


async def test_a_body_cut_short_is_an_error() -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        await writer.drain()

    async with raw_server(cut) as (url, _), Client(limit=2) as http:
        with pytest.raises(Disconnected, match="in the middle of its answer") as caught:
            await post(http, url)
        assert not isinstance(caught.value, Unanswered)
        assert http.idle == 0


async def test_refused_connection() -> None:
    async with raw_server(read_request) as (url, _):
        pass  # closed: nothing listens there any more
    async with Client(limit=1) as http:
        with pytest.raises(ConnectError) as caught:
            await post(http, url)
    assert isinstance(caught.value.os_error, ConnectionRefusedError)


# -- how answers are framed ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "body", "reused"),
    [
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            b"hello world",
            True,
        ),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end", b"until the end", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\nold!", b"old!", False),
        (b"HTTP/1.1 100 Continue\r\n\r\n" + OK, b'{"ok":true}', True),
        (b"HTTP/1.1 204 No Content\r\n\r\n", b"", True),
    ],
    ids=["chunked", "close-delimited", "http-1.0", "100-continue", "no-content"],
)
async def test_answers_framed_every_way(answer: bytes, body: bytes, reused: bool) -> None:
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader):
            writer.write(answer)
            await writer.drain()
            if b"close" in answer or b"HTTP/1.0" in answer:
                return

    async with raw_server(reply) as (url, connections), Client(limit=1) as http:
        status = 200 if b" 200 " in answer else 204
        assert await post(http, url) == (status, body)
        assert http.idle == int(reused)
        assert await post(http, url) == (status, body)
    assert len(connections) == (1 if reused else 2)


async def test_chunks_arrive_as_they_are_sent() -> None:
    second = asyncio.Event()

    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(b"6\r\ndata: \r\n")
        await writer.drain()
        await second.wait()  # the client must have the first piece before the second is sent
        writer.write(b"2\r\n1\n\r\n0\r\n\r\n")
        await writer.drain()

    async with raw_server(drip) as (url, _), Client(limit=1) as http:
        async with http.post(url, [], b"") as response:
            assert response.content_type == "text/event-stream"
            got = []
            async for chunk in response.chunks():
                got.append(chunk)
                second.set()
    assert got == [b"data: ", b"1\n"]


async def test_reading_only_the_start_of_a_body_closes_the_connection() -> None:
    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 500 Oops\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
        await writer.drain()
        await reader.read()  # the rest never comes; returns when the client hangs up

    async with raw_server(big) as (url, _), Client(limit=1) as http:
        assert await post(http, url, limit=10) == (500, b"x" * 10)
        assert http.idle == 0


@pytest.mark.parametrize(
    "garbage",
    [b"hello\r\n\r\n", b"HTTP/1.1 2OO OK\r\n\r\n", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n"],
)
async def test_an_answer_that_is_not_http_is_a_protocol_error(garbage: bytes) -> None:
    async def nonsense(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(garbage)
        await writer.drain()
        await reader.read()  # until the client hangs up

    async with raw_server(nonsense) as (url, _), Client(limit=1) as http:
        with pytest.raises(ProtocolError):
            await post(http, url)
        assert http.idle == 0


async def test_a_timeout_closes_the_connection_and_frees_its_slot() -> None:
    async def slow_second(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        count = 0
        while request := await read_request(reader):
            count += 1
            if b"slow" in request:
                await reader.read()  # never answers; returns when the client hangs up
                return
            writer.write(OK)
            await writer.drain()

    async with raw_server(slow_second) as (url, connections), Client(limit=1) as http:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await post(http, url, b"slow")
        assert http.idle == 0
        assert await post(http, url) == (200, b'{"ok":true}')  # the one slot is free again
    assert len(connections) == 2


async def test_the_timeout_bounds_the_wait_for_the_answer() -> None:
    async def never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()  # returns when the client hangs up

    async with raw_server(never) as (url, _), Client(limit=1) as http:
        with pytest.raises(Timeout) as caught:
            async with http.post(url, [], b"", timeout=0.2):
                pass
        assert isinstance(caught.value, TimeoutError) and http.idle == 0


async def test_the_timeout_bounds_the_whole_body() -> None:
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(b"6\r\ndata: \r\n")
        await writer.drain()
        await reader.read()  # the rest never comes

    async with raw_server(stall) as (url, _), Client(limit=1) as http:
        got = []
        with pytest.raises(Timeout):
            async with http.post(url, [], b"", timeout=0.3) as response:
                async for chunk in response.chunks():
                    got.append(chunk)
        assert got == [b"data: "] and http.idle == 0


async def test_the_timeout_bounds_the_wait_for_a_free_connection() -> None:
    release = asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader):
            await release.wait()
            writer.write(OK)
            await writer.drain()

    async with raw_server(slow) as (url, _), Client(limit=1) as http:
        first = asyncio.create_task(post(http, url))
        while not http._slots.locked():
            await asyncio.sleep(0.01)  # until the first request holds the one connection
        with pytest.raises(Timeout):
            async with http.post(url, [], b"", timeout=0.2):
                pass
        release.set()
        assert await first == (200, b'{"ok":true}')


async def test_an_answer_in_time_leaves_no_timer_behind() -> None:
    async with raw_server(answer_all) as (url, connections), Client(limit=1) as http:
        for _ in range(3):
            async with http.post(url, [], b"", timeout=0.5) as response:
                assert await response.read() == b'{"ok":true}'
        (connection,) = (c for idle in http._idle.values() for c in idle)
        assert connection._timer is None
    assert len(connections) == 1


async def answer_all(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while await read_request(reader):
        writer.write(OK)
        await writer.drain()


# -- what is refused before anything is sent -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "headers", "error"),
    [
        ("http://127.0.0.1:9/x", [("X-Key", "a\r\nX-Injected: 1")], "header 'X-Key' holds a character"),
        ("http://127.0.0.1:9/x", [("X Key:", "a")], "holds a character"),
        ("http://127.0.0.1:9/x", [("Accept", "*/*"), ("X Key", "a")], "header 'X Key' holds a character"),
        ("http://127.0.0.1:9/x", [("X-Key", "a\0b")], "header 'X-Key' holds a character"),
        ("http://127.0.0.1:9/x", [("", "a")], "header '' holds a character"),
        ("ftp://127.0.0.1/x", [], "not an http(s) URL"),
        ("http://127.0.0.1:9/x", [("X-Key", "ключ")], "the request holds 'ключ', which HTTP/1.1 cannot send"),
        ("http://127.0.0.1:99999/x", [], "is not a number from 1 to 65535"),
    ],
)
async def test_requests_relay_cannot_send_are_refused(url: str, headers: list[tuple[str, str]], error: str) -> None:
    async with Client(limit=1) as http:
        with pytest.raises(ClientError, match=re.escape(error)):
            async with http.post(url, headers, b""):
                pass


async def test_a_closed_client_sends_nothing() -> None:
    http = Client(limit=1)
    await http.close()
    with pytest.raises(ClientError, match="closed"):
        await post(http, "http://127.0.0.1:9/x")


# -- https ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path, Path]:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    server.cert_chain_pems[0].write_to_path(cert)
    server.private_key_pem.write_to_path(key)
    return ca, cert, key


async def test_https_to_a_trusted_certificate(certificate: tuple[trustme.CA, Path, Path]) -> None:
    ca, cert, key = certificate
    trusted = ssl.create_default_context()
    ca.configure_trust(trusted)
    seen: list[dict[str, object]] = []
    with serve_in_thread(echo_app(seen), ssl_certfile=str(cert), ssl_keyfile=str(key)) as url:
        assert url.startswith("https://")
        async with Client(limit=1, ssl_context=trusted) as http:
            assert await post(http, f"{url}/x", b"1") == (200, b'{"got":"1"}')
            assert await post(http, f"{url}/x", b"2") == (200, b'{"got":"2"}')
    assert len({entry["port"] for entry in seen}) == 1


async def test_https_to_an_unknown_certificate_is_refused(certificate: tuple[trustme.CA, Path, Path]) -> None:
    _, cert, key = certificate
    with serve_in_thread(echo_app([]), ssl_certfile=str(cert), ssl_keyfile=str(key)) as url:
        async with Client(limit=1) as http:  # the system's trust store: it has never heard of this CA
            with pytest.raises(ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await post(http, f"{url}/x")
