"""The shared primitives of signature checking: header access, HMAC, constant-time matching, timestamps, JSON.

Each raises only `relay.errors.Rejected` subclasses, so a malformed header can never escape as `ValueError`,
`binascii.Error` or `UnicodeDecodeError`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import orjson

from relay.errors import PayloadInvalid, SignatureInvalid, SignatureMissing, TimestampInvalid
from relay.providers import Incoming

if TYPE_CHECKING:
    from relay.config import Source

ALGORITHMS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}


def header(incoming: Incoming, name: str, *, what: str = "signature") -> str:
    """The value of header `name` (case-insensitive); SignatureMissing when absent or empty."""
    value = incoming.headers.get(name.lower(), "").strip()
    if not value:
        raise SignatureMissing(f"missing {name} header ({what})")
    return value


def digest(key: bytes, message: bytes, algorithm: str = "sha256") -> bytes:
    return hmac.digest(key, message, algorithm)  # the one-shot C path: no HMAC object per call


def any_matches(candidates: Iterable[bytes], given: Iterable[bytes], *, name: str) -> None:
    """Pass when a given signature equals a candidate (compared in constant time); else SignatureInvalid."""
    given = list(given)
    found = False
    for candidate in candidates:
        for signature in given:
            # No early exit: the time spent does not tell which secret or which signature matched.
            found |= hmac.compare_digest(candidate, signature)
    if not found:
        raise SignatureInvalid(f"{name} does not match any configured secret")


def from_hex(value: str, *, name: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise SignatureInvalid(f"{name} is not hexadecimal") from None


def from_base64(value: str, *, name: str) -> bytes:
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise SignatureInvalid(f"{name} is not valid base64") from None


def timestamp(value: str, *, name: str, scale: float = 1.0) -> float:
    """Parse an integer timestamp header (seconds, or milliseconds with scale=1000) into seconds."""
    text = value.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 16:
        raise TimestampInvalid(f"{name} must be an integer timestamp, got {value[:40]!r}")
    return int(text) / scale


def check_fresh(signed_at: float, now: float, tolerance: float, *, name: str) -> None:
    """Reject timestamps too old or too far ahead (both directions), naming the gap in whole seconds."""
    skew = now - signed_at
    if skew > tolerance:
        raise TimestampInvalid(f"{name} is {int(skew)} s old; the tolerance is {int(tolerance)} s")
    if skew < -tolerance:
        raise TimestampInvalid(f"{name} is {int(-skew)} s in the future; the tolerance is {int(tolerance)} s")


def json_body(incoming: Incoming) -> Any:
    """The body parsed as JSON; PayloadInvalid when it is not UTF-8 JSON."""
    return parse_json(incoming.body, what="body")


_LONG_NUMBER = re.compile(rb"\d{20}")


def parse_json(text: str | bytes, *, what: str) -> Any:
    raw = text.encode() if isinstance(text, str) else text
    # orjson is several times faster, but reads integers beyond 64 bits as floats, and refuses what json accepts
    # (NaN, lone surrogates): it parses only bodies without a run of 20 digits, and anything it refuses is read
    # again by json, whose answer stands.
    if not _LONG_NUMBER.search(raw):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise PayloadInvalid(f"{what} is not valid UTF-8 JSON") from None
    except RecursionError:
        # json.loads recurses once per nesting level: a few kilobytes of `[` would otherwise crash the caller.
        raise PayloadInvalid(f"{what} is JSON nested too deeply") from None


def json_object(incoming: Incoming) -> dict[str, Any]:
    payload = json_body(incoming)
    if not isinstance(payload, dict):
        raise PayloadInvalid(f"body must be a JSON object, got {describe_value(payload)}")
    return payload


def form_pairs(body: bytes) -> list[tuple[str, str]]:
    """An `application/x-www-form-urlencoded` body as (name, value) pairs, in order, blanks kept."""
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise PayloadInvalid("body is not a UTF-8 form (application/x-www-form-urlencoded)") from None


def field(payload: dict[str, Any], key: str, *, at: str = "body") -> str:
    """A required non-empty string (or integer) field of the payload, as a string; `at` is its path."""
    if key not in payload:
        raise PayloadInvalid(f"{at}.{key} is missing; expected a non-empty string")
    value = payload[key]
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise PayloadInvalid(f"{at}.{key} must be a non-empty string, got {describe_value(value)}")
    return str(value)


def describe_value(value: Any) -> str:
    """A short rendering of a JSON value for messages; containers are named, not printed (may be huge)."""
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a JSON object"
    if isinstance(value, list):
        return "a JSON array"
    return repr(value)[:80]


def peek(body: bytes, key: str) -> str | None:
    """A top-level string field of a JSON body, or None; for `sign()`, which must not fail on odd bodies."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return None
    value = payload.get(key) if isinstance(payload, dict) else None
    return value if isinstance(value, str) and value else None


def verify_stamped(
    source: Source, incoming: Incoming, now: float, *, name: str, separator: str, stamp: str, key: str, joiner: bytes
) -> None:
    """The scheme Stripe and Paddle share: `{stamp}=<unix>{separator}{key}=<hex>[{separator}{key}=...]` in header
    `name`, an HMAC-SHA256 of `{stamp}{joiner}{body}`; any listed signature may match any secret; the signature is
    checked first (an unauthenticated request is a 401), then the timestamp against the tolerance."""
    signed_at, given = _stamped_pairs(header(incoming, name), name=name, separator=separator, stamp=stamp, key=key)
    expected = (
        digest(secret.reveal().encode(), signed_at.encode() + joiner + incoming.body) for secret in source.secrets
    )
    any_matches(expected, given, name=name)
    seconds = timestamp(signed_at, name=f"{name} timestamp")
    check_fresh(seconds, now, source.tolerance, name=f"{name} timestamp")


def _stamped_pairs(value: str, *, name: str, separator: str, stamp: str, key: str) -> tuple[str, list[bytes]]:
    """The timestamp text and the decoded signatures; other keys (Stripe's legacy `v0`) are ignored."""
    stamps: list[str] = []
    given: list[bytes] = []
    for item in value.split(separator):
        found, equals, text = item.strip().partition("=")
        if not equals:
            raise SignatureInvalid(f"{name} must look like '{stamp}=<unix time>{separator}{key}=<hex>'")
        if found == stamp:
            stamps.append(text)
        elif found == key:
            given.append(from_hex(text, name=f"{name} {key}"))
    if len(stamps) != 1:
        raise TimestampInvalid(f"{name} must carry exactly one timestamp ({stamp}=...), found {len(stamps)}")
    if not given:
        raise SignatureInvalid(f"{name} has no {key} signature")
    return stamps[0], given
