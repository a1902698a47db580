"""The `relay` command. Each command parses its options, calls the library, and turns domain errors into
messages and exit codes. Every option also reads `RELAY_<OPTION>` from the environment."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from relay import __version__, config, records
from relay.errors import ConfigError, NotFound, RelayError, StoreError
from relay.store import EventFilter, Store, connect

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
    app = create_app(loaded, store=_store(db, database_url), deliver=deliver)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False, lifespan="on")


@main.command()
@store_options
def migrate(db: str, database_url: str | None) -> None:
    """Apply schema migrations (relay serve also applies them at start).

    Example: relay migrate --db relay.db
    """
    store = _store(db, database_url)

    async def go() -> None:
        await store.open()
        await store.close()

    _run(go())
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
    spec = loaded.sources.get(source)
    if spec is None:
        raise click.ClickException(f"no source {source!r} in {config_path} (sources: {', '.join(loaded.sources)})")
    provider = providers.get(spec.kind)
    assert provider is not None
    body = Path(payload).read_bytes()
    signed = provider.sign(spec, body, time.time(), event or Path(payload).name.removesuffix(".json"))
    headers = {
        "Content-Type": signed.content_type,
        "User-Agent": f"relay-send/{__version__}",
        **signed.headers,
    }
    for line in extra:
        name, sep, value = line.partition(":")
        if not sep:
            raise click.BadParameter(f"{line!r} is not 'Name: value'", param_hint="-H")
        headers[name.strip()] = value.strip()
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


# -- helpers ----------------------------------------------------------------------------------------------------


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


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coroutine)
    except NotFound as exc:
        raise click.ClickException(str(exc)) from None
    except RelayError as exc:
        raise click.ClickException(str(exc)) from None


def _since(value: str) -> float:
    seconds = config.parse_duration(value)
    if seconds is not None:
        return time.time() - seconds
    from datetime import datetime

    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither a duration (1h, 30m, 7d) nor an ISO time") from None
