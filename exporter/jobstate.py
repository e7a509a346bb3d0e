"""What the poller knows about one watched job, and how each answer changes it.

A job holds its last good answer and, while fetches fail, why. Answers are ordered by when their
request started (``started``, monotonic), so an answer to an older request never replaces newer
data, wherever it comes from: the job's own fetch, a late answer, or the job list.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future
from dataclasses import dataclass, field

from .datajob import DataJob
from .model import IngestionJob, JobSnapshot, RenderedJob
from .results import FetchResult

log = logging.getLogger("seekrflow_exporter.scrape")

# A Retry-After longer than this is taken as this: a job must not go dark for hours on one answer.
MAX_RETRY_AFTER = 600.0


@dataclass(frozen=True)
class KnownJob:
    """What a job's state carries over a reload, its request in flight too: the new poller waits
    for that answer rather than ask again, so a job never has two requests on their way."""

    job: IngestionJob | RenderedJob | DataJob | None
    data_from: float | None
    last_success: float | None
    error: str | None
    error_from: float | None
    retry_at: float | None
    in_flight: Future | None = field(default=None, compare=False)


@dataclass
class JobState:
    job_id: str
    job: IngestionJob | RenderedJob | DataJob | None = None  # DataJob: the state of a watched data job
    data_from: float | None = None  # monotonic start of the request that brought ``job``
    last_success: float | None = None  # wall clock, for the exported timestamp
    error: str | None = None
    error_from: float | None = None  # monotonic start of the request that failed
    retry_at: float | None = None  # monotonic; the API asked us not to come back before
    in_flight: Future | None = field(default=None, repr=False)

    @classmethod
    def carried_over(cls, job_id: str, known: KnownJob) -> JobState:
        return cls(job_id, known.job, known.data_from, known.last_success, known.error, known.error_from,
                   known.retry_at, known.in_flight)

    def known(self) -> KnownJob:
        return KnownJob(self.job, self.data_from, self.last_success, self.error, self.error_from, self.retry_at,
                        self.in_flight)

    @property
    def answered_from(self) -> float:
        """Start of the request behind the latest answer, data or failure; -inf if none came yet."""
        return max(self.data_from or float("-inf"), self.error_from or float("-inf"))

    def apply_unusable_listing(self, started: float, detail: str, wall_now: float, now: float) -> None:
        """The list showed this job with a body that does not parse: a failure like a bad answer."""
        self.apply(started, FetchResult(self.job_id, None, "invalid_schema", detail, 200), wall_now, now,
                   from_list=True)

    def is_due(self, now: float, finished_job_refresh: float) -> bool:
        """Whether this round should ask the API for the job (``now`` monotonic)."""
        if self.retry_at is not None and now < self.retry_at:
            return False
        if self.job is None or self.error is not None or not self.job.is_settled:
            return True
        assert self.data_from is not None  # set together with ``job``
        return now - self.data_from >= finished_job_refresh

    def apply(self, started: float, result: FetchResult, wall_now: float, now: float,
              from_list: bool = False) -> None:
        """Take an answer to a request that started at ``started``; ``from_list``: the job list's
        copy of the job, which says nothing about this job's own Retry-After."""
        newest = self.answered_from
        if started < newest:
            return  # an answer to an older request than what we hold
        if result.job is not None:
            if self.error is not None:
                log.info("fetch recovered", extra={"fields": {"job_id": self.job_id}})
            self.job, self.data_from, self.last_success = result.job, started, wall_now
            self.error = self.error_from = None
            if not from_list:
                self.retry_at = None
            return
        self.note_failure(result)
        self.error_from = started
        if not from_list:
            self.retry_at = None if result.retry_after is None else now + min(result.retry_after, MAX_RETRY_AFTER)

    def note_failure(self, result: FetchResult) -> None:
        """Record why the job failed; logged as a warning when the failure starts or its reason changes."""
        level = logging.WARNING if self.error != result.reason else logging.DEBUG
        log.log(level, "fetch failed", extra={"fields": {
            "job_id": self.job_id, "reason": result.reason, "detail": result.detail}})
        self.error = result.reason

    def snapshot(self, now: float, serve_stale_for: float) -> JobSnapshot:
        job = self.job
        if self.error is not None and (self.data_from is None or now - self.data_from > serve_stale_for):
            job = None  # too old to stand in for the failing fetch
        return JobSnapshot(self.job_id, job, fresh=self.error is None and job is not None,
                           error=self.error, last_success=self.last_success)
