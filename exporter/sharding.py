"""Which jobs this exporter owns when several share the work, the kube-state-metrics way.

Each job belongs to exactly one of ``total`` shards: FNV-1a (64 bit) of its ID, as UTF-8,
modulo ``total``. The hash depends on nothing but the ID, so every replica agrees without talking
to the others, and a job stays on its shard for as long as the shard count does not change.
``--shard-from-pod-name`` takes the shard from the pod name's ordinal (``seekrflow-exporter-2``
is shard 2), as a StatefulSet names its pods.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .config import Config, ConfigError

_FNV_OFFSET, _FNV_PRIME, _MASK = 0xCBF29CE484222325, 0x100000001B3, 2**64 - 1
_ORDINAL = re.compile(r".+-(\d+)")
MAX_SHARDS = 1000


def fnv1a_64(data: bytes) -> int:
    value = _FNV_OFFSET
    for byte in data:
        value = ((value ^ byte) * _FNV_PRIME) & _MASK
    return value


@dataclass(frozen=True)
class Shard:
    index: int = 0
    total: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.total <= MAX_SHARDS:
            raise ValueError(f"--total-shards must be between 1 and {MAX_SHARDS}, got {self.total}")
        if not 0 <= self.index < self.total:
            raise ValueError(f"--shard must be between 0 and --total-shards - 1 ({self.total - 1}), got {self.index}")

    @property
    def sharded(self) -> bool:
        return self.total > 1

    def owns(self, job_id: str) -> bool:
        return self.total == 1 or fnv1a_64(job_id.encode("utf-8", "surrogatepass")) % self.total == self.index


def check_sharded_config(config: Config, shard: Shard) -> Config:
    """``config`` if this shard can see every job it owns under it, else a ``ConfigError``.

    A shard learns which of its ingestion jobs sit in another shard's data job only from the job
    list: without discovery those jobs would be exported by no shard at all.
    """
    if shard.sharded and config.data_jobs.active and not config.discovery.enabled:
        raise ConfigError("discovery.enabled", "must be true when data jobs are watched and --total-shards is "
                                               "above 1: a shard finds its ingestion jobs nested in other shards' "
                                               "data jobs only in the job list")
    return config


def ordinal_of(pod_name: str) -> int:
    """The StatefulSet ordinal at the end of a pod name: ``seekrflow-exporter-2`` -> 2."""
    match = _ORDINAL.fullmatch(pod_name.strip())
    if not match:
        raise ValueError(f"cannot take a shard from pod name {pod_name[:100]!r}: it must end in -<ordinal>")
    return int(match.group(1))
