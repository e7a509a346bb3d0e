"""Checks of single values shared by the config sections: mappings with known keys, strings,
durations, numbers and histogram buckets. Each raises ``ConfigError`` naming the key's path.

The underscored helpers are for the config modules only (config.py, configapi.py).
"""

from __future__ import annotations

import math
from typing import Any

from . import durations
from .configtypes import MAX_DURATION, MAX_TIMEOUT, ConfigError


def parse_duration(text: Any, path: str) -> float:
    """Seconds in a Prometheus duration such as ``10s``, ``1m30s`` or ``500ms`` (durations.py)."""
    try:
        if not isinstance(text, str):
            raise ValueError(text)
        total = durations.parse_duration(text)
    except ValueError:
        raise ConfigError(path, f"must be a duration like 10s or 5m, got {_show(text)}") from None
    if total > MAX_DURATION:
        raise ConfigError(path, f"must be at most 100y, got {_show(text)}")
    return total


def _section(raw: Any, path: str, allowed: set[str]) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(path, f"must be a mapping, got {_show(raw)}")
    for key in raw:
        if key not in allowed:
            full = f"{path}.{key}" if path else str(key)
            raise ConfigError(full, f"unknown key (allowed: {', '.join(sorted(allowed))})")
    return raw


def _optional_str(section: dict, path: str) -> str | None:
    value = section.get(path.rsplit(".", 1)[-1])
    if value is not None and not isinstance(value, str):
        raise ConfigError(path, f"must be a string, got {_show(value)}")
    return value


def _duration(section: dict, path: str, default: float) -> float:
    key = path.rsplit(".", 1)[-1]
    return default if key not in section else parse_duration(section[key], path)


def _positive_duration(section: dict, path: str, default: float) -> float:
    value = _duration(section, path, default)
    if value <= 0:
        raise ConfigError(path, "must be longer than 0s")
    return value


def _timeout(section: dict, path: str, default: float) -> float:
    value = _positive_duration(section, path, default)
    if value > MAX_TIMEOUT:
        raise ConfigError(path, "must be at most 1h")
    return value


def _positive_int(section: dict, path: str, default: int, maximum: int) -> int:
    value = section.get(path.rsplit(".", 1)[-1], default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise ConfigError(path, f"must be a whole number from 1 to {maximum}, got {_show(value)}")
    return value


def _buckets(section: dict, path: str, default: tuple[float, ...]) -> tuple[float, ...]:
    value = section.get(path.rsplit(".", 1)[-1])
    if value is None:
        return default
    if not isinstance(value, list) or not value:
        raise ConfigError(path, f"must be a non-empty list of upper bounds in seconds, got {_show(value)}")
    for item in value:
        if (isinstance(item, bool) or not isinstance(item, (int, float)) or abs(item) > MAX_DURATION
                or not math.isfinite(item) or item <= 0):
            raise ConfigError(path, f"bucket bounds must be positive numbers of seconds, got {_show(item)}")
    if any(b >= a for a, b in zip(value[1:], value)):
        raise ConfigError(path, "bucket bounds must be strictly increasing")
    return tuple(float(b) for b in value)


def _has_space_or_control(text: str) -> bool:
    return any(c.isspace() or not c.isprintable() for c in text)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
