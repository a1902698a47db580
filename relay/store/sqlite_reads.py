"""Reading the SQLite store: statements run on reader connections, rows turned into frozen dataclasses."""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any, TypeVar

from relay.errors import NotFound
from relay.store import Attempt, Delivery, DeliveryStatus, Event, EventFilter, EventStatus, Rejection
from relay.store import sql_sqlite as sql

T = TypeVar("T")


def events(connection: sqlite3.Connection, query: EventFilter) -> list[Event]:
    params = {
        "status": query.status,
        "source": query.source,
        "type": query.type,
        "since": query.since,
        "until": query.until,
        "limit": query.limit if query.limit is not None else -1,
    }
    found_events = [event_row(row) for row in connection.execute(sql.EVENTS, params).fetchall()]
    if not found_events:
        return []
    by_event: dict[str, list[Delivery]] = {item.id: [] for item in found_events}
    ids = list(by_event)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for row in connection.execute(sql.DELIVERIES_OF_EVENTS.format(marks=marks), chunk).fetchall():
            found = delivery(row)
            by_event[found.event].append(found)
    return [_with(item, deliveries=tuple(by_event[item.id])) for item in found_events]


def event(connection: sqlite3.Connection, id: str) -> Event:
    row = connection.execute(sql.EVENT, {"id": id}).fetchone()
    if row is None:
        row = connection.execute(sql.EVENT_BY_PROVIDER_ID, {"event_id": id}).fetchone()
    if row is None:
        raise NotFound(f"no event with id {id!r}")
    found = event_row(row)
    deliveries = []
    for d_row in connection.execute(sql.DELIVERIES_OF_EVENTS.format(marks="?"), [found.id]).fetchall():
        one = delivery(d_row)
        history = tuple(attempt(a) for a in connection.execute(sql.ATTEMPTS, {"delivery": one.id}))
        deliveries.append(_with(one, history=history))
    return _with(found, deliveries=tuple(deliveries))


def one_delivery(connection: sqlite3.Connection, id: str) -> Delivery:
    row = connection.execute(sql.DELIVERY, {"id": id}).fetchone()
    if row is None:
        raise NotFound(f"no delivery with id {id!r}")
    found = delivery(row)
    history = tuple(attempt(a) for a in connection.execute(sql.ATTEMPTS, {"delivery": found.id}))
    return _with(found, history=history)


def _with(row: T, **changes: Any) -> T:
    return replace(row, **changes)  # type: ignore[type-var]


def event_row(row: sqlite3.Row | tuple[Any, ...]) -> Event:
    id, source, event_id, type, status, received_at, headers, query, body = row
    return Event(
        id=id,
        source=source,
        event_id=event_id,
        type=type,
        status=EventStatus(status),
        received_at=received_at,
        headers=json.loads(headers),
        query=json.loads(query),
        body=bytes(body),
    )


_STATUSES = {status.value: status for status in DeliveryStatus}


@functools.lru_cache(maxsize=256)  # the same few policies, as text, on every row: read once, shared read-only
def _retry(text: str) -> Mapping[str, Any]:
    return MappingProxyType(json.loads(text))


def delivery(row: sqlite3.Row | tuple[Any, ...]) -> Delivery:
    (id, event, route_id, target_index, function_id, status, attempts, rate_limited, next_attempt_at, variables,
     stream, timeout, retry, runtime, last_error, function_run_id, created_at, updated_at, spent,
     retried_at) = row  # fmt: skip
    return Delivery(
        id=id,
        event=event,
        route_id=route_id,
        target_index=target_index,
        function_id=function_id,
        status=_STATUSES[status],
        attempts=attempts,
        rate_limited=rate_limited,
        next_attempt_at=next_attempt_at,
        variables=json.loads(variables) if variables is not None else None,
        stream=bool(stream),
        timeout=timeout,
        retry=_retry(retry),
        runtime=json.loads(runtime) if runtime is not None else None,
        last_error=last_error,
        function_run_id=function_run_id,
        created_at=created_at,
        updated_at=updated_at,
        spent=spent,
        retried_at=retried_at,
    )


def attempt(row: sqlite3.Row | tuple[Any, ...]) -> Attempt:
    (number, started_at, latency_ms, outcome, http_status, error, function_run_id, session_id, function_status,
     result, logs) = row  # fmt: skip
    return Attempt(
        number=number,
        started_at=started_at,
        latency_ms=latency_ms,
        outcome=outcome,
        http_status=http_status,
        error=error,
        function_run_id=function_run_id,
        session_id=session_id,
        function_status=function_status,
        result=result,
        logs=tuple(json.loads(logs)),
    )


def rejection(row: sqlite3.Row | tuple[Any, ...]) -> Rejection:
    source, reason, status, message, received_at, headers, body_head, body_size = row
    return Rejection(
        source=source,
        reason=reason,
        status=status,
        message=message,
        received_at=received_at,
        headers=json.loads(headers),
        body_head=bytes(body_head),
        body_size=body_size,
    )
