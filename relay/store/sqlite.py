"""The SQLite store: WAL with `synchronous=FULL`, one writer thread with group commit, readers in threads.

Every write is a function of a connection, queued to the writer thread. The writer takes everything queued, runs
it in ONE transaction (each write in its own savepoint, so one failing write does not undo the others), commits,
which fsyncs the WAL, and only then wakes the coroutines waiting on those writes. Under load many events share
one fsync; alone, an event waits for exactly one.
"""

from __future__ import annotations

import asyncio
import json
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from relay.errors import NotFound, StoreUnavailable
from relay.store import (
    Attempt,
    Delivery,
    DeliveryStatus,
    Event,
    EventFilter,
    EventStatus,
    Ingested,
    NewDelivery,
    NewEvent,
    Outcome,
    Rejection,
)
from relay.store import sql_sqlite as sql
from relay.store.migrations import migrate

T = TypeVar("T")
Write = Callable[[sqlite3.Connection], Any]
_STOP = object()
_BATCH = 512
_CHECKPOINT_EVERY = 64  # commits


class SQLiteStore:
    """`Store` on one SQLite file. One process writes (this one); `relay serve` is that process."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._checkpointer: threading.Thread | None = None
        self._checkpoint_due = threading.Event()
        self._closing = False

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def open(self) -> None:
        connection = self._connect()
        try:
            migrate(connection)
        except sqlite3.Error as exc:
            connection.close()
            raise StoreUnavailable(f"cannot open {self.path}: {exc}") from None
        # Checkpoints (copying the WAL back into the database, with its own fsync) run on a thread of their own,
        # so the writer's commits never wait behind one.
        connection.execute("PRAGMA wal_autocheckpoint=0")
        self._checkpoint_due.clear()
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="relay-sqlite-checkpointer")
        self._checkpointer.daemon = True
        self._checkpointer.start()
        self._writer = threading.Thread(target=self._write_loop, args=(connection,), name="relay-sqlite-writer")
        self._writer.daemon = True
        self._writer.start()

    async def close(self) -> None:
        if self._writer is not None:
            self._queue.put(_STOP)
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        if self._checkpointer is not None:
            self._closing = True
            self._checkpoint_due.set()
            await asyncio.to_thread(self._checkpointer.join)
            self._checkpointer = None
        with self._readers_lock:
            for connection in self._readers:
                connection.close()
            self._readers.clear()

    def _connect(self) -> sqlite3.Connection:
        try:
            connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute("PRAGMA foreign_keys=ON")
            connection.execute("PRAGMA busy_timeout=10000")
            connection.execute("PRAGMA cache_size=-65536")  # 64 MiB of page cache
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open {self.path}: {exc}") from None
        return connection

    # -- the writer thread ----------------------------------------------------------------------------------

    def _write_loop(self, connection: sqlite3.Connection) -> None:
        stopping = False
        commits = 0
        while not stopping:
            batch = [self._queue.get()]
            while len(batch) < _BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if _STOP in batch:
                stopping = True
                batch = [item for item in batch if item is not _STOP]
            if batch:
                self._commit(connection, batch)
                commits += 1
                if commits % _CHECKPOINT_EVERY == 0:
                    self._checkpoint_due.set()
        connection.close()

    def _checkpoint_loop(self) -> None:
        connection = self._connect()
        try:
            while not self._closing:
                self._checkpoint_due.wait(timeout=1.0)
                self._checkpoint_due.clear()
                mode = "TRUNCATE" if self._closing else "PASSIVE"
                try:
                    connection.execute(f"PRAGMA wal_checkpoint({mode})")
                except sqlite3.Error:
                    pass  # busy or failing disk: the WAL keeps every commit; the next round tries again
        finally:
            connection.close()

    def _commit(self, connection: sqlite3.Connection, batch: list[Any]) -> None:
        try:
            results = self._run_batch(connection, batch, guarded=False)
        except _WriteFailed:
            # One write raised: undo the batch and run it again, each write in its own savepoint, so only that
            # write's waiter sees the error. The fast path above pays no savepoint for the common case.
            connection.execute("ROLLBACK")
            try:
                results = self._run_batch(connection, batch, guarded=True)
            except sqlite3.Error as exc:
                results = self._unavailable(connection, exc, len(batch))
        except sqlite3.Error as exc:
            results = self._unavailable(connection, exc, len(batch))
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for (_, future, loop), (ok, value) in zip(batch, results, strict=True):
            if future is not None:
                by_loop.setdefault(loop, []).append((future, ok, value))
        for loop, settled in by_loop.items():
            loop.call_soon_threadsafe(_settle, settled)  # one wake-up per batch, not one per write

    @staticmethod
    def _run_batch(connection: sqlite3.Connection, batch: list[Any], *, guarded: bool) -> list[tuple[bool, Any]]:
        results: list[tuple[bool, Any]] = []
        connection.execute("BEGIN IMMEDIATE")
        for write, _, _ in batch:
            if not guarded:
                try:
                    results.append((True, write(connection)))
                except Exception as exc:  # noqa: BLE001 - rerun guarded, below
                    raise _WriteFailed from exc
                continue
            connection.execute("SAVEPOINT write")
            try:
                results.append((True, write(connection)))
                connection.execute("RELEASE write")
            except Exception as exc:  # noqa: BLE001 - handed to the one waiter whose write failed
                connection.execute("ROLLBACK TO write")
                connection.execute("RELEASE write")
                results.append((False, exc))
        connection.execute("COMMIT")  # with synchronous=FULL this returns after the WAL is fsync'd
        return results

    def _unavailable(self, connection: sqlite3.Connection, exc: sqlite3.Error, size: int) -> list[tuple[bool, Any]]:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        return [(False, StoreUnavailable(f"cannot commit to {self.path}: {exc}"))] * size

    async def _write(self, write: Callable[[sqlite3.Connection], T]) -> T:
        if self._writer is None:
            raise StoreUnavailable("the store is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((write, future, loop))
        return await future

    def _write_later(self, write: Write) -> None:
        """Queue a write nobody waits for (rejection records): it shares the next commit."""
        if self._writer is not None:
            self._queue.put((write, None, None))

    # -- readers --------------------------------------------------------------------------------------------

    async def _read(self, read: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.to_thread(self._read_sync, read)

    def _read_sync(self, read: Callable[[sqlite3.Connection], T]) -> T:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connect()
            self._local.connection = connection
            with self._readers_lock:
                self._readers.append(connection)
        try:
            return read(connection)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"cannot read {self.path}: {exc}") from None

    # -- Store ----------------------------------------------------------------------------------------------

    async def ping(self) -> None:
        await self._read(lambda connection: connection.execute("SELECT 1").fetchone())

    async def ingest(self, event: NewEvent, deliveries: Sequence[NewDelivery]) -> Ingested:
        return await self._write(lambda connection: _ingest(connection, event, deliveries))

    async def reject(self, rejection: Rejection, keep: int) -> None:
        self._write_later(lambda connection: _reject(connection, rejection, keep))

    async def rejections(self, source: str | None = None) -> list[Rejection]:
        def read(connection: sqlite3.Connection) -> list[Rejection]:
            rows = connection.execute(sql.REJECTIONS, {"source": source}).fetchall()
            return [_rejection(row) for row in rows]

        return await self._read(read)

    async def rejection_counts(self) -> dict[tuple[str, str], int]:
        def read(connection: sqlite3.Connection) -> dict[tuple[str, str], int]:
            rows = connection.execute(sql.REJECTION_COUNTS).fetchall()
            return {(source, reason): count for source, reason, count in rows}

        return await self._read(read)

    async def events(self, query: EventFilter) -> list[Event]:
        return await self._read(lambda connection: _events(connection, query))

    async def event(self, id: str) -> Event:
        return await self._read(lambda connection: _event(connection, id))

    async def claim(self, owner: str, limit: int, now: float, lease: float, max_in_flight: int) -> list[Delivery]:
        return await self._write(lambda connection: _claim(connection, owner, limit, now, lease, max_in_flight))

    async def renew(self, owner: str, ids: Sequence[str], until: float) -> None:
        def write(connection: sqlite3.Connection) -> None:
            connection.executemany(sql.RENEW, [{"id": id, "owner": owner, "until": until} for id in ids])

        await self._write(write)

    async def finish(self, delivery: Delivery, owner: str, attempt: Attempt, outcome: Outcome) -> None:
        await self._write(lambda connection: _finish(connection, delivery, owner, attempt, outcome))

    async def release(self, owner: str, now: float) -> int:
        def write(connection: sqlite3.Connection) -> int:
            return connection.execute(sql.RELEASE, {"owner": owner, "now": now}).rowcount

        return await self._write(write)

    async def release_all(self, now: float) -> int:
        """Give back every lease: safe only where this is the one process using the file (SQLite)."""

        def write(connection: sqlite3.Connection) -> int:
            return connection.execute(sql.RELEASE_ALL, {"now": now}).rowcount

        return await self._write(write)


class _WriteFailed(Exception):
    pass


def _settle(settled: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in settled:
        if future.done():  # the waiting request went away; its write is committed all the same
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


# -- writes (run in the writer thread, inside the batch transaction) ---------------------------------------------


def _ingest(connection: sqlite3.Connection, event: NewEvent, deliveries: Sequence[NewDelivery]) -> Ingested:
    key = {"source": event.source, "event_id": event.event_id}
    claimed = connection.execute(
        sql.DEDUPE_CLAIM, {**key, "event": event.id, "expires_at": event.dedupe_until, "now": event.received_at}
    ).fetchone()
    if claimed is None:  # seen within its window: answer with the event first stored
        (original,) = connection.execute(sql.DEDUPE_GET, key).fetchone()
        return Ingested(id=original, event_id=event.event_id, duplicate=True, deliveries=0)
    status = EventStatus.ROUTED if deliveries else EventStatus.UNROUTED
    connection.execute(
        sql.EVENT_INSERT,
        {
            "id": event.id,
            "source": event.source,
            "event_id": event.event_id,
            "type": event.type,
            "status": status.value,
            "received_at": event.received_at,
            "headers": json.dumps(dict(event.headers)),
            "query": json.dumps(dict(event.query)),
            "body": event.body,
        },
    )
    connection.executemany(sql.DELIVERY_INSERT, [_delivery_params(event, d) for d in deliveries])
    return Ingested(id=event.id, event_id=event.event_id, duplicate=False, deliveries=len(deliveries))


def _delivery_params(event: NewEvent, delivery: NewDelivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "event": event.id,
        "route_id": delivery.route_id,
        "target_index": delivery.target_index,
        "function_id": delivery.function_id,
        "status": delivery.status.value,
        "next_attempt_at": event.received_at if delivery.status == DeliveryStatus.PENDING else None,
        "variables": json.dumps(delivery.variables),
        "stream": int(delivery.stream),
        "timeout": delivery.timeout,
        "retry": json.dumps(dict(delivery.retry)),
        "runtime": json.dumps(delivery.runtime),
        "last_error": delivery.error,
        "now": event.received_at,
    }


def _reject(connection: sqlite3.Connection, rejection: Rejection, keep: int) -> None:
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


def _claim(
    connection: sqlite3.Connection, owner: str, limit: int, now: float, lease: float, max_in_flight: int
) -> list[Delivery]:
    (in_flight,) = connection.execute(sql.IN_FLIGHT, {"now": now}).fetchone()
    room = min(limit, max_in_flight - in_flight)
    if room <= 0:
        return []
    rows = connection.execute(sql.CLAIM, {"owner": owner, "now": now, "until": now + lease, "n": room}).fetchall()
    return [_delivery(row) for row in rows]


def _finish(connection: sqlite3.Connection, delivery: Delivery, owner: str, attempt: Attempt, outcome: Outcome) -> None:
    connection.execute(
        sql.ATTEMPT_INSERT,
        {
            "delivery": delivery.id,
            "started_at": attempt.started_at,
            "latency_ms": attempt.latency_ms,
            "outcome": attempt.outcome,
            "http_status": attempt.http_status,
            "error": attempt.error,
            "function_run_id": attempt.function_run_id,
            "session_id": attempt.session_id,
            "function_status": attempt.function_status,
            "result": attempt.result,
            "logs": json.dumps(list(attempt.logs)),
        },
    )
    connection.execute(
        sql.DELIVERY_FINISH,
        {
            "id": delivery.id,
            "owner": owner,
            "status": outcome.status.value,
            "next_attempt_at": outcome.next_attempt_at,
            "last_error": outcome.error,
            "rate_limited": int(outcome.rate_limited),
            "function_run_id": attempt.function_run_id,
            "now": attempt.started_at + attempt.latency_ms / 1000,
        },
    )


# -- reads ------------------------------------------------------------------------------------------------------


def _events(connection: sqlite3.Connection, query: EventFilter) -> list[Event]:
    params = {
        "status": query.status,
        "source": query.source,
        "type": query.type,
        "since": query.since,
        "until": query.until,
        "limit": query.limit if query.limit is not None else -1,
    }
    events = [_event_row(row) for row in connection.execute(sql.EVENTS, params).fetchall()]
    if not events:
        return []
    by_event: dict[str, list[Delivery]] = {event.id: [] for event in events}
    ids = list(by_event)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for row in connection.execute(sql.DELIVERIES_OF_EVENTS.format(marks=marks), chunk).fetchall():
            delivery = _delivery(row)
            by_event[delivery.event].append(delivery)
    return [_with(event, deliveries=tuple(by_event[event.id])) for event in events]


def _event(connection: sqlite3.Connection, id: str) -> Event:
    row = connection.execute(sql.EVENT, {"id": id}).fetchone()
    if row is None:
        row = connection.execute(sql.EVENT_BY_PROVIDER_ID, {"event_id": id}).fetchone()
    if row is None:
        raise NotFound(f"no event with id {id!r}")
    event = _event_row(row)
    deliveries = []
    for delivery_row in connection.execute(sql.DELIVERIES_OF_EVENTS.format(marks="?"), [event.id]).fetchall():
        delivery = _delivery(delivery_row)
        history = tuple(_attempt(a) for a in connection.execute(sql.ATTEMPTS, {"delivery": delivery.id}))
        deliveries.append(_with(delivery, history=history))
    return _with(event, deliveries=tuple(deliveries))


def _with(row: T, **changes: Any) -> T:
    return replace(row, **changes)  # type: ignore[type-var]


def _event_row(row: sqlite3.Row | tuple[Any, ...]) -> Event:
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


def _delivery(row: sqlite3.Row | tuple[Any, ...]) -> Delivery:
    (id, event, route_id, target_index, function_id, status, attempts, rate_limited, next_attempt_at, variables,
     stream, timeout, retry, runtime, last_error, function_run_id, created_at, updated_at) = row  # fmt: skip
    return Delivery(
        id=id,
        event=event,
        route_id=route_id,
        target_index=target_index,
        function_id=function_id,
        status=DeliveryStatus(status),
        attempts=attempts,
        rate_limited=rate_limited,
        next_attempt_at=next_attempt_at,
        variables=json.loads(variables) if variables is not None else None,
        stream=bool(stream),
        timeout=timeout,
        retry=json.loads(retry),
        runtime=json.loads(runtime) if runtime is not None else None,
        last_error=last_error,
        function_run_id=function_run_id,
        created_at=created_at,
        updated_at=updated_at,
    )


def _attempt(row: sqlite3.Row | tuple[Any, ...]) -> Attempt:
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


def _rejection(row: sqlite3.Row | tuple[Any, ...]) -> Rejection:
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
