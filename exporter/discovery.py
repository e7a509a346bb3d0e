"""Which listed jobs to watch: a pure choice from the API's job list and the time.

Every unfinished job is watched; a settled one only until ``max_age`` after it ended (its last
live record's end, or its creation if no record has one), so an account's history does not pile up as
series while a job that just failed is still seen failing. A listed job whose body is unusable is
watched (and reported) unless its creation is readable and older than ``max_age``. IDs that could
not be configured are not taken from the list either.

A job listed without records (the SDK types the list's ``file_records`` as optional) is judged by
the records already held for it; with none held, when it ended is unknown and it is watched: its
own fetch brings the records, and the next read of the list decides with them.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import replace
from typing import Callable, Mapping

from .config import JOB_ID_PATTERN
from .model import IngestionJob, RenderedJob
from .results import ListResult


def watched_jobs(listed: ListResult, now: float, max_age: float,
                 held: Mapping[str, IngestionJob | RenderedJob] | None = None,
                 ) -> tuple[list[IngestionJob], dict[str, str]]:
    """(jobs to watch, {job id: why its listed body is unusable}) from one read of the list.

    ``held``: the jobs as last fetched, by ID, for listed jobs that come without their records.
    """
    held = held or {}
    jobs = [job for job in listed.jobs if isinstance(job, IngestionJob)
            and JOB_ID_PATTERN.fullmatch(job.id) and _recent(_with_held_records(job, held.get(job.id)), now, max_age)]
    invalid = {job_id: detail for job_id, (detail, created_at) in listed.invalid.items()
               if JOB_ID_PATTERN.fullmatch(job_id) and (created_at is None or now - created_at <= max_age)}
    return jobs, invalid


def _with_held_records(job: IngestionJob, held: IngestionJob | RenderedJob | None) -> IngestionJob | RenderedJob:
    if job.records_known or held is None:
        return job
    if isinstance(held, RenderedJob):
        # Kept without its records. Settled when it was fetched: it ended when it said. Unfinished
        # then: watched until its own fetch shows it settled.
        return held if job.is_finished or not held.is_settled else job
    if not held.records_known:
        return job
    return replace(job, records=held.records, records_known=True)


def _recent(job: IngestionJob | RenderedJob, now: float, max_age: float) -> bool:
    if isinstance(job, RenderedJob):
        return not job.is_settled or now - job.ended_at <= max_age
    if not job.records_known:
        return True  # when it ended is unknown until its own fetch brings the records
    return not job.is_settled or now - _ended_at(job) <= max_age


def _ended_at(job: IngestionJob) -> float:
    # A job that does not say when it ended is as old as its creation: it leaves no later than that.
    return job.ended_at if job.ended_at is not None else job.created_at


def watched_data_jobs(listed: ListResult, now: float, max_age: float,
                      held: Mapping[str, object] | None = None) -> tuple[list, dict[str, str]]:
    """(data jobs to watch, {data job id: why its listed body is unusable}) from one read of the list.

    As for ingestion jobs: every unfinished data job, and a finished one (cancelled, failed,
    completed, stopped) until ``max_age`` after it ended (its ``updated_at``). ``held`` is unused:
    a data job's list item says all that this choice needs.
    """
    jobs = [job for job in listed.jobs
            if JOB_ID_PATTERN.fullmatch(job.id) and (job.ended_at is None or now - job.ended_at <= max_age)]
    invalid = {job_id: detail for job_id, (detail, created_at) in listed.invalid.items()
               if JOB_ID_PATTERN.fullmatch(job_id) and (created_at is None or now - created_at <= max_age)}
    return jobs, invalid


def newest(jobs: list, invalid: dict[str, str], invalid_created: Mapping[str, float | None],
           limit: int) -> tuple[list, dict[str, str], int]:
    """At most ``limit`` of the jobs (ingestion or data jobs) to watch, the newest by creation
    (unknown creation counts as oldest); also how many were left out. An account's whole history must not become series."""
    if len(jobs) + len(invalid) <= limit:
        return jobs, invalid, 0
    ranked = sorted([(job.created_at, job.id) for job in jobs]
                    + [(invalid_created.get(job_id) or float("-inf"), job_id) for job_id in invalid], reverse=True)
    kept = {job_id for _, job_id in ranked[:limit]}
    return ([job for job in jobs if job.id in kept], {k: v for k, v in invalid.items() if k in kept},
            len(ranked) - limit)



class ListKeeper:
    """What one read of the job list keeps while it streams in, so memory follows ``max_jobs``, not
    the length of the list.

    Each parsed job (or unusable item) is judged as it arrives: an ID that could not be configured
    is dropped, and a settled job older than ``max_age`` too; of the rest at most ``max_jobs`` are
    kept, the newest by creation as ``newest`` ranks them, and the others counted in
    ``left_out``. A job listed without records cannot be judged before the records held for it are
    seen (``watched_jobs`` does that later), so it is kept as if recent. Without ``now`` nothing is
    judged and everything is kept.
    """

    def __init__(self, now: float | None = None, max_age: float = float("inf"), max_jobs: int | None = None,
                 owns: Callable[[str], bool] | None = None):
        """``owns``: with sharding, whether a job is this shard's; the others are dropped first, so
        ``max_jobs`` counts this shard's jobs only."""
        self._now, self._max_age, self._max_jobs = now, max_age, max_jobs
        self._owns = owns
        # Min-heap of (created_at, job id, arrival, job or (detail, created_at) of an unusable item).
        self._kept: list[tuple[float, str, int, object]] = []
        self._order = itertools.count()
        self.left_out = 0

    def add(self, job: IngestionJob) -> None:
        if self._owns is not None and not self._owns(job.id):
            return
        if self._now is not None and not (JOB_ID_PATTERN.fullmatch(job.id) and _recent(job, self._now, self._max_age)):
            return
        self._keep(job.created_at, job.id, job)

    def add_invalid(self, job_id: str, detail: str, created_at: float | None) -> None:
        if self._owns is not None and not self._owns(job_id):
            return
        if self._now is not None and not (JOB_ID_PATTERN.fullmatch(job_id)
                                          and (created_at is None or self._now - created_at <= self._max_age)):
            return
        self._keep(float("-inf") if created_at is None else created_at, job_id, (detail, created_at))

    def result(self) -> ListResult:
        entries = sorted(self._kept, key=lambda entry: entry[2])  # in the list's order
        jobs = tuple(entry[3] for entry in entries if isinstance(entry[3], IngestionJob))
        invalid = {entry[1]: entry[3] for entry in entries if not isinstance(entry[3], IngestionJob)}
        return ListResult(jobs, invalid, left_out=self.left_out)  # type: ignore[arg-type]

    def _keep(self, created_at: float, job_id: str, what: object) -> None:
        entry = (created_at, job_id, next(self._order), what)
        if self._max_jobs is None or len(self._kept) < self._max_jobs:
            heapq.heappush(self._kept, entry)
            return
        self.left_out += 1
        if entry[:2] > self._kept[0][:2]:
            heapq.heapreplace(self._kept, entry)
