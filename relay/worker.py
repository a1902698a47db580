"""The delivery worker: claim due deliveries, forward each in its own task, record the attempt and the outcome.

The app's lifespan owns one `Worker` (`recover()`, `start()` ... `stop()`); tests may call `drain()` instead,
which works until nothing is due or in flight (like arq's burst mode).

Leases: a claim holds each delivery for `lease` seconds and a background task renews the leases of runs still in
flight every `lease / 3`. A process that dies stops renewing; once its leases run out, `Store.claim` hands those
deliveries to whichever worker asks next, so every in-flight delivery is attempted again (at least once). With
SQLite there is exactly one relay process, so at start every lease in the file is a leftover of a previous life
and `recover()` gives them all back at once instead of waiting for them to run out.

Pace: `max_concurrent_runs` is the account's cap. Locally the worker keeps at most `pace` runs in flight, where
`pace` starts at the cap, halves on each 429 and grows by one per 2xx (AIMD, never below 1); across processes
the store refuses claims beyond the cap minus the leases other workers hold. A run's slot is free as soon as its
answer is in: the attempt is then recorded while the next claim goes out.

Claims overlap: up to `CLAIMS_AT_ONCE` are out at a time (a second one only for at least a quarter of `pace`),
so the runs of one claim go out while the next is taken; the SQLite store commits claims ahead of the other
writes of a batch, without waiting for the disk. Together these broke the lock-step in which the loop waited for
a claim while the writer committed finishes, then the writer waited while the loop sent (docs/benchmarks.md).
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
CLAIMS_AT_ONCE = 2


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
        self._claiming = 0  # slots asked for by the claims still out
        self._claims: set[asyncio.Task[int]] = set()  # claims still out
        self._drained = False  # the last claim found fewer due than it asked for: wait for a wake-up or a poll
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
        await asyncio.gather(*self._claims, return_exceptions=True)  # what they take starts, and is waited for
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
                self.ctx.work.clear()
                self._changed.clear()
                claimed = await self._fill()
                if not claimed and not self._running:
                    due = self._next_due()
                    if due is None or due - self.ctx.clock() > within:
                        return self.attempts - made
                await self._wait(self._sleep())

    async def _run(self) -> None:
        while not self._stopping:
            if self.ctx.work.is_set():
                self._drained = False
            self.ctx.work.clear()
            self._changed.clear()
            if self._claim_now():
                room = self._room()
                self._claiming += room  # at once, so that the next look at the room counts this claim
                claim = asyncio.create_task(self._fill(room), name=f"relay-claim-{self.owner}")
                self._claims.add(claim)
                claim.add_done_callback(self._claimed)
                continue  # perhaps a second claim, while this one is out
            if await self._wait(self._sleep()) is None:
                self._drained = False  # the poll came round: look again

    def _room(self) -> int:
        """How many slots a claim sent now would ask for: 0 when stopping, when `CLAIMS_AT_ONCE` are out, or
        when one is out and fewer than `_batch()` are free (a second claim must be worth its commit)."""
        if self._stopping or len(self._claims) >= CLAIMS_AT_ONCE:
            return 0
        free = self.pace - self._sending - self._claiming
        if self._claims and free < self._batch():
            return 0
        return max(free, 0)

    def _batch(self) -> int:
        """The least worth a claim while another is out, or a wake-up while runs are going: a quarter of `pace`."""
        return max(1, self.pace // 4)

    def _claim_now(self) -> bool:
        """There is room, and the last claim did not come back short (then only a wake-up, new deliveries, a
        retry falling due or the poll starts the next)."""
        return self._room() > 0 and not self._drained

    def _claimed(self, task: asyncio.Task[int]) -> None:
        self._claims.discard(task)
        self._changed.set()
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.critical("a claim of %s failed on a bug", self.owner, exc_info=exc)

    # -- the loop -------------------------------------------------------------------------------------------

    async def _fill(self, reserved: int | None = None) -> int:
        """Claim as many due deliveries as there are free slots (or the `reserved` ones), and start them."""
        now = self.ctx.clock()
        while self._due and self._due[0] <= now:
            heapq.heappop(self._due)  # due now: this claim (or another worker's) takes it
        if reserved is None:
            free = self.pace - self._sending - self._claiming
            self._claiming += max(free, 0)
        else:
            free = reserved
        if free <= 0 or self._stopping:
            self._claiming -= max(free, 0)
            return 0
        try:
            # The cap, less this worker's runs and its other claim out: other workers' leases the store counts.
            cap_left = self.cap - self._sending - (self._claiming - free)
            claimed = await self.ctx.store.claim(self.owner, free, now, self.lease, cap_left)
        except StoreError as exc:
            log.error("could not claim deliveries (will retry in %g s): %s", self.poll, exc)
            self._drained = True
            return 0
        finally:
            self._claiming -= free
        self._drained = len(claimed) < free
        for delivery in claimed:
            task = asyncio.create_task(self._deliver(delivery), name=f"relay-deliver-{delivery.id}")
            self._running[task] = delivery
            self._sending += 1
            task.add_done_callback(self._ended)
        return len(claimed)

    def _next_due(self) -> float | None:
        return self._due[0] if self._due else None

    def _sleep(self) -> float:
        """Until the next poll, or sooner when a retry this worker scheduled falls due first. With no room for a
        claim, until the poll: a run's end or a claim's return wakes the worker first."""
        due = self._next_due()
        if self._room() == 0:
            return self.poll
        if due is None:
            return self.poll
        return max(0.0, min(self.poll, due - self.ctx.clock()))

    async def _wait(self, timeout: float) -> bool | None:
        """Sleep up to `timeout`, waking early on new deliveries (`ctx.work`) or a finished run or claim.
        True when woken early, None when the time ran out."""
        if self.ctx.work.is_set() or self._changed.is_set():
            return True
        if timeout <= 0:
            return None
        waits = [asyncio.ensure_future(self.ctx.work.wait()), asyncio.ensure_future(self._changed.wait())]
        try:
            done, _ = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        return True if done else None

    def _loop_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.critical("the delivery loop of %s stopped on a bug; nothing is delivered", self.owner, exc_info=exc)

    def _ended(self, task: asyncio.Task[None]) -> None:
        delivery = self._running.pop(task)
        if not self._running:
            self._changed.set()  # drain() looks for this moment
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
            if self._room() >= self._batch() or not self._sending:
                self._changed.set()  # enough slots are free: claim again while this attempt is recorded
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
        if not log.isEnabledFor(logging.INFO):
            return
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
