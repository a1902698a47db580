"""`relay route` (the dry run) and `relay curl` (the forward of a stored delivery, as a cURL command)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from relay import __version__, config, providers
from relay.app import create_app
from relay.cli import main
from relay.functions import create_app as create_runtime
from relay.store import EventFilter
from relay.store.sqlite import SQLiteStore
from tests.conftest import ROOT, running, serve_in_thread

ROUTES = str(ROOT / "routes.yaml")
INVOICE = ROOT / "examples" / "stripe" / "invoice.paid.json"
PULL_REQUEST = ROOT / "examples" / "github" / "pull_request.opened.json"
# The example rules read these; unset, so that their defaults apply whatever the environment of the test run.
UNSET = {"NOTTE_API_URL": None, "NOTTE_API_KEY": None, "STRIPE_WEBHOOK_SECRET": None}


def run(*args: str, env: dict[str, str | None] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env={**UNSET, **(env or {})}, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def invoice(tmp_path: Path, **changes: object) -> Path:
    body = json.loads(INVOICE.read_text())
    body.update(changes)
    path = tmp_path / "invoice.paid.json"
    path.write_text(json.dumps(body))
    return path


# -- relay route -------------------------------------------------------------------------------------------------


def test_route_shows_the_matched_route_with_its_variables_and_why_the_others_do_not_match() -> None:
    code, out, err = run("route", "stripe", str(INVOICE), "--config", ROUTES)
    assert (code, err) == (0, "")
    assert out == (
        "event  stripe invoice.paid (id evt_1QmZ3nLkdIwHu7ixT0pSgM4b)\n"
        "\n"
        "invoice-paid: matched\n"
        "  targets[0] func_billing: variables {\n"
        '      "invoice_id": "in_1QmZ3kLkdIwHu7ixq9Xk2rVd",\n'
        '      "amount": 4900,\n'
        '      "email": "jordan.lee@example.com",\n'
        '      "note": "Invoice ACME-0042-0007 paid"\n'
        "    }\n"
        "pr-opened: not matched: route is for source 'github', not 'stripe'\n"
        "everything-else: not matched: route is for source 'svix', not 'stripe'\n"
        "\n"
        "1 of 3 routes matched: 1 delivery would be planned\n"
    )


def test_route_json_prints_one_line_per_route_and_keeps_the_types_of_whole_value_references() -> None:
    code, out, _ = run("route", "stripe", str(INVOICE), "--config", ROUTES, "--json")
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    event = {"source": "stripe", "type": "invoice.paid", "id": "evt_1QmZ3nLkdIwHu7ixT0pSgM4b"}
    assert lines == [
        {
            "route_id": "invoice-paid",
            "source": "stripe",
            "matched": True,
            "reason": None,
            "event": event,
            "targets": [
                {
                    "index": 0,
                    "function_id": "func_billing",
                    "fired": True,
                    "reason": None,
                    "variables": {
                        "invoice_id": "in_1QmZ3kLkdIwHu7ixq9Xk2rVd",
                        "amount": 4900,
                        "email": "jordan.lee@example.com",
                        "note": "Invoice ACME-0042-0007 paid",
                    },
                    "error": None,
                }
            ],
        },
        {
            "route_id": "pr-opened",
            "source": "github",
            "matched": False,
            "reason": "route is for source 'github', not 'stripe'",
            "event": event,
            "targets": [],
        },
        {
            "route_id": "everything-else",
            "source": "svix",
            "matched": False,
            "reason": "route is for source 'svix', not 'stripe'",
            "event": event,
            "targets": [],
        },
    ]
    assert type(lines[0]["targets"][0]["variables"]["amount"]) is int


def test_route_names_the_failing_condition_and_exits_1_when_nothing_matches(tmp_path: Path) -> None:
    code, out, _ = run("route", "stripe", str(invoice(tmp_path, livemode=False)), "--config", ROUTES)
    assert code == 1
    assert out.splitlines()[2:] == [
        "invoice-paid: not matched: when: body.livemode is false, expected true",
        "pr-opened: not matched: route is for source 'github', not 'stripe'",
        "everything-else: not matched: route is for source 'svix', not 'stripe'",
        "",
        "no route matched (of 3): the event would be stored as unrouted",
    ]
    code, out, _ = run("route", "stripe", str(invoice(tmp_path, livemode=False)), "--config", ROUTES, "--json")
    assert code == 1
    assert [json.loads(line)["matched"] for line in out.splitlines()] == [False, False, False]


def test_route_needs_no_valid_signature(tmp_path: Path) -> None:
    code, out, _ = run(
        "route", "stripe", str(INVOICE), "--config", ROUTES, "-H", "Stripe-Signature: t=1,v1=00", "--json"
    )
    assert code == 0
    assert json.loads(out.splitlines()[0])["matched"] is True


def test_route_takes_the_github_event_from_the_file_name_or_from_a_header() -> None:
    code, out, _ = run("route", "github", str(PULL_REQUEST), "--config", ROUTES, "--json")
    assert code == 0
    pr_opened = json.loads(out.splitlines()[1])
    assert pr_opened["event"]["type"] == "pull_request.opened"
    assert pr_opened["matched"] is True
    assert pr_opened["targets"][0]["variables"]["event_type"] == "pull_request.opened"
    assert pr_opened["targets"][0]["variables"]["data"] == json.loads(PULL_REQUEST.read_text())

    code, out, _ = run("route", "github", str(PULL_REQUEST), "--config", ROUTES, "-H", "X-GitHub-Event: issues")
    assert code == 1
    assert "pr-opened: not matched: event type 'issues.opened' matches none of ['pull_request.opened']" in out
    code, out, _ = run("route", "github", str(PULL_REQUEST), "--config", ROUTES, "--event", "issues")
    assert code == 1
    assert "event  github issues.opened (id " in out


def test_route_shows_render_errors_and_target_conditions(tmp_path: Path) -> None:
    rules = tmp_path / "routes.yaml"
    rules.write_text(
        "version: 1\n"
        "sources: {stripe: {kind: stripe, secret: whsec_test}}\n"
        "routes:\n"
        "  - id: billing\n"
        "    source: stripe\n"
        "    events: [invoice.*]\n"
        "    targets:\n"
        "      - function_id: func_missing\n"
        '        variables: {coupon: "{{ body.data.object.coupon }}"}\n'
        "      - function_id: func_test_mode\n"
        "        when: {body.livemode: false}\n"
        "        variables: {}\n"
        "      - function_id: func_ok\n"
        '        variables: {id: "{{ event.id }}"}\n'
    )
    code, out, _ = run("route", "stripe", str(INVOICE), "--config", str(rules))
    assert code == 0
    lines = out.splitlines()
    assert lines[2] == "billing: matched"
    assert lines[3].startswith(
        "  targets[0] func_missing: would fail (recorded, not retried): "
        "routes[0](billing).targets[0](func_missing).variables.coupon: 'coupon' not found under body.data.object"
    )
    assert lines[4] == "  targets[1] func_test_mode: skipped: when: body.livemode is true, expected false"
    assert lines[5:8] == ["  targets[2] func_ok: variables {", '      "id": "evt_1QmZ3nLkdIwHu7ixT0pSgM4b"', "    }"]
    assert lines[-1] == "1 of 1 routes matched: 2 deliveries would be planned"


def test_route_refuses_an_unknown_source_an_unreadable_payload_and_a_bad_header(tmp_path: Path) -> None:
    code, _, err = run("route", "stripe-live", str(INVOICE), "--config", ROUTES)
    assert code == 2
    assert err.startswith("Error: no source 'stripe-live' in " + ROUTES + " (sources: stripe, github, svix, ")

    broken = tmp_path / "broken.json"
    broken.write_text('{"type": "invoice.paid"')
    code, _, err = run("route", "stripe", str(broken), "--config", ROUTES)
    assert code == 2
    assert err.startswith(f"Error: {broken}: the stripe provider cannot read it: ")

    code, _, err = run("route", "stripe", str(INVOICE), "--config", ROUTES, "-H", "no colon")
    assert code == 2
    assert "'no colon' is not 'Name: value'" in err


# -- relay curl --------------------------------------------------------------------------------------------------

KEY = "sk_test_curl_secret_key"


def stored_delivery(db: Path, env: dict[str, str]) -> str:
    """Send the Stripe example to a relay (no delivery workers) and return the id of its one delivery."""
    loaded = config.load(ROUTES, env=env)
    source = loaded.sources["stripe"]
    provider = providers.get("stripe")
    assert provider is not None
    body = INVOICE.read_bytes()

    async def go() -> str:
        app = create_app(loaded, store=SQLiteStore(db), deliver=False)
        async with running(app) as client:
            signed = provider.sign(source, body, time.time())
            answer = await client.post("/hooks/stripe", content=body, headers=dict(signed.headers))
            assert answer.status_code == 200, answer.text
        store = SQLiteStore(db)
        await store.open()
        try:
            (event,) = await store.events(EventFilter())
        finally:
            await store.close()
        (delivery,) = event.deliveries
        return delivery.id

    return asyncio.run(go())


def test_curl_prints_the_forward_with_the_key_left_to_the_shell(tmp_path: Path) -> None:
    env = {"NOTTE_API_URL": "http://127.0.0.1:8001", "NOTTE_API_KEY": KEY}
    db = tmp_path / "relay.db"
    delivery_id = stored_delivery(db, env)
    code, out, err = run("curl", delivery_id, "--db", str(db), "--config", ROUTES, env=dict(env))
    assert (code, err) == (0, "")
    assert KEY not in out
    assert out.splitlines() == [
        "curl --request POST http://127.0.0.1:8001/functions/func_billing/runs/start \\",
        '  --header "Authorization: Bearer $NOTTE_API_KEY" \\',
        '  --header "x-notte-api-key: $NOTTE_API_KEY" \\',
        "  --header 'Content-Type: application/json' \\",
        "  --header 'Accept: application/json' \\",
        f"  --header 'Idempotency-Key: {delivery_id}' \\",
        "  --header 'Relay-Run-Timeout: 300' \\",
        f"  --header 'User-Agent: relay/{__version__}' \\",
        "  --max-time 305 \\",
        """  --data-raw '{"function_id":"func_billing","variables":{"invoice_id":"in_1QmZ3kLkdIwHu7ixq9Xk2rVd","""
        """"amount":4900,"email":"jordan.lee@example.com","note":"Invoice ACME-0042-0007 paid"},"stream":false}'""",
    ]


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs the curl program")
def test_the_printed_curl_starts_the_run(tmp_path: Path) -> None:
    functions = tmp_path / "functions"
    functions.mkdir()
    shutil.copy(ROOT / "examples" / "functions" / "func_billing.py", functions)
    with serve_in_thread(create_runtime(functions, api_key=KEY)) as url:
        env = {"NOTTE_API_URL": url, "NOTTE_API_KEY": KEY}
        db = tmp_path / "relay.db"
        delivery_id = stored_delivery(db, env)
        code, command, _ = run("curl", delivery_id, "--db", str(db), "--config", ROUTES, env=dict(env))
        assert code == 0
        done = subprocess.run(
            ["sh", "-c", command.rstrip() + " --silent --show-error"],
            env={"NOTTE_API_KEY": KEY, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["status"] == "closed"
    assert answer["result"] == {
        "invoice_id": "in_1QmZ3kLkdIwHu7ixq9Xk2rVd",
        "amount": 4900,
        "email": "jordan.lee@example.com",
        "recorded": True,
    }


def test_curl_of_an_unknown_delivery(tmp_path: Path) -> None:
    db = tmp_path / "relay.db"
    stored_delivery(db, {})
    code, _, err = run("curl", "dlv_nope", "--db", str(db), "--config", ROUTES)
    assert code == 1
    assert err == "Error: no delivery with id 'dlv_nope'\n"
