"""Real relay processes for the end-to-end tests: start, read their output with deadlines, wait on conditions,
and always stop them. Nothing here sleeps for a fixed time: every wait polls a condition until a deadline."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx

T = TypeVar("T")
RELAY = [sys.executable, "-m", "relay"]
POLL = 0.1


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without relay's or Notte's variables, plus `extra`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("RELAY_", "NOTTE_"))}
    env.update(extra)
    return env


class Process:
    """A child process whose stdout is read line by line (in a thread) and whose stderr goes to a file."""

    def __init__(self, args: Sequence[str | os.PathLike[str]], *, log: Path, env: dict[str, str], cwd: Path) -> None:
        self.args = [str(arg) for arg in args]
        self.log = log
        self._stderr = log.open("ab")
        self.popen = subprocess.Popen(
            self.args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            self.lines.put(raw.decode("utf-8", errors="replace").rstrip("\n"))
        self.lines.put(None)

    def read_until(self, predicate: Callable[[str], bool], timeout: float) -> str:
        """The first stdout line for which `predicate` holds (earlier lines are kept in `output`)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise AssertionError(f"{self.args} exited ({self.popen.wait()}) before that line:\n{self.describe()}")
            self.output.append(line)
            if predicate(line):
                return line
        raise AssertionError(f"no such line from {self.args} within {timeout} s:\n{self.describe()}")

    def describe(self) -> str:
        self._stderr.flush()
        return "stdout:\n" + "\n".join(self.output) + "\nstderr:\n" + self.log.read_text(errors="replace")[-4000:]

    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout=timeout)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it is still there after 15 s."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._reader.join(timeout=5)
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        self._stderr.close()


@contextlib.contextmanager
def started(args: Sequence[str | os.PathLike[str]], *, log: Path, env: dict[str, str], cwd: Path) -> Iterator[Process]:
    process = Process(args, log=log, env=env, cwd=cwd)
    try:
        yield process
    finally:
        process.stop()


def wait_for(condition: Callable[[], T | None], timeout: float, what: str, interval: float = POLL) -> T:
    """Poll `condition` until it returns something other than None or False; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def answers(url: str) -> bool:
    """True once `url` answers 200 (a server that is not up yet refuses the connection)."""
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def relay(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RELAY, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def events(db: Path, env: dict[str, str], cwd: Path) -> list[dict[str, Any]]:
    """`relay events --json --db DB`, parsed."""
    done = relay("events", "--json", "--db", str(db), env=env, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]
