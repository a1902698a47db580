"""Every error relay raises on purpose derives from `RelayError`.

    RelayError
    ├── ConfigError              routes.yaml cannot be loaded; holds every `ConfigIssue` found
    ├── Rejected                 an incoming webhook is refused; carries the HTTP status and a reason code
    │   ├── SignatureMissing       401  no signature header (or no token)
    │   ├── SignatureInvalid       401  header present but malformed, or no secret matches
    │   ├── TimestampInvalid       400  timestamp missing, malformed, or outside the tolerance
    │   ├── PayloadInvalid         400  body is not the JSON the source kind requires, or lacks type/id
    │   └── BodyTooLarge           413  body over the source's `max_body`
    ├── TemplateError            a variable template cannot render for one event (fails one delivery)
    ├── StoreError               the store cannot do what was asked
    │   ├── StoreUnavailable       cannot commit now (ingress answers 503 so the provider retries)
    │   └── NotFound               no event or delivery with that id
    ├── DeliveryError            a forward to runs/start could not be made or understood
    ├── FunctionsError           what the local Functions runtime refuses (its tree: relay/functions/errors.py)
    └── ReplayError              a stored event cannot be routed again (its source is gone, its body no longer fits)

The edges (ingress, CLI, admin API) turn these into status codes and messages; nothing else catches `Exception`.
Messages name the key, the bad value and what was expected, and never contain a secret or an expected signature.
"""

from __future__ import annotations

from dataclasses import dataclass


class RelayError(Exception):
    """Root of relay's own errors."""


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a configuration file, with its position (1-based line and column; 0 when unknown)."""

    file: str
    line: int
    column: int
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        return f"{where}: {self.severity}: {self.message}"


class ConfigError(RelayError):
    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(issue) for issue in issues))


class Rejected(RelayError):
    """An incoming request that is not accepted. `reason` is a stable machine code, `str()` a safe message."""

    status = 400
    reason = "rejected"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class SignatureMissing(Rejected):
    status = 401
    reason = "signature_missing"


class SignatureInvalid(Rejected):
    status = 401
    reason = "signature_invalid"


class TimestampInvalid(Rejected):
    status = 400
    reason = "timestamp_invalid"


class PayloadInvalid(Rejected):
    status = 400
    reason = "payload_invalid"


class BodyTooLarge(Rejected):
    status = 413
    reason = "body_too_large"


class TemplateError(RelayError):
    """A template that cannot render; the message starts with its path, `routes[0](x).targets[0](f).variables.a`."""


class StoreError(RelayError):
    pass


class StoreUnavailable(StoreError):
    pass


class NotFound(StoreError):
    pass


class DeliveryError(RelayError):
    pass


class ReplayError(RelayError):
    pass
