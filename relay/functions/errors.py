"""What the local Functions runtime refuses, each with its HTTP status and a stable code.

    relay.errors.RelayError
    └── FunctionsError          base: `status`, `code`, extra response `headers`
        ├── BadRequest            422  the body or a header is not what runs/start accepts
        ├── Unauthorized          401  an API key is configured and the request does not carry it
        ├── UnknownFunction       404  no `{directory}/{function_id}.py`
        ├── UnknownRun            404  no such run for this function (or it was evicted from memory)
        ├── RunConflict           409  start a run twice, stop a run that already ended
        └── TooManyRuns           429  `max_concurrent` runs in flight; carries `Retry-After`

The app's one exception handler turns them into `{"detail": <message>, "error": <code>}`. A failing *function* is
not an error here: it is a run whose status is `failed`, answered 200.
"""

from __future__ import annotations

from relay.errors import RelayError


class FunctionsError(RelayError):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.headers = headers or {}


class BadRequest(FunctionsError):
    status = 422
    code = "invalid_request"


class Unauthorized(FunctionsError):
    status = 401
    code = "unauthorized"


class UnknownFunction(FunctionsError):
    status = 404
    code = "unknown_function"


class UnknownRun(FunctionsError):
    status = 404
    code = "unknown_run"


class RunConflict(FunctionsError):
    status = 409
    code = "run_conflict"


class TooManyRuns(FunctionsError):
    status = 429
    code = "too_many_runs"
