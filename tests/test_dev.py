"""`relay dev` and the README's run command: `./scripts/dev` starts the relay and the local Functions runtime,
prints a `relay send` line that runs as printed, the event it sends is delivered, and SIGTERM stops it all."""

from __future__ import annotations

import json
import shlex
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from relay import config, dev
from tests.conftest import ROOT
from tests.processes import RELAY, clean_env, events, free_port, relay, started, wait_for

BANNER_TIMEOUT = 60  # first start of a cold machine: imports, the install check, two servers


def options(port: int = 8000, functions_port: int = 8001, **changes: str) -> dev.Options:
    values = {"config": "routes.yaml", "functions": "examples/functions", "db": "relay-dev.db", **changes}
    return dev.Options(values["config"], port, functions_port, values["functions"], values["db"])


def example_rules() -> config.Config:
    return config.load(ROOT / "routes.yaml", env={"NOTTE_API_URL": "http://127.0.0.1:8001"})


# -- what it prints ----------------------------------------------------------------------------------------------


def test_the_banner_prints_commands_that_run_as_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    text = dev.banner(example_rules(), options(), ".venv/bin/relay")
    assert text.splitlines() == [
        "relay dev is running (Ctrl-C stops it)",
        "  relay      http://127.0.0.1:8000  POST /hooks/{source}  "
        "(stripe, github, svix, slack, shopify, gitlab, linear, paddle, twilio, hmac)",
        "  functions  http://127.0.0.1:8001  examples/functions: func_billing, func_echo, func_review",
        "  rules      routes.yaml (3 routes)",
        "  database   relay-dev.db",
        "",
        "Try:",
        "  .venv/bin/relay send stripe examples/stripe/invoice.paid.json    # sign it with the source's secret and "
        "POST it",
        "  .venv/bin/relay events --db relay-dev.db                         # the event, its delivery and its status",
        "  .venv/bin/relay show evt_... --db relay-dev.db                   # every attempt, the run id and the result",
        "  .venv/bin/relay route stripe examples/stripe/invoice.paid.json   # dry run: which routes match, why not, "
        "the variables",
    ]


def test_the_send_line_names_the_url_and_rules_only_when_they_are_not_the_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(ROOT)
    text = dev.banner(example_rules(), options(8123, 8124, config="my rules.yaml", db="/tmp/x.db"), "relay")
    assert (
        "  relay send stripe examples/stripe/invoice.paid.json --url http://127.0.0.1:8123/hooks/stripe "
        "--config 'my rules.yaml'   # "
    ) in text
    assert "  relay events --db /tmp/x.db   " in text
    assert "  relay route stripe examples/stripe/invoice.paid.json --config 'my rules.yaml'  " in text


def test_the_printed_program_is_the_one_running(tmp_path: Path) -> None:
    script = tmp_path / ".venv" / "bin" / "relay"
    assert dev.executable(".venv/bin/relay", tmp_path, on_path=None) == ".venv/bin/relay"
    assert dev.executable(str(script), tmp_path, on_path=None) == ".venv/bin/relay"
    assert dev.executable(str(script), tmp_path / "elsewhere", on_path=None) == str(script)
    assert dev.executable(str(script), tmp_path / "elsewhere", on_path=str(script)) == "relay"
    assert dev.executable(str(script), tmp_path, on_path="/usr/local/bin/relay") == ".venv/bin/relay"
    assert dev.executable("/src/relay/__main__.py", tmp_path, on_path=None).endswith(" -m relay")


def test_dev_points_the_rules_at_the_local_runtime_with_a_fresh_key() -> None:
    environ: dict[str, str] = {"NOTTE_API_URL": "https://api.notte.cc", "NOTTE_API_KEY": "sk_real"}
    key = dev.point_at_runtime(8765, environ)
    assert environ == {"NOTTE_API_URL": "http://127.0.0.1:8765", "NOTTE_API_KEY": key}
    assert key.startswith("dev_") and len(key) > 20
    assert dev.point_at_runtime(8765, {}) != key
    loaded = config.load(ROOT / "routes.yaml", env=environ)
    assert loaded.notte.api_url == "http://127.0.0.1:8765"
    assert loaded.notte.api_key.reveal() == key


# -- the README's run command, for real ----------------------------------------------------------------------------


def test_scripts_dev_delivers_the_event_its_banner_says_to_send(tmp_path: Path) -> None:
    port, functions_port = free_port(), free_port()
    db = tmp_path / "dev.db"
    env = clean_env()
    command = [ROOT / "scripts" / "dev", "--port", str(port), "--functions-port", str(functions_port), "--db", db]
    with started(command, log=tmp_path / "dev.log", env=env, cwd=ROOT) as process:
        send_line = process.read_until(lambda line: " send " in line, timeout=BANNER_TIMEOUT)
        assert send_line.split("#")[0].strip() in {
            f"{program} send stripe examples/stripe/invoice.paid.json --url http://127.0.0.1:{port}/hooks/stripe"
            for program in (".venv/bin/relay", "relay")
        }
        assert f"http://127.0.0.1:{port}" in "\n".join(process.output)
        assert f"http://127.0.0.1:{functions_port}" in "\n".join(process.output)

        sent = subprocess.run(
            shlex.split(send_line, comments=True), cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert sent.stdout.startswith("200 OK ")

        def delivered() -> dict[str, object] | None:
            for event in events(db, env, ROOT):
                if [delivery["status"] for delivery in event["deliveries"]] == ["succeeded"]:
                    return dict(event)
            return None

        event = wait_for(delivered, timeout=60, what="the invoice.paid delivery to succeed")
        (delivery,) = event["deliveries"]  # type: ignore[misc]
        assert delivery["function_id"] == "func_billing"
        assert delivery["function_run_id"]

        shown = relay("show", str(event["id"]), "--json", "--db", str(db), env=env, cwd=ROOT)
        (attempt,) = json.loads(shown.stdout)["deliveries"][0]["history"]
        assert attempt["function_status"] == "closed"
        assert json.loads(attempt["result"])["recorded"] is True

        process.signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0, process.describe()


def test_ctrl_c_stops_both_servers(tmp_path: Path) -> None:
    port, functions_port = free_port(), free_port()
    args = [*RELAY, "dev", "--port", str(port), "--functions-port", str(functions_port), "--db", tmp_path / "d.db"]
    with started(args, log=tmp_path / "dev.log", env=clean_env(), cwd=ROOT) as process:
        process.read_until(lambda line: line.startswith("Try:"), timeout=BANNER_TIMEOUT)
        process.signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0, process.describe()
    for taken in (port, functions_port):  # both sockets are closed: the ports can be bound again at once
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", taken))


def test_a_taken_port_is_one_clear_message(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = relay(
            "dev", "--port", str(port), "--functions-port", str(free_port()), "--db", str(tmp_path / "d.db"),
            env=clean_env(), cwd=ROOT,
        )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.endswith(
        f"Error: cannot listen on 127.0.0.1:{port}: Address already in use (is relay dev already running?)\n"
    )
    assert not (tmp_path / "d.db").exists()
