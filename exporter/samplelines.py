"""Sample lines as prometheus_client's encoders write them, with room for values that grow with time.

A gauge sample line is the same bytes in the text format and in OpenMetrics (no timestamps, no
exemplars). An unfinished job's lines are fixed but for a few values that are ``now - since``
(metrics.Elapsed: a queued file's wait, a running file's processing time, the job's duration).
Those lines are kept as ``Lines`` with holes, so a job whose answer did not change is written at a
later time by filling the holes, without building its families again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from prometheus_client.utils import floatToGoString

from .metrics import Elapsed


@dataclass(frozen=True, slots=True)
class Hole:
    """A sample whose value is ``now - since`` at the time it is written (zero if negative)."""

    prefix: bytes  # the line up to its value: name, labels and the space
    since: float


@dataclass(frozen=True, slots=True)
class Lines:
    """Sample lines with holes: fixed bytes and ``Hole``s, in order."""

    parts: tuple[bytes | Hole, ...]

    def at(self, now: float) -> bytes:
        out = []
        for part in self.parts:
            if type(part) is bytes:
                out.append(part)
            else:
                assert isinstance(part, Hole)
                seconds = now - part.since
                out += (part.prefix, value_text(seconds if seconds > 0 else 0.0).encode(), b"\n")
        return b"".join(out)


Block = bytes | Lines  # a section's lines for one job: fixed, or with holes


def at(block: Block, now: float) -> bytes:
    return block if type(block) is bytes else block.at(now)  # type: ignore[union-attr]


def sample_lines(samples: Iterable) -> Block:
    """The samples' lines: bytes, or ``Lines`` when a value is an ``Elapsed``.

    Faster than the encoders for the lines rendered on every answer: the label names' sorted order
    is worked out once per run of samples with the same names, and a value is written with ``repr``
    unless ``floatToGoString`` would write it otherwise (infinities, NaN, large numbers).
    """
    out: list[str] = []
    parts: list[bytes | Hole] = []
    names: tuple = ()
    order: list[str] = []
    for sample in samples:
        labels = sample.labels
        value = sample.value
        if labels:
            keys = tuple(labels)
            if keys != names:
                names, order = keys, sorted(keys)
            inner = ",".join([f'{k}="{escape(labels[k])}"' for k in order])
            prefix = f"{sample.name}{{{inner}}} "
        else:
            prefix = f"{sample.name} "
        if type(value) is Elapsed:
            parts.append(Hole(("".join(out) + prefix).encode(), value.since))
            out = []
            continue
        out.append(f"{prefix}{value_text(value)}\n")
    if not parts:
        return "".join(out).encode()
    if out:
        parts.append("".join(out).encode())
    return Lines(tuple(parts))


def value_text(value: float) -> str:
    """A value as both encoders write it (floatToGoString), by way of ``repr`` where that agrees."""
    shown = repr(value) if type(value) is float else ""
    if not shown or not ("0" <= shown[-1] <= "9") or (value > 0 and shown.find(".") > 6) or "e" in shown:
        shown = floatToGoString(value)
    return shown


def escape(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value

