"""Load `routes.yaml` once, validate all of it, and return frozen dataclasses.

`load()` is what `relay serve` runs at start and what `relay check` runs; both see the same errors, each with
`file:line:col`. Secrets live in `Secret`, whose repr never shows the value.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from relay import providers, rules, templates, values
from relay.errors import ConfigError, ConfigIssue
from relay.values import DAY
from relay.yamlfile import Document, Located, parse

DEFAULT_API_URL = "https://api.notte.cc"
RUNTIMES = ("standard", "extended")


class Secret:
    """A value that must not reach logs, the store or messages. `reveal()` is the only way to read it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 12
    base: float = 2.0
    cap: float = 3600.0
    max_age: float = 3 * DAY
    on_function_failure: bool = False

    @functools.cached_property
    def fields(self) -> dict[str, Any]:
        """The policy as stored with each delivery; computed once, shared, never to be changed."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Notte:
    api_url: str = DEFAULT_API_URL
    api_key: Secret = field(default_factory=lambda: Secret(""))
    max_concurrent_runs: int = 10


@dataclass(frozen=True)
class Defaults:
    timeout: float = 300.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    tolerance: float = 300.0
    max_body: int = 5 * 1024 * 1024
    dedupe_window: float = 7 * DAY
    rejections_kept: int = 100
    result_max_bytes: int = 64 * 1024


@dataclass(frozen=True)
class Source:
    name: str
    kind: str
    secrets: tuple[Secret, ...]
    tolerance: float
    max_body: int
    dedupe_window: float
    options: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    event_type: templates.Template | None = None  # `type:` template (hmac, none)
    event_id: templates.Template | None = None  # `id:` template (hmac, none)


@dataclass(frozen=True)
class Target:
    function_id: str
    variables: templates.Template
    when: rules.Condition | None
    timeout: float
    stream: bool
    retry: RetryPolicy
    runtime: Any = None
    label: str = ""  # `routes[0](invoice-paid).targets[0](func_billing)`, the prefix of render errors


@dataclass(frozen=True)
class Route:
    id: str
    source: str
    events: rules.EventMatcher
    when: rules.Condition | None
    targets: tuple[Target, ...]
    index: int = 0


@dataclass(frozen=True)
class Config:
    file: str
    notte: Notte
    defaults: Defaults
    sources: Mapping[str, Source]
    routes: tuple[Route, ...]
    warnings: tuple[ConfigIssue, ...] = ()

    def routes_for(self, source: str) -> tuple[Route, ...]:
        return tuple(route for route in self.routes if route.source == source)


def load(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read and validate `path`; raise `ConfigError` listing every error found (warnings ride on the Config)."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigIssue(file, 0, 0, "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigIssue(file, 0, 0, f"cannot read: {exc}")]) from None
    return loads(text, file, os.environ if env is None else env)


def loads(text: str, file: str, env: Mapping[str, str]) -> Config:
    doc = parse(text, file, env)
    config = _build(doc) if doc.data is not None or not doc.issues else None
    if config is None or _errors(doc):
        raise ConfigError(sorted(doc.issues, key=lambda issue: (issue.line, issue.column)))
    return config


def _errors(doc: Document) -> list[ConfigIssue]:
    return [issue for issue in doc.issues if issue.severity == "error"]


_TOP_KEYS = {"version", "notte", "defaults", "sources", "routes"}


def _build(doc: Document) -> Config | None:
    top = doc.at()
    data = doc.data
    if not isinstance(data, dict):
        top.error("routes.yaml must be a mapping with `version`, `sources` and `routes`")
        return None
    values.unknown_keys(data, _TOP_KEYS, top)
    if data.get("version") != 1:
        top.child("version").error(f"version must be 1, got {data.get('version')!r}")
    notte = _notte(values.mapping(data, "notte", top), top.child("notte"))
    defaults = _defaults(values.mapping(data, "defaults", top), top.child("defaults"))
    sources = _sources(values.mapping(data, "sources", top), top.child("sources"), defaults)
    routes = _routes(data.get("routes", []), top.child("routes"), defaults, sources)
    warnings = tuple(issue for issue in doc.issues if issue.severity != "error")
    return Config(doc.file, notte, defaults, MappingProxyType(sources), routes, warnings)


# -- sections -------------------------------------------------------------------------------------------------


def _notte(raw: dict[str, Any], at: Located) -> Notte:
    values.unknown_keys(raw, {"api_url", "api_key", "max_concurrent_runs"}, at)
    api_url = values.string(raw, "api_url", at, DEFAULT_API_URL).rstrip("/")
    if not re.match(r"^https?://[^/\s]+", api_url):
        at.child("api_url").error(f"api_url must be an http(s) URL, got {api_url!r}")
    return Notte(
        api_url=api_url,
        api_key=Secret(values.string(raw, "api_key", at, "")),
        max_concurrent_runs=values.integer(raw, "max_concurrent_runs", at, 10, minimum=1),
    )


def _defaults(raw: dict[str, Any], at: Located) -> Defaults:
    base = Defaults()
    keys = {
        "timeout",
        "retry",
        "tolerance",
        "max_body",
        "dedupe_window",
        "rejections_kept",
        "result_max_bytes",
    }
    values.unknown_keys(raw, keys, at)
    return Defaults(
        timeout=values.duration(raw, "timeout", at, base.timeout),
        retry=_retry(raw.get("retry"), at.child("retry"), base.retry),
        tolerance=values.duration(raw, "tolerance", at, base.tolerance),
        max_body=values.size(raw, "max_body", at, base.max_body),
        dedupe_window=values.duration(raw, "dedupe_window", at, base.dedupe_window),
        rejections_kept=values.integer(raw, "rejections_kept", at, base.rejections_kept, minimum=0),
        result_max_bytes=values.size(raw, "result_max_bytes", at, base.result_max_bytes),
    )


def _retry(raw: Any, at: Located, base: RetryPolicy) -> RetryPolicy:
    if raw is None:
        return base
    if not isinstance(raw, dict):
        at.error(f"retry must be a mapping like {{max_attempts: 12, base: 2, cap: 3600}}, got {raw!r}")
        return base
    values.unknown_keys(raw, {"max_attempts", "base", "cap", "max_age", "on_function_failure"}, at)
    return RetryPolicy(
        max_attempts=values.integer(raw, "max_attempts", at, base.max_attempts, minimum=1),
        base=values.duration(raw, "base", at, base.base),
        cap=values.duration(raw, "cap", at, base.cap),
        max_age=values.duration(raw, "max_age", at, base.max_age),
        on_function_failure=values.boolean(raw, "on_function_failure", at, base.on_function_failure),
    )


_SOURCE_KEYS = {"kind", "secret", "secrets", "tolerance", "max_body", "dedupe_window", "type", "id"}
_SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _sources(raw: dict[str, Any], at: Located, defaults: Defaults) -> dict[str, Source]:
    out: dict[str, Source] = {}
    for name, spec in raw.items():
        here = at.child(name)
        if not _SOURCE_NAME.match(name):
            here.error(f"source name {name!r} must be letters, digits, '_', '.' or '-' (it is a URL segment)")
            continue
        if not isinstance(spec, dict):
            here.error(f"source {name!r} must be a mapping like {{kind: github, secret: ...}}")
            continue
        source = _source(name, spec, here, defaults)
        if source is not None:
            out[name] = source
    return out


def _source(name: str, spec: dict[str, Any], at: Located, defaults: Defaults) -> Source | None:
    kind = spec.get("kind")
    provider = providers.get(kind) if isinstance(kind, str) else None
    if provider is None:
        known = ", ".join(sorted(providers.KINDS))
        at.child("kind").error(f"source {name!r}: kind must be one of [{known}], got {kind!r}")
        return None
    option_names = set(provider.OPTIONS)
    values.unknown_keys(spec, _SOURCE_KEYS | option_names, at)
    options: dict[str, str] = {}
    for option, default in provider.OPTIONS.items():
        value = spec.get(option, default)
        if value is providers.REQUIRED:
            at.error(f"source {name!r} (kind {provider.KIND}) needs `{option}`")
        elif value is not None:
            options[option] = str(value) if not isinstance(value, str) else value
    for option, message in provider.check_options(options).items():
        at.child(option).error(f"source {name!r}: {message}")
    secrets = _secrets(spec, at, name, needed=provider.KIND != "none")
    if provider.KIND == "none":
        at.warn(f"source {name!r} has kind `none`: anyone who knows the URL can send events to it")
    return Source(
        name=name,
        kind=provider.KIND,
        secrets=secrets,
        tolerance=values.duration(spec, "tolerance", at, defaults.tolerance),
        max_body=values.size(spec, "max_body", at, defaults.max_body),
        dedupe_window=values.duration(spec, "dedupe_window", at, defaults.dedupe_window),
        options=MappingProxyType(options),
        event_type=_source_template(spec, "type", at),
        event_id=_source_template(spec, "id", at),
    )


def _source_template(spec: dict[str, Any], key: str, at: Located) -> templates.Template | None:
    if key not in spec:
        return None
    if not isinstance(spec[key], str):
        at.child(key).error(f'`{key}` must be a template string like "{{{{ body.{key} }}}}", got {spec[key]!r}')
        return None
    return templates.compile_template(spec[key], at.child(key), roots=templates.SOURCE_ROOTS)


def _secrets(spec: dict[str, Any], at: Located, name: str, *, needed: bool) -> tuple[Secret, ...]:
    if "secret" in spec and "secrets" in spec:
        at.child("secrets").error(f"source {name!r}: write `secret` or `secrets`, not both")
    raw = spec.get("secrets", [spec["secret"]] if "secret" in spec else [])
    if not isinstance(raw, list) or not all(isinstance(item, str | None) for item in raw):
        at.child("secrets").error(f"source {name!r}: secrets must be a list of strings")
        return ()
    secrets = tuple(Secret(item) for item in raw if item)
    if needed and not secrets:
        at.error(
            f'source {name!r} has no secret: set `secret: "${{ENV_VAR}}"` '
            "(empty values from unset variables are dropped)"
        )
    return secrets


def _routes(raw: Any, at: Located, defaults: Defaults, sources: dict[str, Source]) -> tuple[Route, ...]:
    if not isinstance(raw, list):
        at.error("routes must be a list")
        return ()
    out: list[Route] = []
    seen: set[str] = set()
    for index, spec in enumerate(raw):
        route = _route(index, spec, at.child(index), defaults, sources)
        if route is None:
            continue
        if route.id in seen:
            at.child(index).child("id").error(f"route id {route.id!r} is used twice; ids must be unique")
        seen.add(route.id)
        out.append(route)
    return tuple(out)


_ROUTE_KEYS = {"id", "source", "events", "when", "targets"}
_TARGET_KEYS = {"function_id", "variables", "when", "timeout", "stream", "retry", "runtime"}


def _route(index: int, spec: Any, at: Located, defaults: Defaults, sources: dict[str, Source]) -> Route | None:
    if not isinstance(spec, dict):
        at.error("each route must be a mapping with `id`, `source`, `events` and `targets`")
        return None
    values.unknown_keys(spec, _ROUTE_KEYS, at)
    route_id = values.string(spec, "id", at, f"route-{index}")
    source_name = values.string(spec, "source", at, "")
    source = sources.get(source_name)
    if source is None:
        known = ", ".join(sorted(sources)) or "none defined"
        at.child("source").error(f"route {route_id!r}: unknown source {source_name!r} (sources: {known})")
    events = rules.compile_events(spec.get("events"), at.child("events"), source.kind if source else None)
    when = rules.compile_when(spec["when"], at.child("when")) if "when" in spec else None
    raw_targets = spec.get("targets")
    if not isinstance(raw_targets, list) or not raw_targets:
        at.child("targets").error(f"route {route_id!r} needs a non-empty list of targets")
        raw_targets = []
    targets = tuple(
        target
        for t_index, t_spec in enumerate(raw_targets)
        if (target := _target(index, route_id, t_index, t_spec, at.child("targets").child(t_index), defaults))
    )
    return Route(route_id, source_name, events, when, targets, index)


def _target(r_index: int, route_id: str, index: int, spec: Any, at: Located, defaults: Defaults) -> Target | None:
    if not isinstance(spec, dict):
        at.error("each target must be a mapping with `function_id` and `variables`")
        return None
    values.unknown_keys(spec, _TARGET_KEYS, at)
    function_id = values.string(spec, "function_id", at, "")
    if not function_id:
        at.error(f"route {route_id!r} target {index} needs `function_id`")
    if not re.match(r"^[A-Za-z0-9_.:-]*$", function_id):
        at.child("function_id").error(f"function_id {function_id!r} may hold only letters, digits, '_.:-'")
    label = f"routes[{r_index}]({route_id}).targets[{index}]({function_id})"
    if not isinstance(spec.get("variables", {}), dict):
        at.child("variables").error(
            f"variables must be a mapping of names to templates (runs/start takes an object), got {spec['variables']!r}"
        )
    runtime = spec.get("runtime")
    if runtime is not None and runtime not in RUNTIMES:
        at.child("runtime").error(
            f"runtime must be one of {list(RUNTIMES)} (Notte's function runtimes), got {runtime!r}"
        )
    return Target(
        function_id=function_id,
        variables=templates.compile_template(spec.get("variables", {}), at.child("variables")),
        when=rules.compile_when(spec["when"], at.child("when")) if "when" in spec else None,
        timeout=values.duration(spec, "timeout", at, defaults.timeout),
        stream=values.boolean(spec, "stream", at, False),
        retry=_retry(spec.get("retry"), at.child("retry"), defaults.retry),
        runtime=spec.get("runtime"),
        label=label,
    )
