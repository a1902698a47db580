"""Twilio: `X-Twilio-Signature` = base64 HMAC-SHA1, keyed with the auth token, of the URL Twilio requested
followed by the form parameters sorted by name (`name` + `value`, no separators). A JSON body is not in the
signed string: Twilio adds `?bodySHA256=<hex sha256 of the body>` to the URL instead, and signs that query.

https://www.twilio.com/docs/usage/webhooks/webhooks-security

The URL is the configured `public_url` plus the request's own query string, never rebuilt from Host or
X-Forwarded-* headers (a proxy would otherwise choose what is verified). As Twilio's own validator does, the
URL is tried both with and without the default port. A request with `X-Twilio-Webhooks-Signature-Settings:
...,algorithm=HMAC_SHA256` (SharedKey signing) is checked with SHA-256 instead.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urlencode, urlsplit, urlunsplit

from relay.errors import SignatureInvalid
from relay.providers import REQUIRED, Described, Incoming, Signed, signature

if TYPE_CHECKING:
    from relay.config import Source

KIND = "twilio"
OPTIONS: dict[str, object] = {"public_url": REQUIRED, "type_field": None}
HEADER = "X-Twilio-Signature"
SETTINGS = "X-Twilio-Webhooks-Signature-Settings"
FORM = "application/x-www-form-urlencoded"
STATUS_FIELDS = ("MessageStatus", "SmsStatus", "CallStatus")
_ALGORITHMS = {"HMAC_SHA1": "sha1", "HMAC_SHA256": "sha256"}


def check_options(options: Mapping[str, str]) -> dict[str, str]:
    errors: dict[str, str] = {}
    url = options.get("public_url", "")
    parts = _split(url)
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        errors["public_url"] = (
            f"public_url must be the absolute http(s) URL Twilio posts to, "
            f"like https://relay.example.com/hooks/twilio, got {url!r}"
        )
    elif parts.query or parts.fragment:
        errors["public_url"] = (
            f"public_url must not have a query or fragment (the request's own query is appended), got {url!r}"
        )
    if "type_field" in options and not options["type_field"].strip():
        errors["type_field"] = "type_field must name a form field, like MessageStatus"
    return errors


def _split(url: str) -> SplitResult | None:
    try:
        parts = urlsplit(url)
        _ = parts.port  # a port that is not a number raises here
    except ValueError:
        return None
    return parts


def verify(source: Source, incoming: Incoming, now: float) -> None:
    given = signature.from_base64(signature.header(incoming, HEADER), name=HEADER)
    algorithm = _algorithm(incoming.headers.get(SETTINGS.lower(), ""))
    body_sha256 = incoming.query.get("bodySHA256")
    if body_sha256 is not None:
        actual = hashlib.sha256(incoming.body).hexdigest()
        if not hmac.compare_digest(actual.encode(), body_sha256.encode("utf-8", "replace")):
            raise SignatureInvalid("the bodySHA256 query parameter does not match the body")
        params = b""
    else:
        params = _params(signature.form_pairs(incoming.body))
    urls = _urls(source.options["public_url"], incoming.query)
    expected = (
        signature.digest(secret.reveal().encode(), url + params, algorithm) for secret in source.secrets for url in urls
    )
    signature.any_matches(expected, [given], name=HEADER)


def _algorithm(settings: str) -> str:
    """sha1 unless the SharedKey settings header names another (parsed as Twilio's validator does)."""
    for part in settings.split(","):
        name, equals, value = part.partition("=")
        if equals and name.strip() == "algorithm" and value.strip():
            algorithm = _ALGORITHMS.get(value.strip().upper())
            if algorithm is None:
                raise SignatureInvalid(f"{SETTINGS} names an unsupported algorithm {value.strip()[:40]!r}")
            return algorithm
    return "sha1"


def _params(pairs: list[tuple[str, str]]) -> bytes:
    """Names sorted (case-sensitive), each followed by its value; a repeated name's values sorted too."""
    values: dict[str, set[str]] = {}
    for name, value in pairs:
        values.setdefault(name, set()).add(value)
    return "".join(name + value for name in sorted(values) for value in sorted(values[name])).encode()


def _urls(public_url: str, query: Mapping[str, str]) -> list[bytes]:
    """The signed URL, without and with the scheme's default port (Twilio is not consistent about it)."""
    url = public_url + ("?" + urlencode(dict(query)) if query else "")
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    userinfo = parts.netloc.rpartition("@")[0]
    prefix = userinfo + "@" if userinfo else ""
    default = 443 if parts.scheme == "https" else 80
    bare = urlunsplit(parts._replace(netloc=prefix + host))
    ported = urlunsplit(parts._replace(netloc=f"{prefix}{host}:{parts.port or default}"))
    return [url.encode() for url in dict.fromkeys([url, bare, ported])]


def describe(source: Source, incoming: Incoming) -> Described:
    payload: dict[str, Any]
    if "bodySHA256" in incoming.query:
        payload = signature.json_object(incoming)
    else:
        payload = {}
        for name, value in signature.form_pairs(incoming.body):
            payload.setdefault(name, value)  # a repeated field keeps its first value
    token = incoming.headers.get("i-twilio-idempotency-token", "").strip()
    return Described(
        type=_type(source, payload), id=token or hashlib.sha256(incoming.body).hexdigest(), payload=payload
    )


def _type(source: Source, payload: Mapping[str, Any]) -> str:
    fields = (source.options["type_field"],) if "type_field" in source.options else ()
    for name in (*fields, *STATUS_FIELDS):
        value = payload.get(name)
        if isinstance(value, str) and value.strip():
            return f"twilio.{value.strip().lower()}"
    return "twilio.webhook"


def sign(source: Source, body: bytes, now: float, event: str | None = None) -> Signed:
    """Sign as Twilio sends: a JSON object of flat fields (like examples/twilio/message.json) is form-encoded,
    as Messaging and Voice webhooks are; a form body is kept; other JSON is sent as JSON with `?bodySHA256=`.
    """
    secret = source.secrets[0].reveal().encode()
    public_url = source.options["public_url"]
    headers = {"I-Twilio-Idempotency-Token": str(uuid.uuid4())}
    fields = _flat_fields(body)
    if fields is None and _is_json(body):
        query = {"bodySHA256": hashlib.sha256(body).hexdigest()}
        digest = signature.digest(secret, f"{public_url}?{urlencode(query)}".encode(), "sha1")
        return Signed(headers={HEADER: base64.b64encode(digest).decode(), **headers}, query=query)
    form = urlencode(fields).encode() if fields is not None else body
    digest = signature.digest(secret, public_url.encode() + _params(signature.form_pairs(form)), "sha1")
    return Signed(headers={HEADER: base64.b64encode(digest).decode(), **headers}, content_type=FORM, body=form)


def _flat_fields(body: bytes) -> dict[str, str] | None:
    """A JSON object whose values are all scalars, as form fields (numbers and booleans as JSON text)."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(payload, dict) or any(isinstance(value, dict | list) for value in payload.values()):
        return None
    return {name: value if isinstance(value, str) else json.dumps(value) for name, value in payload.items()}


def _is_json(body: bytes) -> bool:
    return body.lstrip()[:1] in (b"{", b"[")
