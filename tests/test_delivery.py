"""The pure core of delivery: backoff, Retry-After, classification of an answer, the attempt record."""

from __future__ import annotations

import email.utils
import random
from dataclasses import replace
from typing import Any

import pytest

from relay.config import RetryPolicy
from relay.delivery import Answer, backoff, classify, next_attempt_at, policy, record, result_text, retry_after
from relay.store import Delivery, DeliveryStatus, Outcome
from tests.conftest import in_flight

NOW = 1_800_000_000.0
RETRY = {"max_attempts": 3, "base": 2.0, "cap": 60.0, "max_age": 3600.0, "on_function_failure": False}


class Highest(random.Random):
    """Always the top of the range: makes the jitter's upper bound visible."""

    def uniform(self, a: float, b: float) -> float:
        return b


def delivery(**changes: Any) -> Delivery:
    fields = {"next_attempt_at": NOW, "variables": {"n": 1}, "retry": RETRY, "created_at": NOW - 10, "updated_at": NOW}
    return in_flight(**{**fields, **changes})


def ran(status: str, result: Any = "ok") -> Answer:
    return Answer(200, run_status=status, function_run_id="run_1", session_id="ses_1", result=result)


# -- backoff ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "base", "cap", "bound"),
    [
        (1, 2, 3600, 2),
        (2, 2, 3600, 4),
        (3, 2, 3600, 8),
        (11, 2, 3600, 2048),
        (12, 2, 3600, 3600),
        (10_000, 2, 3600, 3600),  # no overflow however many attempts
        (1, 0.05, 0.2, 0.05),
        (3, 0.05, 0.2, 0.2),
    ],
)
def test_backoff_upper_bound_is_min_of_cap_and_doubling(attempt: int, base: float, cap: float, bound: float) -> None:
    rules = RetryPolicy(base=base, cap=cap)
    assert backoff(attempt, rules, Highest()) == pytest.approx(bound)
    assert next_attempt_at(attempt, rules, NOW, Highest()) == pytest.approx(NOW + bound)


def test_backoff_is_full_jitter_over_the_whole_range() -> None:
    rng = random.Random(7)
    waits = [backoff(3, RetryPolicy(base=1, cap=100), rng) for _ in range(2000)]
    assert all(0 <= wait <= 4 for wait in waits)
    assert min(waits) < 0.1 and max(waits) > 3.9  # from (almost) nothing to (almost) the bound


# -- Retry-After --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("1", 1.0),
        (" 120 ", 120.0),
        ("0", 0.0),
        (email.utils.formatdate(NOW + 30, usegmt=True), 30.0),
        (email.utils.formatdate(NOW - 30, usegmt=True), 0.0),
        ("Wed, 21 Oct 2015 07:28:00", None),  # no zone: not an HTTP date
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after(header: str | None, seconds: float | None) -> None:
    assert retry_after(header, NOW) == seconds


# -- classify ------------------------------------------------------------------------------------------------------

DEAD = DeliveryStatus.DEAD
RETRYING = DeliveryStatus.RETRYING


@pytest.mark.parametrize(
    ("answer", "changes", "expected"),
    [
        (ran("closed"), {}, Outcome(DeliveryStatus.SUCCEEDED)),
        (ran("active"), {}, Outcome(DeliveryStatus.SUCCEEDED)),
        (ran("failed", "boom"), {}, Outcome(DeliveryStatus.FAILED, error="function run run_1 failed: boom")),
        (ran("failed", {"e": 1}), {}, Outcome(DeliveryStatus.FAILED, error='function run run_1 failed: {"e": 1}')),
        (Answer(400, body="bad variables"), {}, Outcome(DEAD, error="HTTP 400 from runs/start: bad variables")),
        (Answer(401), {}, Outcome(DEAD, error="HTTP 401 from runs/start")),
        (Answer(404, body="no such function"), {}, Outcome(DEAD, error="HTTP 404 from runs/start: no such function")),
        (Answer(422, body="x"), {}, Outcome(DEAD, error="HTTP 422 from runs/start: x")),
        (Answer(301, body=""), {}, Outcome(DEAD, error="HTTP 301 from runs/start")),
        (Answer(None, error="bad vars", permanent=True), {}, Outcome(DEAD, error="bad vars")),
        (
            Answer(500, body="oops"),
            {"attempts": 2},
            Outcome(DEAD, error="HTTP 500 from runs/start: oops (gave up after 3 of 3 attempts)"),
        ),
        (
            Answer(None, error="timed out after 30 s"),
            {"attempts": 2},
            Outcome(DEAD, error="timed out after 30 s (gave up after 3 of 3 attempts)"),
        ),
        (
            # rate-limited attempts do not use up max_attempts: 4 made, 2 of them 429s, so this is the 3rd
            Answer(503, body="busy"),
            {"attempts": 4, "rate_limited": 2},
            Outcome(DEAD, error="HTTP 503 from runs/start: busy (gave up after 3 of 3 attempts)"),
        ),
        (
            ran("failed", "boom"),
            {"attempts": 2, "retry": {**RETRY, "on_function_failure": True}},
            Outcome(DEAD, error="function run run_1 failed: boom (gave up after 3 of 3 attempts)"),
        ),
        (
            Answer(429, body="slow down", retry_after="5"),
            {"created_at": NOW - 3600},
            Outcome(
                DEAD,
                error="HTTP 429 from runs/start: slow down (still rate limited after retry.max_age (3600 s))",
                rate_limited=True,
            ),
        ),
    ],
)
def test_classify_final_outcomes(answer: Answer, changes: dict[str, Any], expected: Outcome) -> None:
    assert classify(answer, delivery(**changes), NOW, Highest()) == expected


@pytest.mark.parametrize(
    ("answer", "changes", "error", "wait"),
    [
        (Answer(500, body="oops"), {}, "HTTP 500 from runs/start: oops", 2.0),  # before attempt 2: [0, 2]
        (Answer(502), {"attempts": 1}, "HTTP 502 from runs/start", 4.0),  # before attempt 3: [0, 4]
        (Answer(503, body="x" * 300), {}, "HTTP 503 from runs/start: " + "x" * 200, 2.0),
        (Answer(408), {}, "HTTP 408 from runs/start", 2.0),
        (Answer(425), {}, "HTTP 425 from runs/start", 2.0),
        (Answer(None, error="timed out after 30 s"), {}, "timed out after 30 s", 2.0),
        (Answer(None, error="cannot connect to http://x: refused"), {}, "cannot connect to http://x: refused", 2.0),
        (
            Answer(200, error="HTTP 200 from runs/start is not a function run: <html>"),
            {},
            "HTTP 200 from runs/start is not a function run: <html>",
            2.0,
        ),
        (
            ran("failed", "boom"),
            {"retry": {**RETRY, "on_function_failure": True}},
            "function run run_1 failed: boom",
            2.0,
        ),
        (Answer(429, retry_after="7"), {}, "HTTP 429 from runs/start", 7.0),
        (Answer(429, retry_after="7"), {"attempts": 9, "rate_limited": 9}, "HTTP 429 from runs/start", 7.0),
        (Answer(429), {}, "HTTP 429 from runs/start", 2.0),  # no Retry-After: backoff on the 429s alone
        (Answer(429, retry_after="nonsense"), {"attempts": 3, "rate_limited": 2}, "HTTP 429 from runs/start", 8.0),
    ],
)
def test_classify_retries(answer: Answer, changes: dict[str, Any], error: str, wait: float) -> None:
    outcome = classify(answer, delivery(**changes), NOW, Highest())
    assert outcome.status == RETRYING
    assert outcome.error == error
    assert outcome.next_attempt_at == pytest.approx(NOW + wait)
    assert outcome.rate_limited is (answer.status == 429)


def test_rate_limits_never_use_up_max_attempts() -> None:
    many = delivery(attempts=50, rate_limited=50)
    assert classify(Answer(429, retry_after="1"), many, NOW, Highest()).status == RETRYING


# -- the record ---------------------------------------------------------------------------------------------------


def test_record_keeps_the_answer_and_the_outcome() -> None:
    answer = replace(ran("closed", {"total": 3}), latency_ms=12.5, logs=("one", "two"))
    outcome = Outcome(DeliveryStatus.SUCCEEDED)
    attempt = record(answer, outcome, number=2, started_at=NOW, result_max_bytes=1000)
    assert attempt.number == 2 and attempt.started_at == NOW and attempt.latency_ms == 12.5
    assert attempt.outcome == "succeeded" and attempt.http_status == 200 and attempt.error is None
    assert (attempt.function_run_id, attempt.session_id, attempt.function_status) == ("run_1", "ses_1", "closed")
    assert attempt.result == '{"total": 3}'
    assert attempt.logs == ("one", "two")


def test_record_takes_the_outcome_error() -> None:
    outcome = classify(Answer(500, body="oops"), delivery(), NOW, Highest())
    attempt = record(Answer(500, body="oops"), outcome, number=1, started_at=NOW, result_max_bytes=10)
    assert attempt.outcome == "retrying" and attempt.error == "HTTP 500 from runs/start: oops"
    assert attempt.result is None


@pytest.mark.parametrize(
    ("result", "limit", "text"),
    [
        (None, 10, None),
        ({"a": 1}, 100, '{"a": 1}'),
        ("x" * 20, 22, '"' + "x" * 20 + '"'),
        ("x" * 20, 10, '"xxxxxxxxx... [truncated: 22 bytes, 10 kept]'),
        ("é" * 5, 4, '"é... [truncated: 12 bytes, 4 kept]'),  # never half a character
    ],
)
def test_result_text(result: Any, limit: int, text: str | None) -> None:
    assert result_text(result, limit) == text


def test_policy_reads_the_stored_retry_dict() -> None:
    assert policy(RETRY) == RetryPolicy(max_attempts=3, base=2.0, cap=60.0, max_age=3600.0)
    assert policy({"max_attempts": 5, "unknown": 1}) == RetryPolicy(max_attempts=5)
