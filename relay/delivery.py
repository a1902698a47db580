"""What to do after one forward to `runs/start`: pure functions of the answer, the delivery and the clock.

    Answer (from relay.forward)  --classify-->  Outcome (the delivery's next state, and when to try again)
                                 --record--->   Attempt (the row kept in the delivery's history)

The table (SPEC 4):

| answer                                   | outcome                                                        |
|------------------------------------------|----------------------------------------------------------------|
| 2xx, run `closed`                        | succeeded                                                      |
| 2xx, run `active`                        | succeeded: the run was started, runs/start just stopped waiting |
| 2xx, run `failed`                        | failed; with `on_function_failure` retried like a 5xx          |
| 2xx that is not a run (or a cut stream)  | retried like a 5xx (the Idempotency-Key guards a double start) |
| 429                                      | retry at Retry-After, else backoff; not counted in max_attempts |
|                                          | but dead once the event is `max_age` old                       |
| 408, 425, 5xx, no answer, timeout        | retry with full-jitter backoff until max_attempts, then dead   |
| any other status                         | dead at once                                                   |

`active` is success because relay's job is to start the function once: the answer carries a `function_run_id`,
so the run exists and is going; starting it again would run the function twice. The attempt keeps
`function_status="active"`, so the run can be looked up (GET /functions/{id}/runs/{run_id}).
"""

from __future__ import annotations

import email.utils
import functools
import json
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from relay.config import RetryPolicy
from relay.store import Attempt, Delivery, DeliveryStatus, Outcome

ERROR_BODY_CHARS = 200
RETRYABLE_STATUSES = frozenset({408, 425})
_MAX_EXPONENT = 64  # 2**64 seconds is far past any cap; it keeps the float finite


@dataclass(slots=True)
class Answer:
    """What one forward got back. `status` is None when no HTTP answer came (then `error` says why)."""

    status: int | None
    error: str | None = None
    permanent: bool = False  # a request relay cannot build (never worth retrying)
    retry_after: str | None = None
    body: str = ""  # the start of a non-2xx body, for the error message
    run_status: str | None = None  # closed | active | failed, from the run in a 2xx answer
    function_run_id: str | None = None
    session_id: str | None = None
    result: Any = None
    logs: tuple[str, ...] = ()
    latency_ms: float = 0.0


def policy(retry: Mapping[str, Any]) -> RetryPolicy:
    """The delivery's stored retry dict as a `RetryPolicy` (keys it lacks take the defaults)."""
    try:
        return _cached_policy(frozenset(retry.items()))
    except TypeError:  # a value that cannot be hashed (not one relay stores): built each time
        return _policy(retry.items())


def _policy(items: Iterable[tuple[str, Any]]) -> RetryPolicy:
    names = {f.name for f in fields(RetryPolicy)}
    return RetryPolicy(**{key: value for key, value in items if key in names})


_cached_policy = functools.lru_cache(maxsize=256)(_policy)  # a few policies serve every delivery


def backoff(attempt_number: int, policy: RetryPolicy, rng: random.Random) -> float:
    """Full jitter: the wait before attempt n+1 is uniform in [0, min(cap, base * 2**(n-1))] seconds."""
    exponent = min(max(attempt_number - 1, 0), _MAX_EXPONENT)
    return rng.uniform(0.0, min(policy.cap, policy.base * 2.0**exponent))


def next_attempt_at(attempt_number: int, policy: RetryPolicy, now: float, rng: random.Random) -> float:
    """When attempt `attempt_number + 1` may start, after attempt `attempt_number` failed at `now`."""
    return now + backoff(attempt_number, policy, rng)


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a `Retry-After` header (delay-seconds or an HTTP date); None if absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive one is read as such
        return None
    return max(0.0, when.timestamp() - now)


def classify(answer: Answer, delivery: Delivery, now: float, rng: random.Random) -> Outcome:
    """The delivery's next state after `answer` (its attempt counts in `delivery.attempts` are from before it)."""
    rules = policy(delivery.retry)
    status = answer.status
    if status is None:
        error = answer.error or "no answer from runs/start"
        if answer.permanent:
            return Outcome(DeliveryStatus.DEAD, error=error)
        return _retry(error, delivery, rules, now, rng)
    if 200 <= status < 300:
        return _ran(answer, delivery, rules, now, rng)
    error = http_error(status, answer.body)
    if status == 429:
        return _rate_limited(answer, error, delivery, rules, now, rng)
    if status in RETRYABLE_STATUSES or 500 <= status < 600:
        return _retry(error, delivery, rules, now, rng)
    return Outcome(DeliveryStatus.DEAD, error=error)


def http_error(status: int, body: str) -> str:
    """`HTTP 500 from runs/start: <the first 200 characters of the body>`."""
    head = body[:ERROR_BODY_CHARS].strip()
    return f"HTTP {status} from runs/start: {head}" if head else f"HTTP {status} from runs/start"


def counted_attempts(delivery: Delivery) -> int:
    """Attempts made so far that use up `max_attempts` (every one but the rate-limited ones)."""
    return delivery.attempts - delivery.rate_limited - delivery.spent


def record(answer: Answer, outcome: Outcome, *, number: int, started_at: float, result_max_bytes: int) -> Attempt:
    """The attempt row for the history: the answer as received, the result as JSON text cut to a size."""
    return Attempt(
        number=number,
        started_at=started_at,
        latency_ms=answer.latency_ms,
        outcome=outcome.status.value,
        http_status=answer.status,
        error=outcome.error if outcome.error is not None else answer.error,
        function_run_id=answer.function_run_id,
        session_id=answer.session_id,
        function_status=answer.run_status,
        result=result_text(answer.result, result_max_bytes) if answer.status is not None else None,
        logs=answer.logs,
    )


def result_text(result: Any, limit: int) -> str | None:
    """`result` as JSON text, cut to `limit` bytes (then marked, and no longer parseable JSON)."""
    if result is None:
        return None
    text = json.dumps(result, ensure_ascii=False, default=str)
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    kept = raw[:limit].decode("utf-8", errors="ignore")
    return f"{kept}... [truncated: {len(raw)} bytes, {limit} kept]"


# -- the cases --------------------------------------------------------------------------------------------------


def _ran(answer: Answer, delivery: Delivery, rules: RetryPolicy, now: float, rng: random.Random) -> Outcome:
    run = answer.run_status
    if run in ("closed", "active"):
        return Outcome(DeliveryStatus.SUCCEEDED)
    if run == "failed":
        error = f"function run {answer.function_run_id} failed: {_short(answer.result)}"
        if rules.on_function_failure:
            return _retry(error, delivery, rules, now, rng)
        return Outcome(DeliveryStatus.FAILED, error=error)
    error = answer.error or f"{http_error(answer.status or 0, answer.body)} (not a function run)"
    return _retry(error, delivery, rules, now, rng)


def _retry(error: str, delivery: Delivery, rules: RetryPolicy, now: float, rng: random.Random) -> Outcome:
    made = counted_attempts(delivery) + 1
    if made >= rules.max_attempts:
        return Outcome(DeliveryStatus.DEAD, error=f"{error} (gave up after {made} of {rules.max_attempts} attempts)")
    return Outcome(DeliveryStatus.RETRYING, next_attempt_at=next_attempt_at(made, rules, now, rng), error=error)


def _rate_limited(
    answer: Answer, error: str, delivery: Delivery, rules: RetryPolicy, now: float, rng: random.Random
) -> Outcome:
    age = now - (delivery.retried_at or delivery.created_at)
    if age >= rules.max_age:
        limit = f"retry.max_age ({rules.max_age:g} s)"
        return Outcome(DeliveryStatus.DEAD, error=f"{error} (still rate limited after {limit})", rate_limited=True)
    wait = retry_after(answer.retry_after, now)
    if wait is None:
        wait = backoff(delivery.rate_limited + 1, rules, rng)
    return Outcome(DeliveryStatus.RETRYING, next_attempt_at=now + wait, error=error, rate_limited=True)


def _short(result: Any) -> str:
    text = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False, default=str)
    return text[:ERROR_BODY_CHARS]
