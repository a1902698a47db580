"""The relay command: check, send (against a real uvicorn server), events and show."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from relay import config
from relay.app import create_app
from relay.cli import main
from relay.store.sqlite import SQLiteStore
from tests.conftest import ROOT, serve_in_thread

EXAMPLES = sorted((ROOT / "examples").glob("*/*.json"))


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_check_accepts_the_example_rules() -> None:
    code, out, _ = run("check", str(ROOT / "routes.yaml"))
    assert code == 0
    assert out.startswith(f"{ROOT / 'routes.yaml'}: ok (")


def test_check_reports_every_error_with_its_position(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(
        "version: 1\n"
        "sources:\n"
        "  stripe: {kind: strip, secret: x}\n"
        '  github: {kind: github, secret: "${NOPE_SECRET}"}\n'
        "routes:\n"
        "  - id: a\n"
        "    source: github\n"
        "    events: [pull_request]\n"
        "    targets: [{function_id: f, variables: {}}]\n"
    )
    code, out, err = run("check", str(path), env={"NOPE_SECRET": ""})
    assert code == 1
    lines = err.splitlines()
    assert lines[:-1] == [
        f"{path}:3:12: error: source 'stripe': kind must be one of [github, gitlab, hmac, linear, none, paddle, "
        "shopify, slack, standard-webhooks, stripe, svix, twilio], got 'strip'",
        f"{path}:4:3: error: source 'github' has no secret: set `secret: \"${{ENV_VAR}}\"` "
        "(empty values from unset variables are dropped)",
        f"{path}:8:14: error: event pattern 'pull_request': GitHub sends 'pull_request' with an action (event type "
        "pull_request.<action>), so 'pull_request' never matches; write 'pull_request.*' to match every action",
    ]
    assert lines[-1] == f"Error: {path}: 3 error(s)"


def test_check_names_a_missing_variable(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text('version: 1\nsources:\n  github: {kind: github, secret: "${GH_SECRET_UNSET}"}\nroutes: []\n')
    code, _, err = run("check", str(path), env={})
    assert code == 1
    assert f"{path}:3:26: error: environment variable GH_SECRET_UNSET is not set (set it, or write " in err
    assert "no secret" not in err  # one cause, one message


def test_check_missing_file() -> None:
    code, _, err = run("check", "/nonexistent/routes.yaml")
    assert code == 1
    assert "/nonexistent/routes.yaml: error: file not found" in err


@pytest.mark.parametrize("payload", EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_send_signs_each_example_as_its_provider(payload: Path, tmp_path: Path) -> None:
    loaded = config.load(ROOT / "routes.yaml", env={})
    source = payload.parent.name
    assert source in loaded.sources, f"examples/{source} has no source of that name in routes.yaml"
    app = create_app(loaded, store=SQLiteStore(tmp_path / "relay.db"), deliver=False)
    with serve_in_thread(app) as url:
        # Twilio signs the configured public URL, not the one it happens to reach: both sides use the default here.
        env = {"RELAY_CONFIG": str(ROOT / "routes.yaml")}
        code, out, _ = run("send", source, str(payload), "--url", f"{url}/hooks/{source}", env=env)
    assert code == 0, out
    assert out.startswith("200 OK")
    answer = json.loads(out.split("  ", 1)[1].splitlines()[0])
    assert answer["duplicate"] is False
    assert out.splitlines()[-1] == f"next: relay show {answer['id']}"


def test_send_reports_a_refusal(tmp_path: Path) -> None:
    loaded = config.load(ROOT / "routes.yaml", env={})
    app = create_app(loaded, store=SQLiteStore(tmp_path / "relay.db"), deliver=False)
    with serve_in_thread(app) as url:
        env = {"RELAY_CONFIG": str(ROOT / "routes.yaml"), "GITHUB_WEBHOOK_SECRET": "another-secret"}
        code, out, _ = run("send", "github", str(ROOT / "examples/github/pull_request.opened.json"), "--url",
                           f"{url}/hooks/github", env=env)  # fmt: skip
    assert code == 1
    assert out.startswith("401 Unauthorized")


def test_events_and_show(tmp_path: Path) -> None:
    db = tmp_path / "relay.db"
    loaded = config.load(ROOT / "routes.yaml", env={})
    app = create_app(loaded, store=SQLiteStore(db), deliver=False)
    with serve_in_thread(app) as url:
        env = {"RELAY_CONFIG": str(ROOT / "routes.yaml")}
        run("send", "stripe", str(ROOT / "examples/stripe/invoice.paid.json"), "--url", f"{url}/hooks/stripe", env=env)
        run("send", "github", str(ROOT / "examples/github/pull_request.opened.json"), "--url", f"{url}/hooks/github",
            env=env)  # fmt: skip
    code, out, _ = run("events", "--json", "--db", str(db))
    assert code == 0
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["source"] for e in events] == ["github", "stripe"]
    stripe_event = events[1]
    assert set(stripe_event) >= {"id", "source", "type", "event_id", "status", "received_at", "deliveries"}
    assert stripe_event["type"] == "invoice.paid" and stripe_event["status"] == "routed"
    (delivery,) = stripe_event["deliveries"]
    assert set(delivery) >= {"id", "route_id", "function_id", "status", "attempts", "function_run_id", "last_error"}
    assert (delivery["route_id"], delivery["function_id"], delivery["attempts"]) == ("invoice-paid", "func_billing", 0)

    code, out, _ = run("events", "--json", "--db", str(db), "--source", "github")
    assert [json.loads(line)["source"] for line in out.splitlines()] == ["github"]

    code, out, _ = run("events", "--db", str(db))
    assert code == 0 and out.splitlines()[0].split() == ["ID", "RECEIVED", "SOURCE", "TYPE", "STATUS", "DELIVERIES"]

    code, out, _ = run("show", stripe_event["id"], "--json", "--db", str(db))
    shown = json.loads(out)
    assert shown["id"] == stripe_event["id"] and shown["body"]["type"] == "invoice.paid"
    assert shown["deliveries"][0]["history"] == []
    assert (
        shown["deliveries"][0]["variables"]["amount"]
        == json.loads((ROOT / "examples/stripe/invoice.paid.json").read_text())["data"]["object"]["amount_paid"]
    )

    code, out, _ = run("show", stripe_event["event_id"], "--db", str(db))
    assert code == 0 and out.startswith(f"event     {stripe_event['id']}")


def test_show_unknown_event(tmp_path: Path) -> None:
    db = tmp_path / "relay.db"
    code, _, err = run("events", "--db", str(db))
    assert code == 1 and "no database at" in err
    SQLiteStore(db)  # nothing created yet
    code, out, _ = run("migrate", "--db", str(db))
    assert code == 0 and out.strip() == "schema up to date"
    code, _, err = run("show", "evt_missing", "--db", str(db))
    assert code == 1 and "no event with id 'evt_missing'" in err


def test_serve_with_a_store_that_cannot_open_says_so() -> None:
    code, _, err = run("serve", "--config", str(ROOT / "routes.yaml"), "--db", "/nonexistent/dir/relay.db")
    assert code == 1
    assert err.strip() == "Error: cannot open /nonexistent/dir/relay.db: unable to open database file"
