"""`relay route`: what the ingress would do with a payload, without a store, a network or a valid signature.

The payload is dressed as its provider would send it (`provider.sign` gives the id and event headers, such as
GitHub's `X-GitHub-Event`), overlaid with the caller's headers, described by the provider as the ingress would
describe it, and run through `rules.explain`: every route, matched or the reason it is not, and each target's
rendered variables.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from relay import providers, rules
from relay.config import Config, Source
from relay.providers import Incoming
from relay.rules import RouteReport, TargetReport


@dataclass(frozen=True)
class DryRun:
    source: str
    event_type: str
    event_id: str
    routes: tuple[RouteReport, ...]
    reply: Mapping[str, Any] | None = None  # set for a handshake the ingress answers without routing (Slack)

    @property
    def matched(self) -> bool:
        return any(report.matched for report in self.routes)

    @property
    def planned(self) -> int:
        """How many deliveries the ingress would plan (a target whose variables fail to render counts: it is
        recorded as failed)."""
        return sum(target.fired for report in self.routes for target in report.targets)


def run(
    config: Config, source: Source, body: bytes, headers: Mapping[str, str], hint: str | None, now: float
) -> DryRun:
    """Explain every route for `body` arriving at `source`; raises `Rejected` when the provider cannot read it."""
    provider = providers.get(source.kind)
    assert provider is not None  # config.load() only builds sources of known kinds
    incoming = dress(provider, source, body, headers, hint, now)
    described = provider.describe(source, incoming)
    if described.reply is not None:
        return DryRun(source.name, described.type, described.id, (), described.reply)
    reports = rules.explain(config, source.name, rules.roots(source.name, incoming, described, now))
    return DryRun(source.name, described.type, described.id, tuple(reports))


def dress(
    provider: providers.Provider,
    source: Source,
    body: bytes,
    headers: Mapping[str, str],
    hint: str | None,
    now: float,
) -> Incoming:
    """The request the provider would send with `body`, with `headers` on top (header names lower-cased)."""
    signed = provider.sign(source, body, now, hint)
    merged = {"content-type": signed.content_type}
    merged.update((name.lower(), value) for name, value in signed.headers.items())
    merged.update((name.lower(), value) for name, value in headers.items())
    content = body if signed.body is None else signed.body
    return Incoming(body=content, headers=merged, query=dict(signed.query), path=f"/hooks/{source.name}")


# -- output ----------------------------------------------------------------------------------------------------


def route_json(dry: DryRun, report: RouteReport) -> dict[str, Any]:
    """One JSON Lines record of `relay route --json`."""
    return {
        "route_id": report.route_id,
        "source": report.source,
        "matched": report.matched,
        "reason": report.reason,
        "event": {"source": dry.source, "type": dry.event_type, "id": dry.event_id},
        "targets": [_target_json(target) for target in report.targets],
    }


def _target_json(target: TargetReport) -> dict[str, Any]:
    return {
        "index": target.index,
        "function_id": target.function_id,
        "fired": target.fired,
        "reason": target.reason,
        "variables": target.variables,
        "error": target.error,
    }


def text(dry: DryRun) -> str:
    """The human report: the event, then every route with its verdict and, when matched, its targets."""
    lines = [f"event  {dry.source} {dry.event_type} (id {dry.event_id})", ""]
    if dry.reply is not None:
        lines.append(f"a handshake: relay answers it with {json.dumps(dict(dry.reply))} and routes nothing")
        return "\n".join(lines)
    for report in dry.routes:
        if not report.matched:
            lines.append(f"{report.route_id}: not matched: {report.reason}")
            continue
        lines.append(f"{report.route_id}: matched")
        for target in report.targets:
            lines.extend(_target_lines(target))
    lines.append("")
    lines.append(_summary(dry))
    return "\n".join(lines)


def _target_lines(target: TargetReport) -> list[str]:
    head = f"  targets[{target.index}] {target.function_id}"
    if not target.fired:
        return [f"{head}: skipped: {target.reason}"]
    if target.error is not None:
        return [f"{head}: would fail (recorded, not retried): {target.error}"]
    rendered = json.dumps(target.variables, indent=2, ensure_ascii=False).splitlines()
    return [f"{head}: variables {rendered[0]}", *(f"    {line}" for line in rendered[1:])]


def _summary(dry: DryRun) -> str:
    if not dry.matched:
        return f"no route matched (of {len(dry.routes)}): the event would be stored as unrouted"
    matched = sum(report.matched for report in dry.routes)
    deliveries = "delivery" if dry.planned == 1 else "deliveries"
    return f"{matched} of {len(dry.routes)} routes matched: {dry.planned} {deliveries} would be planned"
