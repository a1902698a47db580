"""Writing the SQLite store: functions of a connection, run by the writer thread inside a batch transaction."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from relay.store import Delivery, Rejection
from relay.store import sql_sqlite as sql
from relay.store.sqlite_reads import delivery as delivery_row


@dataclass(frozen=True, slots=True)
class Ingest:
    """An event and its planned deliveries, serialised on the caller's thread so the writer only runs statements.

    `event` is the JSON array of EVENT_INSERT's parameters (the body as text), or None when the body is not UTF-8;
    then `event_row` holds the parameters as a tuple. Each delivery is the JSON array of DELIVERY_INSERT's.
    """

    event: str | None
    event_row: tuple[Any, ...] | None
    deliveries: list[str]
    dedupe_key: str
    received_at: float

    def row(self) -> tuple[Any, ...]:
        if self.event_row is not None:
            return self.event_row
        assert self.event is not None
        values = json.loads(self.event)
        values[6], values[7], values[8] = json.dumps(values[6]), json.dumps(values[7]), values[8].encode()
        return tuple(values)


@dataclass(frozen=True, slots=True)
class Finish:
    """An attempt and the delivery's next state, serialised on the caller's thread: `row` is the JSON array
    ATTEMPTS_FROM_JSON and FINISHES_FROM_JSON read (its columns are listed there)."""

    delivery: str
    row: str


class Conflict(Exception):
    """A batch statement hit the unique dedupe key: the writer undoes the batch and replays it row by row."""


def ingest_group(connection: sqlite3.Connection, group: list[Ingest], *, one_by_one: bool) -> list[str | None]:
    """Insert many events at once; for each, None (stored) or the id of the live event it duplicates.

    The common case is one INSERT ... SELECT FROM json_each(?) for all the events of a batch and one for all their
    deliveries: the rows are bound in C, and the writer takes the GIL back twice per batch, not twice per row (each
    time it may wait for the event loop to let go). A duplicate makes the unique dedupe key refuse the statement;
    the writer then undoes the batch and replays it `one_by_one`.
    """
    if one_by_one or any(work.event is None for work in group):
        return [ingest_one(connection, work) for work in group]
    try:
        connection.execute(sql.EVENTS_FROM_JSON, (f"[{','.join(work.event for work in group)}]",))  # type: ignore[misc]
        deliveries = [row for work in group for row in work.deliveries]
        if deliveries:
            connection.execute(sql.DELIVERIES_FROM_JSON, (f"[{','.join(deliveries)}]",))
    except sqlite3.IntegrityError as exc:
        raise Conflict from exc
    return [None] * len(group)


def ingest_one(connection: sqlite3.Connection, work: Ingest) -> str | None:
    holder = connection.execute(sql.DEDUPE_HOLDER, (work.dedupe_key,)).fetchone()
    if holder is not None:
        holder_id, until = holder
        if until > work.received_at:
            return str(holder_id)
        connection.execute(sql.DEDUPE_RELEASE, (holder_id,))  # its window is over: the key is free again
    connection.execute(sql.EVENT_INSERT, work.row())
    if work.deliveries:
        connection.execute(sql.DELIVERIES_FROM_JSON, (f"[{','.join(work.deliveries)}]",))
    return None


def reject(connection: sqlite3.Connection, rejection: Rejection, keep: int) -> None:
    connection.execute(sql.REJECTION_COUNT, {"source": rejection.source, "reason": rejection.reason})
    if keep <= 0:
        return
    connection.execute(
        sql.REJECTION_INSERT,
        {
            "source": rejection.source,
            "reason": rejection.reason,
            "status": rejection.status,
            "message": rejection.message,
            "received_at": rejection.received_at,
            "headers": json.dumps(dict(rejection.headers)),
            "body_head": rejection.body_head,
            "body_size": rejection.body_size,
        },
    )
    connection.execute(sql.REJECTION_PRUNE, {"source": rejection.source, "keep": keep})


@dataclass(frozen=True, slots=True)
class Claim:
    """A claim (Store.claim's arguments). The writer commits claims on their own, first and without waiting for
    the disk (see SQLiteStore._commit), so a worker's next runs never wait behind other writes' fsync."""

    owner: str
    limit: int
    now: float
    lease: float
    max_in_flight: int

    def __call__(self, connection: sqlite3.Connection) -> list[Delivery]:
        return claim(connection, self.owner, self.limit, self.now, self.lease, self.max_in_flight)


def claim(
    connection: sqlite3.Connection, owner: str, limit: int, now: float, lease: float, max_in_flight: int
) -> list[Delivery]:
    (elsewhere,) = connection.execute(sql.IN_FLIGHT_ELSEWHERE, {"now": now, "owner": owner}).fetchone()
    room = min(limit, max_in_flight - elsewhere)
    if room <= 0:
        return []
    rows = connection.execute(sql.CLAIM, {"owner": owner, "now": now, "until": now + lease, "n": room}).fetchall()
    return [delivery_row(row) for row in rows]


def finish_group(connection: sqlite3.Connection, group: list[Finish]) -> None:
    """Record many attempts and outcomes with two statements, as `ingest_group` does for events.

    A delivery finished twice in one group (never seen: it needs a claim in between, which ends the group) is
    recorded one by one, so each attempt gets the next number."""
    if len({work.delivery for work in group}) < len(group):
        for work in group:
            finish_group(connection, [work])
        return
    rows = f"[{','.join(work.row for work in group)}]"
    connection.execute(sql.ATTEMPTS_FROM_JSON, (rows,))
    connection.execute(sql.FINISHES_FROM_JSON, (rows,))
