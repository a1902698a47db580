"""Loading routes.yaml: environment variables, YAML typing, secrets, and every error with file:line:col."""

from __future__ import annotations

import pytest

from relay import config
from relay.errors import ConfigError

ENV = {"NOTTE_API_KEY": "sk_notte_live_123", "STRIPE_SECRET": "whsec_current", "GH_SECRET": "gh_s3cret"}

SPEC_EXAMPLE = """\
version: 1
notte:
  api_url: "${NOTTE_API_URL:-https://api.notte.cc}"
  api_key: "${NOTTE_API_KEY}"
  max_concurrent_runs: 10
defaults:
  timeout: 300
  retry: {max_attempts: 12, base: 2, cap: 3600}
sources:
  stripe: {kind: stripe, secrets: ["${STRIPE_SECRET}", "${STRIPE_SECRET_OLD:-}"]}
  github: {kind: github, secret: "${GH_SECRET}"}
routes:
  - id: invoice-paid
    source: stripe
    events: ["invoice.paid", "invoice.payment_*"]
    when: {body.livemode: true, body.data.object.amount_paid: {gt: 0}}
    targets:
      - function_id: func_billing
        variables:
          invoice_id: "{{ body.data.object.id }}"
          amount: "{{ body.data.object.amount_paid }}"
          email: "{{ body.data.object.customer_email ?? null }}"
          note: "Invoice {{ body.data.object.number }} paid"
  - id: pr-opened
    source: github
    events: [pull_request.opened]
    when: {not: {body.pull_request.user.login: {suffix: "[bot]"}}}
    targets:
      - function_id: func_review
        stream: true
        variables: {event_type: "{{ event.type }}", data: "{{ body }}"}
"""


def load(text: str, env: dict[str, str] | None = None) -> config.Config:
    return config.loads(text, "routes.yaml", env=ENV if env is None else env)


def load_errors(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(text, env)
    return [str(issue) for issue in caught.value.issues]


def routes_yaml(route: str, sources: str = "  stripe: {kind: stripe, secret: whsec_x}\n") -> str:
    return f"version: 1\nsources:\n{sources}routes:\n{route}"


def test_spec_example_loads() -> None:
    loaded = load(SPEC_EXAMPLE)
    assert loaded.notte.api_url == "https://api.notte.cc"
    assert loaded.notte.api_key.reveal() == "sk_notte_live_123"
    assert [secret.reveal() for secret in loaded.sources["stripe"].secrets] == ["whsec_current"]
    assert [secret.reveal() for secret in loaded.sources["github"].secrets] == ["gh_s3cret"]
    assert [route.id for route in loaded.routes] == ["invoice-paid", "pr-opened"]
    invoice, pr = loaded.routes
    assert invoice.events.patterns == ("invoice.paid", "invoice.payment_*")
    assert invoice.targets[0].label == "routes[0](invoice-paid).targets[0](func_billing)"
    assert pr.targets[0].stream is True
    assert loaded.warnings == ()


def test_environment_defaults_and_overrides() -> None:
    env = dict(ENV, NOTTE_API_URL="http://127.0.0.1:8001/", STRIPE_SECRET_OLD="whsec_old")
    loaded = load(SPEC_EXAMPLE, env)
    assert loaded.notte.api_url == "http://127.0.0.1:8001"
    assert [secret.reveal() for secret in loaded.sources["stripe"].secrets] == ["whsec_current", "whsec_old"]


def test_missing_environment_variable_is_named() -> None:
    env = {key: value for key, value in ENV.items() if key != "GH_SECRET"}
    assert load_errors(SPEC_EXAMPLE, env) == [
        "routes.yaml:11:26: error: environment variable GH_SECRET is not set "
        "(set it, or write ${GH_SECRET:-} to allow an empty value)",
    ]


def test_environment_values_cannot_inject_yaml() -> None:
    text = routes_yaml(
        "  - id: a\n    source: stripe\n    events: [x]\n    targets:\n"
        "      - function_id: f\n        variables: {v: '${V}'}\n"
    )
    loaded = load(text, {"V": "{a: 1}\n- b"})
    assert loaded.routes[0].targets[0].variables.render({}) == {"v": "{a: 1}\n- b"}


@pytest.mark.parametrize("word", ["on", "off", "yes", "no", "On", "NO", "y", "n", "2024-05-01", "2024-05-01T10:00:00Z"])
def test_yaml_words_and_dates_stay_strings(word: str) -> None:
    text = routes_yaml(
        f"  - id: a\n    source: stripe\n    events: [x]\n    when: {{body.v: {word}}}\n    targets:\n"
        f"      - function_id: f\n        variables: {{v: {word}}}\n"
    )
    route = load(text).routes[0]
    roots = {"body": {"v": word}, "headers": {}, "query": {}, "event": {"type": "x"}}
    assert route.targets[0].variables.render(roots) == {"v": word}
    assert route.when is not None and route.when.evaluate(roots)


def test_true_and_false_are_booleans() -> None:
    text = routes_yaml(
        "  - id: a\n    source: stripe\n    events: [x]\n    when: {body.v: true}\n    targets:\n"
        "      - function_id: f\n        variables: {v: false}\n"
    )
    route = load(text).routes[0]
    assert route.targets[0].variables.render({}) == {"v": False}
    assert route.when is not None and not route.when.evaluate({"body": {"v": "true"}})


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{kind: stripe, secret: whsec_a}", ["whsec_a"]),
        ("{kind: stripe, secrets: [whsec_a, whsec_b]}", ["whsec_a", "whsec_b"]),
        ("{kind: stripe, secrets: [whsec_a, '', '${UNSET:-}']}", ["whsec_a"]),
        ("{kind: stripe, secrets: ['${UNSET:-}', whsec_b]}", ["whsec_b"]),
        ("{kind: none}", []),
    ],
)
def test_secrets(source: str, expected: list[str]) -> None:
    text = f"version: 1\nsources:\n  s: {source}\nroutes: []\n"
    assert [secret.reveal() for secret in load(text).sources["s"].secrets] == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "{kind: stripe}",
            "routes.yaml:3:3: error: source 's' has no secret: set `secret: \"${ENV_VAR}\"` "
            "(empty values from unset variables are dropped)",
        ),
        (
            "{kind: stripe, secrets: ['${UNSET:-}', '']}",
            "routes.yaml:3:3: error: source 's' has no secret: set `secret: \"${ENV_VAR}\"` "
            "(empty values from unset variables are dropped)",
        ),
        (
            "{kind: stripe, secret: '${UNSET:-}'}",
            "routes.yaml:3:3: error: source 's' has no secret: set `secret: \"${ENV_VAR}\"` "
            "(empty values from unset variables are dropped)",
        ),
        (
            "{kind: stripe, secret: a, secrets: [b]}",
            "routes.yaml:3:32: error: source 's': write `secret` or `secrets`, not both",
        ),
        ("{kind: stripe, secrets: whsec_a}", "routes.yaml:3:21: error: source 's': secrets must be a list of strings"),
        (
            "{kind: strype, secret: a}",
            "routes.yaml:3:7: error: source 's': kind must be one of [github, gitlab, hmac, linear, none, paddle, "
            "shopify, slack, standard-webhooks, stripe, svix, twilio], got 'strype'",
        ),
        (
            "{kind: stripe, secret: a, tolerence: 30}",
            "routes.yaml:3:32: error: unknown key 'tolerence' (allowed here: dedupe_window, id, kind, max_body, "
            "secret, secrets, tolerance, type)",
        ),
    ],
)
def test_source_errors(source: str, expected: str) -> None:
    text = f"version: 1\nsources:\n  s: {source}\nroutes: []\n"
    assert load_errors(text) == [expected]


def test_none_source_warns() -> None:
    text = "version: 1\nsources:\n  open: {kind: none}\nroutes: []\n"
    assert [str(issue) for issue in load(text).warnings] == [
        "routes.yaml:3:3: warning: source 'open' has kind `none`: anyone who knows the URL can send events to it"
    ]


def test_secrets_never_show_in_repr() -> None:
    loaded = load(SPEC_EXAMPLE, dict(ENV, STRIPE_SECRET_OLD="whsec_old"))
    text = repr(loaded) + str(loaded)
    for secret in ("sk_notte_live_123", "whsec_current", "whsec_old", "gh_s3cret"):
        assert secret not in text
    assert "Secret('**********')" in text


@pytest.mark.parametrize(
    ("route", "expected"),
    [
        (
            "  - id: a\n    source: stripe\n    events: [x]\n    targets: [{function_id: f}]\n    retries: 3\n",
            "routes.yaml:9:5: error: unknown key 'retries' (allowed here: events, id, source, targets, when)",
        ),
        (
            "  - id: a\n    source: stripe\n    events: [x]\n    targets: [{function_id: f, varibles: {}}]\n",
            "routes.yaml:8:32: error: unknown key 'varibles' (allowed here: function_id, retry, runtime, stream, "
            "timeout, variables, when)",
        ),
        (
            "  - id: a\n    source: stripe\n    events: [x]\n    targets: [{function_id: f}]\n"
            "  - id: a\n    source: stripe\n    events: [y]\n    targets: [{function_id: g}]\n",
            "routes.yaml:9:5: error: route id 'a' is used twice; ids must be unique",
        ),
        (
            "  - id: a\n    source: strip\n    events: [x]\n    targets: [{function_id: f}]\n",
            "routes.yaml:6:5: error: route 'a': unknown source 'strip' (sources: stripe)",
        ),
        (
            "  - id: a\n    source: stripe\n    events: [x]\n    targets: []\n",
            "routes.yaml:8:5: error: route 'a' needs a non-empty list of targets",
        ),
        (
            "  - id: a\n    source: stripe\n    events: ['invoice.**.x']\n    targets: [{function_id: f}]\n",
            "routes.yaml:7:14: error: event pattern 'invoice.**.x': '**' may only be the last segment "
            "(it matches one or more); '*' matches one",
        ),
        (
            "  - id: a\n    source: stripe\n    events: [x]\n    when: {body.amount: {gt: '0'}}\n"
            "    targets: [{function_id: f}]\n",
            'routes.yaml:8:26: error: `gt` needs a number, got "0" (write 0 without quotes)',
        ),
        (
            "  - id: a\n    source: stripe\n    events: [x]\n    when: {body.ref: {regex: '[a-'}}\n"
            "    targets: [{function_id: f}]\n",
            "routes.yaml:8:23: error: invalid regex '[a-': unterminated character set at position 0",
        ),
        (
            "  - id: a\n    source: stripe\n    events: [x]\n    targets:\n      - function_id: f\n"
            "        when: {body.x: {in: 5}}\n",
            "routes.yaml:10:25: error: `in` needs a non-empty list, got 5",
        ),
        (
            "  - id: a\n    source: stripe\n    events: [x]\n    targets:\n      - function_id: f\n"
            "        variables:\n          email: '{{ body.email ?? }}'\n",
            "routes.yaml:11:11: error: invalid template '{{ body.email ?? }}': "
            'the default after "??" must be a JSON literal such as null, 0, "text" or [] (at character 18)',
        ),
        (
            "  - id: a\n    source: stripe\n    events: [x]\n    targets:\n      - function_id: f\n"
            "        variables:\n          items:\n            - '{{ body.a }}'\n            - '{{ bodyy.b }}'\n",
            "routes.yaml:13:15: error: invalid template '{{ bodyy.b }}': unknown root 'bodyy' "
            "(roots here: body, event, headers, query); did you mean 'body'? (at character 4)",
        ),
    ],
)
def test_route_errors(route: str, expected: str) -> None:
    assert load_errors(routes_yaml(route)) == [expected]


def test_github_event_without_action_suggests_wildcard() -> None:
    route = "  - id: prs\n    source: github\n    events: [push, pull_request]\n    targets: [{function_id: f}]\n"
    assert load_errors(routes_yaml(route, "  github: {kind: github, secret: s}\n")) == [
        "routes.yaml:7:20: error: event pattern 'pull_request': GitHub sends 'pull_request' with an action "
        "(event type pull_request.<action>), so 'pull_request' never matches; "
        "write 'pull_request.*' to match every action",
    ]


def test_every_error_is_reported_at_once() -> None:
    route = (
        "  - id: a\n    source: stripe\n    events: ['a..b']\n    when: {bdy.x: 1}\n    targets:\n"
        "      - function_id: f\n        variables: {x: '{{ nope }}'}\n"
    )
    errors = load_errors(routes_yaml(route))
    assert [error.split(": error: ")[0] for error in errors] == [
        "routes.yaml:7:14",
        "routes.yaml:8:12",
        "routes.yaml:11:21",
    ]


def test_yaml_syntax_error_has_position() -> None:
    assert load_errors("version: 1\nroutes: [\n") == [
        "routes.yaml:3:1: error: YAML syntax: "
        "while parsing a flow node expected the node content, but found '<stream end>'"
    ]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (
            "{function_id: f, variables: [1, 2]}",
            "variables must be a mapping of names to templates (runs/start takes an object), got [1, 2]",
        ),
        (
            "{function_id: f, variables: {}, runtime: turbo}",
            "runtime must be one of ['standard', 'extended'] (Notte's function runtimes), got 'turbo'",
        ),
    ],
)
def test_target_shape_errors(target: str, message: str) -> None:
    text = (
        "version: 1\nsources:\n  s: {kind: github, secret: x}\n"
        f"routes:\n  - id: r\n    source: s\n    events: [push]\n    targets: [{target}]\n"
    )
    with pytest.raises(ConfigError) as caught:
        config.loads(text, "routes.yaml", {})
    assert [issue.message for issue in caught.value.issues] == [message]
