"""Turn metric families or an exposition into {(name, labels): value} for exact assertions."""

from __future__ import annotations

from typing import Iterable

from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families


def samples_of(families: Iterable[Metric]) -> dict[tuple[str, frozenset], float]:
    found = {}
    for family in families:
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in found, f"duplicate series {key}"
            found[key] = sample.value
    return found


def parse_exposition(text: str) -> dict[tuple[str, frozenset], float]:
    return samples_of(text_string_to_metric_families(text))


def value(samples: dict, name: str, **labels) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def series(samples: dict, name: str, **labels) -> dict[frozenset, float]:
    """Every series of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return {key[1]: val for key, val in samples.items() if key[0] == name and want <= key[1]}
