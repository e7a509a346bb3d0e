"""Prometheus durations (``90s``, ``1h30m``, ``500ms``), read with Prometheus's own grammar.

Units from the largest to the smallest, each at most once: ``y`` (365 days), ``w``, ``d``, ``h``,
``m``, ``s``, ``ms``. A bare ``0`` is allowed, as Prometheus allows it; ``5s1h``, ``1.5h`` and
``10`` are not durations. Shared by the configuration and the alert-rule renderer, so a duration
means the same in config.yaml, thresholds.yml and Prometheus itself.
"""

from __future__ import annotations

import re

_DURATION = re.compile(
    r"(?:([0-9]+)y)?(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?(?:([0-9]+)ms)?"
)
_UNIT_MS = (365 * 86_400_000, 7 * 86_400_000, 86_400_000, 3_600_000, 60_000, 1000, 1)
# Prometheus holds a duration as int64 milliseconds and refuses anything beyond.
_MAX_MS = 2**63 - 1


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration; ``ValueError`` if ``text`` is not one (or out of range)."""
    if text == "0":
        return 0.0
    match = _DURATION.fullmatch(text) if text else None
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 30s, 5m or 1h30m")
    total = 0
    for digits, unit in zip(match.groups(), _UNIT_MS):
        if digits:
            # Checked before int(): a thousand-digit number is out of range, not worth converting.
            if len(digits) > 19 or total + int(digits) * unit > _MAX_MS:
                raise ValueError(f"{text!r} is out of range")
            total += int(digits) * unit
    return total / 1000


def is_duration(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parse_duration(value)
    except ValueError:
        return False
    return True
