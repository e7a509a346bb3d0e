"""Pure choices that bound the exporter's series: which metric names are served, which jobs get
per-file series.

Both are functions of plain values (a family name; a job's settledness and end time against
``now``), so whatever turns jobs into text, built afresh or kept rendered, can apply them the same way.

Name patterns follow kube-state-metrics' ``--metric-allowlist`` / ``--metric-denylist``: regular
expressions matched against the whole family name (``seekrflow_ingestion_file_.*``, never a
substring), and an allow list and a deny list together are a configuration error, so what is served
never depends on which of the two wins.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterable, Sequence, TypeVar

from prometheus_client.core import Metric

# metrics.per_file: which jobs get per-file series.
PER_FILE_ALL = "all"  # every job (the default)
PER_FILE_RECENT = "recent"  # jobs that can still change, and settled ones that ended within the window
PER_FILE_UNFINISHED = "unfinished"  # only jobs that can still change
PER_FILE_NONE = "none"
PER_FILE_POLICIES = (PER_FILE_ALL, PER_FILE_RECENT, PER_FILE_UNFINISHED, PER_FILE_NONE)

_F = TypeVar("_F", bound=Metric)


def compile_patterns(patterns: Sequence[str]) -> re.Pattern[str]:
    """One regular expression that fully matches a name matched by any of ``patterns``.

    ``re.error`` for a pattern that does not compile (the config names which one).
    """
    return re.compile("|".join(f"(?:{pattern})" for pattern in patterns))


@lru_cache(maxsize=32)
def _compiled(patterns: tuple[str, ...]) -> re.Pattern[str]:
    return compile_patterns(patterns)


def name_allowed(name: str, allow: tuple[str, ...], deny: tuple[str, ...]) -> bool:
    """Whether the family ``name`` is served: listed in ``allow`` (when set), and not in ``deny``."""
    if allow and not _compiled(allow).fullmatch(name):
        return False
    return not (deny and _compiled(deny).fullmatch(name))


def allowed_families(families: Iterable[_F], allow: tuple[str, ...], deny: tuple[str, ...]) -> list[_F]:
    """The families whose names pass ``allow`` and ``deny``, in their order."""
    families = list(families)
    if not allow and not deny:
        return families
    return [family for family in families if name_allowed(family.name, allow, deny)]


def per_file_wanted(policy: str, window: float, settled: bool, ended_at: float | None, now: float) -> bool:
    """Whether a job gets per-file series under ``policy`` at ``now``.

    ``settled``: the job is finished and all its live records too (it cannot change any more);
    ``ended_at``: when a settled job ended (its last record's end, else its creation), as Unix seconds.
    Under ``recent`` a settled job keeps its per-file series for ``window`` seconds after it ended.
    """
    if policy == PER_FILE_ALL:
        return True
    if policy == PER_FILE_NONE:
        return False
    if not settled:
        return True
    if policy == PER_FILE_UNFINISHED or ended_at is None:
        return False
    return now - ended_at <= window
