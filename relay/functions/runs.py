"""The runs of the local Functions runtime: records in memory, each started run a supervised subprocess.

A run is created (`create`: status `active`, not started) or created and started at once (`start`). Starting
spawns `python -u runner.py FILE` (see `relay.functions.runner` for the protocol) in a session of its own,
without blocking the event loop, and counts against `max_concurrent` until it ends. A run ends when:

- its function returns (`closed`, result = the return value) or raises (`failed`, result = `"ValueError: ..."`);
- its timeout passes (`failed`, result = `"timed out after N s"`);
- someone stops it (`failed`, result = `"stopped by request"`);
- the runtime shuts down (`failed`).

Ending a run early sends SIGKILL to its whole process group, so processes the function started end with it; so
does returning while something it started is still running. A run belongs to the registry, not to the HTTP
request that started it: a caller that disconnects does not end its run.

Memory is bounded: the registry holds at most `keep` runs and, when a new one would exceed that, drops the oldest
ones that are not running; each run keeps its last `MAX_LOG_LINES` log lines.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeAlias

from relay.functions.catalog import FunctionFile
from relay.functions.errors import RunConflict, TooManyRuns, UnknownRun

RUNNER = Path(__file__).with_name("runner.py")
MAX_LOG_LINES = 5000
MAX_LINE_BYTES = 16384  # a longer line is cut into pieces of this size
RETRY_AFTER_SECONDS = 1
STOP_WAIT_SECONDS = 10.0  # a SIGKILLed run ends in moments; never hang a DELETE on one that does not
CLOSE_WAIT_SECONDS = 10.0

# A streaming caller's queue: one item per log line, then None when the run has ended.
Listener: TypeAlias = "asyncio.Queue[str | None]"


class RunStatus(StrEnum):
    ACTIVE = "active"
    CLOSED = "closed"
    FAILED = "failed"


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(eq=False)
class Run:
    function_id: str
    run_id: str
    created_at: datetime
    updated_at: datetime
    status: RunStatus = RunStatus.ACTIVE
    variables: dict[str, Any] = field(default_factory=dict)
    runtime: str | None = None
    result: Any = None
    logs: deque[str] = field(default_factory=lambda: deque(maxlen=MAX_LOG_LINES))
    started: bool = False
    stopped: bool = False  # ended by a stop request
    end_reason: str | None = None  # why the runtime ended the run early; becomes its result
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    listeners: list[Listener] = field(default_factory=list)
    process: asyncio.subprocess.Process | None = None
    task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self.started and not self.finished.is_set()


class Runs:
    """Every run the runtime knows about. All methods run on the event loop; `close` belongs to the lifespan."""

    def __init__(
        self,
        *,
        max_concurrent: int = 10,
        keep: int = 1000,
        python: str = sys.executable,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if max_concurrent < 1 or keep < 1:
            raise ValueError(f"max_concurrent and keep must be at least 1, got {max_concurrent} and {keep}")
        self._max_concurrent = max_concurrent
        self._keep = keep
        self._python = python
        self._clock = clock
        self._runs: dict[str, Run] = {}  # in creation order, oldest first
        self._running: set[Run] = set()

    def create(self, function: FunctionFile) -> Run:
        now = self._clock()
        run = Run(function.function_id, str(uuid.uuid4()), created_at=now, updated_at=now)
        self._runs[run.run_id] = run
        self._evict(keep_id=run.run_id)
        return run

    def get(self, function_id: str, run_id: str) -> Run:
        run = self._runs.get(run_id)
        if run is None or run.function_id != function_id:
            raise UnknownRun(
                f"unknown run {run_id!r} of function {function_id!r}: it never existed, or it ended and was "
                f"dropped (the runtime keeps the last {self._keep} runs in memory)"
            )
        return run

    def start(
        self,
        function: FunctionFile,
        *,
        variables: dict[str, Any],
        timeout: float,
        runtime: str | None = None,
        run_id: str | None = None,
        listener: Listener | None = None,
    ) -> Run:
        """Start a new run, or the created run `run_id`; the run goes on in a task of its own."""
        created = self.get(function.function_id, run_id) if run_id is not None else None
        if created is not None and (created.started or created.finished.is_set()):
            raise RunConflict(
                f"run {created.run_id!r} was already started or stopped (status {created.status}): "
                "create a new run, or start without a function_run_id"
            )
        if len(self._running) >= self._max_concurrent:
            raise TooManyRuns(
                f"too many runs in flight: {len(self._running)} of max_concurrent={self._max_concurrent}; "
                f"retry after {RETRY_AFTER_SECONDS} s",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        run = created if created is not None else self.create(function)
        run.started = True
        run.variables = variables
        run.runtime = runtime
        run.updated_at = self._clock()
        if listener is not None:
            run.listeners.append(listener)
        self._running.add(run)
        run.task = asyncio.create_task(self._execute(run, function.path, timeout), name=f"run {run.run_id}")
        return run

    async def stop(self, function_id: str, run_id: str) -> Run:
        """End the run now (SIGKILL) and return it once it has ended; stopping a stopped run is a no-op."""
        run = self.get(function_id, run_id)
        if run.finished.is_set():
            if run.stopped:
                return run
            raise RunConflict(f"run {run_id!r} already ended with status {run.status}: there is nothing to stop")
        run.stopped = True
        if not run.started:
            self._finish(run, RunStatus.FAILED, "stopped before it started")
            return run
        self._end(run, "stopped by request")
        with suppress(TimeoutError):
            await asyncio.wait_for(run.finished.wait(), STOP_WAIT_SECONDS)
        return run

    async def close(self) -> None:
        """End every running run, and wait for them to be recorded as ended."""
        running = list(self._running)
        for run in running:
            self._end(run, "the runtime shut down before the run ended")
        tasks = [run.task for run in running if run.task is not None]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=CLOSE_WAIT_SECONDS)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    async def _execute(self, run: Run, path: Path, timeout: float) -> None:
        # Whatever happens, even cancellation, the run ends recorded as ended.
        status, result = RunStatus.FAILED, "the runtime shut down before the run ended"
        try:
            status, result = await self._supervise(run, path, timeout)
        except OSError as exc:
            status, result = RunStatus.FAILED, f"cannot start the function process: {exc}"
        finally:
            self._finish(run, status, result)

    async def _supervise(self, run: Run, path: Path, timeout: float) -> tuple[RunStatus, Any]:
        pipe = asyncio.subprocess.PIPE
        process = await asyncio.create_subprocess_exec(
            self._python,
            "-u",
            str(RUNNER),
            str(path.resolve()),
            stdin=pipe,
            stdout=pipe,
            stderr=pipe,
            start_new_session=True,
        )
        run.process = process
        if run.end_reason is not None:  # stopped while the process was starting
            _kill_group(process)
        timer = asyncio.get_running_loop().call_later(timeout, self._end, run, f"timed out after {timeout:g} s")
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        logs = asyncio.create_task(self._read_logs(run, process.stderr))
        try:
            process.stdin.write(json.dumps({"variables": run.variables}).encode() + b"\n")
            with suppress(ConnectionError):  # the child died before reading: its exit code tells
                await process.stdin.drain()
            raw = await process.stdout.read()  # end of file: the child wrote its result and exited, or died
            timer.cancel()  # a result that arrived in time stands, however long the rest takes
            _kill_group(process)  # whatever the function left running ends with the run
            await logs
            code = await process.wait()
        finally:
            timer.cancel()
            process.stdin.close()  # the child's watchdog reads this end of file as "the runtime is gone"
            if not logs.done():  # cancelled: leave nothing behind
                _kill_group(process)
                logs.cancel()
        if run.end_reason is not None:
            return RunStatus.FAILED, run.end_reason
        return outcome(raw, code)

    async def _read_logs(self, run: Run, stream: asyncio.StreamReader) -> None:
        pending = b""
        while chunk := await stream.read(65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self._log(run, line)
            while len(pending) > MAX_LINE_BYTES:
                self._log(run, pending[:MAX_LINE_BYTES])
                pending = pending[MAX_LINE_BYTES:]
        if pending:
            self._log(run, pending)

    def _log(self, run: Run, line: bytes) -> None:
        text = line.decode("utf-8", "replace").removesuffix("\r")
        run.logs.append(text)
        for listener in run.listeners:
            listener.put_nowait(text)

    def _end(self, run: Run, reason: str) -> None:
        if run.finished.is_set():
            return
        if run.end_reason is None:
            run.end_reason = reason
        if run.process is not None:
            _kill_group(run.process)

    def _finish(self, run: Run, status: RunStatus, result: Any) -> None:
        run.status = status
        run.result = result
        run.updated_at = self._clock()
        run.process = None
        self._running.discard(run)
        run.finished.set()
        for listener in run.listeners:
            listener.put_nowait(None)

    def _evict(self, *, keep_id: str) -> None:
        """Drop the oldest runs that are not running until at most `keep` remain (never `keep_id`)."""
        excess = len(self._runs) - self._keep
        if excess <= 0:
            return
        idle = [run_id for run_id, run in self._runs.items() if not run.running and run_id != keep_id]
        for run_id in idle[:excess]:
            del self._runs[run_id]


def outcome(raw: bytes, code: int) -> tuple[RunStatus, Any]:
    """A run's status and result from the runner's result document and the process's exit code."""
    try:
        document = json.loads(raw)
    except ValueError:  # also UnicodeDecodeError
        document = None
    if isinstance(document, dict) and document.get("ok") is True and "result" in document:
        return RunStatus.CLOSED, document["result"]
    if isinstance(document, dict) and document.get("ok") is False:
        return RunStatus.FAILED, str(document.get("error"))
    if code < 0:
        how = f"was killed by {_signal_name(-code)}"
    else:
        how = f"exited with code {code}"
    return RunStatus.FAILED, f"the function process {how} without returning a result (see the run's logs)"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _kill_group(process: asyncio.subprocess.Process) -> None:
    # The child leads its own process group (start_new_session), so this reaches what it started too.
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
