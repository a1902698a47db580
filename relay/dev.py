"""`relay dev`: the relay and the local Functions runtime in one process, on loopback, without an account.

Both run as uvicorn servers in one event loop. The relay forwards to the runtime because `NOTTE_API_URL` points
at it before `routes.yaml` is loaded (the example rules read `${NOTTE_API_URL:-...}`), and the runtime requires
the random key put in `NOTTE_API_KEY`, which the relay sends. Once both listen, a banner says what to try next.

Ctrl-C or SIGTERM stops the relay first (its runs in flight get the worker's grace period), then the runtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shlex
import shutil
import signal
import socket
import sys
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from starlette.applications import Starlette

from relay import functions
from relay.app import create_app
from relay.config import Config
from relay.errors import RelayError
from relay.store import connect

HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_CONFIG = "routes.yaml"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Options:
    config: str
    port: int
    functions_port: int
    functions: str
    db: str
    log_level: str = "info"


def point_at_runtime(functions_port: int, environ: MutableMapping[str, str]) -> str:
    """Set `NOTTE_API_URL` to the local runtime and `NOTTE_API_KEY` to a fresh random key; return the key.

    Done in the process environment, before the rules are loaded, so `${NOTTE_API_URL:-...}` resolves to the
    runtime, and functions that call notte-sdk themselves reach it too."""
    key = f"dev_{secrets.token_urlsafe(18)}"
    environ["NOTTE_API_URL"] = f"http://{HOST}:{functions_port}"
    environ["NOTTE_API_KEY"] = key
    return key


def run(config: Config, options: Options, api_key: str, announce: Callable[[str], None]) -> int:
    """Serve until Ctrl-C or SIGTERM; 0 after a clean stop, 1 when a server could not start.

    `announce` gets the banner once both servers listen. Raises `RelayError` before starting anything when a
    port is taken or the functions folder is missing."""
    folder = Path(options.functions)
    if not folder.is_dir():
        raise RelayError(f"no functions folder at {options.functions} (pass --functions DIR)")
    _log_to_stderr(options.log_level)
    expected = f"http://{HOST}:{options.functions_port}"
    if config.notte.api_url != expected:
        log.warning(
            '%s sends runs to %s, not to the local runtime at %s; write api_url: "${NOTTE_API_URL:-...}" '
            "to use the runtime",
            config.file,
            config.notte.api_url,
            expected,
        )
    text = banner(config, options, executable(sys.argv[0], Path.cwd()))
    with _listening(options.port) as relay_socket, _listening(options.functions_port) as runtime_socket:
        relay = _server(create_app(config, store=connect(None, options.db), deliver=True), options.port)
        runtime_app = functions.create_app(folder, max_concurrent=config.notte.max_concurrent_runs, api_key=api_key)
        runtime = _server(runtime_app, options.functions_port, graceful=5)
        return asyncio.run(_serve(relay, relay_socket, runtime, runtime_socket, lambda: announce(text)))


def _log_to_stderr(level: str) -> None:
    """relay's own log lines (each delivery's outcome) on stderr; uvicorn keeps to warnings."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)-8s %(name)s: %(message)s"))
    logger = logging.getLogger("relay")
    logger.addHandler(handler)
    logger.setLevel(level.upper())


# -- the two servers -------------------------------------------------------------------------------------------


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to `_serve`: two servers share this process, and uvicorn's own
    handlers would each stop one server and then re-raise the signal to kill the process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _server(app: Starlette, port: int, *, graceful: int | None = None) -> _Server:
    config = uvicorn.Config(
        app,
        host=HOST,
        port=port,
        lifespan="on",
        log_level="warning",
        access_log=False,
        ws="none",
        proxy_headers=False,
        timeout_graceful_shutdown=graceful,
    )
    return _Server(config)


@contextlib.contextmanager
def _listening(port: int) -> Iterator[socket.socket]:
    """Bind before anything starts, so a taken port is one clear message instead of a half-started process."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError as exc:
        sock.close()
        raise RelayError(f"cannot listen on {HOST}:{port}: {exc.strerror} (is relay dev already running?)") from None
    try:
        yield sock
    finally:
        sock.close()


async def _serve(
    relay: _Server,
    relay_socket: socket.socket,
    runtime: _Server,
    runtime_socket: socket.socket,
    announce: Callable[[], None],
) -> int:
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)

    def stop() -> None:
        if relay.should_exit:  # a second Ctrl-C: do not wait for runs in flight
            relay.force_exit = runtime.force_exit = True
        relay.should_exit = True

    for signum in signals:
        loop.add_signal_handler(signum, stop)
    try:
        relay_task = asyncio.create_task(_until_stopped(relay, relay_socket), name="relay")
        runtime_task = asyncio.create_task(_until_stopped(runtime, runtime_socket), name="functions")
        if await _both_started(relay, runtime, {relay_task, runtime_task}):
            announce()
        await asyncio.wait({relay_task, runtime_task}, return_when=asyncio.FIRST_COMPLETED)
        relay.should_exit = True  # a signal, or the runtime failed to start: either way, stop both
        relay_ok = await relay_task
        runtime.should_exit = True
        runtime_ok = await runtime_task
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
    return 0 if relay_ok and runtime_ok else 1


async def _both_started(relay: _Server, runtime: _Server, tasks: set[asyncio.Task[bool]]) -> bool:
    """Wait until both servers listen (True), or one of them gave up starting (False)."""
    while not (relay.started and runtime.started):
        done, _ = await asyncio.wait(tasks, timeout=0.02, return_when=asyncio.FIRST_COMPLETED)
        if done:
            return False
    return True


async def _until_stopped(server: _Server, sock: socket.socket) -> bool:
    """Serve until told to stop; False when the server could not start (uvicorn exits on a failed startup)."""
    try:
        await server.serve(sockets=[sock])
    except SystemExit:
        return False
    return server.started


# -- what to try next ------------------------------------------------------------------------------------------


def executable(argv0: str, cwd: Path, on_path: str | None = None) -> str:
    """How to run this relay again from `cwd`: `relay` when PATH finds this very program, else its path
    (relative to `cwd` when under it), or `python -m relay` when it was started that way."""
    program = Path(argv0)
    if program.name == "__main__.py":
        return f"{_shown(Path(sys.executable), cwd)} -m relay"
    found = on_path if on_path is not None else shutil.which("relay")
    if found is not None and Path(found).resolve() == program.resolve():
        return "relay"
    return _shown(program, cwd)


def _shown(path: Path, cwd: Path) -> str:
    absolute = path if path.is_absolute() else cwd / path
    try:
        return shlex.quote(str(absolute.relative_to(cwd)))
    except ValueError:
        return shlex.quote(str(absolute))


def banner(config: Config, options: Options, relay: str) -> str:
    """The lines printed once both servers listen: where they are, and commands that run as printed."""
    relay_url = f"http://{HOST}:{options.port}"
    runtime_url = f"http://{HOST}:{options.functions_port}"
    names = sorted(path.stem for path in Path(options.functions).glob("*.py") if not path.stem.startswith("_"))
    db = shlex.quote(options.db)
    rules = f" --config {shlex.quote(options.config)}" if options.config != DEFAULT_CONFIG else ""
    example = _example(config, Path(options.functions).parent)
    source, payload = ("SOURCE", "PAYLOAD.json") if example is None else example
    url = f" --url {relay_url}/hooks/{source}" if options.port != DEFAULT_PORT else ""
    tries = [
        (f"{relay} send {source} {payload}{url}{rules}", "sign it with the source's secret and POST it"),
        (f"{relay} events --db {db}", "the event, its delivery and its status"),
        (f"{relay} show evt_... --db {db}", "every attempt, the run id and the result"),
        (f"{relay} route {source} {payload}{rules}", "dry run: which routes match, why not, the variables"),
    ]
    width = max(len(command) for command, _ in tries) + 3
    return "\n".join(
        [
            "relay dev is running (Ctrl-C stops it)",
            f"  relay      {relay_url}  POST /hooks/{{source}}  ({', '.join(config.sources)})",
            f"  functions  {runtime_url}  {options.functions}: {', '.join(names) or 'no functions yet'}",
            f"  rules      {options.config} ({len(config.routes)} routes)",
            f"  database   {options.db}",
            "",
            "Try:",
            *(f"  {command.ljust(width)}# {comment}" for command, comment in tries),
            "",
        ]
    )


def _example(config: Config, examples: Path) -> tuple[str, str] | None:
    """The first source of the rules with a sample payload in `examples/{source}/`, shell-quoted."""
    for source in config.sources:
        payloads = sorted((examples / source).glob("*.json"))
        if payloads:
            return shlex.quote(source), shlex.quote(str(payloads[0]))
    return None
