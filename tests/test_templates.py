"""Variable templates: known answers for rendering, and the exact text of load and render errors."""

from __future__ import annotations

from typing import Any

import pytest

from relay.errors import TemplateError
from relay.templates import SOURCE_ROOTS, Template, compile_template
from relay.yamlfile import Document, parse

BODY_KEYS = "['amount', 'data', 'empty', 'items', 'list', 'live', 'matrix', 'metadata', 'name', 'none', ...]"
ROOTS: dict[str, Any] = {
    "body": {
        "amount": 500,
        "ratio": 0.5,
        "live": True,
        "off": False,
        "none": None,
        "name": "Ada Lovelace",
        "unicode": "café",
        "obj": {"a": 1},
        "list": [1, 2],
        "empty": [],
        "items": [{"sku": "A1", "qty": 2}, {"sku": "B2", "qty": 1}],
        "metadata": {"order.id": "ord_9", "it's": "quoted", 'say "hi"': "dq"},
        "data": {"object": {"id": "in_1", "amount_paid": 0}},
        "matrix": [[1, 2], [3, 4]],
        "wide": {f"k{i:02}": i for i in range(12)},
    },
    "headers": {"x-github-event": "pull_request", "content-type": "application/json"},
    "query": {"tag": "v1"},
    "event": {
        "id": "evt_1",
        "type": "invoice.paid",
        "source": "stripe",
        "received_at": "2024-05-01T00:00:00Z",
    },
}


def compile_value(value: Any, **kwargs: Any) -> tuple[Template, list[str]]:
    doc = Document("routes.yaml", {"variables": value})
    template = compile_template(value, doc.at("variables"), **kwargs)
    return template, [str(issue) for issue in doc.issues]


def render(value: Any) -> Any:
    template, issues = compile_value(value)
    assert issues == []
    return template.render(ROOTS)


def render_error(value: Any) -> str:
    template, issues = compile_value(value)
    assert issues == []
    with pytest.raises(TemplateError) as caught:
        template.render(ROOTS)
    return str(caught.value)


def load_errors(yaml_text: str, **kwargs: Any) -> list[str]:
    doc = parse(yaml_text, "routes.yaml", {})
    assert doc.issues == []
    compile_template(doc.data["variables"], doc.at("variables"), **kwargs)
    return [str(issue) for issue in doc.issues]


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        # a whole-value reference keeps the JSON type
        ("{{ body.amount }}", 500),
        ("{{body.amount}}", 500),
        ("{{ body.ratio }}", 0.5),
        ("{{ body.live }}", True),
        ("{{ body.none }}", None),
        ("{{ body.name }}", "Ada Lovelace"),
        ("{{ body.obj }}", {"a": 1}),
        ("{{ body.list }}", [1, 2]),
        ("{{ body }}", ROOTS["body"]),
        ("{{ event.type }}", "invoice.paid"),
        ("{{ query.tag }}", "v1"),
        # paths: hyphens, header case, indexes, quoted keys, nesting
        ("{{ headers.x-github-event }}", "pull_request"),
        ("{{ headers.X-GitHub-Event }}", "pull_request"),
        ("{{ headers['Content-Type'] }}", "application/json"),
        ("{{ body.items[0].sku }}", "A1"),
        ("{{ body.items[-1].qty }}", 1),
        ("{{ body.matrix[1][0] }}", 3),
        ('{{ body.metadata["order.id"] }}', "ord_9"),
        ("{{ body.metadata['order.id'] }}", "ord_9"),
        ('{{ body.metadata["it\'s"] }}', "quoted"),
        ('{{ body.metadata["say \\"hi\\""] }}', "dq"),
        ("{{ body.data.object.id }}", "in_1"),
        ("{{ body['data']['object'].amount_paid }}", 0),
        # interpolation: strings as they are, everything else as compact JSON text
        ("Invoice {{ body.data.object.id }} paid", "Invoice in_1 paid"),
        ("n={{ body.amount }}", "n=500"),
        ("r={{ body.ratio }}", "r=0.5"),
        ("{{ body.live }}/{{ body.off }}", "true/false"),
        ("v={{ body.none }}", "v=null"),
        ("o={{ body.obj }}", 'o={"a":1}'),
        ("l={{ body.list }}", "l=[1,2]"),
        ("{{ body.unicode }}!", "café!"),
        (" {{ body.amount }}", " 500"),
        ("{{ event.source }}:{{ event.id }}", "stripe:evt_1"),
        # `??` defaults of every JSON type, used when missing or null
        ("{{ body.nope ?? null }}", None),
        ("{{ body.nope ?? 0 }}", 0),
        ("{{ body.nope ?? 1.5 }}", 1.5),
        ('{{ body.nope ?? "n/a" }}', "n/a"),
        ("{{ body.nope ?? true }}", True),
        ("{{ body.nope ?? [] }}", []),
        ('{{ body.nope ?? {"a": [1]} }}', {"a": [1]}),
        ("{{ body.none ?? 7 }}", 7),
        ("{{ body.off ?? true }}", False),
        ("{{ body.amount ?? 0 }}", 500),
        ("{{ body.items[9].sku ?? null }}", None),
        ("{{ body.amount.deep ?? null }}", None),
        ('x={{ body.nope ?? "-" }}', "x=-"),
        ("x={{ body.nope??0 }}", "x=0"),
        # not templates: left alone
        ("plain text", "plain text"),
        ("", ""),
        ("{ body.amount } and }}", "{ body.amount } and }}"),
    ],
)
def test_render_string(template: str, expected: Any) -> None:
    result = render(template)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (5, 5),
        (None, None),
        (False, False),
        ({"a": {"b": ["{{ body.amount }}", "x"]}}, {"a": {"b": [500, "x"]}}),
        ({"{{ body.amount }}": 1}, {"{{ body.amount }}": 1}),  # keys are literal
        ({"$each": "body.items", "value": "{{ item.sku }}"}, ["A1", "B2"]),
        ({"$each": "{{ body.items }}", "value": "{{ item.sku }}"}, ["A1", "B2"]),
        (
            {
                "$each": "body.items",
                "value": {"sku": "{{ item.sku }}", "n": "{{ index }}", "t": "{{ event.type }}"},
            },
            [{"sku": "A1", "n": 0, "t": "invoice.paid"}, {"sku": "B2", "n": 1, "t": "invoice.paid"}],
        ),
        ({"$each": "body.items", "value": "{{ item }}"}, ROOTS["body"]["items"]),
        ({"$each": "body.empty", "value": "{{ item }}"}, []),
        ({"$each": "body.nope ?? []", "value": "{{ item }}"}, []),
        (
            {"$each": "body.matrix", "value": {"$each": "item", "value": "{{ item }}!"}},
            [["1!", "2!"], ["3!", "4!"]],
        ),
        (
            {"lines": {"$each": "body.items", "value": "{{ item.qty }}x {{ item.sku }}"}},
            {"lines": ["2x A1", "1x B2"]},
        ),
    ],
)
def test_render_structures(template: Any, expected: Any) -> None:
    assert render(template) == expected


def test_render_does_not_share_defaults_between_events() -> None:
    template, _ = compile_value({"a": "{{ body.nope ?? [] }}", "b": [1]})
    first = template.render(ROOTS)
    first["a"].append("mutated")
    first["b"].append("mutated")
    assert template.render(ROOTS) == {"a": [], "b": [1]}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (
            {"email": "{{ body.data.object.customer_email }}"},
            "variables.email: 'customer_email' not found under body.data.object (keys: ['amount_paid', 'id'])",
        ),
        (
            {"k": "{{ body.wide.zz }}"},
            "variables.k: 'zz' not found under body.wide (keys: ['k00', 'k01', 'k02', 'k03', 'k04', 'k05', "
            "'k06', 'k07', 'k08', 'k09', ...])",
        ),
        (
            {"x": "{{ body.amount.cents }}"},
            "variables.x: cannot read 'cents': body.amount is a number, not an object",
        ),
        ({"x": "{{ body.none.a }}"}, "variables.x: cannot read 'a': body.none is null, not an object"),
        (
            {"x": "{{ body.items.sku }}"},
            "variables.x: cannot read 'sku': body.items is a list, not an object (index it with [0])",
        ),
        ({"x": "{{ body.items[5] }}"}, "variables.x: index 5 is out of range: body.items has 2 items"),
        ({"x": "{{ body.obj[0] }}"}, "variables.x: cannot take [0]: body.obj is an object, not a list"),
        (
            {"a": {"b": ["ok", "{{ body.nope }}"]}},
            "variables.a.b[1]: 'nope' not found under body (keys: " + BODY_KEYS + ")",
        ),
        (
            {"order.id": "{{ query.nope }}"},
            "variables[\"order.id\"]: 'nope' not found under query (keys: ['tag'])",
        ),
        (
            {"note": "Hi {{ body.who }}"},
            "variables.note: 'who' not found under body (keys: " + BODY_KEYS + ")",
        ),
        (
            {"lines": {"$each": "body.items", "value": {"sku": "{{ item.sku }}", "c": "{{ item.color }}"}}},
            "variables.lines[0].c: 'color' not found under item (keys: ['qty', 'sku'])",
        ),
        (
            {"lines": {"$each": "body.obj", "value": "{{ item }}"}},
            "variables.lines: $each needs a list, but body.obj is an object",
        ),
        (
            {"lines": {"$each": "body.none", "value": "{{ item }}"}},
            "variables.lines: $each needs a list, but body.none is null",
        ),
        (
            {"lines": {"$each": "body.nope", "value": "{{ item }}"}},
            "variables.lines: 'nope' not found under body (keys: " + BODY_KEYS + ")",
        ),
    ],
)
def test_render_errors(template: Any, expected: str) -> None:
    assert render_error(template) == expected


def test_source_template_errors_are_named_after_their_key() -> None:
    doc = Document("routes.yaml", {"sources": {"custom": {"type": "{{ body.kind }}"}}})
    template = compile_template("{{ body.kind }}", doc.at("sources", "custom", "type"), roots=SOURCE_ROOTS)
    assert template.render({"body": {"kind": "order.created"}, "headers": {}, "query": {}}) == "order.created"
    with pytest.raises(TemplateError) as caught:
        template.render({"body": {}, "headers": {}, "query": {}})
    assert str(caught.value) == "type: 'kind' not found under body (keys: [])"


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        (
            "variables:\n  id: '{{ bdy.id }}'\n",
            "routes.yaml:2:3: error: invalid template '{{ bdy.id }}': unknown root 'bdy' "
            "(roots here: body, event, headers, query); did you mean 'body'? (at character 4)",
        ),
        (
            "variables:\n  id: 'x {{ item.id }}'\n",
            "routes.yaml:2:3: error: invalid template 'x {{ item.id }}': "
            "'item' is only available inside $each (at character 6)",
        ),
        (
            "variables:\n  id: '{{ event.kind }}'\n",
            "routes.yaml:2:3: error: invalid template '{{ event.kind }}': event has no field 'kind' "
            "(fields: id, type, source, received_at) (at character 4)",
        ),
        (
            "variables:\n  id: 'Invoice {{ body.id paid'\n",
            "routes.yaml:2:3: error: invalid template 'Invoice {{ body.id paid': "
            'expected "}}" or "?? <default>" after body.id (at character 20)',
        ),
        (
            "variables:\n  id: 'Invoice {{ body.id'\n",
            "routes.yaml:2:3: error: invalid template 'Invoice {{ body.id': "
            'expected "}}" or "?? <default>" after body.id (at character 19)',
        ),
        (
            "variables:\n  id: '{{ }}'\n",
            "routes.yaml:2:3: error: invalid template '{{ }}': expected a path such as body.id (at character 4)",
        ),
        (
            "variables:\n  id: '{{ body..id }}'\n",
            "routes.yaml:2:3: error: invalid template '{{ body..id }}': "
            'expected a key after "." (quote odd keys: ["a.b"]) (at character 9)',
        ),
        (
            "variables:\n  id: '{{ body.items[x] }}'\n",
            "routes.yaml:2:3: error: invalid template '{{ body.items[x] }}': "
            'expected an index or a quoted key inside [...], such as [0] or ["a.b"] (at character 15)',
        ),
        (
            "variables:\n  id: '{{ body.items[0 }}'\n",
            "routes.yaml:2:3: error: invalid template '{{ body.items[0 }}': expected \"]\" (at character 16)",
        ),
        (
            "variables:\n  id: '{{ body[\"a }}'\n",
            "routes.yaml:2:3: error: invalid template '{{ body[\"a }}': unclosed \" in a quoted key (at character 9)",
        ),
        (
            "variables:\n  id: '{{ body.x ?? nope }}'\n",
            "routes.yaml:2:3: error: invalid template '{{ body.x ?? nope }}': "
            'the default after "??" must be a JSON literal such as null, 0, "text" or [] (at character 14)',
        ),
        (
            "variables:\n  id: '{{ body.x ?? NaN }}'\n",
            "routes.yaml:2:3: error: invalid template '{{ body.x ?? NaN }}': "
            'the default after "??" must be a JSON literal such as null, 0, "text" or [] (at character 14)',
        ),
        (
            "variables:\n  id: '{{ body.x ?? 1 2 }}'\n",
            "routes.yaml:2:3: error: invalid template '{{ body.x ?? 1 2 }}': "
            'expected "}}" after body.x (at character 16)',
        ),
        (
            "variables:\n  id: '{{ body.x + 1 }}'\n",
            "routes.yaml:2:3: error: invalid template '{{ body.x + 1 }}': "
            'expected "}}" or "?? <default>" after body.x (at character 11)',
        ),
        (
            "variables:\n  lines: {$each: 5, value: x}\n",
            "routes.yaml:2:11: error: $each must be a path to a list, such as body.items, got 5",
        ),
        (
            "variables:\n  lines: {$each: 'bdy.items', value: x}\n",
            "routes.yaml:2:11: error: invalid $each path 'bdy.items': unknown root 'bdy' "
            "(roots here: body, event, headers, query); did you mean 'body'?",
        ),
        (
            "variables:\n  lines: {$each: body.items, value: x, key: y}\n",
            "routes.yaml:2:40: error: unknown key 'key' next to $each (allowed: $each, value)",
        ),
        (
            "variables:\n  lines: {$each: body.items}\n",
            "routes.yaml:2:3: error: $each needs `value`, the template for each item: "
            "{$each: body.items, value: '{{ item.id }}'}",
        ),
        (
            "variables:\n  lines: {$each: body.items, value: '{{ item.x }} {{ bdy }}'}\n",
            "routes.yaml:2:30: error: invalid template '{{ item.x }} {{ bdy }}': unknown root 'bdy' "
            "(roots here: body, event, headers, index, item, query); did you mean 'body'? (at character 17)",
        ),
        (
            "variables:\n  raw: !!binary aGk=\n",
            "routes.yaml:2:3: error: a template holds JSON values only "
            "(objects, lists, strings, numbers, booleans, null), got b'hi'",
        ),
    ],
)
def test_load_errors(yaml_text: str, expected: str) -> None:
    assert load_errors(yaml_text) == [expected]


def test_event_root_is_not_available_to_source_templates() -> None:
    assert load_errors("variables: '{{ event.type }}'\n", roots=SOURCE_ROOTS) == [
        "routes.yaml:1:1: error: invalid template '{{ event.type }}': unknown root 'event' "
        "(roots here: body, headers, query) (at character 4)"
    ]


def test_nothing_is_evaluated_as_code() -> None:
    assert load_errors('variables: \'{{ __import__("os").system("true") }}\'\n') == [
        'routes.yaml:1:1: error: invalid template \'{{ __import__("os").system("true") }}\': '
        "unknown root '__import__' (roots here: body, event, headers, query) (at character 4)"
    ]
