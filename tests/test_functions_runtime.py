"""The local Functions runtime, served by real uvicorn on loopback, driven over HTTP and with notte-sdk."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

# Before notte-sdk is imported: no telemetry (PostHog, Scarf) and no process-wide nest_asyncio patch.
os.environ.setdefault("DISABLE_TELEMETRY", "true")
os.environ.setdefault("NOTTE_ENABLE_NEST_ASYNCIO", "false")

import httpx  # noqa: E402
import pytest  # noqa: E402

with warnings.catch_warnings():
    # notte-core 1.10 declares a pydantic model with a class-based `config`, deprecated since pydantic 2.0.
    warnings.simplefilter("ignore", DeprecationWarning)
    import notte_core.telemetry
    import notte_sdk.endpoints.base
    from notte_core.types import (
        CreateFunctionRunResponse,
        FunctionRunResponse,
        GetFunctionRunResponse,
        GetFunctionWithLinkResponse,
        UpdateFunctionRunResponse,
    )
    from notte_sdk import NotteClient
    from notte_sdk.endpoints.functions import FailedToRunCloudFunctionError

from relay.functions import create_app  # noqa: E402
from relay.functions.catalog import locate  # noqa: E402
from relay.functions.runs import RUNNER, Runs, RunStatus  # noqa: E402
from tests.conftest import serve_in_thread  # noqa: E402

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="runs are POSIX process groups")

FUNCTIONS = {
    "echo": """
        def run(**variables):
            print("echo", sorted(variables))
            return variables
    """,
    "chatty": """
        import logging

        def run(n: int = 3):
            print("one")
            logging.getLogger("chatty").warning("two")
            print("three")
            return {"n": n}
    """,
    "fail": """
        def run():
            raise ValueError("boom")
    """,
    "slow": """
        import time

        def run(seconds: float = 60):
            print("sleeping")
            time.sleep(seconds)
            return "woke"
    """,
    "spawner": """
        import subprocess, sys, threading

        def run(pid_file: str):
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
            open(pid_file, "w").write(str(child.pid))
            print("spawned")
            threading.Event().wait(120)  # blocks until the runtime kills this run
    """,
    "doubler": """
        import asyncio

        async def run(x: int):
            await asyncio.sleep(0)
            return x * 2
    """,
    "bad_syntax": """
        def run(:
            pass
    """,
    "no_run": """
        x = 1
    """,
    "broken_import": """
        import nope_module_for_relay_tests

        def run():
            pass
    """,
    "not_json": """
        def run():
            return {1, 2}
    """,
    "nan": """
        def run():
            return float("nan")
    """,
    "exits": """
        import os

        def run():
            os._exit(3)
    """,
    "sys_exit": """
        import sys

        def run():
            sys.exit(4)
    """,
    "uses_helper": """
        import helper_for_tests

        def run():
            return helper_for_tests.VALUE
    """,
    "helper_for_tests": """
        VALUE = "from the function's directory"
    """,
    "imports_relay_internals": """
        def run():
            import wire
    """,
    "billing": '''
        """Record a paid invoice."""

        def run(invoice_id: str, amount: int, email: str | None = None, *, note: str = ""):
            return {"invoice_id": invoice_id}
    ''',
}


@pytest.fixture(autouse=True)
def sdk_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep notte-sdk off the network: its once-per-process PyPI version check and its telemetry."""
    monkeypatch.setattr(notte_sdk.endpoints.base, "_version_check_performed", True)
    monkeypatch.setattr(notte_core.telemetry, "DISABLE_TELEMETRY", True)
    monkeypatch.delenv("NOTTE_API_URL", raising=False)
    monkeypatch.delenv("NOTTE_API_KEY", raising=False)


@pytest.fixture
def functions_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "functions"
    directory.mkdir()
    for name, source in FUNCTIONS.items():
        (directory / f"{name}.py").write_text(textwrap.dedent(source))
    return directory


@pytest.fixture
def runtime(functions_dir: Path) -> Iterator[Callable[..., str]]:
    """Start a runtime over `functions_dir` with the given `create_app` options; returns its base URL."""
    with ExitStack() as stack:

        def start(**options: Any) -> str:
            return stack.enter_context(serve_in_thread(create_app(functions_dir, **options)))

        yield start


@pytest.fixture
def url(runtime: Callable[..., str]) -> str:
    return runtime()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


def start(http: httpx.Client, url: str, function_id: str, **body: Any) -> httpx.Response:
    return http.post(f"{url}/functions/{function_id}/runs/start", json={"function_id": function_id, **body})


def events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        if line.startswith("data: "):
            yield json.loads(line[6:])


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


# runs/start over plain HTTP


def test_start_answers_a_function_run_response(http: httpx.Client, url: str) -> None:
    variables = {"a": 1, "nested": {"list": [1, "two", None]}, "text": "héllo"}
    response = start(http, url, "echo", variables=variables, stream=False)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    answer = FunctionRunResponse.model_validate(response.json())
    assert answer.status == "closed"
    assert answer.result == variables
    assert answer.function_id == "echo"
    assert answer.session_id is None
    assert set(response.json()) == {"function_id", "function_run_id", "session_id", "result", "status"}


def test_start_streams_each_log_line_then_the_result(http: httpx.Client, url: str) -> None:
    body = {"function_id": "chatty", "variables": {"n": 7}, "stream": True}
    with http.stream("POST", f"{url}/functions/chatty/runs/start", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        received = list(events(response.iter_lines()))

    assert received[:-1] == [
        {"type": "log", "message": "one"},
        {"type": "log", "message": "WARNING chatty: two"},
        {"type": "log", "message": "three"},
    ]
    assert received[-1]["type"] == "result"
    answer = FunctionRunResponse.model_validate_json(received[-1]["message"])
    assert (answer.status, answer.result) == ("closed", {"n": 7})


def test_a_function_that_raises_is_a_failed_run_with_its_traceback_in_the_logs(http: httpx.Client, url: str) -> None:
    answer = FunctionRunResponse.model_validate(start(http, url, "fail").json())
    assert (answer.status, answer.result) == ("failed", "ValueError: boom")

    run = GetFunctionRunResponse.model_validate(http.get(f"{url}/functions/fail/runs/{answer.function_run_id}").json())
    assert run.status == "failed"
    assert run.result == "ValueError: boom"
    assert run.logs[0] == "Traceback (most recent call last):"
    assert '    raise ValueError("boom")' in run.logs
    assert run.logs[-1] == "ValueError: boom"
    assert "runner.py" not in "\n".join(run.logs)


@pytest.mark.parametrize(
    ("function_id", "variables", "result"),
    [
        ("no_run", {}, "no_run.py defines no run() function: add `def run(**variables): ...`"),
        (
            "broken_import",
            {},
            "cannot load broken_import.py: ModuleNotFoundError: No module named 'nope_module_for_relay_tests'",
        ),
        ("doubler", {"y": 1}, "TypeError: run() got an unexpected keyword argument 'y'"),
        ("not_json", {}, "run() returned a value that is not JSON: Object of type set is not JSON serializable"),
        ("nan", {}, "run() returned a value that is not JSON: Out of range float values are not JSON compliant"),
        ("exits", {}, "the function process exited with code 3 without returning a result (see the run's logs)"),
        ("sys_exit", {}, "SystemExit: 4"),
        ("imports_relay_internals", {}, "ModuleNotFoundError: No module named 'wire'"),
    ],
)
def test_functions_that_cannot_run_fail_with_a_message(
    http: httpx.Client, url: str, function_id: str, variables: dict[str, Any], result: str
) -> None:
    answer = FunctionRunResponse.model_validate(start(http, url, function_id, variables=variables).json())
    assert (answer.status, answer.result) == ("failed", result)


def test_a_syntax_error_fails_the_run_and_says_where(http: httpx.Client, url: str) -> None:
    response = start(http, url, "bad_syntax")

    assert response.status_code == 200
    answer = FunctionRunResponse.model_validate(response.json())
    assert answer.status == "failed"
    assert answer.result.startswith("cannot load bad_syntax.py: SyntaxError at line 2: ")  # line 1 is blank


def test_async_run_functions_are_awaited(http: httpx.Client, url: str) -> None:
    answer = FunctionRunResponse.model_validate(start(http, url, "doubler", variables={"x": 21}).json())
    assert (answer.status, answer.result) == ("closed", 42)


def test_a_function_imports_modules_next_to_it(http: httpx.Client, url: str) -> None:
    answer = FunctionRunResponse.model_validate(start(http, url, "uses_helper").json())
    assert (answer.status, answer.result) == ("closed", "from the function's directory")


# timeouts


def test_a_run_over_its_timeout_is_killed_and_answered_failed(http: httpx.Client, url: str) -> None:
    began = time.monotonic()
    response = http.post(
        f"{url}/functions/slow/runs/start",
        json={"function_id": "slow", "variables": {"seconds": 60}},
        headers={"Relay-Run-Timeout": "0.5"},
    )

    assert time.monotonic() - began < 20
    assert response.status_code == 200
    answer = FunctionRunResponse.model_validate(response.json())
    assert (answer.status, answer.result) == ("failed", "timed out after 0.5 s")
    run = http.get(f"{url}/functions/slow/runs/{answer.function_run_id}").json()
    assert (run["status"], run["result"], run["logs"]) == ("failed", "timed out after 0.5 s", ["sleeping"])


def test_the_default_timeout_applies_to_streamed_runs_too(http: httpx.Client, runtime: Callable[..., str]) -> None:
    url = runtime(default_timeout=0.5)
    body = {"function_id": "slow", "variables": {}, "stream": True}
    with http.stream("POST", f"{url}/functions/slow/runs/start", json=body) as response:
        received = list(events(response.iter_lines()))

    assert received[0] == {"type": "log", "message": "sleeping"}
    answer = FunctionRunResponse.model_validate_json(received[-1]["message"])
    assert (answer.status, answer.result) == ("failed", "timed out after 0.5 s")


def test_ending_a_run_kills_the_processes_it_started(http: httpx.Client, url: str, tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    response = http.post(
        f"{url}/functions/spawner/runs/start",
        json={"variables": {"pid_file": str(pid_file)}},
        headers={"Relay-Run-Timeout": "1"},
    )
    assert response.json()["result"] == "timed out after 1 s"

    pid = int(pid_file.read_text())
    wait_until(lambda: not _alive(pid), f"process {pid} to end")


def _alive(pid: int) -> bool:
    """Running, and not a zombie waiting for a (container's) init to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


@pytest.mark.parametrize("value", ["0", "-1", "soon", "nan", "86401"])
def test_a_bad_timeout_header_is_refused(http: httpx.Client, url: str, value: str) -> None:
    response = http.post(f"{url}/functions/echo/runs/start", json={}, headers={"Relay-Run-Timeout": value})

    assert response.status_code == 422
    assert response.json() == {
        "detail": f"the relay-run-timeout header must be seconds, above 0 and at most 86400; got {value!r}",
        "error": "invalid_request",
    }


# concurrency


def test_runs_over_max_concurrent_get_429_with_retry_after(http: httpx.Client, runtime: Callable[..., str]) -> None:
    url = runtime(max_concurrent=1)
    run_id = http.post(f"{url}/functions/slow/runs/create", json={}).json()["function_run_id"]
    run_url = f"{url}/functions/slow/runs/{run_id}"
    with http.stream("POST", run_url, json={"variables": {}, "stream": True}) as response:
        received = events(response.iter_lines())
        assert next(received) == {"type": "log", "message": "sleeping"}  # the one slot is taken now

        refused = start(http, url, "echo")
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"
        assert refused.json() == {
            "detail": "too many runs in flight: 1 of max_concurrent=1; retry after 1 s",
            "error": "too_many_runs",
        }
        created = http.post(f"{url}/functions/echo/runs/create", json={})
        assert created.status_code == 200  # creating a run does not take a slot
        refused = http.post(f"{url}/functions/echo/runs/{created.json()['function_run_id']}", json={})
        assert refused.status_code == 429

        assert http.delete(run_url).status_code == 200
        last = list(received)[-1]

    answer = FunctionRunResponse.model_validate_json(last["message"])
    assert (answer.status, answer.result) == ("failed", "stopped by request")
    assert start(http, url, "echo").json()["status"] == "closed"  # the slot is free again


# unknown functions and bad requests


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/functions/missing/runs/start"),
        ("POST", "/functions/missing/runs/create"),
        ("GET", "/functions/missing"),
    ],
)
def test_an_unknown_function_is_404_with_a_message(
    http: httpx.Client, url: str, functions_dir: Path, method: str, path: str
) -> None:
    response = http.request(method, f"{url}{path}", json={"variables": {}})

    assert response.status_code == 404
    assert response.json() == {
        "detail": f"unknown function 'missing': there is no file {functions_dir}/missing.py "
        f"(the runtime serves the .py files in {functions_dir})",
        "error": "unknown_function",
    }


def test_a_function_id_that_is_not_a_file_name_is_404(http: httpx.Client, url: str, functions_dir: Path) -> None:
    response = start(http, url, "echo.py")

    assert response.status_code == 404
    assert response.json()["detail"] == (
        "unknown function 'echo.py': a function id is 1 to 200 letters, digits, '_' or '-' "
        f"(it names the file {functions_dir}/<function_id>.py)"
    )


def test_an_unknown_run_is_404(http: httpx.Client, url: str) -> None:
    response = http.get(f"{url}/functions/echo/runs/nope")

    assert response.status_code == 404
    assert response.json() == {
        "detail": "unknown run 'nope' of function 'echo': it never existed, or it ended and was dropped "
        "(the runtime keeps the last 1000 runs in memory)",
        "error": "unknown_run",
    }


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"", 'the request body is empty; expected a JSON object such as {"variables": {}}'),
        (
            b"{nope",
            "the request body is not valid JSON: Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1)",
        ),
        (b"[]", "the request body must be a JSON object, got list"),
        (b'{"variables": [1]}', "variables must be a JSON object, got list: [1]"),
        (b'{"stream": "yes"}', "stream must be true or false, got 'yes'"),
        (b'{"runtime": "fast"}', "runtime must be one of standard, extended or null, got 'fast'"),
        (b'{"function_run_id": 5}', "function_run_id must be a string, got 5"),
        (
            b'{"varaibles": {}}',
            "unknown key 'varaibles' in the request body; expected keys: "
            "function_id, function_run_id, variables, stream, runtime",
        ),
        (b'{"function_id": "other"}', "function_id 'other' in the body does not match 'echo' in the path"),
        (
            b'{"function_id": "echo", "workflow_id": "other"}',
            "'workflow_id' and 'function_id' differ in the request body: 'other' != 'echo'",
        ),
    ],
)
def test_a_bad_body_is_422_with_a_message(http: httpx.Client, url: str, body: bytes, detail: str) -> None:
    response = http.post(f"{url}/functions/echo/runs/start", content=body)

    assert response.status_code == 422
    assert response.json() == {"detail": detail, "error": "invalid_request"}


def test_api_key(http: httpx.Client, runtime: Callable[..., str]) -> None:
    url = runtime(api_key="s3cret")
    path = f"{url}/functions/echo/runs/start"

    for headers in ({}, {"Authorization": "Bearer wrong"}, {"x-notte-api-key": "wrong"}, {"Authorization": "s3cret"}):
        refused = http.post(path, json={}, headers=headers)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
        assert refused.json()["error"] == "unauthorized"
        assert "s3cret" not in refused.text
    assert http.post(path, json={}, headers={"Authorization": "Bearer s3cret"}).json()["status"] == "closed"
    assert http.post(path, json={}, headers={"x-notte-api-key": "s3cret"}).json()["status"] == "closed"
    assert http.get(f"{url}/health").json() == {"status": "ok"}

    code_url = http.get(f"{url}/functions/echo", headers={"x-notte-api-key": "s3cret"}).json()["url"]
    assert "?token=" in code_url
    assert http.get(code_url).text == textwrap.dedent(FUNCTIONS["echo"])  # the link carries its own token
    assert http.get(code_url.split("?")[0]).status_code == 401
    assert http.get(code_url.replace("/echo/", "/fail/")).status_code == 401


# created runs, reading and stopping


def test_a_created_run_is_active_until_started_once(http: httpx.Client, url: str) -> None:
    created = CreateFunctionRunResponse.model_validate(http.post(f"{url}/functions/echo/runs/create", json={}).json())
    run_url = f"{url}/functions/echo/runs/{created.function_run_id}"
    assert GetFunctionRunResponse.model_validate(http.get(run_url).json()).status == "active"

    answer = http.post(run_url, json={"workflow_id": "echo", "workflow_run_id": created.function_run_id})
    assert answer.json() == {
        "function_id": "echo",
        "function_run_id": created.function_run_id,
        "session_id": None,
        "result": {},
        "status": "closed",
    }
    again = http.post(run_url, json={"variables": {}})
    assert again.status_code == 409
    assert again.json()["detail"] == (
        f"run '{created.function_run_id}' was already started or stopped (status closed): "
        "create a new run, or start without a function_run_id"
    )
    stop = http.delete(run_url)
    assert stop.status_code == 409
    assert stop.json()["detail"] == (
        f"run '{created.function_run_id}' already ended with status closed: there is nothing to stop"
    )
    assert http.get(f"{url}/functions/fail/runs/{created.function_run_id}").status_code == 404


def test_runs_start_takes_a_created_run_id_in_the_body(http: httpx.Client, url: str) -> None:
    run_id = http.post(f"{url}/functions/echo/runs/create", json={}).json()["function_run_id"]

    answer = start(http, url, "echo", function_run_id=run_id, variables={"k": "v"}).json()

    assert (answer["function_run_id"], answer["result"]) == (run_id, {"k": "v"})
    run = GetFunctionRunResponse.model_validate(http.get(f"{url}/functions/echo/runs/{run_id}").json())
    assert (run.status, run.result, run.variables, run.logs) == ("closed", '{"k": "v"}', {"k": "v"}, ["echo ['k']"])


def test_stopping_a_created_run_means_it_never_starts(http: httpx.Client, url: str) -> None:
    run_id = http.post(f"{url}/functions/echo/runs/create", json={}).json()["function_run_id"]
    run_url = f"{url}/functions/echo/runs/{run_id}"

    stopped = UpdateFunctionRunResponse.model_validate(http.delete(run_url).json())
    assert stopped.status == "stopped"
    assert http.delete(run_url).status_code == 200  # stopping twice is fine
    assert (http.get(run_url).json()["status"], http.get(run_url).json()["result"]) == (
        "failed",
        "stopped before it started",
    )
    assert http.post(run_url, json={}).status_code == 409


def test_only_the_last_keep_runs_are_kept(http: httpx.Client, runtime: Callable[..., str]) -> None:
    url = runtime(keep_runs=2)
    first, second, third = (start(http, url, "echo").json()["function_run_id"] for _ in range(3))

    assert http.get(f"{url}/functions/echo/runs/{first}").status_code == 404
    assert http.get(f"{url}/functions/echo/runs/{second}").status_code == 200
    assert http.get(f"{url}/functions/echo/runs/{third}").status_code == 200


def test_function_metadata(http: httpx.Client, url: str) -> None:
    info = GetFunctionWithLinkResponse.model_validate(http.get(f"{url}/functions/billing").json())

    assert info.function_id == "billing"
    assert info.description == "Record a paid invoice."
    assert [(v.name, v.type, v.default) for v in info.variables or []] == [
        ("invoice_id", "str", None),
        ("amount", "int", None),
        ("email", "str | None", "None"),
        ("note", "str", "''"),
    ]
    assert info.latest_version == info.versions[0]
    assert http.get(f"{url}/functions/bad_syntax").json()["variables"] is None
    assert http.get(info.url).text == textwrap.dedent(FUNCTIONS["billing"])


# the lifespan and the runner


def test_closing_the_registry_kills_running_runs(functions_dir: Path) -> None:
    async def scenario() -> tuple[RunStatus, Any, list[str]]:
        runs = Runs(max_concurrent=2)
        listener: asyncio.Queue[str | None] = asyncio.Queue()
        run = runs.start(locate(functions_dir, "slow"), variables={}, timeout=60, listener=listener)
        assert await asyncio.wait_for(listener.get(), 20) == "sleeping"
        process = run.process
        assert process is not None
        await runs.close()
        assert process.returncode == -signal.SIGKILL
        return run.status, run.result, list(run.logs)

    assert asyncio.run(scenario()) == (
        RunStatus.FAILED,
        "the runtime shut down before the run ended",
        ["sleeping"],
    )


def test_the_runner_exits_when_the_runtime_goes_away(functions_dir: Path) -> None:
    command = [sys.executable, "-u", str(RUNNER), str(functions_dir / "slow.py")]
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as child:
        assert child.stdin is not None and child.stderr is not None
        child.stdin.write(b'{"variables": {"seconds": 120}}\n')
        child.stdin.flush()
        assert child.stderr.readline() == b"sleeping\n"

        child.stdin.close()  # what the runtime's death looks like from the child

        assert child.wait(timeout=20) == 70
        assert child.stdout is not None and child.stdout.read() == b""


# notte-sdk pointed at the runtime


def test_sdk_function_run_with_notte_api_url(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTTE_API_URL", url)
    with NotteClient(api_key="anything", max_retries=0) as client:
        function = client.Function("echo")

        plain = function.run(stream=False, invoice_id="in_1", amount=100)
        streamed = function.run(stream=True, event_type="push", data={"ref": "main"})

    assert (plain.status, plain.result) == ("closed", {"invoice_id": "in_1", "amount": 100})
    assert (streamed.status, streamed.result) == ("closed", {"event_type": "push", "data": {"ref": "main"}})
    assert plain.function_run_id != streamed.function_run_id


def test_sdk_create_run_then_run_and_get_run(url: str) -> None:
    with NotteClient(api_key="anything", server_url=url, max_retries=0) as client:
        function = client.Function("chatty")
        created = function.create_run()
        answer = function.run(function_run_id=created.function_run_id, stream=False, n=2)
        run = function.get_run(created.function_run_id)

        via_client = client.functions.create_run("echo")
        started = client.functions.run_start(
            function_id="echo", function_run_id=via_client.function_run_id, variables={"q": 1}, stream=False
        )
        read = client.functions.run_get_metadata(function_id="echo", run_id=via_client.function_run_id)

    assert (answer.function_run_id, answer.status, answer.result) == (created.function_run_id, "closed", {"n": 2})
    assert (run.status, run.result, run.logs) == ("closed", '{"n": 2}', ["one", "WARNING chatty: two", "three"])
    assert (started.status, started.result, read.status, read.variables) == ("closed", {"q": 1}, "closed", {"q": 1})


def test_sdk_raises_on_a_failed_run_unless_told_not_to(url: str) -> None:
    with NotteClient(api_key="anything", server_url=url, max_retries=0) as client:
        function = client.Function("fail")
        with pytest.raises(FailedToRunCloudFunctionError) as raised:
            function.run(stream=False)
        quiet = function.run(stream=True, raise_on_failure=False)

    assert raised.value.response.result == "ValueError: boom"
    assert (quiet.status, quiet.result) == ("failed", "ValueError: boom")


def test_sdk_stop_run_ends_a_running_function(url: str, http: httpx.Client) -> None:
    with NotteClient(api_key="anything", server_url=url, max_retries=0) as client, ThreadPoolExecutor(1) as pool:
        function = client.Function("slow")
        run_id = function.create_run().function_run_id
        running = pool.submit(function.run, function_run_id=run_id, stream=False, raise_on_failure=False)
        wait_until(lambda: function.get_run(run_id).logs == ["sleeping"], "the function to start")

        stopped = function.stop_run(run_id)
        answer = running.result(timeout=20)
        run = function.get_run(run_id)

    assert (stopped.function_run_id, stopped.status) == (run_id, "stopped")
    assert (answer.status, answer.result) == ("failed", "stopped by request")
    assert (run.status, run.result) == ("failed", "stopped by request")


def test_sdk_documented_calls_and_downloads_with_an_api_key(runtime: Callable[..., str]) -> None:
    url = runtime(api_key="k")
    with NotteClient(api_key="k", server_url=url, max_retries=0) as client:
        client.health_check()
        function = client.Function("billing")
        assert function.download() == textwrap.dedent(FUNCTIONS["billing"])
        assert function.get_curl(invoice_id="x").startswith(f"curl --location '{url}/functions/billing/runs/start'")

        # The names the Functions doc uses are 1.9 aliases in notte-sdk 1.10, deprecated but working.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            run_id = client.functions.create_run(function_id="echo").function_run_id
            client.functions.run(function_run_id=run_id, function_id="echo", variables={"u": 1}, stream=False)
            status = client.functions.get_run(function_id="echo", run_id=run_id)

    assert (status.status, status.result) == ("closed", '{"u": 1}')


def test_sdk_with_a_wrong_api_key_gets_401(runtime: Callable[..., str]) -> None:
    url = runtime(api_key="k")
    with NotteClient(api_key="wrong", server_url=url, max_retries=0) as client:
        with pytest.raises(Exception, match="status code 401"):
            client.Function("echo").run(stream=False)
