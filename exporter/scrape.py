"""Fetch the configured jobs for a scrape: concurrently, within the deadline, shared between scrapes.

- Concurrent scrapes (two Prometheus replicas) wait on one lock; the second finds the first one's
  result still within ``cache_ttl`` and reuses it, so the API sees one round of requests.
- A settled job (finished, every record finished) cannot change any more; it is re-read only every
  ``finished_job_refresh``, so in the steady state a scrape costs one request per unfinished job.
- A failed fetch keeps the job's last good data for ``serve_stale_for``, marked not fresh.
- A 429 or 503 with Retry-After is honoured: the job is not asked again before then.
- With discovery on, the job list is read every ``discovery.interval`` alongside the jobs due; it
  adds the jobs it finds (see discovery.py) and serves as their data for that round.
"""

from __future__ import annotations

import logging
import threading
import time
import queue
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from typing import Callable, Sequence

from .client import FetchResult, ListResult, SeekrFlowClient
from .config import DiscoveryConfig, ScrapeConfig
from .discovery import watched_jobs
from .model import IngestionJob, JobSnapshot

log = logging.getLogger("seekrflow_exporter.scrape")

# A Retry-After longer than this is taken as this: a job must not go dark for hours on one answer.
MAX_RETRY_AFTER = 600.0


@dataclass(frozen=True)
class DiscoveryStatus:
    ok: bool | None  # None until the list was first read
    job_count: int


@dataclass(frozen=True)
class ScrapeResult:
    snapshots: tuple[JobSnapshot, ...]
    # Whether the API answered with the key accepted; None until anything was asked.
    api_up: bool | None
    discovery: DiscoveryStatus | None = None


@dataclass
class _JobState:
    job: IngestionJob | None = None
    last_success: float | None = None  # wall clock, for the exported timestamp
    last_success_mono: float | None = None
    error: str | None = None
    retry_at: float | None = None  # monotonic; the API asked us not to come back before
    in_flight: Future | None = field(default=None, repr=False)


class JobPoller:
    def __init__(self, job_ids: Sequence[str], client: SeekrFlowClient, settings: ScrapeConfig,
                 max_concurrency: int, request_timeout: float,
                 wall_clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic,
                 discovery: DiscoveryConfig | None = None):
        self._configured = tuple(job_ids)
        self._discovery = discovery if discovery is not None and discovery.enabled else None
        self._discovered: tuple[str, ...] = ()
        self._listed_at: float | None = None
        self._list_in_flight: Future | None = None
        self._discovery_ok: bool | None = None
        self._client = client
        self._settings = settings
        self._request_timeout = request_timeout
        self._wall_clock = wall_clock
        self._monotonic = monotonic
        self._pool = _FetchPool(max_concurrency)
        self._states = {job_id: _JobState() for job_id in self._configured}
        self._refresh_lock = threading.Lock()
        self._refreshed_at: float | None = None
        self._api_up: bool | None = None
        self._result = ScrapeResult(tuple(JobSnapshot(j, None, False) for j in self._configured), None)

    @property
    def job_ids(self) -> tuple[str, ...]:
        """The configured jobs, then the discovered ones not configured."""
        configured = set(self._configured)
        return self._configured + tuple(j for j in self._discovered if j not in configured)

    def scrape(self, deadline: float) -> ScrapeResult:
        """The freshest result obtainable by ``deadline`` (a ``monotonic`` time)."""
        if not self._refresh_lock.acquire(timeout=max(deadline - self._monotonic(), 0.0)):
            return self._result  # another scrape holds the refresh past our deadline
        try:
            now = self._monotonic()
            if self._refreshed_at is None or now - self._refreshed_at >= self._settings.cache_ttl:
                self._refresh(deadline)
                self._refreshed_at = self._monotonic()
            return self._result
        finally:
            self._refresh_lock.release()

    def close(self) -> None:
        # A scrape still refreshing (say, across a reload) finishes first; it is bounded by its deadline.
        with self._refresh_lock:
            self._pool.shutdown()
            self._client.close()

    def _refresh(self, deadline: float) -> None:
        now = self._monotonic()
        answered, key_accepted = self._collect_late_answers()
        listing = self._start_listing(now)
        due = [job_id for job_id in self.job_ids if self._is_due(self._states[job_id], now)]
        # Oldest data first: when the pool cannot serve every job before the deadline, the jobs
        # left out this time are served first next time, so none goes dark for good.
        due.sort(key=lambda job_id: self._states[job_id].last_success_mono or float("-inf"))
        submitted: dict[Future, str] = {}
        for job_id in due:
            state = self._states[job_id]
            if state.in_flight is None:
                state.in_flight = self._pool.submit(self._fetch, job_id)
            submitted[state.in_flight] = job_id
        done, _ = wait(list(submitted) + ([listing] if listing else []),
                       timeout=max(deadline - self._monotonic(), 0.0))
        if listing is not None and listing in done:
            # The list goes first: the jobs' own answers this round are at least as new.
            self._list_in_flight = None
            answered += 1
            listed = listing.result()
            key_accepted = key_accepted or listed.failure is None or _key_accepted(listed.failure)
            self._accept_list(listed)
        for future, job_id in submitted.items():
            if future in done:
                self._states[job_id].in_flight = None
                result = future.result()
                key_accepted = key_accepted or _key_accepted(result)
            else:
                if future.cancel():  # never started: free its place in the pool
                    self._states[job_id].in_flight = None
                result = FetchResult(job_id, None, "timeout", "no answer before the scrape deadline")
            self._apply(job_id, result)
        if submitted or answered:
            self._api_up = key_accepted
        watched = set(self.job_ids)
        for job_id in [j for j in self._states if j not in watched]:
            del self._states[job_id]  # no longer listed (or too old): its series go
        now = self._monotonic()
        discovery = None if self._discovery is None else DiscoveryStatus(self._discovery_ok, len(self._discovered))
        self._result = ScrapeResult(tuple(self._snapshot(j, now) for j in self.job_ids), self._api_up, discovery)

    def _start_listing(self, now: float) -> Future | None:
        """The job-list request of this round, if discovery is on and the list is due."""
        if self._discovery is None:
            return None
        if self._list_in_flight is None:
            if self._listed_at is not None and now - self._listed_at < self._discovery.interval:
                return None
            self._list_in_flight = self._pool.submit(self._client.list_jobs, self._request_timeout)
        return self._list_in_flight

    def _accept_list(self, listed: ListResult) -> None:
        if listed.failure is not None:
            if self._discovery_ok is not False:
                log.warning("job list failed", extra={"fields": {
                    "reason": listed.failure.reason, "detail": listed.failure.detail}})
            self._discovery_ok = False
            return  # keep the jobs found before; ask again next round
        self._discovery_ok, self._listed_at = True, self._monotonic()
        jobs, invalid = watched_jobs(listed, self._wall_clock(), self._discovery.max_age)
        previous = set(self._discovered)
        self._discovered = tuple(sorted({job.id for job in jobs} | set(invalid)))
        for job in jobs:
            self._state(job.id)
            self._apply(job.id, FetchResult(job.id, job, http_status=200))
        for job_id, detail in invalid.items():
            self._state(job_id)
            self._apply(job_id, FetchResult(job_id, None, "invalid_schema", detail, 200))
        if set(self._discovered) != previous:
            log.info("job list read", extra={"fields": {"discovered": len(self._discovered)}})

    def _state(self, job_id: str) -> _JobState:
        return self._states.setdefault(job_id, _JobState())

    def _fetch(self, job_id: str) -> FetchResult:
        # The request gets its full time even past the scrape's deadline: a slow API then still
        # yields data, one scrape late, rather than never.
        return self._client.fetch_job(job_id, self._request_timeout)

    def _collect_late_answers(self) -> tuple[int, bool]:
        """Apply fetches that finished after their scrape's deadline: they are the newest data."""
        count, key_accepted = 0, False
        for job_id, state in self._states.items():
            if state.in_flight is not None and state.in_flight.done():
                result = state.in_flight.result()
                state.in_flight = None
                count += 1
                key_accepted = key_accepted or _key_accepted(result)
                self._apply(job_id, result)
        return count, key_accepted

    def _is_due(self, state: _JobState, now: float) -> bool:
        if state.retry_at is not None and now < state.retry_at:
            return False
        if state.job is None or state.error is not None or not state.job.is_settled:
            return True
        return now - state.last_success_mono >= self._settings.finished_job_refresh

    def _apply(self, job_id: str, result: FetchResult) -> None:
        state = self._states[job_id]
        if result.job is not None:
            if state.error is not None:
                log.info("fetch recovered", extra={"fields": {"job_id": job_id}})
            state.job, state.error, state.retry_at = result.job, None, None
            state.last_success, state.last_success_mono = self._wall_clock(), self._monotonic()
            return
        level = logging.WARNING if state.error != result.reason else logging.DEBUG
        log.log(level, "fetch failed", extra={"fields": {
            "job_id": job_id, "reason": result.reason, "detail": result.detail}})
        state.error = result.reason
        state.retry_at = None if result.retry_after is None else (
            self._monotonic() + min(result.retry_after, MAX_RETRY_AFTER))

    def _snapshot(self, job_id: str, now: float) -> JobSnapshot:
        state = self._states[job_id]
        job = state.job
        if state.error is not None and (
                state.last_success_mono is None or now - state.last_success_mono > self._settings.serve_stale_for):
            job = None  # too old to stand in for the failing fetch
        return JobSnapshot(job_id, job, fresh=state.error is None and job is not None,
                           error=state.error, last_success=state.last_success)


class _FetchPool:
    """A fixed set of daemon worker threads.

    Unlike ThreadPoolExecutor, whose workers are joined at interpreter exit, a request still
    waiting on a slow API cannot hold up the exporter's shutdown.
    """

    def __init__(self, workers: int):
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        for number in range(workers):
            threading.Thread(target=self._work, name=f"fetch-{number}", daemon=True).start()
        self._workers = workers

    def submit(self, fn: Callable, *args) -> Future:
        future: Future = Future()
        self._tasks.put((fn, args, future))
        return future

    def shutdown(self) -> None:
        for _ in range(self._workers):
            self._tasks.put(None)

    def _work(self) -> None:
        while (task := self._tasks.get()) is not None:
            fn, args, future = task
            if not future.set_running_or_notify_cancel():
                continue  # cancelled while it waited
            try:
                future.set_result(fn(*args))
            except BaseException as err:  # noqa: BLE001 - handed to whoever waits on the future
                future.set_exception(err)


def _key_accepted(result: FetchResult) -> bool:
    status = result.http_status
    return status is not None and status < 500 and status not in (401, 403)
