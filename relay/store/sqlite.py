"""The SQLite store: WAL with `synchronous=FULL`, one writer thread with group commit, readers in threads.

Every write is queued to the writer thread: an `Ingest` (an event and its deliveries as ready-made statement
parameters), a `Finish` (an attempt and its outcome, likewise), a `Claim`, or a function of a connection. The
writer takes everything queued, runs it in ONE transaction (the ingests of a batch as two `INSERT ... SELECT FROM
json_each` statements, its finishes as two more), commits, which fsyncs the WAL, and only then wakes the
coroutines waiting on those writes. Under load many events share one fsync; alone, an event waits for exactly
one. If one write fails, the batch is undone and run again with each write in its own savepoint, so only its
waiter sees the error.

Claims are the exception: they go first, in a transaction of their own that does not wait for the disk
(`synchronous=NORMAL`, then back to FULL), so a worker's next runs never wait behind other writes' fsync. A
claim is only a lease: lost to a power cut (never to a crash of the process: the WAL is written), it leaves its
deliveries due, and they are attempted again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import orjson

from relay.errors import StoreUnavailable
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
    RetryFilter,
)
from relay.store import sql_sqlite as sql
from relay.store import sqlite_reads as reads
from relay.store import sqlite_writes as writes
from relay.store.migrations import migrate

T = TypeVar("T")
logger = logging.getLogger("relay.store")
Write = Callable[[sqlite3.Connection], Any]
_STOP = object()
_BATCH = 512
_CHECKPOINT_EVERY = 64  # commits
_WAL_RESTART_FRAMES = 8192  # pages (32 MiB at 4 KiB); also the size the WAL file is cut back to


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
        connection.execute(f"PRAGMA journal_size_limit={_WAL_RESTART_FRAMES * 4096}")
        self._checkpoint_due.clear()
        self._closing = False  # the store may be opened again after a close (relay serve checks it first)
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
            self._local = threading.local()  # a store opened again must not find the closed connections

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
                try:
                    self._commit(connection, batch)
                except Exception:  # noqa: BLE001 - a bug here must not leave every request waiting forever
                    logger.exception("the SQLite writer failed a batch of %d writes", len(batch))
                    self._fail(connection, batch)
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
                try:
                    self._checkpoint(connection)
                except sqlite3.Error:
                    pass  # busy or failing disk: the WAL keeps every commit; the next round tries again
        finally:
            connection.close()

    def _checkpoint(self, connection: sqlite3.Connection) -> None:
        """Copy the WAL into the database without stopping the writer, then, when the WAL has grown, restart it.

        Under steady writes a PASSIVE checkpoint never catches up with the end of the WAL, and SQLite only starts
        the WAL over once one has: without the RESTART the file would grow for as long as the load lasts. A RESTART
        holds the writer back only for the frames the PASSIVE pass had not copied yet."""
        if self._closing:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return
        _, frames, _ = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if frames > _WAL_RESTART_FRAMES:
            connection.execute("PRAGMA wal_checkpoint(RESTART)")

    def _commit(self, connection: sqlite3.Connection, batch: list[Any]) -> None:
        """Commit the claims of the batch first, in a transaction of their own that does not wait for the disk,
        and hand them back at once; then the rest, durably. A claim lost to a power cut (never to a crash of the
        process: the WAL is written) leaves its deliveries due, and they are attempted again, as every lease is."""
        claims = [item for item in batch if isinstance(item[0], writes.Claim)]
        if claims:
            connection.execute("PRAGMA synchronous=NORMAL")
            try:
                self._commit_now(connection, claims)
            finally:
                connection.execute("PRAGMA synchronous=FULL")
        rest = [item for item in batch if not isinstance(item[0], writes.Claim)] if claims else batch
        if rest:
            self._commit_now(connection, rest)

    def _commit_now(self, connection: sqlite3.Connection, batch: list[Any]) -> None:
        try:
            results = _run_batch(connection, batch, guarded=False)
        except _WriteFailed:
            connection.execute("ROLLBACK")
            try:
                results = _run_batch(connection, batch, guarded=True)
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

    def _fail(self, connection: sqlite3.Connection, batch: list[Any]) -> None:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        failure = StoreUnavailable("the store failed to write; see the relay log")
        for _, future, loop in batch:
            if future is not None:
                loop.call_soon_threadsafe(_settle, [(future, False, failure)])

    def _unavailable(self, connection: sqlite3.Connection, exc: sqlite3.Error, size: int) -> list[tuple[bool, Any]]:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        return [(False, StoreUnavailable(f"cannot commit to {self.path}: {exc}"))] * size

    async def _write(self, write: Callable[[sqlite3.Connection], T] | writes.Ingest | writes.Finish) -> T:
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
        # Serialised here, on the caller's thread, so the writer only runs statements.
        status = (EventStatus.ROUTED if deliveries else EventStatus.UNROUTED).value
        key = f"{event.source} {event.event_id}"  # source names hold no spaces
        head = [event.id, event.source, event.event_id, event.type, status, event.received_at]
        try:
            text = event.body.decode("utf-8")
        except UnicodeDecodeError:
            row = (*head, json.dumps(event.headers), json.dumps(event.query), event.body, key, event.dedupe_until)
            work = writes.Ingest(None, row, [_delivery_json(event.id, event.received_at, d) for d in deliveries], key,
                                 event.received_at)  # fmt: skip
        else:
            columns = _dumps([*head, event.headers, event.query, text, key, event.dedupe_until])
            planned = [_delivery_json(event.id, event.received_at, d) for d in deliveries]
            work = writes.Ingest(columns, None, planned, key, event.received_at)
        original: str | None = await self._write(work)
        if original is None:
            return Ingested(id=event.id, event_id=event.event_id, duplicate=False, deliveries=len(deliveries))
        return Ingested(id=original, event_id=event.event_id, duplicate=True, deliveries=0)

    async def reject(self, rejection: Rejection, keep: int) -> None:
        self._write_later(lambda connection: writes.reject(connection, rejection, keep))

    async def rejections(self, source: str | None = None) -> list[Rejection]:
        def read(connection: sqlite3.Connection) -> list[Rejection]:
            rows = connection.execute(sql.REJECTIONS, {"source": source}).fetchall()
            return [reads.rejection(row) for row in rows]

        return await self._read(read)

    async def rejection_counts(self) -> dict[tuple[str, str], int]:
        def read(connection: sqlite3.Connection) -> dict[tuple[str, str], int]:
            rows = connection.execute(sql.REJECTION_COUNTS).fetchall()
            return {(source, reason): count for source, reason, count in rows}

        return await self._read(read)

    async def events(self, query: EventFilter) -> list[Event]:
        return await self._read(lambda connection: reads.events(connection, query))

    async def event(self, id: str) -> Event:
        return await self._read(lambda connection: reads.event(connection, id))

    async def delivery(self, id: str) -> Delivery:
        return await self._read(lambda connection: reads.one_delivery(connection, id))

    async def claim(self, owner: str, limit: int, now: float, lease: float, max_in_flight: int) -> list[Delivery]:
        return await self._write(writes.Claim(owner, limit, now, lease, max_in_flight))

    async def renew(self, owner: str, ids: Sequence[str], until: float) -> None:
        def write(connection: sqlite3.Connection) -> None:
            connection.executemany(sql.RENEW, [{"id": id, "owner": owner, "until": until} for id in ids])

        await self._write(write)

    async def finish(self, delivery: Delivery, owner: str, attempt: Attempt, outcome: Outcome) -> None:
        # Serialised here, like an ingest: the writer records a batch's finishes with two statements.
        row = [delivery.id, owner, attempt.started_at, attempt.latency_ms, attempt.outcome, attempt.http_status,
               attempt.error, attempt.function_run_id, attempt.session_id, attempt.function_status, attempt.result,
               attempt.logs, outcome.status.value, outcome.next_attempt_at, outcome.error, int(outcome.rate_limited),
               attempt.started_at + attempt.latency_ms / 1000]  # fmt: skip
        await self._write(writes.Finish(delivery.id, _dumps(row)))

    async def release(self, owner: str, now: float) -> int:
        def write(connection: sqlite3.Connection) -> int:
            return connection.execute(sql.RELEASE, {"owner": owner, "now": now}).rowcount

        return await self._write(write)

    async def add_deliveries(self, event: str, deliveries: Sequence[NewDelivery], now: float) -> None:
        found = await self.event(event)  # NotFound before anything is written
        rows = [_delivery_json(found.id, now, delivery) for delivery in deliveries]

        def write(connection: sqlite3.Connection) -> None:
            if rows:
                connection.execute(sql.DELIVERIES_FROM_JSON, (f"[{','.join(rows)}]",))
                connection.execute(sql.EVENT_ROUTED, (found.id,))

        await self._write(write)

    async def retry(self, which: RetryFilter, now: float, *, dry_run: bool = False) -> list[str]:
        params = {
            "statuses": json.dumps(list(which.status)),
            "ids": json.dumps(list(which.ids)) if which.ids else None,
            "since": which.since,
            "function_id": which.function_id,
        }

        def write(connection: sqlite3.Connection) -> list[str]:
            ids = [row[0] for row in connection.execute(sql.RETRY_MATCH, params)]
            if not dry_run:
                connection.executemany(sql.RETRY, [{"id": id, "now": now} for id in ids])
            return ids

        return await self._write(write)

    async def purge(self, before: float) -> tuple[int, int]:
        def write(connection: sqlite3.Connection) -> tuple[int, int]:
            events = connection.execute(sql.PURGE_EVENTS, {"before": before}).rowcount
            return events, connection.execute(sql.PURGE_REJECTIONS, {"before": before}).rowcount

        return await self._write(write)

    async def release_all(self, now: float) -> int:
        """Give back every lease: safe only where this is the one process using the file (SQLite)."""

        def write(connection: sqlite3.Connection) -> int:
            return connection.execute(sql.RELEASE_ALL, {"now": now}).rowcount

        return await self._write(write)


class _WriteFailed(Exception):
    pass


def _run_batch(connection: sqlite3.Connection, batch: list[Any], *, guarded: bool) -> list[tuple[bool, Any]]:
    """Run a batch in one transaction and commit it. Consecutive ingests (and consecutive finishes) go to the
    database together, a few statements for the lot."""
    results: list[tuple[bool, Any]] = []
    connection.execute("BEGIN IMMEDIATE")
    group: list[Any] = []
    for work, _, _ in batch:
        if group and type(work) is not type(group[0]):
            results.extend(_run_group(connection, group, guarded))
            group = []
        if isinstance(work, writes.Ingest | writes.Finish):
            group.append(work)
        else:
            results.append(_run_one(connection, work, guarded))
    if group:
        results.extend(_run_group(connection, group, guarded))
    connection.execute("COMMIT")  # with synchronous=FULL this returns after the WAL is fsync'd
    return results


def _run_group(connection: sqlite3.Connection, group: list[Any], guarded: bool) -> list[tuple[bool, Any]]:
    if isinstance(group[0], writes.Finish):
        if guarded:  # each in its own savepoint: only the waiter of a failing finish sees the error
            return [_run_one(connection, partial(writes.finish_group, group=[work]), True) for work in group]
        try:
            writes.finish_group(connection, group)
        except Exception as exc:  # noqa: BLE001 - the batch is run again guarded
            raise _WriteFailed from exc
        return [(True, None)] * len(group)
    try:
        return [(True, original) for original in writes.ingest_group(connection, group, one_by_one=guarded)]
    except writes.Conflict as exc:
        raise _WriteFailed from exc


def _run_one(connection: sqlite3.Connection, write: Write, guarded: bool) -> tuple[bool, Any]:
    if not guarded:
        try:
            return True, write(connection)
        except Exception as exc:  # noqa: BLE001 - the batch is run again guarded, below
            raise _WriteFailed from exc
    connection.execute("SAVEPOINT write")
    try:
        result = write(connection)
    except Exception as exc:  # noqa: BLE001 - handed to the one waiter whose write failed
        connection.execute("ROLLBACK TO write")
        connection.execute("RELEASE write")
        return False, exc
    connection.execute("RELEASE write")
    return True, result


def _delivery_json(event: str, now: float, delivery: NewDelivery) -> str:
    due = now if delivery.status == DeliveryStatus.PENDING else None
    return _dumps(
        [
            delivery.id,
            event,
            delivery.route_id,
            delivery.target_index,
            delivery.function_id,
            delivery.status.value,
            due,
            delivery.variables,
            int(delivery.stream),
            delivery.timeout,
            delivery.retry,
            delivery.runtime,
            delivery.error,
            now,
            now,
        ]  # fmt: skip
    )


def _dumps(value: Any) -> str:
    """JSON text; orjson is several times faster than json on the ingest path (see docs/benchmarks.md)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # what orjson refuses (integers beyond 64 bits, non-str keys) the standard library writes
        return json.dumps(value)


def _settle(settled: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in settled:
        if future.done():  # the waiting request went away; its write is committed all the same
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
