"""The local Functions runtime: the Notte Functions HTTP contract on loopback, running Python files from a folder.

A function is the file `{directory}/{function_id}.py` with a `def run(**variables)` (or `async def`), for example::

    # functions/func_review.py
    def run(event_type: str, data: dict):
        print(f"reviewing {event_type}")          # print and logging output are the run's logs
        return {"status": "processed", "event": event_type}

Each run is a subprocess of its own (`relay.functions.runner`), so a function that crashes, hangs or leaks cannot
take the runtime down, and runs do not block each other.

Use
---
From the command line, ``relay functions --dir functions --port 8001`` (``relay dev`` starts it next to the
relay). From Python::

    from relay.functions import create_app, serve

    serve("functions", port=8001)                  # uvicorn on 127.0.0.1, blocks until Ctrl+C
    app = create_app("functions", max_concurrent=1, default_timeout=30, api_key="k")   # any ASGI server

Then point the relay (``notte.api_url``) or notte-sdk at it::

    NOTTE_API_URL=http://127.0.0.1:8001 NOTTE_API_KEY=anything python -c '
    from notte_sdk import NotteClient
    print(NotteClient().Function("func_review").run(event_type="x", data={}, stream=False))'

With `api_key` set, every call needs ``Authorization: Bearer <key>`` or ``x-notte-api-key: <key>`` (401
otherwise); without it any key, or none, is accepted.

Endpoints (the paths notte-sdk 1.10 calls)
------------------------------------------
- ``POST /functions/{id}/runs/start``: run and wait. Body ``{"function_id", "variables", "stream",
  "function_run_id"?, "runtime"?}`` (``workflow_id`` / ``workflow_run_id`` accepted as aliases; unknown keys
  are refused). Answer ``{"function_id", "function_run_id", "session_id": null, "result", "status"}``, status
  ``closed`` when `run` returned (result: its return value) and ``failed`` when it raised or could not load
  (result: ``"ValueError: ..."``, ``"cannot load f.py: SyntaxError at line 3: ..."``; the traceback is in the
  logs). With ``"stream": true`` the answer is ``text/event-stream``: ``data: {"type": "log", "message": line}``
  per line the function prints or logs, then ``data: {"type": "result", "message": "<the JSON answer>"}``.
- ``POST /functions/{id}/runs/create``: a run record, not started (``{"function_run_id", "status": "created"}``;
  it reads as ``active`` until it ends).
- ``POST /functions/{id}/runs/{run_id}``: start that created run; same body and answers as runs/start. This is
  the path ``Function.run()`` and ``functions.run_start()`` use.
- ``GET /functions/{id}/runs/{run_id}``: the run (``GetFunctionRunResponse``): status ``active``/``closed``/
  ``failed``, its logs and variables, its result as text (JSON-encoded unless it is a string).
- ``DELETE /functions/{id}/runs/{run_id}``: stop it (SIGKILL to its process group). Answers
  ``{"status": "stopped"}`` once it has ended; the run then reads ``failed``, result ``"stopped by request"``,
  and a caller still waiting on it gets that answer. Stopping a run that ended by itself is 409.
- ``GET /functions/{id}``: metadata (``GetFunctionWithLinkResponse``): ``run``'s parameters, a version (hash of
  the file) and ``url``, a link to ``GET /functions/{id}/code``. ``Function(...).run()`` fetches this first.
- ``GET /health``: ``{"status": "ok"}``, no key needed (``NotteClient.health_check()``).

Errors are JSON ``{"detail": <message>, "error": <code>}``: 404 unknown function or run, 422 a bad body, 409
a run started twice, 429 over `max_concurrent` runs in flight (with ``Retry-After``; runs/create does not count).

Timeouts
--------
A run may take ``default_timeout`` seconds (300, like notte-sdk's own default), or what the request's
``Relay-Run-Timeout: <seconds>`` header says (a header, not a body field, so the same request stays valid for
the Notte cloud). A run that exceeds it is killed and answered **200 with status ``failed``** and result
``"timed out after N s"``, in JSON and in a stream alike (a stream has sent its 200 before the run ends, so the
outcome can only be in the body). The run did happen and fail, so this is a function failure, not a transport
error: the relay records it as ``failed`` and does not retry it unless the target sets
``retry: {on_function_failure: true}``. The relay's HTTP timeout should therefore be a little longer than the run
timeout it asks for, so that the runtime's answer arrives first; if the relay gives up earlier, the run still goes
on (a run belongs to the runtime, not to the connection) until it ends or is stopped.

Memory: the last 1000 runs (`keep_runs`) and the last 5000 log lines of each. On shutdown, running runs are
killed, and callers still waiting on them are cut off rather than answered `failed`: the runtime, not the
function, gave up, so the relay should retry (see `serve`).
"""

from relay.functions.app import create_app, serve

__all__ = ["create_app", "serve"]
