"""The delivery worker: claim due deliveries, forward each in its own task, record the attempt and the outcome.

The app's lifespan owns one `Worker` (`recover()`, `start()` ... `stop()`); tests may call `drain()` instead,
which works until nothing is due or in flight (like arq's burst mode).

Leases: a claim holds each delivery for `lease` seconds and a background task renews the leases of runs still in
flight every `lease / 3`. A process that dies stops renewing; once its leases run out, `Store.claim` hands those
deliveries to whichever worker asks next, so every in-flight delivery is attempted again (at least once). With
SQLite there is exactly one relay process, so at start every lease in the file is a leftover of a previous life
and `recover()` gives them all back at once instead of waiting for them to run out.

Pace: `max_concurrent_runs` is the account's cap. The store enforces it across processes (it counts live leases
when claiming); locally the worker keeps at most `pace` runs in flight, where `pace` starts at the cap, halves on
each 429 and grows by one per 2xx (AIMD, never below 1). A run's slot is free as soon as its answer is in: the
attempt is then recorded while the next claim goes out. With SQLite the one writer thread runs that record before
the claim (they are queued in that order), so the store never counts more than the cap in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import os
import random
import secrets
import socket
from collections.abc import AsyncIterator

from relay import forward
from relay.client import Client
from relay.context import Context
from relay.delivery import Answer, classify, record
from relay.errors import StoreError
from relay.store import Delivery
from relay.store.sqlite import SQLiteStore

log = logging.getLogger(__name__)


def new_owner() -> str:
    """A worker id unique across hosts, processes and restarts: `hostname-pid-random`."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"


class Worker:
    """Forwards due deliveries to Notte Functions with at most `max_concurrent_runs` runs in flight."""

    def __init__(
        self,
        ctx: Context,
        http: Client,
        *,
        owner: str | None = None,
        lease: float = 30.0,
        poll: float = 0.5,
        grace: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        self.ctx = ctx
        self.http = http
        self.owner = owner or new_owner()
        self.lease = lease
        self.poll = poll
        self.grace = grace
        self.rng = rng or random.Random()
        self.cap = ctx.config.notte.max_concurrent_runs
        self.pace = self.cap
        self.attempts = 0  # made by this worker, for drain() and the logs
        self._running: dict[asyncio.Task[None], Delivery] = {}  # until the attempt is recorded
        self._sending = 0  # of those, the runs still waiting for their answer: the slots in use
        self._due: list[float] = []  # when the retries this worker scheduled fall due (a heap)
        self._changed = asyncio.Event()  # a run ended, or stop() was called
        self._stopping = False
        self._loop: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None

    @property
    def in_flight(self) -> int:
        return len(self._running)

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def recover(self) -> int:
        """Give back, at once, the leases a previous life of this relay left behind; return how many.

        Only for SQLite, where one process owns the file, so every lease in it is a leftover. On a shared store
        (PostgreSQL) other processes are alive and hold leases; abandoned ones simply run out and are claimed.
        """
        if not isinstance(self.ctx.store, SQLiteStore):
            return 0
        try:
            released = await self.ctx.store.release_all(self.ctx.clock())
        except StoreError as exc:
            log.error("could not take back the leases left by a previous run: %s", exc)
            return 0
        if released:
            log.warning("%d delivery(ies) were in flight when relay last stopped; trying them again", released)
        return released

    async def start(self) -> None:
        """Run in the background until `stop()`."""
        self._renewer = asyncio.create_task(self._renew_forever(), name=f"relay-renew-{self.owner}")
        self._loop = asyncio.create_task(self._run(), name=f"relay-worker-{self.owner}")
        self._loop.add_done_callback(self._loop_ended)

    async def stop(self) -> None:
        """Stop claiming; let runs in flight finish for up to `grace` seconds; cancel and give back the rest."""
        self._stopping = True
        self._changed.set()
        if self._loop is not None:
            await asyncio.gather(self._loop, return_exceptions=True)  # a crash is logged by _loop_ended
        pending: set[asyncio.Task[None]] = set()
        if self._running:
            _, pending = await asyncio.wait(list(self._running), timeout=self.grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
        try:
            released = await self.ctx.store.release(self.owner, self.ctx.clock())
        except StoreError as exc:
            log.error("could not give back the deliveries of %s (their leases will run out): %s", self.owner, exc)
            return
        if released:
            log.warning("stopped with %d run(s) unfinished after %g s; they will be tried again", released, self.grace)

    async def drain(self, *, within: float = 60.0) -> int:
        """Work until nothing is in flight and nothing is due, waiting for the retries this worker scheduled
        within the next `within` seconds. Returns the number of attempts made. For tests and one-off runs.

        Due deliveries held back only because other workers fill `max_concurrent_runs` are not waited for."""
        made = self.attempts
        async with self._renewing():
            while True:
                claimed = await self._fill()
                if not claimed and not self._running:
                    due = self._next_due()
                    if due is None or due - self.ctx.clock() > within:
                        return self.attempts - made
                await self._wait(self._sleep())

    async def _run(self) -> None:
        while not self._stopping:
            await self._fill()
            await self._wait(self._sleep())

    # -- the loop -------------------------------------------------------------------------------------------

    async def _fill(self) -> int:
        """Clear the wake-ups, then claim as many due deliveries as there are free slots, and start them."""
        self.ctx.work.clear()
        self._changed.clear()
        now = self.ctx.clock()
        while self._due and self._due[0] <= now:
            heapq.heappop(self._due)  # due now: this claim (or another worker's) takes it
        free = self.pace - self._sending
        if free <= 0 or self._stopping:
            return 0
        try:
            claimed = await self.ctx.store.claim(self.owner, free, now, self.lease, self.cap)
        except StoreError as exc:
            log.error("could not claim deliveries (will retry in %g s): %s", self.poll, exc)
            return 0
        for delivery in claimed:
            task = asyncio.create_task(self._deliver(delivery), name=f"relay-deliver-{delivery.id}")
            self._running[task] = delivery
            self._sending += 1
            task.add_done_callback(self._ended)
        return len(claimed)

    def _next_due(self) -> float | None:
        return self._due[0] if self._due else None

    def _sleep(self) -> float:
        """Until the next poll, or sooner when a retry this worker scheduled falls due first."""
        due = self._next_due()
        if due is None:
            return self.poll
        return max(0.0, min(self.poll, due - self.ctx.clock()))

    async def _wait(self, timeout: float) -> None:
        """Sleep up to `timeout`, waking early on new deliveries (`ctx.work`) or a finished run."""
        if self.ctx.work.is_set() or self._changed.is_set() or timeout <= 0:
            return
        waits = [asyncio.ensure_future(self.ctx.work.wait()), asyncio.ensure_future(self._changed.wait())]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    def _loop_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.critical("the delivery loop of %s stopped on a bug; nothing is delivered", self.owner, exc_info=exc)

    def _ended(self, task: asyncio.Task[None]) -> None:
        delivery = self._running.pop(task)
        self._changed.set()
        if not task.cancelled() and (exc := task.exception()) is not None:
            # A bug, not a delivery outcome: the lease is no longer renewed, so the delivery is tried again.
            log.error("delivery %s crashed the worker task", delivery.id, exc_info=exc)

    # -- one delivery ---------------------------------------------------------------------------------------

    async def _deliver(self, delivery: Delivery) -> None:
        config = self.ctx.config
        started_at = self.ctx.clock()
        try:
            answer = await forward.send(self.http, delivery, config.notte)
        finally:
            self._sending -= 1
            self._changed.set()  # the slot is free: claim again while this attempt is recorded
        outcome = classify(answer, delivery, self.ctx.clock(), self.rng)
        attempt = record(
            answer,
            outcome,
            number=delivery.attempts + 1,
            started_at=started_at,
            result_max_bytes=config.defaults.result_max_bytes,
        )
        self.attempts += 1
        self._adjust_pace(answer)
        try:
            await self.ctx.store.finish(delivery, self.owner, attempt, outcome)
        except StoreError as exc:
            log.error(
                "could not record attempt %d of %s (it will be tried again): %s", attempt.number, delivery.id, exc
            )
            return
        if outcome.next_attempt_at is not None:
            heapq.heappush(self._due, outcome.next_attempt_at)
        log.info(
            "delivery %s to %s: attempt %d %s%s",
            delivery.id,
            delivery.function_id,
            attempt.number,
            outcome.status.value,
            f" ({outcome.error})" if outcome.error else "",
        )

    def _adjust_pace(self, answer: Answer) -> None:
        if answer.status == 429:
            self.pace = max(1, self.pace // 2)
        elif answer.status is not None and 200 <= answer.status < 300:
            self.pace = min(self.cap, self.pace + 1)

    # -- leases ---------------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _renewing(self) -> AsyncIterator[None]:
        renewer = asyncio.create_task(self._renew_forever(), name=f"relay-renew-{self.owner}")
        try:
            yield
        finally:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            ids = [delivery.id for delivery in self._running.values()]
            if not ids:
                continue
            try:
                await self.ctx.store.renew(self.owner, ids, self.ctx.clock() + self.lease)
            except StoreError as exc:
                log.error("could not renew %d lease(s) (they may be claimed again): %s", len(ids), exc)
