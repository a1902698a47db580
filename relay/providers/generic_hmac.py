"""Generic HMAC: any sender that signs the body (and optionally a timestamp) with a shared secret.

There is no provider document; this follows the common shape described by https://webhooks.fyi/security/hmac.

Options (under the source in routes.yaml):
    header            the signature header (required), e.g. X-Signature
    algorithm         sha1 | sha256 (default) | sha512
    encoding          hex (default) | base64
    prefix            text before the signature in the header, e.g. "sha256=" (default "")
    timestamp_header  a header holding the unix time signed with the body (seconds; milliseconds are
                      recognised by their size), checked against the source's tolerance in both directions
    signed            the signed string, using only {body} and {timestamp}; default "{body}", or
                      "{timestamp}.{body}" when timestamp_header is set

The event type and id come from the source's `type:` and `id:` templates (roots `body`, `headers`, `query`),
else `body.type` and the SHA-256 of the body.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from relay.errors import PayloadInvalid, SignatureInvalid, TemplateError, TimestampInvalid
from relay.providers import REQUIRED, Described, Incoming, Signed, signature

if TYPE_CHECKING:
    from relay.config import Source
    from relay.templates import Template

KIND = "hmac"
OPTIONS: dict[str, object] = {
    "header": REQUIRED,
    "algorithm": "sha256",
    "encoding": "hex",
    "prefix": "",
    "timestamp_header": None,
    "signed": None,
}
ENCODINGS = ("hex", "base64")
_PLACEHOLDER = re.compile(r"(\{body\}|\{timestamp\})")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_MILLISECONDS = 10**11  # a seconds timestamp this large would be past the year 5000


def check_options(options: Mapping[str, str]) -> dict[str, str]:
    errors: dict[str, str] = {}
    for name in ("header", "timestamp_header"):
        if name in options and not _HEADER_NAME.match(options[name]):
            errors[name] = f"{name} must be an HTTP header name like X-Signature, got {options[name]!r}"
    if options.get("algorithm", "sha256") not in signature.ALGORITHMS:
        errors["algorithm"] = f"algorithm must be one of sha1, sha256, sha512, got {options['algorithm']!r}"
    if options.get("encoding", "hex") not in ENCODINGS:
        errors["encoding"] = f"encoding must be hex or base64, got {options['encoding']!r}"
    if "signed" in options:
        template = options["signed"]
        leftover = _PLACEHOLDER.sub("", template)
        if "{" in leftover or "}" in leftover:
            errors["signed"] = f"signed may use only {{body}} and {{timestamp}}, got {template!r}"
        elif "{body}" not in template:
            errors["signed"] = f"signed must include {{body}}, or the body is not protected; got {template!r}"
        elif "{timestamp}" in template and "timestamp_header" not in options:
            errors["signed"] = "signed uses {timestamp}, so set timestamp_header (the header that carries it)"
    return errors


def verify(source: Source, incoming: Incoming, now: float) -> None:
    options = source.options
    name = options["header"]
    value = signature.header(incoming, name)
    prefix = options.get("prefix", "")
    if not value.startswith(prefix):
        raise SignatureInvalid(f"{name} must start with {prefix!r}")
    encoded = value[len(prefix) :].strip()
    if options.get("encoding", "hex") == "base64":
        given = signature.from_base64(encoded, name=name)
    else:
        given = signature.from_hex(encoded, name=name)
    stamp_name = options.get("timestamp_header")
    stamp = ""
    if stamp_name is not None:
        stamp = incoming.headers.get(stamp_name.lower(), "").strip()
        if not stamp:
            raise TimestampInvalid(f"missing {stamp_name} header")
    message = _signed(options, incoming.body, stamp)
    algorithm = options.get("algorithm", "sha256")
    expected = (signature.digest(secret.reveal().encode(), message, algorithm) for secret in source.secrets)
    signature.any_matches(expected, [given], name=name)
    if stamp_name is not None:
        signed_at = signature.timestamp(stamp, name=stamp_name)
        if signed_at >= _MILLISECONDS:
            signed_at /= 1000
        signature.check_fresh(signed_at, now, source.tolerance, name=stamp_name)


def _signed(options: Mapping[str, str], body: bytes, stamp: str) -> bytes:
    default = "{timestamp}.{body}" if "timestamp_header" in options else "{body}"
    parts = _PLACEHOLDER.split(options.get("signed", default))
    pieces = {"{body}": body, "{timestamp}": stamp.encode()}
    return b"".join(pieces.get(part, part.encode()) for part in parts)


def describe(source: Source, incoming: Incoming) -> Described:
    return from_templates(source, incoming)


def from_templates(source: Source, incoming: Incoming) -> Described:
    """type and id from the source's `type:`/`id:` templates, else `body.type` and the SHA-256 of the body."""
    payload = signature.json_object(incoming)
    roots = {"body": payload, "headers": dict(incoming.headers), "query": dict(incoming.query)}
    if source.event_type is not None:
        event_type = _render(source.event_type, roots, "type")
    else:
        event_type = signature.field(payload, "type")
    if source.event_id is not None:
        event_id = _render(source.event_id, roots, "id")
    else:
        event_id = hashlib.sha256(incoming.body).hexdigest()
    return Described(type=event_type, id=event_id, payload=payload)


def _render(template: Template, roots: Mapping[str, Any], what: str) -> str:
    try:
        value = template.render(roots)
    except TemplateError as exc:
        raise PayloadInvalid(str(exc)) from None
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise PayloadInvalid(
            f"the source's `{what}:` template gave {signature.describe_value(value)}; expected a non-empty string"
        )
    return str(value)


def sign(source: Source, body: bytes, now: float, event: str | None = None) -> Signed:
    options = source.options
    stamp = str(int(now)) if "timestamp_header" in options else ""
    digest = signature.digest(
        source.secrets[0].reveal().encode(), _signed(options, body, stamp), options.get("algorithm", "sha256")
    )
    encoded = base64.b64encode(digest).decode() if options.get("encoding", "hex") == "base64" else digest.hex()
    headers = {options["header"]: options.get("prefix", "") + encoded}
    if stamp:
        headers[options["timestamp_header"]] = stamp
    return Signed(headers=headers)
