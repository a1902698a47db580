"""The `relay` command. Each command parses its options, calls the library, and turns domain errors into
messages and exit codes. Every option also reads `RELAY_<OPTION>` from the environment."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from relay import __version__, config, dryrun, forward, records, values
from relay.errors import ConfigError, DeliveryError, NotFound, Rejected, RelayError, StoreError
from relay.replay import replay as replay_event
from relay.store import EventFilter, RetryFilter, Store, connect

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def config_option(f: F) -> F:
    return click.option(
        "--config",
        "config_path",
        envvar="RELAY_CONFIG",
        default="routes.yaml",
        show_default=True,
        type=click.Path(dir_okay=False),
        help="The rules file.",
    )(f)


def store_options(f: F) -> F:
    f = click.option(
        "--database-url",
        envvar="RELAY_DATABASE_URL",
        default=None,
        help="sqlite:///path (PostgreSQL: later). Overrides --db.",
    )(f)
    return click.option("--db", envvar="RELAY_DB", default="relay.db", show_default=True, help="The SQLite file.")(f)


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, envvar="RELAY_JSON", help="Print JSON Lines.")(f)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="relay")
def main() -> None:
    """relay: verify provider webhooks, record them durably, route them to Notte Functions."""


@main.command()
@click.argument("path", default="routes.yaml", envvar="RELAY_CONFIG", type=click.Path(dir_okay=False))
def check(path: str) -> None:
    """Validate a rules file; print every problem as file:line:col and exit 1 if any is an error.

    Example: relay check routes.yaml
    """
    loaded = _load_config(path)
    for warning in loaded.warnings:
        click.echo(str(warning), err=True)
    click.echo(f"{path}: ok ({len(loaded.sources)} sources, {len(loaded.routes)} routes)")


@main.command()
@config_option
@store_options
@click.option("--host", envvar="RELAY_HOST", default="127.0.0.1", show_default=True)
@click.option("--port", envvar="RELAY_PORT", default=8000, show_default=True, type=int)
@click.option("--log-level", envvar="RELAY_LOG_LEVEL", default="info", show_default=True)
@click.option(
    "--deliver/--no-deliver",
    envvar="RELAY_DELIVER",
    default=True,
    show_default=True,
    help="Run delivery workers in this process (--no-deliver: ingest only).",
)
def serve(
    config_path: str, db: str, database_url: str | None, host: str, port: int, log_level: str, deliver: bool
) -> None:
    """Serve /hooks/{source} and deliver to Notte Functions.

    Example: relay serve --config routes.yaml --db relay.db --port 8000
    """
    import uvicorn

    from relay.app import create_app

    loaded = _load_config(config_path)
    for warning in loaded.warnings:
        click.echo(str(warning), err=True)
    store = _store(db, database_url)
    _run(_try_open(store))  # a clear message and exit 1 for a store that cannot open, not a traceback from uvicorn
    app = create_app(loaded, store=store, deliver=deliver)
    # The process's own garbage-collector settings (measured with bench/ingest, docs/benchmarks.md): what is
    # loaded by now lives as long as the process, so the collector need not walk it again; and a request makes
    # a few hundred short-lived objects, freed by reference counting, so collecting the youngest generation
    # every 700 allocations is mostly wasted work.
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    # No proxy headers: relay never takes a client address or URL from X-Forwarded-* (Twilio's public URL is
    # configured for that reason), and the check per request is work for nothing.
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False, lifespan="on", proxy_headers=False)


@main.command()
@store_options
def migrate(db: str, database_url: str | None) -> None:
    """Apply schema migrations (relay serve also applies them at start).

    Example: relay migrate --db relay.db
    """
    _run(_try_open(_store(db, database_url)))
    click.echo("schema up to date")


@main.command()
@click.argument("source")
@click.argument("payload", type=click.Path(exists=True, dir_okay=False))
@config_option
@click.option("--url", envvar="RELAY_URL", default=None, help="Default: http://127.0.0.1:8000/hooks/SOURCE")
@click.option("--event", envvar="RELAY_EVENT", default=None, help="Event hint (X-GitHub-Event, Shopify topic...).")
@click.option("-H", "--header", "extra", multiple=True, help="Extra header 'Name: value' (repeatable).")
def send(
    source: str, payload: str, config_path: str, url: str | None, event: str | None, extra: tuple[str, ...]
) -> None:
    """Sign PAYLOAD with SOURCE's secret exactly as the provider would, and POST it.

    The event hint defaults to the file name: examples/github/pull_request.opened.json sends
    X-GitHub-Event: pull_request.

    Example: relay send stripe examples/stripe/invoice.paid.json
    """
    import httpx

    from relay import providers

    loaded = _load_config(config_path)
    spec = _source(loaded, source)
    provider = providers.get(spec.kind)
    assert provider is not None
    body = Path(payload).read_bytes()
    signed = provider.sign(spec, body, time.time(), event or Path(payload).name.removesuffix(".json"))
    headers = {
        "Content-Type": signed.content_type,
        "User-Agent": f"relay-send/{__version__}",
        **signed.headers,
    }
    headers.update(_headers(extra))
    target = url or f"http://127.0.0.1:8000/hooks/{source}"
    try:
        response = httpx.post(target, content=signed.body or body, headers=headers, params=dict(signed.query))
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach {target}: {exc}") from None
    click.echo(f"{response.status_code} {response.reason_phrase}  {response.text.strip()}")
    if response.is_success:
        answer = response.json()
        if isinstance(answer, dict) and "id" in answer:
            click.echo(f"next: relay show {answer['id']}")
    else:
        sys.exit(1)


@main.command()
@store_options
@json_option
@click.option("--status", envvar="RELAY_STATUS", default=None, help="routed, unrouted, or a delivery status.")
@click.option("--source", envvar="RELAY_SOURCE", default=None)
@click.option("--type", "type_", envvar="RELAY_TYPE", default=None, help="Event type; '*' is a wildcard.")
@click.option("--since", envvar="RELAY_SINCE", default=None, help="1h, 30m, 7d, or an ISO time.")
@click.option("--limit", envvar="RELAY_LIMIT", default=None, type=click.IntRange(min=1))
def events(
    db: str,
    database_url: str | None,
    as_json: bool,
    status: str | None,
    source: str | None,
    type_: str | None,
    since: str | None,
    limit: int | None,
) -> None:
    """List events, newest first (the newest 50 unless --json or --limit).

    Example: relay events --status failed --since 1h
    """
    query = EventFilter(
        status=status,
        source=source,
        type=type_,
        since=_since(since) if since else None,
        limit=limit if limit is not None or as_json else 50,
    )
    found = _with_store(db, database_url, lambda store: store.events(query))
    if as_json:
        for event in found:
            click.echo(json.dumps(records.event_json(event)))
    elif found:
        click.echo(records.events_table(found))
    else:
        click.echo("no events")


@main.command()
@click.argument("event_id")
@store_options
@json_option
def show(event_id: str, db: str, database_url: str | None, as_json: bool) -> None:
    """Show one event (relay's id or the provider's) with its deliveries and every attempt.

    Example: relay show evt_01jf3k...
    """
    event = _with_store(db, database_url, lambda store: store.event(event_id))
    if as_json:
        click.echo(json.dumps(records.event_json(event, full=True)))
    else:
        click.echo(records.event_text(event))


@main.command()
@click.argument("source")
@click.argument("payload", type=click.Path(exists=True, dir_okay=False))
@config_option
@click.option("--event", envvar="RELAY_EVENT", default=None, help="Event hint (X-GitHub-Event, Shopify topic...).")
@click.option("-H", "--header", "extra", multiple=True, help="Header 'Name: value' (repeatable).")
@json_option
def route(
    source: str, payload: str, config_path: str, event: str | None, extra: tuple[str, ...], as_json: bool
) -> None:
    """Dry run: which routes PAYLOAD arriving at SOURCE would take, why the others would not, and the variables
    each target would get. Nothing is stored or sent, and no signature is needed.

    The headers are those the provider would send (the event hint defaults to the file name, as for relay send),
    overlaid with -H. With --json, prints one JSON object per route: route_id, source, matched, reason, event
    and targets (index, function_id, fired, reason, variables, error).

    Exit status: 0 when at least one route matches, 1 when none does, 2 when the payload or an option is wrong.

    Example: relay route stripe examples/stripe/invoice.paid.json
    """
    loaded = _load_config(config_path)
    spec = _source(loaded, source, _Invalid)
    body = Path(payload).read_bytes()
    hint = event or Path(payload).name.removesuffix(".json")
    try:
        dry = dryrun.run(loaded, spec, body, _headers(extra), hint, time.time())
    except Rejected as exc:
        raise _Invalid(f"{payload}: the {spec.kind} provider cannot read it: {exc}") from None
    if as_json:
        for report in dry.routes:
            click.echo(json.dumps(dryrun.route_json(dry, report)))
    else:
        click.echo(dryrun.text(dry))
    sys.exit(0 if dry.matched else 1)


@main.command()
@click.argument("delivery_id")
@config_option
@store_options
def curl(delivery_id: str, config_path: str, db: str, database_url: str | None) -> None:
    """Print the cURL command that repeats the forward of DELIVERY_ID to runs/start. The API key is not printed:
    the command reads it from $NOTTE_API_KEY. The URL comes from the current rules (notte.api_url).

    Example: relay curl dlv_01jf3k... | sh      (with NOTTE_API_KEY set)
    """
    loaded = _load_config(config_path)
    delivery = _with_store(db, database_url, lambda store: store.delivery(delivery_id))
    try:
        click.echo(forward.curl_command(delivery, loaded.notte))
    except DeliveryError as exc:
        raise click.ClickException(f"delivery {delivery_id}: {exc}") from None


@main.command()
@click.argument("event_ids", nargs=-1, required=True)
@config_option
@store_options
def replay(event_ids: tuple[str, ...], config_path: str, db: str, database_url: str | None) -> None:
    """Route stored events again with the current rules; new deliveries are planned next to the old ones.

    Use it after fixing a rule (a template that did not render, a missing route) or a function. A running
    relay serve picks the new deliveries up within a second.

    Example: relay replay evt_01a242d6cdcff686ca899b602fdc9106
    """
    loaded = _load_config(config_path)

    async def go(store: Store) -> list[str]:
        lines = []
        for event_id in event_ids:
            event, planned = await replay_event(loaded, store, event_id, time.time())
            if not planned:
                lines.append(f"{event.id}: no route matched; nothing planned")
                continue
            ids = ", ".join(f"{d.id} ({d.function_id}{', failed: ' + d.error if d.error else ''})" for d in planned)
            lines.append(f"{event.id}: {len(planned)} deliveries planned: {ids}")
        return lines

    for line in _with_store(db, database_url, go):
        click.echo(line)


@main.command()
@click.argument("delivery_ids", nargs=-1)
@store_options
@click.option(
    "--status",
    "statuses",
    envvar="RELAY_STATUS",
    multiple=True,
    type=click.Choice(["failed", "dead", "cancelled"]),
    help="Which failed deliveries (repeatable; default failed and dead).",
)
@click.option("--since", envvar="RELAY_SINCE", default=None, help="Only those that failed since: 1h, 30m, 7d, ISO.")
@click.option("--function", "function_id", envvar="RELAY_FUNCTION", default=None, help="Only this function_id.")
@click.option("--dry-run", envvar="RELAY_DRY_RUN", is_flag=True, help="List what would be retried, change nothing.")
def retry(
    delivery_ids: tuple[str, ...],
    db: str,
    database_url: str | None,
    statuses: tuple[str, ...],
    since: str | None,
    function_id: str | None,
    dry_run: bool,
) -> None:
    """Send failed or dead deliveries again, each with a fresh attempt budget (its history is kept).

    With no DELIVERY_ID, every delivery matching the filters. Deliveries whose variables never rendered need a
    fixed rule and `relay replay EVENT_ID` instead.

    Example: relay retry --status dead --since 1d --function func_billing --dry-run
    """
    which = RetryFilter(
        ids=delivery_ids,
        status=statuses or ("failed", "dead"),
        since=_since(since) if since else None,
        function_id=function_id,
    )
    ids = _with_store(db, database_url, lambda store: store.retry(which, time.time(), dry_run=dry_run))
    for id in ids:
        click.echo(id)
    verb = "would be retried" if dry_run else "queued"
    click.echo(f"{len(ids)} deliveries {verb}", err=True)


@main.command()
@store_options
@click.option("--older-than", envvar="RELAY_OLDER_THAN", required=True, help="Age: 30d, 12h, ...")
def purge(db: str, database_url: str | None, older_than: str) -> None:
    """Delete events received longer ago than --older-than, with their deliveries and attempts, and older
    rejection records. The provider ids of purged events can be accepted again.

    Example: relay purge --older-than 30d
    """
    seconds = values.parse_duration(older_than)
    if seconds is None:
        raise click.BadParameter(f"{older_than!r} is not a duration like 30d or 12h", param_hint="--older-than")
    events, rejections = _with_store(db, database_url, lambda store: store.purge(time.time() - seconds))
    click.echo(f"deleted {events} events and {rejections} rejections older than {older_than}")


@main.command()
@click.option(
    "--dir",
    "directory",
    envvar="RELAY_FUNCTIONS_DIR",
    default="functions",
    show_default=True,
    type=click.Path(exists=True, file_okay=False),
    help="The folder of {function_id}.py files, each with a run(**variables).",
)
@click.option("--host", envvar="RELAY_FUNCTIONS_HOST", default="127.0.0.1", show_default=True)
@click.option("--port", envvar="RELAY_FUNCTIONS_PORT", default=8001, show_default=True, type=int)
@click.option(
    "--max-concurrent",
    envvar="RELAY_FUNCTIONS_MAX_CONCURRENT",
    default=10,
    show_default=True,
    type=click.IntRange(min=1),
    help="Runs in flight at once; more are answered 429.",
)
@click.option(
    "--timeout",
    envvar="RELAY_FUNCTIONS_TIMEOUT",
    default=300.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds a run may take unless the request says otherwise.",
)
@click.option(
    "--api-key",
    envvar=["RELAY_FUNCTIONS_API_KEY", "NOTTE_API_KEY"],
    default=None,
    help="Require this key from callers (default: $NOTTE_API_KEY; unset: any key is accepted).",
)
def functions(directory: str, host: str, port: int, max_concurrent: int, timeout: float, api_key: str | None) -> None:
    """Run the local Functions runtime: the Notte Functions HTTP API, running the Python files in --dir, each
    run in a subprocess of its own. Point the relay (notte.api_url) or notte-sdk (NOTTE_API_URL) at it.

    Example: relay functions --dir examples/functions --port 8001
    """
    from relay.functions import serve as serve_functions

    serve_functions(directory, host, port, max_concurrent, default_timeout=timeout, api_key=api_key)


@main.command()
@config_option
@click.option("--port", envvar="RELAY_PORT", default=8000, show_default=True, type=int, help="The relay's port.")
@click.option("--functions-port", envvar="RELAY_FUNCTIONS_PORT", default=8001, show_default=True, type=int)
@click.option(
    "--functions",
    "functions_dir",
    envvar="RELAY_FUNCTIONS_DIR",
    default="examples/functions",
    show_default=True,
    help="The folder of {function_id}.py files the local runtime runs.",
)
@click.option("--db", envvar="RELAY_DB", default="relay-dev.db", show_default=True, help="The SQLite file.")
@click.option(
    "--log-level",
    envvar="RELAY_LOG_LEVEL",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="Of relay's own lines (each delivery's outcome), on stderr.",
)
def dev(config_path: str, port: int, functions_port: int, functions_dir: str, db: str, log_level: str) -> None:
    """Run the relay and the local Functions runtime together on 127.0.0.1, with NOTTE_API_URL pointed at the
    runtime and a random NOTTE_API_KEY, and print what to try next. Needs no account and no network.
    Ctrl-C (or SIGTERM) stops both.

    Example: relay dev --port 8000 --functions-port 8001
    """
    from relay import dev as devmode

    key = devmode.point_at_runtime(functions_port, os.environ)
    loaded = _load_config(config_path)
    for warning in loaded.warnings:
        click.echo(str(warning), err=True)
    options = devmode.Options(config_path, port, functions_port, functions_dir, db, log_level)
    try:
        code = devmode.run(loaded, options, key, click.echo)
    except RelayError as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(code)


# -- helpers ----------------------------------------------------------------------------------------------------


class _Invalid(click.ClickException):
    """A wrong argument found after parsing (a payload the provider cannot read): exit status 2, like usage."""

    exit_code = 2


def _source(
    loaded: config.Config, name: str, error: type[click.ClickException] = click.ClickException
) -> config.Source:
    spec = loaded.sources.get(name)
    if spec is None:
        raise error(f"no source {name!r} in {loaded.file} (sources: {', '.join(loaded.sources)})")
    return spec


def _headers(lines: tuple[str, ...]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise click.BadParameter(f"{line!r} is not 'Name: value'", param_hint="-H")
        headers[name.strip()] = value.strip()
    return headers


def _load_config(path: str) -> config.Config:
    try:
        return config.load(path)
    except ConfigError as exc:
        for issue in exc.issues:
            click.echo(str(issue), err=True)
        errors = sum(1 for issue in exc.issues if issue.severity == "error")
        raise click.ClickException(f"{path}: {errors} error(s)") from None


def _store(db: str, database_url: str | None) -> Store:
    try:
        return connect(database_url, db)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None


def _with_store(db: str, database_url: str | None, call: Callable[[Store], Coroutine[Any, Any, T]]) -> T:
    if not database_url and not Path(db).exists():
        raise click.ClickException(f"no database at {db} (run relay serve first, or pass --db)")
    store = _store(db, database_url)

    async def go() -> T:
        await store.open()
        try:
            return await call(store)
        finally:
            await store.close()

    return _run(go())


async def _try_open(store: Store) -> None:
    """Open the store once (applying migrations) and close it again."""
    await store.open()
    await store.close()


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coroutine)
    except NotFound as exc:
        raise click.ClickException(str(exc)) from None
    except RelayError as exc:
        raise click.ClickException(str(exc)) from None


def _since(value: str) -> float:
    seconds = values.parse_duration(value)
    if seconds is not None:
        return time.time() - seconds
    from datetime import datetime

    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither a duration (1h, 30m, 7d) nor an ISO time") from None
