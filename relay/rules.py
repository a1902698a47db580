"""Which routes an event takes: event-type globs, `when` conditions, and the plan of deliveries.

Everything is compiled at load (`compile_events`, `compile_when`) and pure at run time (`plan`, `explain`):
the same config and roots always give the same answer, so the ingress can plan inside its transaction and
`relay route` can show exactly what the ingress would do.

Event globs work on dot-separated segments: `*` matches within one segment (`invoice.*`, `invoice.payment_*`),
`**` is allowed only as the last segment and matches one or more segments (`customer.**`); nothing else is
special (`?`, `[` and `/` are literal, so Shopify's `orders/*` works).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from relay import paths
from relay.conditions import Condition, compile_when
from relay.errors import TemplateError
from relay.yamlfile import Located

if TYPE_CHECKING:
    from relay.config import Config, RetryPolicy, Route, Target
    from relay.providers import Described, Incoming

__all__ = [
    "Condition",
    "EventMatcher",
    "Planned",
    "RouteReport",
    "TargetReport",
    "compile_events",
    "compile_when",
    "explain",
    "plan",
    "roots",
]

# GitHub events whose payload carries an `action`: their event.type is always `<event>.<action>`, so a bare
# `pull_request` pattern can never match (https://docs.github.com/en/webhooks/webhook-events-and-payloads).
GITHUB_EVENTS_WITH_ACTION = frozenset(
    """
    branch_protection_configuration branch_protection_rule check_run check_suite code_scanning_alert
    commit_comment custom_property custom_property_values dependabot_alert deploy_key deployment
    deployment_protection_rule deployment_review deployment_status discussion discussion_comment
    github_app_authorization installation installation_repositories installation_target issue_comment issues
    label marketplace_purchase member membership merge_group meta milestone org_block organization package
    personal_access_token_request project project_card project_column projects_v2 projects_v2_item
    projects_v2_status_update pull_request pull_request_review pull_request_review_comment
    pull_request_review_thread registry_package release repository repository_advisory repository_dispatch
    repository_ruleset repository_vulnerability_alert secret_scanning_alert secret_scanning_alert_location
    secret_scanning_scan security_advisory sponsorship star sub_issues team watch workflow_job workflow_run
    """.split()
)


# -- event globs ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventMatcher:
    """The compiled `events:` of a route."""

    patterns: tuple[str, ...]
    regex: re.Pattern[str] | None = field(default=None, repr=False, compare=False)

    def matches(self, event_type: str) -> bool:
        return self.regex is not None and self.regex.fullmatch(event_type) is not None


def compile_events(raw: Any, at: Located, kind: str | None) -> EventMatcher:
    """Compile a list of event-type globs (or one string); `kind` enables the GitHub action lint."""
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        at.error(
            f'`events` must be a non-empty list of event types such as ["invoice.paid", "invoice.*"] '
            f'(["**"] matches every event), got {paths.json_text(raw)}'
        )
        return EventMatcher(())
    patterns: list[str] = []
    regexes: list[str] = []
    for index, pattern in enumerate(raw):
        here = at.child(index)
        if not isinstance(pattern, str):
            here.error(f"an event pattern must be a string, got {paths.json_text(pattern)}")
            continue
        regex, problem = _glob(pattern)
        if problem is None and kind == "github" and pattern in GITHUB_EVENTS_WITH_ACTION:
            problem = (
                f"GitHub sends {pattern!r} with an action (event type {pattern}.<action>), so {pattern!r} "
                f"never matches; write '{pattern}.*' to match every action"
            )
        if problem is not None:
            here.error(f"event pattern {pattern!r}: {problem}")
            continue
        patterns.append(pattern)
        regexes.append(regex)
    combined = re.compile("|".join(f"(?:{regex})" for regex in regexes)) if regexes else None
    return EventMatcher(tuple(patterns), combined)


def _glob(pattern: str) -> tuple[str, str | None]:
    """The regex for one glob, or a problem message."""
    segments = pattern.split(".")
    out: list[str] = []
    for position, segment in enumerate(segments):
        if not segment:
            return "", "empty segment (two dots, or a dot at an end)"
        if "**" in segment:
            if segment != "**":
                return "", "'**' must be a whole segment, as in 'invoice.**'"
            if position != len(segments) - 1:
                return "", "'**' may only be the last segment (it matches one or more); '*' matches one"
            out.append(".+")
        else:
            out.append("[^.]*".join(re.escape(part) for part in segment.split("*")))
    return r"\.".join(out), None


# -- planning ------------------------------------------------------------------------------------------------


def roots(source: str, incoming: Incoming, described: Described, received_at: float) -> dict[str, Any]:
    """What `when` paths and templates read: `body`, `headers` (lower-case names), `query` and `event`.

    `relay route` builds its roots here; the ingress should too, so that the dry run cannot drift from it."""
    return {
        "body": described.payload,
        "headers": incoming.headers,
        "query": incoming.query,
        "event": {"id": described.id, "type": described.type, "source": source, "received_at": received_at},
    }


class Planned(NamedTuple):
    """One delivery to plan: a target of a matching route, its variables rendered (or the render error).
    A named tuple, like the store's NewDelivery: one is made per target of every event."""

    route_id: str
    target_index: int
    function_id: str
    variables: Any
    error: str | None
    stream: bool
    timeout: float
    retry: RetryPolicy
    runtime: Any = None


def plan(config: Config, source: str, roots: Mapping[str, Any]) -> list[Planned]:
    """Every target of every route of `source` that matches the event (fan-out), in config order.

    A template that cannot render still yields a `Planned`, with `error` set, so that delivery is recorded as
    failed while the other targets fire.
    """
    event_type = roots["event"]["type"]
    return [
        _planned(route, index, target, roots)
        for route in config.routes
        if route.source == source and route.events.matches(event_type) and _holds(route.when, roots)
        for index, target in enumerate(route.targets)
        if _holds(target.when, roots)
    ]


def _holds(condition: Condition | None, roots: Mapping[str, Any]) -> bool:
    return condition is None or condition.evaluate(roots)


def _planned(route: Route, index: int, target: Target, roots: Mapping[str, Any]) -> Planned:
    variables, error = _render(target, roots)
    return Planned(
        route_id=route.id,
        target_index=index,
        function_id=target.function_id,
        variables=variables,
        error=error,
        stream=target.stream,
        timeout=target.timeout,
        retry=target.retry,
        runtime=target.runtime,
    )


def _render(target: Target, roots: Mapping[str, Any]) -> tuple[Any, str | None]:
    try:
        return target.variables.render(roots), None
    except TemplateError as exc:
        prefix = f"{target.label}." if target.label else ""
        return None, f"{prefix}{exc}"


# -- the dry run ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetReport:
    index: int
    function_id: str
    fired: bool  # False when the target's own `when` fails; `reason` says why
    reason: str | None = None
    variables: Any = None
    error: str | None = None  # the render error, prefixed with the target label


@dataclass(frozen=True)
class RouteReport:
    route_id: str
    source: str
    matched: bool
    reason: str | None = None  # why the route did not match
    targets: tuple[TargetReport, ...] = ()


def explain(config: Config, source: str, roots: Mapping[str, Any]) -> list[RouteReport]:
    """For every route of the config (all sources), whether this event matches it and, if not, why."""
    return [_route_report(route, source, roots) for route in config.routes]


def _route_report(route: Route, source: str, roots: Mapping[str, Any]) -> RouteReport:
    event_type = roots["event"]["type"]
    reason: str | None = None
    if route.source != source:
        reason = f"route is for source {route.source!r}, not {source!r}"
    elif not route.events.matches(event_type):
        reason = f"event type {event_type!r} matches none of {list(route.events.patterns)}"
    elif route.when is not None and (failed := route.when.explain(roots)) is not None:
        reason = f"when: {failed}"
    if reason is not None:
        return RouteReport(route.id, route.source, False, reason)
    targets = tuple(_target_report(index, target, roots) for index, target in enumerate(route.targets))
    return RouteReport(route.id, route.source, True, None, targets)


def _target_report(index: int, target: Target, roots: Mapping[str, Any]) -> TargetReport:
    if target.when is not None and (failed := target.when.explain(roots)) is not None:
        return TargetReport(index, target.function_id, False, f"when: {failed}")
    variables, error = _render(target, roots)
    return TargetReport(index, target.function_id, True, None, variables, error)
