"""The typed values of routes.yaml: each reads one key of a mapping, reports a wrong type or value at its
position, and falls back to the default so that loading goes on and every problem is found in one pass."""

from __future__ import annotations

import re
from typing import Any

from relay.yamlfile import Located

DAY = 86_400.0


def unknown_keys(raw: dict[str, Any], allowed: set[str], at: Located) -> None:
    for key in raw:
        if key not in allowed:
            hint = ", ".join(sorted(allowed))
            at.child(key).error(f"unknown key {key!r} (allowed here: {hint})")


def mapping(raw: dict[str, Any], key: str, at: Located) -> dict[str, Any]:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        at.child(key).error(f"`{key}` must be a mapping, got {type(value).__name__}")
        return {}
    return value


def string(raw: dict[str, Any], key: str, at: Located, default: str) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str):
        at.child(key).error(f"`{key}` must be a string, got {value!r}")
        return default
    return value


def integer(raw: dict[str, Any], key: str, at: Located, default: int, *, minimum: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)  # from ${VAR} interpolation
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        at.child(key).error(f"`{key}` must be an integer >= {minimum}, got {value!r}")
        return default
    return value


def boolean(raw: dict[str, Any], key: str, at: Located, default: bool) -> bool:
    value = raw.get(key, default)
    if isinstance(value, str) and value in ("true", "false"):
        value = value == "true"  # from ${VAR} interpolation
    if not isinstance(value, bool):
        at.child(key).error(f"`{key}` must be true or false, got {value!r}")
        return default
    return value


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": DAY, "w": 7 * DAY, None: 1}


def parse_duration(value: Any) -> float | None:
    """`300`, `"90s"`, `"30m"`, `"7d"` -> seconds; None if not a duration."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if value >= 0 else None
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    return None


def duration(raw: dict[str, Any], key: str, at: Located, default: float) -> float:
    if key not in raw:
        return default
    seconds = parse_duration(raw[key])
    if seconds is None:
        at.child(key).error(f'`{key}` must be a duration like 300, "90s", "30m" or "7d", got {raw[key]!r}')
        return default
    return seconds


_SIZE = re.compile(r"^\s*(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$")
_SIZE_UNITS = {
    None: 1,
    "B": 1,
    "KB": 1000,
    "KiB": 1024,
    "MB": 10**6,
    "MiB": 1024**2,
    "GB": 10**9,
    "GiB": 1024**3,
}


def size(raw: dict[str, Any], key: str, at: Located, default: int) -> int:
    if key not in raw:
        return default
    value = raw[key]
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and (match := _SIZE.match(value)):
        return int(match.group(1)) * _SIZE_UNITS[match.group(2)]
    at.child(key).error(f'`{key}` must be a size like 5242880 or "5MiB", got {value!r}')
    return default
