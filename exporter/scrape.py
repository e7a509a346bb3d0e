"""Fetch the watched jobs for a scrape: concurrently, within the deadline, shared between scrapes.

- Concurrent scrapes (two Prometheus replicas) wait on one lock; the second finds the first one's
  result still within ``cache_ttl`` and reuses it, so the API sees one round of requests.
- A settled job (finished, every record finished) cannot change any more; it is re-read only every
  ``finished_job_refresh``, so in the steady state a scrape costs one request per unfinished job.
- A request still running at the deadline keeps going (up to ``api.timeout``). It is no failure
  while the job has data; its answer is used by the next round. Answers are ordered by when their
  request started, so an old answer never replaces newer data.
- A failed fetch keeps the job's last good data for ``serve_stale_for``, marked not fresh.
- A 429 or 503 with Retry-After is honoured: the job is not asked again before then.
- With discovery on, the job list is read every ``discovery.interval`` (sooner after a failure,
  with back-off) alongside the jobs due; it adds the jobs it finds (see discovery.py).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from typing import Callable, Sequence

from .client import SeekrFlowClient
from .config import ApiConfig, DiscoveryConfig, ScrapeConfig
from .discovery import watched_jobs
from .model import IngestionJob, JobSnapshot
from .pool import FetchPool
from .results import DiscoveryStatus, FetchResult, ListResult, ScrapeResult

log = logging.getLogger("seekrflow_exporter.scrape")

# A Retry-After longer than this is taken as this: a job must not go dark for hours on one answer.
MAX_RETRY_AFTER = 600.0
# After a failed read of the job list, wait this long, doubling per failure, up to the interval.
LIST_RETRY_FIRST = 10.0


@dataclass
class _JobState:
    job: IngestionJob | None = None
    data_from: float | None = None  # monotonic start of the request that brought ``job``
    last_success: float | None = None  # wall clock, for the exported timestamp
    error: str | None = None
    error_from: float | None = None  # monotonic start of the request that failed
    retry_at: float | None = None  # monotonic; the API asked us not to come back before
    in_flight: Future | None = field(default=None, repr=False)


@dataclass
class _Listing:
    """The state of discovery: what the list gave, and when to read it next."""

    job_ids: tuple[str, ...] = ()
    ok: bool | None = None
    next_read: float | None = None  # monotonic; None: read at the next round
    failures: int = 0
    in_flight: Future | None = field(default=None, repr=False)


class JobPoller:
    def __init__(self, job_ids: Sequence[str], client: SeekrFlowClient, settings: ScrapeConfig, api: ApiConfig,
                 discovery: DiscoveryConfig | None = None,
                 wall_clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic):
        self._configured = tuple(job_ids)
        self._client = client
        self._settings = settings
        self._request_timeout = api.request_timeout
        self._discovery = discovery if discovery is not None and discovery.enabled else None
        self._wall_clock = wall_clock
        self._monotonic = monotonic
        self._pool = FetchPool(api.max_concurrency, monotonic)
        self._states = {job_id: _JobState() for job_id in self._configured}
        self._listing = _Listing()
        self._refresh_lock = threading.Lock()
        self._closed = False
        self._previous: JobPoller | None = None
        self._refreshed_at: float | None = None
        self._api_up: bool | None = None
        self._result = ScrapeResult(tuple(JobSnapshot(j, None, False) for j in self._configured), None)

    @property
    def job_ids(self) -> tuple[str, ...]:
        """The configured jobs, then the discovered ones not configured."""
        configured = set(self._configured)
        return self._configured + tuple(j for j in self._listing.job_ids if j not in configured)

    def take_over(self, previous: "JobPoller") -> None:
        """Continue from what ``previous`` knew (same API, reloaded settings): no cold start.

        The copy waits for the first scrape: ``previous`` may be in the middle of one, and the
        reload must not wait for it.
        """
        self._previous = previous

    def scrape(self, deadline: float) -> ScrapeResult:
        """The freshest result obtainable by ``deadline`` (a ``monotonic`` time)."""
        if not self._refresh_lock.acquire(timeout=max(deadline - self._monotonic(), 0.0)):
            return self._result  # another scrape holds the refresh past our deadline
        try:
            if self._closed:
                return self._result  # replaced by a reload while this scrape waited
            if self._previous is not None:
                self._copy_from_previous(deadline)
            now = self._monotonic()
            if self._refreshed_at is None or now - self._refreshed_at >= self._settings.cache_ttl:
                self._refresh(deadline)
                self._refreshed_at = self._monotonic()
            return self._result
        finally:
            self._release()

    def close(self) -> None:
        """Stop; a scrape still refreshing finishes first, without making whoever closes wait."""
        self._closed = True
        if self._refresh_lock.acquire(blocking=False):
            self._release()

    def _release(self) -> None:
        # Whoever releases the lock last after close() shuts down, so a close that came while a
        # scrape held the lock is never lost.
        self._refresh_lock.release()
        if self._closed and self._refresh_lock.acquire(blocking=False):
            try:
                self._shut_down()
            finally:
                self._refresh_lock.release()

    def _copy_from_previous(self, deadline: float) -> None:
        previous, self._previous = self._previous, None
        if not previous._refresh_lock.acquire(timeout=max(deadline - self._monotonic(), 0.0)):
            return  # still busy at our deadline: start cold rather than miss it
        try:
            if self._discovery is not None:
                old = previous._listing
                self._listing = _Listing(old.job_ids, old.ok, old.next_read, old.failures)
            self._api_up = previous._api_up
            for job_id in self.job_ids:
                old = previous._states.get(job_id)
                if old is not None:
                    # Its request belongs to the old pool; the next round asks again if due.
                    self._states[job_id] = _JobState(old.job, old.data_from, old.last_success, old.error,
                                                     old.error_from, old.retry_at)
        finally:
            previous._release()

    def _shut_down(self) -> None:
        if self._pool is not None:  # only once
            self._pool.shutdown()
            self._client.close()
            self._pool = None

    def _refresh(self, deadline: float) -> None:
        now = self._monotonic()
        answered, key_accepted = self._collect_late_answers()
        listing = self._start_listing(now)
        due = [job_id for job_id in self.job_ids if self._is_due(self._states[job_id], now)]
        # Oldest data first: when the pool cannot serve every job before the deadline, the jobs
        # left out this time are served first next time, so none goes dark for good.
        due.sort(key=lambda job_id: self._states[job_id].data_from or float("-inf"))
        submitted: dict[Future, str] = {}
        for job_id in due:
            state = self._states[job_id]
            if state.in_flight is None:
                state.in_flight = self._pool.submit(self._client.fetch_job, job_id, self._request_timeout)
            submitted[state.in_flight] = job_id
        unanswered = 0  # jobs with no data whose request missed the deadline
        pending = list(submitted) + ([listing] if listing is not None else [])
        done, _ = wait(pending, timeout=max(deadline - self._monotonic(), 0.0))
        if listing is not None and listing in done:
            self._listing.in_flight = None
            started, listed = listing.result()
            answered += 1
            key_accepted = key_accepted or listed.key_accepted
            self._accept_list(started, listed)
        for future, job_id in submitted.items():
            state = self._states[job_id]
            if future in done:
                state.in_flight = None
                started, result = future.result()
                answered += 1
                key_accepted = key_accepted or result.key_accepted
                self._apply(job_id, started, result)
            else:
                if future.cancel():  # never started: free its place in the pool
                    state.in_flight = None
                if state.job is None:
                    unanswered += 1
                    self._note_failure(job_id, state, FetchResult(job_id, None, "timeout",
                                                                  "no answer before the scrape deadline"))
        # A request still on its way for a job that has data says nothing about the API yet.
        if answered or unanswered:
            self._api_up = key_accepted
        watched = set(self.job_ids)
        for job_id in [j for j in self._states if j not in watched]:
            del self._states[job_id]  # no longer listed (or too old): its series go
        now = self._monotonic()
        discovery = None if self._discovery is None else DiscoveryStatus(self._listing.ok, len(self._listing.job_ids))
        self._result = ScrapeResult(tuple(self._snapshot(j, now) for j in self.job_ids), self._api_up, discovery)

    def _collect_late_answers(self) -> tuple[int, bool]:
        """Apply answers that arrived after their scrape's deadline: they may be the newest data."""
        count, key_accepted = 0, False
        for job_id, state in self._states.items():
            if state.in_flight is not None and state.in_flight.done():
                started, result = state.in_flight.result()
                state.in_flight = None
                count += 1
                key_accepted = key_accepted or result.key_accepted
                self._apply(job_id, started, result)
        return count, key_accepted

    def _start_listing(self, now: float) -> Future | None:
        """The job-list request of this round, if discovery is on and the list is due."""
        listing = self._listing
        if self._discovery is None:
            return None
        if listing.in_flight is None:
            if listing.next_read is not None and now < listing.next_read:
                return None
            listing.in_flight = self._pool.submit(self._client.list_jobs, self._request_timeout)
        return listing.in_flight

    def _accept_list(self, started: float, listed: ListResult) -> None:
        listing = self._listing
        if listed.failure is not None:
            if listing.ok is not False:
                log.warning("job list failed", extra={"fields": {
                    "reason": listed.failure.reason, "detail": listed.failure.detail}})
            listing.ok, listing.failures = False, listing.failures + 1
            if listed.failure.retry_after:
                wait_for = min(listed.failure.retry_after, MAX_RETRY_AFTER)
            else:
                wait_for = min(LIST_RETRY_FIRST * 2 ** (listing.failures - 1), self._discovery.interval)
            listing.next_read = self._monotonic() + wait_for
            return  # keep the jobs found before
        listing.ok, listing.failures = True, 0
        listing.next_read = self._monotonic() + self._discovery.interval
        jobs, invalid = watched_jobs(listed, self._wall_clock(), self._discovery.max_age)
        previous = set(listing.job_ids)
        listing.job_ids = tuple(sorted({job.id for job in jobs} | set(invalid)))
        for job in jobs:
            self._states.setdefault(job.id, _JobState())
            self._apply(job.id, started, FetchResult(job.id, job, http_status=200), from_list=True)
        for job_id, detail in invalid.items():
            self._states.setdefault(job_id, _JobState())
            self._apply(job_id, started, FetchResult(job_id, None, "invalid_schema", detail, 200), from_list=True)
        if set(listing.job_ids) != previous:
            log.info("job list read", extra={"fields": {"discovered": len(listing.job_ids)}})

    def _is_due(self, state: _JobState, now: float) -> bool:
        if state.retry_at is not None and now < state.retry_at:
            return False
        if state.job is None or state.error is not None or not state.job.is_settled:
            return True
        return now - state.data_from >= self._settings.finished_job_refresh

    def _apply(self, job_id: str, started: float, result: FetchResult, from_list: bool = False) -> None:
        state = self._states[job_id]
        newest = max(state.data_from or float("-inf"), state.error_from or float("-inf"))
        if started < newest:
            return  # an answer to an older request than what we hold
        if result.job is not None:
            if state.error is not None:
                log.info("fetch recovered", extra={"fields": {"job_id": job_id}})
            state.job, state.data_from, state.last_success = result.job, started, self._wall_clock()
            state.error = state.error_from = None
            if not from_list:
                state.retry_at = None
            return
        self._note_failure(job_id, state, result)
        state.error_from = started
        if not from_list:
            state.retry_at = None if result.retry_after is None else (
                self._monotonic() + min(result.retry_after, MAX_RETRY_AFTER))

    def _note_failure(self, job_id: str, state: _JobState, result: FetchResult) -> None:
        level = logging.WARNING if state.error != result.reason else logging.DEBUG
        log.log(level, "fetch failed", extra={"fields": {
            "job_id": job_id, "reason": result.reason, "detail": result.detail}})
        state.error = result.reason

    def _snapshot(self, job_id: str, now: float) -> JobSnapshot:
        state = self._states[job_id]
        job = state.job
        if state.error is not None and (state.data_from is None or now - state.data_from > self._settings.serve_stale_for):
            job = None  # too old to stand in for the failing fetch
        return JobSnapshot(job_id, job, fresh=state.error is None and job is not None,
                           error=state.error, last_success=state.last_success)

