"""The store: everything relay keeps. One protocol, `Store`, with a SQLite and (later) a PostgreSQL backend.

Rows are frozen dataclasses; states are enums whose values are the strings stored in the database. The store
owns its own clock-free logic only: callers pass `now`, so the workers and the ingress stay testable and free of
process-local assumptions (several relay processes may share one PostgreSQL).
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

_random = random.Random(secrets.randbits(128))  # ids need to be unique, not unguessable: no syscall per id


def new_id(prefix: str, now: float | None = None) -> str:
    """A unique id that sorts by time: `evt_` + 48-bit milliseconds + 80 random bits, in hex."""
    ms = int((time.time() if now is None else now) * 1000) & 0xFFFF_FFFF_FFFF
    return f"{prefix}_{ms:012x}{_random.getrandbits(80):020x}"


class EventStatus(StrEnum):
    ROUTED = "routed"
    UNROUTED = "unrouted"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    HELD = "held"
    IN_FLIGHT = "in_flight"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD = "dead"
    CANCELLED = "cancelled"


class NewDelivery(NamedTuple):
    """A delivery planned at ingest. `status` is PENDING, or FAILED when its variables could not render.

    The three values made for every request (NewEvent, NewDelivery, Ingested) are named tuples: as immutable as
    frozen dataclasses, and built several times faster on the ingest path (docs/benchmarks.md)."""

    id: str
    route_id: str
    target_index: int
    function_id: str
    variables: Any
    stream: bool
    timeout: float
    retry: Mapping[str, Any]
    runtime: Any = None
    status: DeliveryStatus = DeliveryStatus.PENDING
    error: str | None = None


class NewEvent(NamedTuple):
    id: str
    source: str
    event_id: str
    type: str
    received_at: float
    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes
    dedupe_until: float


class Ingested(NamedTuple):
    """The answer to an ingest: relay's id (the original's for a duplicate) and how many deliveries were planned."""

    id: str
    event_id: str
    duplicate: bool
    deliveries: int


@dataclass(frozen=True)
class Attempt:
    number: int
    started_at: float
    latency_ms: float
    outcome: str
    http_status: int | None = None
    error: str | None = None
    function_run_id: str | None = None
    session_id: str | None = None
    function_status: str | None = None
    result: str | None = None
    logs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Delivery:
    id: str
    event: str
    route_id: str
    target_index: int
    function_id: str
    status: DeliveryStatus
    attempts: int
    rate_limited: int
    next_attempt_at: float | None
    variables: Any
    stream: bool
    timeout: float
    retry: Mapping[str, Any]
    runtime: Any
    last_error: str | None
    function_run_id: str | None
    created_at: float
    updated_at: float
    history: tuple[Attempt, ...] = ()
    spent: int = 0  # counted attempts made before the last manual retry: they no longer use up max_attempts
    retried_at: float | None = None


@dataclass(frozen=True)
class Event:
    id: str
    source: str
    event_id: str
    type: str
    status: EventStatus
    received_at: float
    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes
    deliveries: tuple[Delivery, ...] = ()


@dataclass(frozen=True)
class Rejection:
    source: str
    reason: str
    status: int
    message: str
    received_at: float
    headers: Mapping[str, str]
    body_head: bytes
    body_size: int


@dataclass(frozen=True)
class EventFilter:
    status: str | None = None  # an event status, or a delivery status any of its deliveries has
    source: str | None = None
    type: str | None = None  # a glob on the event type, `*` anywhere
    since: float | None = None
    until: float | None = None
    limit: int | None = None


@dataclass(frozen=True)
class RetryFilter:
    """Which failed deliveries `relay retry` sends again: these ids, or those matching the other fields."""

    ids: tuple[str, ...] = ()
    status: tuple[str, ...] = ("failed", "dead")
    since: float | None = None
    function_id: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What the worker decided after an attempt: the delivery's next state and, if retrying, when."""

    status: DeliveryStatus
    next_attempt_at: float | None = None
    error: str | None = None
    rate_limited: bool = False


@dataclass
class Stats:
    events: int = 0
    deliveries: dict[str, int] = field(default_factory=dict)


class Store(Protocol):
    """Everything the ingress, the workers, the CLI and the admin API need to keep and read."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise StoreUnavailable when the store cannot serve."""

    async def ingest(self, event: NewEvent, deliveries: Sequence[NewDelivery]) -> Ingested:
        """Durably record the event and its planned deliveries in one transaction, or answer the duplicate."""

    async def reject(self, rejection: Rejection, keep: int) -> None:
        """Count a rejection and keep its metadata (the last `keep` per source)."""

    async def rejections(self, source: str | None = None) -> list[Rejection]: ...

    async def rejection_counts(self) -> dict[tuple[str, str], int]: ...

    async def events(self, query: EventFilter) -> list[Event]:
        """Newest first, each with its deliveries (without history)."""

    async def event(self, id: str) -> Event:
        """One event with its deliveries and their attempt history; NotFound when no such id."""

    async def delivery(self, id: str) -> Delivery:
        """One delivery with its attempt history; NotFound when no such id."""

    async def claim(self, owner: str, limit: int, now: float, lease: float, max_in_flight: int) -> list[Delivery]:
        """Atomically take up to `limit` due deliveries, and no more than `max_in_flight` minus the live leases of
        other owners. A worker passes the account's cap less the runs it has going itself: its own leases also
        cover answers not recorded yet, which no longer run at the target."""

    async def renew(self, owner: str, ids: Sequence[str], until: float) -> None: ...

    async def finish(self, delivery: Delivery, owner: str, attempt: Attempt, outcome: Outcome) -> None:
        """Record an attempt and move the delivery to its next state (if `owner` still holds it)."""

    async def release(self, owner: str, now: float) -> int:
        """Give back every delivery `owner` holds (graceful stop), so another worker may take it now."""

    async def add_deliveries(self, event: str, deliveries: Sequence[NewDelivery], now: float) -> None:
        """Plan more deliveries for a stored event (a replay), marking it routed if there are any."""

    async def retry(self, which: RetryFilter, now: float, *, dry_run: bool = False) -> list[str]:
        """Make matching failed, dead or cancelled deliveries due now, with a fresh attempt budget; their ids.

        Deliveries whose variables never rendered are left alone: they need a fixed rule and a replay."""

    async def purge(self, before: float) -> tuple[int, int]:
        """Delete events received before `before` (with their deliveries and attempts) and older rejections."""


def sqlite_path(url: str) -> str | None:
    """`sqlite:///path` or a plain path -> the path; None for other URLs."""
    if url.startswith("sqlite:///"):
        return url.removeprefix("sqlite:///")
    if "://" in url:
        return None
    return url


def connect(database_url: str | None, db: str = "relay.db") -> Store:
    """The store for `--database-url` (or `RELAY_DATABASE_URL`), else the SQLite file `db`."""
    from relay.errors import StoreUnavailable
    from relay.store.sqlite import SQLiteStore

    if not database_url:
        return SQLiteStore(db)
    path = sqlite_path(database_url)
    if path is not None:
        return SQLiteStore(path)
    scheme = database_url.split("://", 1)[0]
    raise StoreUnavailable(f"unsupported database URL scheme {scheme!r} (expected sqlite:///path)")
