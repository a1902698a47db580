"""Event globs, `when` conditions, and the delivery plan: known answers and exact messages."""

from __future__ import annotations

from typing import Any

import pytest

from relay import config, rules
from relay.rules import Condition, EventMatcher, compile_events, compile_when
from relay.yamlfile import Document, parse


def event_roots(body: Any, event_type: str = "invoice.paid", source: str = "stripe") -> dict[str, Any]:
    return {
        "body": body,
        "headers": {"x-github-event": "pull_request", "content-type": "application/json"},
        "query": {"tag": "v1"},
        "event": {"id": "evt_1", "type": event_type, "source": source, "received_at": "2024-05-01T00:00:00Z"},
    }


def matcher(patterns: Any, kind: str | None = None) -> EventMatcher:
    doc = Document("routes.yaml", {"events": patterns})
    compiled = compile_events(patterns, doc.at("events"), kind)
    assert doc.issues == []
    return compiled


def condition(when: Any) -> Condition:
    doc = Document("routes.yaml", {"when": when})
    compiled = compile_when(when, doc.at("when"))
    assert [str(issue) for issue in doc.issues] == []
    return compiled


def errors_of(yaml_text: str, key: str, compile: Any, *args: Any) -> list[str]:
    doc = parse(yaml_text, "routes.yaml", {})
    assert doc.issues == []
    compile(doc.data.get(key), doc.at(key), *args)
    return [str(issue) for issue in doc.issues]


# -- event globs ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "event_type", "expected"),
    [
        ("invoice.paid", "invoice.paid", True),
        ("invoice.paid", "invoice.paid.late", False),
        ("invoice.paid", "invoice_paid", False),  # the dot is literal
        ("Invoice.paid", "invoice.paid", False),  # case-sensitive
        ("invoice.*", "invoice.paid", True),
        ("invoice.*", "invoice.payment.failed", False),  # `*` stays inside one segment
        ("invoice.*", "invoice", False),
        ("invoice.payment_*", "invoice.payment_failed", True),
        ("invoice.payment_*", "invoice.payment_succeeded", True),
        ("invoice.payment_*", "invoice.paid", False),
        ("*.created", "customer.created", True),
        ("*.created", "customer.subscription.created", False),
        ("*_*.x", "a_b.x", True),
        ("customer.**", "customer.created", True),
        ("customer.**", "customer.subscription.created", True),
        ("customer.**", "customer", False),  # `**` is one or more segments
        ("customer.**", "customers.created", False),
        ("**", "push", True),
        ("**", "a.b.c", True),
        ("*", "push", True),
        ("*", "pull_request.opened", False),
        ("orders/*", "orders/create", True),  # Shopify topics
        ("inv?ice.paid", "invoice.paid", False),  # `?` is literal
        ("[ab].x", "a.x", False),  # so is `[`
        ("[ab].x", "[ab].x", True),
    ],
)
def test_event_globs(pattern: str, event_type: str, expected: bool) -> None:
    assert matcher([pattern]).matches(event_type) is expected


def test_events_any_pattern_matches_and_single_string_is_accepted() -> None:
    events = matcher(["invoice.paid", "invoice.payment_*"])
    assert events.patterns == ("invoice.paid", "invoice.payment_*")
    assert [events.matches(t) for t in ("invoice.paid", "invoice.payment_failed", "invoice.created")] == [
        True,
        True,
        False,
    ]
    assert matcher("push").matches("push")


def test_github_events_without_action_are_fine() -> None:
    events = matcher(["push", "ping", "pull_request.*", "issues.opened"], kind="github")
    assert events.matches("push") and events.matches("pull_request.closed")


@pytest.mark.parametrize(
    ("yaml_text", "kind", "expected"),
    [
        (
            "events: [invoice..paid]\n",
            None,
            "routes.yaml:1:10: error: event pattern 'invoice..paid': empty segment (two dots, or a dot at an end)",
        ),
        (
            "events: [invoice.]\n",
            None,
            "routes.yaml:1:10: error: event pattern 'invoice.': empty segment (two dots, or a dot at an end)",
        ),
        (
            "events: ['**.created']\n",
            None,
            "routes.yaml:1:10: error: event pattern '**.created': '**' may only be the last segment "
            "(it matches one or more); '*' matches one",
        ),
        (
            "events: [a, 'customer.**.x']\n",
            None,
            "routes.yaml:1:13: error: event pattern 'customer.**.x': '**' may only be the last segment "
            "(it matches one or more); '*' matches one",
        ),
        (
            "events: ['customer**']\n",
            None,
            "routes.yaml:1:10: error: event pattern 'customer**': '**' must be a whole segment, as in 'invoice.**'",
        ),
        (
            "events: [pull_request]\n",
            "github",
            "routes.yaml:1:10: error: event pattern 'pull_request': GitHub sends 'pull_request' with an action "
            "(event type pull_request.<action>), so 'pull_request' never matches; "
            "write 'pull_request.*' to match every action",
        ),
        (
            "events: [push, issue_comment]\n",
            "github",
            "routes.yaml:1:16: error: event pattern 'issue_comment': GitHub sends 'issue_comment' with an action "
            "(event type issue_comment.<action>), so 'issue_comment' never matches; "
            "write 'issue_comment.*' to match every action",
        ),
        (
            "events: [5]\n",
            None,
            "routes.yaml:1:10: error: an event pattern must be a string, got 5",
        ),
        (
            "events: []\n",
            None,
            'routes.yaml:1:1: error: `events` must be a non-empty list of event types such as ["invoice.paid", '
            '"invoice.*"] (["**"] matches every event), got []',
        ),
        (
            "other: 1\n",
            None,
            'routes.yaml:1:1: error: `events` must be a non-empty list of event types such as ["invoice.paid", '
            '"invoice.*"] (["**"] matches every event), got null',
        ),
    ],
)
def test_event_load_errors(yaml_text: str, kind: str | None, expected: str) -> None:
    assert errors_of(yaml_text, "events", compile_events, kind) == [expected]


def test_pull_request_is_fine_for_other_kinds() -> None:
    assert matcher(["pull_request"], kind="standard-webhooks").matches("pull_request")


# -- conditions -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "body", "expected"),
    [
        # a scalar is strict equality
        ({"body.n": 5}, {"n": 5}, True),
        ({"body.n": 5}, {"n": "5"}, False),
        ({"body.s": "5"}, {"s": 5}, False),
        ({"body.b": True}, {"b": 1}, False),
        ({"body.n": 1}, {"n": True}, False),
        ({"body.n": 0}, {"n": False}, False),
        ({"body.n": 1}, {"n": 1.0}, True),  # one JSON number type
        ({"body.x": None}, {"x": None}, True),
        ({"body.x": None}, {"x": 0}, False),
        ({"body.x": None}, {}, False),  # missing is not null
        ({"body.s": "on"}, {"s": "on"}, True),
        ({"body.n": 5}, {}, False),
        ({"body.n": 5}, [], False),
        # eq / ne
        ({"body.l": {"eq": [1, 2]}}, {"l": [1, 2]}, True),
        ({"body.l": {"eq": [1, 1]}}, {"l": [1, True]}, False),
        ({"body.o": {"eq": {"a": 1}}}, {"o": {"a": 1.0}}, True),
        ({"body.o": {"eq": {"a": 1}}}, {"o": {"a": 1, "b": 2}}, False),
        ({"body.n": {"ne": 5}}, {"n": 6}, True),
        ({"body.n": {"ne": 5}}, {"n": 5}, False),
        ({"body.n": {"ne": 5}}, {"n": "5"}, True),
        ({"body.n": {"ne": 5}}, {}, False),  # missing is false, whatever the operator
        # in / not_in
        ({"body.s": {"in": ["a", "b"]}}, {"s": "a"}, True),
        ({"body.s": {"in": ["a", "b"]}}, {"s": "c"}, False),
        ({"body.n": {"in": [1, 2]}}, {"n": True}, False),
        ({"body.n": {"in": [1, 2]}}, {"n": 2.0}, True),
        ({"body.s": {"in": ["a"]}}, {}, False),
        ({"body.s": {"not_in": ["a", "b"]}}, {"s": "c"}, True),
        ({"body.s": {"not_in": ["a", "b"]}}, {"s": "a"}, False),
        ({"body.s": {"not_in": ["a"]}}, {}, False),
        ({"body.s": {"not_in": []}}, {"s": "a"}, True),
        # gt / gte / lt / lte: numbers only
        ({"body.n": {"gt": 0}}, {"n": 1}, True),
        ({"body.n": {"gt": 0}}, {"n": 0}, False),
        ({"body.n": {"gt": 0}}, {"n": 0.5}, True),
        ({"body.n": {"gt": 0}}, {"n": "5"}, False),
        ({"body.n": {"gt": 0}}, {"n": True}, False),
        ({"body.n": {"gt": 0}}, {"n": None}, False),
        ({"body.n": {"gt": 0}}, {}, False),
        ({"body.n": {"gte": 0}}, {"n": 0}, True),
        ({"body.n": {"gte": 0}}, {"n": -1}, False),
        ({"body.n": {"lt": 10}}, {"n": 9.99}, True),
        ({"body.n": {"lt": 10}}, {"n": 10}, False),
        ({"body.n": {"lte": 10}}, {"n": 10}, True),
        ({"body.n": {"lte": 10}}, {"n": 11}, False),
        ({"body.n": {"gt": 0, "lt": 10}}, {"n": 5}, True),
        ({"body.n": {"gt": 0, "lt": 10}}, {"n": 10}, False),
        # prefix / suffix
        ({"body.ref": {"prefix": "refs/heads/"}}, {"ref": "refs/heads/main"}, True),
        ({"body.ref": {"prefix": "refs/heads/"}}, {"ref": "refs/tags/v1"}, False),
        ({"body.ref": {"prefix": "5"}}, {"ref": 55}, False),
        ({"body.login": {"suffix": "[bot]"}}, {"login": "dependabot[bot]"}, True),
        ({"body.login": {"suffix": "[bot]"}}, {"login": "ada"}, False),
        # glob: shell-style, case-sensitive, `*` crosses `/` and `.`
        ({"body.ref": {"glob": "refs/heads/release-*"}}, {"ref": "refs/heads/release-1.2"}, True),
        ({"body.f": {"glob": "*.md"}}, {"f": "docs/guide/a.md"}, True),
        ({"body.f": {"glob": "*.MD"}}, {"f": "a.md"}, False),
        ({"body.f": {"glob": "file?.txt"}}, {"f": "file1.txt"}, True),
        ({"body.f": {"glob": "file?.txt"}}, {"f": "file12.txt"}, False),
        ({"body.f": {"glob": "[ab]*"}}, {"f": "apple"}, True),
        ({"body.f": {"glob": "[ab]*"}}, {"f": "cherry"}, False),
        ({"body.f": {"glob": "*"}}, {"f": 5}, False),
        # regex: the whole string must match
        ({"body.v": {"regex": r"v\d+"}}, {"v": "v12"}, True),
        ({"body.v": {"regex": r"v\d+"}}, {"v": "xv12"}, False),
        ({"body.v": {"regex": r"v\d+"}}, {"v": "v12x"}, False),
        ({"body.v": {"regex": r"\d+"}}, {"v": 12}, False),
        ({"body.v": {"regex": "a|b"}}, {"v": "b"}, True),
        # exists: present (even null) or not
        ({"body.x": {"exists": True}}, {"x": None}, True),
        ({"body.x": {"exists": True}}, {}, False),
        ({"body.x": {"exists": False}}, {}, True),
        ({"body.x": {"exists": False}}, {"x": None}, False),
        ({"body.x.y": {"exists": False}}, {"x": 5}, True),
        # contains: substring, or list element (strict)
        ({"body.t": {"contains": "bug"}}, {"t": "a bug here"}, True),
        ({"body.t": {"contains": "bug"}}, {"t": "a feature"}, False),
        ({"body.t": {"contains": "bug"}}, {"t": ["bug", "p1"]}, True),
        ({"body.t": {"contains": "bug"}}, {"t": ["bugs"]}, False),
        ({"body.t": {"contains": 5}}, {"t": [5]}, True),
        ({"body.t": {"contains": 1}}, {"t": [True, "1"]}, False),
        ({"body.t": {"contains": 5}}, {"t": "5"}, False),
        ({"body.t": {"contains": "a"}}, {"t": {"a": 1}}, False),
        ({"body.t": {"contains": "a"}}, {}, False),
        # paths
        ({"body.items[0].sku": "A1"}, {"items": [{"sku": "A1"}]}, True),
        ({"body.items[1].sku": "A1"}, {"items": [{"sku": "A1"}]}, False),
        ({'body.metadata["order.id"]': "o1"}, {"metadata": {"order.id": "o1"}}, True),
        # several keys: all must hold
        ({"body.a": 1, "body.b": 2}, {"a": 1, "b": 2}, True),
        ({"body.a": 1, "body.b": 2}, {"a": 1, "b": 3}, False),
        # all / any / not
        ({"all": [{"body.a": 1}, {"body.b": 2}]}, {"a": 1, "b": 2}, True),
        ({"all": [{"body.a": 1}, {"body.b": 2}]}, {"a": 1}, False),
        ({"any": [{"body.a": 1}, {"body.b": 2}]}, {"b": 2}, True),
        ({"any": [{"body.a": 1}, {"body.b": 2}]}, {"a": 2, "b": 1}, False),
        ({"not": {"body.a": 1}}, {"a": 2}, True),
        ({"not": {"body.a": 1}}, {"a": 1}, False),
        ({"not": {"body.a": 1}}, {}, True),  # `not` is how to say "missing or different"
        ({"not": {"any": [{"body.a": 1}, {"body.a": 2}]}}, {"a": 3}, True),
        ({"any": [{"all": [{"body.a": 1}, {"body.b": 1}]}, {"not": {"body.c": {"exists": True}}}]}, {"a": 1}, True),
    ],
)
def test_conditions(when: dict[str, Any], body: Any, expected: bool) -> None:
    compiled = condition(when)
    roots = event_roots(body)
    assert compiled.evaluate(roots) is expected
    assert (compiled.explain(roots) is None) is expected


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ({"headers.x-github-event": "pull_request"}, True),
        ({"headers.X-GitHub-Event": "pull_request"}, True),  # header names are case-insensitive
        ({"headers.content-type": {"prefix": "application/json"}}, True),
        ({"query.tag": "v1"}, True),
        ({"query.Tag": "v1"}, False),  # query keys are not
        ({"event.type": {"glob": "invoice.*"}}, True),
        ({"event.source": "github"}, False),
    ],
)
def test_condition_roots(when: dict[str, Any], expected: bool) -> None:
    assert condition(when).evaluate(event_roots({})) is expected


@pytest.mark.parametrize(
    ("when", "body", "expected"),
    [
        ({"body.livemode": True}, {"livemode": False}, "body.livemode is false, expected true"),
        ({"body.livemode": True}, {"livemode": True}, None),
        (
            {"body.data.object.amount_paid": {"gt": 0}},
            {"data": {"object": {"id": "in_1"}}},
            "body.data.object.amount_paid is missing",
        ),
        ({"body.n": {"gt": 0}}, {"n": 0}, "body.n is 0, expected > 0"),
        ({"body.n": {"gte": 1, "lte": 9}}, {"n": 10}, "body.n is 10, expected <= 9"),
        ({"body.n": {"gt": 0}}, {"n": "5"}, 'body.n is "5", expected > 0'),
        ({"body.n": 5}, {"n": "5"}, 'body.n is "5", expected 5'),
        ({"body.n": {"ne": 5}}, {"n": 5}, "body.n is 5, expected != 5"),
        ({"body.s": {"in": ["a", "b"]}}, {"s": "c"}, 'body.s is "c", expected one of ["a", "b"]'),
        ({"body.s": {"not_in": ["a", "b"]}}, {"s": "a"}, 'body.s is "a", expected none of ["a", "b"]'),
        ({"body.s": {"prefix": "v"}}, {"s": "x"}, 'body.s is "x", expected prefix "v"'),
        ({"body.s": {"glob": "v*"}}, {"s": "x"}, 'body.s is "x", expected glob "v*"'),
        ({"body.s": {"regex": "v[0-9]+"}}, {"s": "x"}, 'body.s is "x", expected regex "v[0-9]+"'),
        ({"body.s": {"contains": "bug"}}, {"s": ["p1"]}, 'body.s is ["p1"], expected contains "bug"'),
        ({"body.s": {"exists": True}}, {}, "body.s is missing"),
        ({"body.s": {"exists": False}}, {"s": 1}, "body.s is 1, expected not to exist"),
        ({"body.a": 1, "body.b": 2}, {"a": 1, "b": 3}, "body.b is 3, expected 2"),
        ({"all": [{"body.a": 1}, {"body.b": 2}]}, {"a": 0}, "body.a is 0, expected 1"),
        (
            {"any": [{"body.a": 1}, {"body.b": 2}]},
            {"a": 2},
            "no branch of `any` holds: body.a is 2, expected 1; body.b is missing",
        ),
        (
            {"not": {"body.pull_request.user.login": {"suffix": "[bot]"}}},
            {"pull_request": {"user": {"login": "dependabot[bot]"}}},
            'body.pull_request.user.login is "dependabot[bot]", expected not suffix "[bot]"',
        ),
        ({"not": {"body.n": {"gt": 0, "lt": 9}}}, {"n": 5}, "body.n is 5, expected not (> 0 and < 9)"),
        (
            {"not": {"all": [{"body.a": 1}, {"body.b": {"in": [2, 3]}}]}},
            {"a": 1, "b": 2},
            "expected not (body.a == 1 and body.b in [2, 3]), but it holds",
        ),
        (
            {"body.text": "short"},
            {"text": "x" * 100},
            'body.text is "' + "x" * 76 + '..., expected "short"',
        ),
    ],
)
def test_explain(when: dict[str, Any], body: Any, expected: str | None) -> None:
    assert condition(when).explain(event_roots(body)) == expected


def test_describe() -> None:
    when = {"body.a": 1, "any": [{"body.b": {"glob": "x*"}}, {"not": {"body.c": {"exists": True}}}]}
    assert condition(when).describe() == '(body.a == 1 and (body.b glob "x*" or not body.c exists))'


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        (
            "when: {body.amount: {gt: '5'}}\n",
            'routes.yaml:1:22: error: `gt` needs a number, got "5" (write 5 without quotes)',
        ),
        ("when: {body.amount: {lte: true}}\n", "routes.yaml:1:22: error: `lte` needs a number, got true"),
        ("when: {body.s: {in: 5}}\n", "routes.yaml:1:17: error: `in` needs a non-empty list, got 5"),
        ("when: {body.s: {in: []}}\n", "routes.yaml:1:17: error: `in` needs a non-empty list, got []"),
        ("when: {body.s: {not_in: x}}\n", 'routes.yaml:1:17: error: `not_in` needs a list, got "x"'),
        ("when: {body.s: {regex: 5}}\n", "routes.yaml:1:17: error: `regex` needs a string, got 5"),
        ("when: {body.s: {prefix: null}}\n", "routes.yaml:1:17: error: `prefix` needs a string, got null"),
        ("when: {body.s: {glob: [a]}}\n", 'routes.yaml:1:17: error: `glob` needs a string, got ["a"]'),
        ("when: {body.s: {exists: yes}}\n", 'routes.yaml:1:17: error: `exists` needs true or false, got "yes"'),
        (
            "when:\n  body.s: {regex: 'v(\\d+'}\n",
            "routes.yaml:2:12: error: invalid regex 'v(\\\\d+': missing ), unterminated subpattern at position 1",
        ),
        (
            "when: {body.s: {gtt: 5}}\n",
            "routes.yaml:1:17: error: unknown operator 'gtt' (operators: eq, ne, in, not_in, gt, gte, lt, lte, "
            "prefix, suffix, glob, regex, exists, contains); did you mean 'gt'?",
        ),
        (
            "when: {body.s: {matches: x}}\n",
            "routes.yaml:1:17: error: unknown operator 'matches' (operators: eq, ne, in, not_in, gt, gte, lt, lte, "
            "prefix, suffix, glob, regex, exists, contains)",
        ),
        (
            "when: {body.s: {}}\n",
            "routes.yaml:1:8: error: an empty operator mapping; write an operator such as {gt: 0}",
        ),
        (
            "when: {body.tags: [a, b]}\n",
            'routes.yaml:1:8: error: a list is ambiguous here: write {in: ["a", "b"]} to accept any of these '
            "values, or {eq: [...]} to compare the whole list",
        ),
        (
            "when: {bdy.x: 1}\n",
            "routes.yaml:1:8: error: unknown root 'bdy' (roots here: body, event, headers, query); "
            "did you mean 'body'?; a condition key is a path such as body.type, or all/any/not",
        ),
        (
            "when: {item.x: 1}\n",
            "routes.yaml:1:8: error: unknown root 'item' (roots here: body, event, headers, query); "
            "a condition key is a path such as body.type, or all/any/not",
        ),
        (
            "when: {event.kind: x}\n",
            "routes.yaml:1:8: error: event has no field 'kind' (fields: id, type, source, received_at); "
            "a condition key is a path such as body.type, or all/any/not",
        ),
        (
            "when: {body..x: 1}\n",
            'routes.yaml:1:8: error: invalid path \'body..x\': expected a key after "." (quote odd keys: ["a.b"]) '
            "(at character 6)",
        ),
        (
            "when: {'body.x y': 1}\n",
            "routes.yaml:1:8: error: invalid path 'body.x y': unexpected ' ' after the path body.x (at character 7)",
        ),
        ("when: {any: []}\n", "routes.yaml:1:8: error: `any` needs a non-empty list of conditions, got []"),
        (
            "when: {all: {body.a: 1}}\n",
            'routes.yaml:1:8: error: `all` needs a non-empty list of conditions, got {"body.a": 1}',
        ),
        (
            "when: {not: 5}\n",
            "routes.yaml:1:8: error: a condition must be a non-empty mapping such as {body.livemode: true}, got 5",
        ),
        (
            "when: {any: [{body.a: 1}, x]}\n",
            'routes.yaml:1:27: error: a condition must be a non-empty mapping such as {body.livemode: true}, got "x"',
        ),
        (
            "when: [body.a]\n",
            "routes.yaml:1:1: error: a condition must be a non-empty mapping such as {body.livemode: true}, "
            'got ["body.a"]',
        ),
    ],
)
def test_condition_load_errors(yaml_text: str, expected: str) -> None:
    assert errors_of(yaml_text, "when", compile_when) == [expected]


# -- plan and explain -----------------------------------------------------------------------------------------

ROUTES = """
version: 1
sources:
  stripe: {kind: stripe, secret: whsec_test}
  github: {kind: github, secret: gh_test}
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
          email: "{{ body.data.object.customer_email }}"
          note: "Invoice {{ body.data.object.number }} paid"
      - function_id: func_ledger
        timeout: 30
        stream: true
        retry: {max_attempts: 3}
        runtime: extended
        variables: {amount: "{{ body.data.object.amount_paid }}"}
      - function_id: func_big
        when: {body.data.object.amount_paid: {gte: 100000}}
        variables: {}
  - id: all-invoices
    source: stripe
    events: ["invoice.**"]
    targets:
      - function_id: func_audit
        variables: {type: "{{ event.type }}", data: "{{ body }}"}
  - id: pr-opened
    source: github
    events: [pull_request.opened]
    targets:
      - function_id: func_review
        variables: {n: "{{ body.number }}"}
"""

INVOICE = {"livemode": True, "data": {"object": {"id": "in_1", "amount_paid": 500, "number": "A-1"}}}


@pytest.fixture(scope="module")
def routes() -> config.Config:
    return config.loads(ROUTES, "routes.yaml", env={})


def test_plan_fans_out_and_keeps_failed_renders(routes: config.Config) -> None:
    planned = rules.plan(routes, "stripe", event_roots(INVOICE))
    assert [(p.route_id, p.target_index, p.function_id) for p in planned] == [
        ("invoice-paid", 0, "func_billing"),
        ("invoice-paid", 1, "func_ledger"),
        ("all-invoices", 0, "func_audit"),
    ]
    billing, ledger, audit = planned
    assert billing.variables is None
    assert billing.error == (
        "routes[0](invoice-paid).targets[0](func_billing).variables.email: 'customer_email' not found under "
        "body.data.object (keys: ['amount_paid', 'id', 'number'])"
    )
    assert (ledger.variables, ledger.error) == ({"amount": 500}, None)
    assert (ledger.stream, ledger.timeout, ledger.retry.max_attempts, ledger.runtime) == (
        True,
        30.0,
        3,
        "extended",
    )
    assert (billing.stream, billing.timeout, billing.retry.max_attempts) == (False, 300.0, 12)
    assert audit.variables == {"type": "invoice.paid", "data": INVOICE}


def test_plan_renders_every_variable(routes: config.Config) -> None:
    body = {"livemode": True, "data": {"object": dict(INVOICE["data"]["object"], customer_email=None)}}
    billing = rules.plan(routes, "stripe", event_roots(body, "invoice.payment_succeeded"))[0]
    assert billing.variables == {"invoice_id": "in_1", "amount": 500, "email": None, "note": "Invoice A-1 paid"}


@pytest.mark.parametrize(
    ("source", "body", "event_type", "expected"),
    [
        ("stripe", INVOICE, "invoice.created", ["all-invoices"]),
        ("stripe", dict(INVOICE, livemode=False), "invoice.paid", ["all-invoices"]),
        ("stripe", INVOICE, "customer.created", []),
        ("github", INVOICE, "invoice.paid", []),
        ("github", {"number": 7}, "pull_request.opened", ["pr-opened"]),
        ("unknown", INVOICE, "invoice.paid", []),
    ],
)
def test_plan_routes(routes: config.Config, source: str, body: Any, event_type: str, expected: list[str]) -> None:
    assert [p.route_id for p in rules.plan(routes, source, event_roots(body, event_type))] == expected


def test_target_when(routes: config.Config) -> None:
    body = {"livemode": True, "data": {"object": {"id": "in_1", "amount_paid": 250_000, "number": "A-2"}}}
    functions = [p.function_id for p in rules.plan(routes, "stripe", event_roots(body))]
    assert functions == ["func_billing", "func_ledger", "func_big", "func_audit"]


def test_explain_reports_every_route(routes: config.Config) -> None:
    body = {"livemode": False, "data": {"object": {"id": "in_1", "amount_paid": 500}}}
    reports = rules.explain(routes, "stripe", event_roots(body))
    assert [(r.route_id, r.matched, r.reason) for r in reports] == [
        ("invoice-paid", False, "when: body.livemode is false, expected true"),
        ("all-invoices", True, None),
        ("pr-opened", False, "route is for source 'github', not 'stripe'"),
    ]
    assert reports[1].targets == (
        rules.TargetReport(0, "func_audit", True, None, {"type": "invoice.paid", "data": body}, None),
    )


def test_explain_event_type_and_targets(routes: config.Config) -> None:
    reports = rules.explain(routes, "stripe", event_roots(INVOICE, "charge.succeeded"))
    assert reports[0].reason == "event type 'charge.succeeded' matches none of ['invoice.paid', 'invoice.payment_*']"
    reports = rules.explain(routes, "stripe", event_roots(INVOICE))
    billing, ledger, big = reports[0].targets
    assert billing.fired and billing.variables is None and billing.error is not None
    assert billing.error.startswith("routes[0](invoice-paid).targets[0](func_billing).variables.email: ")
    assert (ledger.fired, ledger.variables, ledger.error) == (True, {"amount": 500}, None)
    assert big == rules.TargetReport(
        2, "func_big", False, "when: body.data.object.amount_paid is 500, expected >= 100000"
    )
