"""Fetch the watched jobs for a scrape: concurrently, within the deadline, shared between scrapes.

- Concurrent scrapes (two Prometheus replicas) wait on one lock; the second finds the first one's
  result still within ``cache_ttl`` and reuses it, so the API sees one round of requests.
- A settled job (finished, every record finished) cannot change any more; it is re-read only every
  ``finished_job_refresh``, so in the steady state a scrape costs one request per unfinished job.
- A request still running at the deadline keeps going (up to ``api.timeout``). It is no failure
  while the job has data; its answer is used by the next round.
- A failed fetch keeps the job's last good data for ``serve_stale_for``, marked not fresh; a 429
  or 503 with Retry-After is honoured (jobstate.py).
- With discovery on, the job list is read alongside the jobs due (joblist.py); it adds the jobs
  it finds.
- With data jobs on, the data jobs are fetched alongside (datajobwatch.py); their answers feed
  their ingestion jobs, which are then not fetched on their own in that round.
- A round answers before the deadline when only stragglers are left (stragglers.py); their
  answers, when they come, serve a later round.

This module keeps the round, the lock, close and the hand-over on reload; each job's state is a
``JobState``, the list reads are a ``JobList``, answers are applied by an ``Intake`` (intake.py)
and what a reload carries over is a ``Handover`` (handover.py).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from functools import partial
from typing import Callable, Sequence

from .client import SeekrFlowClient
from .config import ApiConfig, DataJobsConfig, DiscoveryConfig, ScrapeConfig
from .datajobwatch import DataJobWatch
from .handover import Handover, carried_job_list, carry_data_jobs, carry_jobs, handover_of
from .intake import Intake, Keeper, Tally
from .joblist import JobList
from .jobstate import JobState
from .model import JobSnapshot
from .pool import FetchPool
from .results import FetchResult, ScrapeResult
from .sharding import Shard
from .stragglers import AnswerWait, WaitUntil

# The requests sent in a round, each with the state of the job it asks for.
Submitted = dict[Future, JobState]


class JobPoller:
    def __init__(self, job_ids: Sequence[str], client: SeekrFlowClient, settings: ScrapeConfig, api: ApiConfig,
                 discovery: DiscoveryConfig | None = None,
                 wall_clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic,
                 wait_until: WaitUntil | None = None,
                 data_jobs: DataJobsConfig | None = None, pool: FetchPool | None = None,
                 keeper: Keeper | None = None, shard: Shard = Shard()):
        """``wait_until`` goes with ``monotonic``: a clock that is not real time brings one that lets
        a round's deadline come when that clock says (by default, real time on ``monotonic``).

        ``pool``: the workers, shared with the pollers before and after a reload so that requests
        in flight never exceed ``api.max_concurrency`` whatever the reloads; by default the poller
        has workers of its own, shut down with it.

        ``keeper``: what to keep of a job's answer (rendered, without records), made in the fetch
        worker as the answer arrives."""
        # Sharded, this poller watches only its own jobs, configured or found (sharding.py).
        self._shard = shard
        self._owns = shard.owns if shard.sharded else None
        self._configured = tuple(job_id for job_id in job_ids if shard.owns(job_id))
        self._client = client
        self._settings = settings
        self._request_timeout = api.request_timeout
        self._discovery = discovery if discovery is not None and discovery.enabled else None
        self._wall_clock = wall_clock
        self._monotonic = monotonic
        self._wait = AnswerWait(monotonic, wait_until)
        self._owns_pool = pool is None
        self._pool: FetchPool | None = pool if pool is not None else FetchPool(api.max_concurrency, monotonic)
        self._states = {job_id: JobState(job_id) for job_id in self._configured}
        self._intake = Intake(self._states, keeper, shard, wall_clock, monotonic)
        self._job_list = (JobList(self._discovery, max_jobs=self._discovery.max_jobs, owns=self._owns)
                          if self._discovery is not None else None)
        # The data-job list uses discovery's interval and max_age, whether or not discovery is on.
        self._data = (DataJobWatch(data_jobs, discovery or DiscoveryConfig())
                      if data_jobs is not None and data_jobs.active else None)
        self._refresh_lock = threading.Lock()
        self._closed = False
        self._previous: JobPoller | None = None
        self._refreshed_at: float | None = None
        self._api_up: bool | None = None
        self._result = ScrapeResult(tuple(JobSnapshot(j, None, False) for j in self._configured), None)

    @property
    def job_ids(self) -> tuple[str, ...]:
        """The configured jobs, then the discovered ones, then those of the watched data jobs."""
        ids = dict.fromkeys(self._configured)
        if self._job_list is not None:
            ids.update(dict.fromkeys(j for j in self._job_list.job_ids if self._shard.owns(j)))
        if self._data is not None:
            # An ingestion job is its own ID's, nested or not (docs/scaling.md): the shard that owns
            # a data job keeps only its own of the data job's ingestion jobs.
            ids.update(dict.fromkeys(job_id for job_id, _ in self._data.links() if self._shard.owns(job_id)))
        return tuple(ids)

    @property
    def watches_data_jobs(self) -> bool:
        return self._data is not None

    def take_over(self, previous: JobPoller) -> None:
        """Continue from what ``previous`` knew (same API, reloaded settings): no cold start.

        The copy waits for the first scrape: ``previous`` may be in the middle of one, and the
        reload must not wait for it.
        """
        self._previous = previous

    def handover(self, deadline: float) -> Handover | None:
        """What this poller knows, once no scrape of it is running; None if one still is at ``deadline``.

        A poller replaced before its first scrape has not taken over from its own predecessor yet:
        it does so now, so what was known survives any number of reloads between two scrapes.
        """
        if not self._refresh_lock.acquire(timeout=max(deadline - self._monotonic(), 0.0)):
            return None
        try:
            self._take_over_previous(deadline)
            return handover_of(self._api_up, self._states, self._job_list, self._data)
        finally:
            self._release()

    def scrape(self, deadline: float) -> ScrapeResult:
        """The freshest result obtainable by ``deadline`` (a ``monotonic`` time)."""
        if not self._refresh_lock.acquire(timeout=max(deadline - self._monotonic(), 0.0)):
            return self._result  # another scrape holds the refresh past our deadline
        try:
            if self._closed:
                return self._result  # replaced by a reload while this scrape waited
            self._take_over_previous(deadline)
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

    def _take_over_previous(self, deadline: float) -> None:
        """Called with the refresh lock held."""
        if self._previous is not None:
            previous, self._previous = self._previous, None
            # Still busy at our deadline: start cold rather than miss it.
            carried = previous.handover(deadline)
            if carried is not None:
                self._job_list = carried_job_list(self._discovery, carried.job_list, self._job_list, self._owns)
                self._api_up = carried.api_up
                carry_data_jobs(self._data, carried.data_jobs)
                carry_jobs(carried.jobs, set(self.job_ids), self._states, self._intake.serves)

    def _shut_down(self) -> None:
        if self._pool is not None:  # only once
            if self._owns_pool:
                self._pool.shutdown()
            # Requests still on their way finish on their connections, which then close.
            self._client.close()
            self._pool = None

    def _refresh(self, deadline: float) -> None:
        pool = self._pool
        assert pool is not None  # shut down only once closed, and a closed poller does not refresh
        now = self._monotonic()
        tally = self._intake.late_answers(self._data.states.values() if self._data is not None else ())
        listing = self._request_job_list(pool, now)
        data_listing, data_submitted, covered = self._request_data_jobs(pool, now)
        submitted = self._request_due_jobs(pool, now, covered)
        self._read_job_list(pool, listing, deadline, tally, submitted)
        self._read_data_job_list(pool, data_listing, deadline, tally, data_submitted)
        unanswered = self._take_answers(data_submitted, submitted, now, deadline, tally)
        # A request still on its way for a job that has data says nothing about the API yet.
        if tally.answered or unanswered:
            self._api_up = tally.key_accepted
        self._prune()
        self._result = self._round_result()

    def _request_job_list(self, pool: FetchPool, now: float) -> Future | None:
        job_list = self._job_list
        if job_list is None:
            return None
        # The list is judged as it streams in, so only what may be watched is kept of it.
        return job_list.request(now, lambda: pool.submit(
            self._client.list_jobs, job_list.timeout, job_list.keeper(self._wall_clock())))

    def _request_data_jobs(self, pool: FetchPool, now: float) -> tuple[Future | None, Submitted, set[str]]:
        """The data-job list read (if due), this shard's data jobs due, and the ingestion jobs their
        answers bring (not fetched on their own this round)."""
        data_listing = None
        data_submitted: Submitted = {}
        if self._data is None:
            return data_listing, data_submitted, set()
        data_list = self._data.job_list
        if data_list is not None:  # every page within discovery.timeout, as the job list
            data_listing = data_list.request(
                now, lambda: pool.submit(self._client.list_data_jobs, data_list.timeout))
        data_due = [s for s in self._data.watched_states()
                    if self._shard.owns(s.job_id) and s.is_due(now, self._settings.finished_job_refresh)]
        for state in data_due:
            self._submit(pool, state, data_submitted, self._client.fetch_data_job)
        return data_listing, data_submitted, self._data.covered(data_due)

    def _request_due_jobs(self, pool: FetchPool, now: float, covered: set[str]) -> Submitted:
        for job_id in self.job_ids:
            self._states.setdefault(job_id, JobState(job_id))
        due = [job_id for job_id in self.job_ids
               if job_id not in covered and self._states[job_id].is_due(now, self._settings.finished_job_refresh)]
        # Longest unanswered first: when the pool cannot serve every job before the deadline, the
        # jobs left out this time are served first next time, so none goes dark for good. An
        # answered failure counts as an answer, or jobs that never get data would take every turn.
        due.sort(key=lambda job_id: self._states[job_id].answered_from)
        submitted: Submitted = {}
        for job_id in due:
            self._submit(pool, self._states[job_id], submitted)
        return submitted

    def _read_job_list(self, pool: FetchPool, listing: Future | None, deadline: float, tally: Tally,
                       submitted: Submitted) -> None:
        # The list first (the jobs' requests run meanwhile): a job it shows without records
        # is fetched on its own, still in this round.
        if listing is None or listing not in self._wait.until([listing], deadline):
            return
        assert self._job_list is not None
        started, listed = listing.result()
        tally.count(listed.key_accepted)
        for job_id in self._intake.accept_list(self._job_list, started, listed, self._settings.finished_job_refresh):
            self._submit(pool, self._states[job_id], submitted)

    def _read_data_job_list(self, pool: FetchPool, data_listing: Future | None, deadline: float, tally: Tally,
                            data_submitted: Submitted) -> None:
        if data_listing is None or data_listing not in self._wait.until([data_listing], deadline):
            return
        assert self._data is not None
        started, listed = data_listing.result()
        tally.count(listed.key_accepted)
        for job_id in self._data.accept_list(started, listed, self._monotonic(), self._wall_clock(),
                                             self._settings.finished_job_refresh):
            if self._shard.owns(job_id):
                self._submit(pool, self._data.states[job_id], data_submitted, self._client.fetch_data_job)

    def _take_answers(self, data_submitted: Submitted, submitted: Submitted, now: float, deadline: float,
                      tally: Tally) -> int:
        """Apply the answers ready by the deadline; how many jobs without data got none."""
        # Ready means parsed (and rendered) by the deadline: a later one waits for the next round.
        done = {future for future in self._wait.answers(list(submitted) + list(data_submitted), deadline,
                                                        deadline - now)
                if future.result()[1][1] <= deadline}
        unanswered = 0
        # Data jobs first: their answers feed their ingestion jobs, which the jobs' own answers
        # (ordered by when each request started) may then replace.
        for future, state in [*data_submitted.items(), *submitted.items()]:
            if future in done:
                state.in_flight = None
                started, (result, _) = future.result()
                tally.count(result.key_accepted)
                self._intake.take(state, started, result)
            else:
                if future.cancel():  # never started: free its place in the pool
                    state.in_flight = None
                if state.job is None:
                    unanswered += 1
                    state.note_failure(FetchResult(state.job_id, None, "timeout", "no answer before the scrape deadline"))
        return unanswered

    def _prune(self) -> None:
        if self._data is not None:
            self._data.prune()
        watched = set(self.job_ids)
        for job_id in [j for j in self._states if j not in watched]:
            del self._states[job_id]  # no longer listed (or too old): its series go

    def _round_result(self) -> ScrapeResult:
        now = self._monotonic()
        snapshots = tuple(self._states[j].snapshot(now, self._settings.serve_stale_for) for j in self.job_ids)
        discovery = None if self._job_list is None else self._job_list.status
        data_jobs: tuple[JobSnapshot, ...] = ()
        data_job_discovery = None
        if self._data is not None:
            data_jobs = tuple(s for s in self._data.snapshots(now, self._settings.serve_stale_for)
                              if self._shard.owns(s.job_id))
            data_job_discovery = None if self._data.job_list is None else self._data.job_list.status
        return ScrapeResult(snapshots, self._api_up, discovery, data_jobs, data_job_discovery)

    def _submit(self, pool: FetchPool, state: JobState, submitted: Submitted,
                fetch: Callable[[str, float], FetchResult] | None = None) -> None:
        if state.in_flight is None:
            if fetch is None:
                fetch = partial(self._client.fetch_job, known=self._intake.reusable(state.job))
            state.in_flight = pool.submit(self._ready, fetch, state.job_id)
        submitted[state.in_flight] = state

    def _ready(self, fetch: Callable[[str, float], FetchResult], job_id: str) -> tuple[FetchResult, float]:
        """In a worker: fetch, parse and render the job; (result, when it was ready)."""
        return self._intake.kept(fetch(job_id, self._request_timeout)), self._monotonic()
