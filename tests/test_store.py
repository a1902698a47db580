"""The Store contract, run against every backend (SQLite files today; PostgreSQL joins this parametrization)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from relay.errors import NotFound, StoreUnavailable
from relay.store import (
    Attempt,
    DeliveryStatus,
    EventFilter,
    EventStatus,
    NewDelivery,
    NewEvent,
    Outcome,
    Rejection,
    Store,
    new_id,
)
from relay.store.sqlite import SQLiteStore

pytestmark = pytest.mark.anyio
NOW = 1_800_000_000.0
RETRY = {"max_attempts": 3, "base": 1, "cap": 10, "max_age": 3600, "on_function_failure": False}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    backend = SQLiteStore(tmp_path / "relay.db")
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


def event(event_id: str = "evt_1", *, source: str = "stripe", at: float = NOW, window: float = 100) -> NewEvent:
    return NewEvent(
        id=new_id("evt", at),
        source=source,
        event_id=event_id,
        type="invoice.paid",
        received_at=at,
        headers={"content-type": "application/json"},
        query={},
        body=b'{"id": "%s"}' % event_id.encode(),
        dedupe_until=at + window,
    )


def delivery(function_id: str = "func_a", **kwargs: object) -> NewDelivery:
    fields: dict[str, object] = {
        "id": new_id("dlv"),
        "route_id": "r",
        "target_index": 0,
        "function_id": function_id,
        "variables": {"n": 1},
        "stream": False,
        "timeout": 30,
        "retry": RETRY,
    }
    fields.update(kwargs)
    return NewDelivery(**fields)  # type: ignore[arg-type]


async def test_ingest_keeps_event_and_deliveries(store: Store) -> None:
    new = event()
    stored = await store.ingest(new, [delivery("func_a"), delivery("func_b")])
    assert (stored.id, stored.duplicate, stored.deliveries) == (new.id, False, 2)
    got = await store.event(new.id)
    assert got.status == EventStatus.ROUTED
    assert got.body == new.body
    assert sorted(d.function_id for d in got.deliveries) == ["func_a", "func_b"]
    assert all(d.status == DeliveryStatus.PENDING and d.variables == {"n": 1} for d in got.deliveries)


async def test_event_without_deliveries_is_unrouted(store: Store) -> None:
    new = event()
    await store.ingest(new, [])
    assert (await store.event(new.id)).status == EventStatus.UNROUTED


async def test_event_found_by_provider_id(store: Store) -> None:
    new = event("evt_provider")
    await store.ingest(new, [])
    assert (await store.event("evt_provider")).id == new.id


async def test_unknown_event_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound, match="no event with id 'evt_nope'"):
        await store.event("evt_nope")


async def test_duplicate_within_window_answers_original(store: Store) -> None:
    first = await store.ingest(event(), [delivery()])
    again = await store.ingest(event(at=NOW + 50), [delivery()])
    assert (again.id, again.duplicate, again.deliveries) == (first.id, True, 0)
    assert len(await store.events(EventFilter())) == 1


async def test_same_id_after_window_is_a_new_event(store: Store) -> None:
    first = await store.ingest(event(), [])
    later = await store.ingest(event(at=NOW + 101), [])
    assert not later.duplicate and later.id != first.id


async def test_same_id_from_another_source_is_not_a_duplicate(store: Store) -> None:
    await store.ingest(event(), [])
    other = await store.ingest(event(source="github"), [])
    assert not other.duplicate


async def test_concurrent_duplicates_store_one_event(store: Store) -> None:
    answers = await asyncio.gather(*(store.ingest(event(), [delivery()]) for _ in range(50)))
    assert sum(not answer.duplicate for answer in answers) == 1
    assert len({answer.id for answer in answers}) == 1
    stored = await store.events(EventFilter())
    assert len(stored) == 1 and len(stored[0].deliveries) == 1


async def test_many_concurrent_ingests_are_all_kept(store: Store) -> None:
    answers = await asyncio.gather(*(store.ingest(event(f"e{i}"), [delivery()]) for i in range(300)))
    assert not any(answer.duplicate for answer in answers)
    assert len(await store.events(EventFilter())) == 300


async def test_events_filters(store: Store) -> None:
    await store.ingest(event("a", source="stripe", at=NOW), [delivery()])
    await store.ingest(event("b", source="github", at=NOW + 10), [])
    assert [e.event_id for e in await store.events(EventFilter())] == ["b", "a"]
    assert [e.event_id for e in await store.events(EventFilter(source="github"))] == ["b"]
    assert [e.event_id for e in await store.events(EventFilter(status="unrouted"))] == ["b"]
    assert [e.event_id for e in await store.events(EventFilter(status="pending"))] == ["a"]
    assert [e.event_id for e in await store.events(EventFilter(type="invoice.*"))] == ["b", "a"]
    assert [e.event_id for e in await store.events(EventFilter(since=NOW + 5))] == ["b"]
    assert [e.event_id for e in await store.events(EventFilter(limit=1))] == ["b"]


async def test_rejections_are_counted_and_bounded(store: Store) -> None:
    for i in range(30):
        rejection = Rejection("stripe", "signature_invalid", 401, "no match", NOW + i, {}, b"x" * 10, 10)
        await store.reject(rejection, keep=5)
    await store.ingest(event(), [])  # shares a commit with the queued rejections, so they are visible after it
    kept = await store.rejections("stripe")
    assert len(kept) == 5
    assert [r.received_at for r in kept] == [NOW + i for i in range(29, 24, -1)]
    assert await store.rejection_counts() == {("stripe", "signature_invalid"): 30}


async def test_claim_respects_the_global_in_flight_cap(store: Store) -> None:
    await store.ingest(event(), [delivery() for _ in range(5)])
    first = await store.claim("w1", limit=10, now=NOW, lease=30, max_in_flight=3)
    assert len(first) == 3
    assert await store.claim("w2", limit=10, now=NOW, lease=30, max_in_flight=3) == []
    after_lease = await store.claim("w2", limit=10, now=NOW + 31, lease=30, max_in_flight=3)
    assert len(after_lease) == 3  # the first three leases expired: two still due plus one reclaimed


async def test_a_workers_own_leases_are_bounded_by_its_limit_not_by_the_cap(store: Store) -> None:
    """A worker's leases include answers it has not recorded yet; it counts its running ones itself."""
    await store.ingest(event(), [delivery() for _ in range(5)])
    assert len(await store.claim("w1", limit=2, now=NOW, lease=30, max_in_flight=3)) == 2
    assert len(await store.claim("w1", limit=2, now=NOW, lease=30, max_in_flight=3)) == 2
    assert len(await store.claim("w2", limit=5, now=NOW, lease=30, max_in_flight=5)) == 1  # 5 - w1's 4 leases


async def test_claims_skip_the_fsync_and_everything_else_keeps_it(store: SQLiteStore) -> None:
    """Claims commit first with synchronous=NORMAL (a lost claim only means the delivery is tried again); the
    writes that share their batch, and every write after, are still committed with synchronous=FULL (2)."""
    new = event()
    await store.ingest(new, [delivery() for _ in range(2)])
    (claimed,) = await store.claim("w1", limit=1, now=NOW, lease=30, max_in_flight=10)
    synchronous = store._write(lambda connection: connection.execute("PRAGMA synchronous").fetchone()[0])
    second, level = await asyncio.gather(store.claim("w1", limit=1, now=NOW, lease=30, max_in_flight=10), synchronous)
    assert level == 2 and len(second) == 1 and second[0].id != claimed.id
    assert {d.status for d in (await store.event(new.id)).deliveries} == {DeliveryStatus.IN_FLIGHT}


async def test_finishes_of_one_batch_each_record_their_own_outcome(store: Store) -> None:
    new = event()
    await store.ingest(new, [delivery() for _ in range(3)])
    claimed = await store.claim("w1", limit=3, now=NOW, lease=30, max_in_flight=10)
    outcomes = [
        Outcome(DeliveryStatus.SUCCEEDED),
        Outcome(DeliveryStatus.RETRYING, NOW + 7, "HTTP 503", rate_limited=True),
        Outcome(DeliveryStatus.DEAD, error="HTTP 400"),
    ]
    attempts = [
        Attempt(1, NOW, 5.0, "succeeded", http_status=200, function_run_id="run_a", result='{"ok": 1}'),
        Attempt(1, NOW, 6.0, "retrying", http_status=503, error="HTTP 503", logs=("x",)),
        Attempt(1, NOW, 7.0, "dead", http_status=400, error="HTTP 400"),
    ]
    owners = ["w1", "w1", "someone-else"]  # the third lease is no longer w1's: its attempt is kept, its state not
    await asyncio.gather(
        *(store.finish(*args) for args in zip(claimed, owners, attempts, outcomes, strict=True))  # one batch
    )
    got = {d.id: d for d in (await store.event(new.id)).deliveries}
    first, second, third = (got[d.id] for d in claimed)
    assert (first.status, first.attempts, first.function_run_id, first.history) == (
        "succeeded", 1, "run_a", (attempts[0],)
    )  # fmt: skip
    assert (second.status, second.next_attempt_at, second.last_error, second.rate_limited, second.history) == (
        "retrying", NOW + 7, "HTTP 503", 1, (attempts[1],)
    )  # fmt: skip
    assert (third.status, third.attempts, third.history) == ("in_flight", 0, (attempts[2],))


async def test_a_claim_gives_back_the_variables_exactly(store: Store) -> None:
    """Integers beyond 64 bits too: a JSON reader that turned them into floats would change what is sent."""
    variables = {"big": 123456789012345678901234567890, "n": 1.5, "s": "é", "none": None, "list": [1, "2"]}
    await store.ingest(event(), [delivery(variables=variables)])
    (claimed,) = await store.claim("w1", limit=1, now=NOW, lease=30, max_in_flight=10)
    assert claimed.variables == variables and isinstance(claimed.variables["big"], int)


async def test_finish_records_attempt_and_state(store: Store) -> None:
    new = event()
    await store.ingest(new, [delivery()])
    (claimed,) = await store.claim("w1", limit=1, now=NOW, lease=30, max_in_flight=10)
    attempt = Attempt(1, NOW, 12.5, "retrying", http_status=500, error="HTTP 500", logs=("a", "b"))
    await store.finish(claimed, "w1", attempt, Outcome(DeliveryStatus.RETRYING, NOW + 5, "HTTP 500"))
    (got,) = (await store.event(new.id)).deliveries
    assert (got.status, got.attempts, got.next_attempt_at, got.last_error) == (
        "retrying",
        1,
        NOW + 5,
        "HTTP 500",
    )
    assert got.history == (attempt,)
    assert await store.claim("w1", limit=1, now=NOW + 1, lease=30, max_in_flight=10) == []
    assert len(await store.claim("w1", limit=1, now=NOW + 5, lease=30, max_in_flight=10)) == 1


async def test_release_gives_deliveries_back(store: Store) -> None:
    await store.ingest(event(), [delivery(), delivery()])
    assert len(await store.claim("w1", limit=5, now=NOW, lease=30, max_in_flight=10)) == 2
    assert await store.release("w1", NOW + 1) == 2
    assert len(await store.claim("w2", limit=5, now=NOW + 1, lease=30, max_in_flight=10)) == 2


async def test_failed_planned_delivery_is_not_claimed(store: Store) -> None:
    await store.ingest(event(), [delivery(status=DeliveryStatus.FAILED, error="variables.x: missing")])
    assert await store.claim("w1", limit=5, now=NOW + 1, lease=30, max_in_flight=10) == []


async def test_migrations_apply_once(tmp_path: Path) -> None:
    for _ in range(2):
        store = SQLiteStore(tmp_path / "relay.db")
        await store.open()
        await store.close()
    with sqlite3.connect(tmp_path / "relay.db") as connection:
        assert connection.execute("SELECT version FROM schema_migrations").fetchall() == [(1,)]
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_unopenable_file_is_unavailable(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "missing-dir" / "relay.db")
    with pytest.raises(StoreUnavailable, match="cannot open"):
        await store.open()


async def test_write_after_close_is_unavailable(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "relay.db")
    await store.open()
    await store.close()
    with pytest.raises(StoreUnavailable):
        await store.ingest(event(), [])


async def test_writer_survives_a_failing_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import relay.store.sqlite as sqlite_module

    store = SQLiteStore(tmp_path / "relay.db")
    await store.open()
    try:
        real = sqlite_module._run_batch

        def broken(*args: object, **kwargs: object) -> object:
            raise RuntimeError("a bug in the writer")  # a fault no input can cause: injected

        monkeypatch.setattr(sqlite_module, "_run_batch", broken)
        with pytest.raises(StoreUnavailable, match="the store failed to write"):
            await store.ingest(event("a"), [])
        monkeypatch.setattr(sqlite_module, "_run_batch", real)
        assert not (await store.ingest(event("b"), [])).duplicate  # the writer thread is still there
    finally:
        await store.close()


async def test_a_store_can_be_opened_again(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "relay.db")
    for _ in range(2):
        await store.open()
        try:
            await store.ingest(event(new_id("p")), [])
            assert len(await store.events(EventFilter())) >= 1
        finally:
            await store.close()


async def test_checkpoints_keep_the_wal_bounded_after_a_reopen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import relay.store.sqlite as sqlite_module

    monkeypatch.setattr(sqlite_module, "_CHECKPOINT_EVERY", 4)
    monkeypatch.setattr(sqlite_module, "_WAL_RESTART_FRAMES", 64)
    store = SQLiteStore(tmp_path / "relay.db")
    await store.open()
    await store.close()  # as relay serve does: a first open to check the file, then the real one
    await store.open()
    try:
        for start in range(0, 2000, 100):
            await asyncio.gather(*(store.ingest(event(f"e{n}"), [delivery()]) for n in range(start, start + 100)))
        wal = tmp_path / "relay.db-wal"

        def settled() -> bool:
            return (tmp_path / "relay.db").stat().st_size > 1_000_000 and wal.stat().st_size < 8_000_000

        deadline = time.monotonic() + 20
        while not settled() and time.monotonic() < deadline:
            await store.ingest(event(f"tick{time.monotonic()}"), [])  # commits keep the checkpointer going
            await asyncio.sleep(0.05)
        assert settled(), (wal.stat().st_size, (tmp_path / "relay.db").stat().st_size)
    finally:
        await store.close()
