"""Provider bodies are parsed with orjson for speed, but must read exactly as the standard library reads them."""

from __future__ import annotations

import json

import pytest

from relay.errors import PayloadInvalid
from relay.providers.signature import parse_json


@pytest.mark.parametrize(
    "body",
    [
        b'{"id": "evt_1", "amount": 4900, "ok": true, "none": null, "ratio": 0.25}',
        b'{"big": 123456789012345678901234567890}',  # beyond 64 bits: orjson would give a float
        b'{"edge": 18446744073709551616, "negative": -9223372036854775809}',
        b'{"id": "12345678901234567890123"}',  # 20 digits inside a string: the slower path, same answer
        b'{"nan": NaN, "inf": Infinity}',  # json accepts these, orjson refuses them
        b'{"lone": "\\ud800"}',  # a lone surrogate escape: json accepts it, orjson refuses it
        b'{"a": {"a": 1}, "a": 2}',  # duplicate keys: the last wins in both
        '{"unicode": "caf\u00e9 \u2603"}'.encode(),
    ],
)
def test_parse_json_reads_as_the_standard_library_does(body: bytes) -> None:
    got, expected = parse_json(body, what="body"), json.loads(body)
    assert json.dumps(got, sort_keys=True) == json.dumps(expected, sort_keys=True)
    assert type(got) is type(expected)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\xff\xfe{}", "body is not valid UTF-8 JSON"),
        (b"{", "body is not valid UTF-8 JSON"),
        (b"[" * 100_000, "body is JSON nested too deeply"),
    ],
)
def test_parse_json_refusals(body: bytes, message: str) -> None:
    with pytest.raises(PayloadInvalid, match=message):
        parse_json(body, what="body")
