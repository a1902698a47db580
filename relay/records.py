"""How events, deliveries and attempts look to people and programs: the JSON objects of `--json` and the admin
API, and the human tables of the CLI."""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from relay.store import Attempt, Delivery, Event


def timestamp(seconds: float | None) -> str | None:
    """Unix seconds -> `2026-12-04T20:03:29.123Z`."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_json(event: Event, *, full: bool = False) -> dict[str, Any]:
    """The listing shape (SPEC 6); `full` adds headers, query, body and each delivery's history."""
    out: dict[str, Any] = {
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "event_id": event.event_id,
        "status": event.status.value,
        "received_at": timestamp(event.received_at),
        "deliveries": [delivery_json(delivery, full=full) for delivery in event.deliveries],
    }
    if full:
        out["headers"] = dict(event.headers)
        out["query"] = dict(event.query)
        out.update(body_json(event.body))
    return out


def body_json(body: bytes) -> dict[str, Any]:
    """The body as JSON when it is JSON, else as text, else as base64."""
    try:
        return {"body": json.loads(body)}
    except (UnicodeDecodeError, ValueError):
        pass
    try:
        return {"body_text": body.decode("utf-8")}
    except UnicodeDecodeError:
        return {"body_base64": base64.b64encode(body).decode("ascii")}


def delivery_json(delivery: Delivery, *, full: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": delivery.id,
        "route_id": delivery.route_id,
        "function_id": delivery.function_id,
        "status": delivery.status.value,
        "attempts": delivery.attempts,
        "function_run_id": delivery.function_run_id,
        "last_error": delivery.last_error,
        "next_attempt_at": timestamp(delivery.next_attempt_at),
    }
    if full:
        out["variables"] = delivery.variables
        out["stream"] = delivery.stream
        out["timeout"] = delivery.timeout
        out["history"] = [attempt_json(attempt) for attempt in delivery.history]
    return out


def attempt_json(attempt: Attempt) -> dict[str, Any]:
    return {
        "number": attempt.number,
        "started_at": timestamp(attempt.started_at),
        "latency_ms": round(attempt.latency_ms, 1),
        "outcome": attempt.outcome,
        "http_status": attempt.http_status,
        "error": attempt.error,
        "function_run_id": attempt.function_run_id,
        "session_id": attempt.session_id,
        "function_status": attempt.function_status,
        "result": attempt.result,
        "logs": list(attempt.logs),
    }


def events_table(events: list[Event]) -> str:
    rows: list[tuple[str, ...]] = [("ID", "RECEIVED", "SOURCE", "TYPE", "STATUS", "DELIVERIES")]
    for event in events:
        counts = Counter(delivery.status.value for delivery in event.deliveries)
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "-"
        received = (timestamp(event.received_at) or "")[:19].replace("T", " ")
        rows.append((event.id, received, event.source, event.type, event.status.value, summary))
    return _table(rows)


def event_text(event: Event) -> str:
    lines = [
        f"event     {event.id}",
        f"provider  {event.source} {event.event_id}",
        f"type      {event.type}",
        f"status    {event.status.value}",
        f"received  {timestamp(event.received_at)}",
        f"body      {len(event.body)} bytes",
    ]
    if not event.deliveries:
        lines.append("no deliveries (no route matched)")
    for delivery in event.deliveries:
        lines.append("")
        lines.append(
            f"delivery  {delivery.id}  {delivery.route_id} -> {delivery.function_id}  "
            f"{delivery.status.value}  ({delivery.attempts} attempts)"
        )
        if delivery.function_run_id:
            lines.append(f"  run     {delivery.function_run_id}")
        if delivery.last_error:
            lines.append(f"  error   {delivery.last_error}")
        if delivery.next_attempt_at and delivery.status.value in ("pending", "retrying"):
            lines.append(f"  next    {timestamp(delivery.next_attempt_at)}")
        for attempt in delivery.history:
            status = attempt.http_status if attempt.http_status is not None else "-"
            detail = attempt.error or attempt.function_status or ""
            lines.append(
                f"  #{attempt.number}  {timestamp(attempt.started_at)}  HTTP {status}  "
                f"{attempt.latency_ms:.0f} ms  {attempt.outcome}  {detail}".rstrip()
            )
            lines.extend(f"      | {line}" for line in attempt.logs)
    return "\n".join(lines)


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )
