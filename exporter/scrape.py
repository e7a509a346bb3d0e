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
- A round answers before the deadline when only stragglers are left: requests that have run more
  than ``STRAGGLER_FACTOR`` (4) times as long as the slowest answer of the same round (or of the
  latest round that had answers), and at least a quarter of the round's budget (at least 1 s), so
  a job that is merely slow is not taken for a hung one. Their jobs keep
  their last data (or show ``reason="timeout"`` if they have none); their answers, when they come,
  serve a later round. With no answer to judge by, or a request still waiting for a worker, the
  round waits on: nothing says they are hung.

This module keeps the round, the lock, close and the hand-over on reload; each job's state is a
``JobState``, and the list reads are a ``JobList``.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, wait
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import AbstractSet, Callable, Collection, Mapping, Protocol, Sequence

from .client import SeekrFlowClient
from .config import ApiConfig, DataJobsConfig, DiscoveryConfig, ScrapeConfig
from .datajob import DataJob
from .datajobwatch import DataJobWatch, KnownDataJobs
from .joblist import JobList, KnownList
from .jobstate import JobState, KnownJob
from .model import IngestionJob, JobSnapshot, RenderedJob
from .pool import FetchPool, TimedFuture
from .results import FetchResult, ListResult, ScrapeResult
from .sharding import Shard

# A request is a straggler once it has run this many times longer than the slowest answer of its
# round, and at least STRAGGLER_MIN_SECONDS; a round with only stragglers left answers at once.
STRAGGLER_FACTOR = 4.0
STRAGGLER_MIN_SECONDS = 1.0
# ... and at least this share of the round's budget: a slow job is not taken for a hung one.
STRAGGLER_BUDGET_SHARE = 0.25
STRAGGLER_CHECK_EVERY = 0.1


def _slowest_answer(done: AbstractSet[Future]) -> float | None:
    """How long the slowest of these answered requests took; None if none has timing."""
    taken = [f.finished_at - f.started_at for f in done
             if isinstance(f, TimedFuture) and f.started_at is not None and f.finished_at is not None]
    return max(taken, default=None)


def _only_stragglers(pending: AbstractSet[Future], slowest: float | None, now: float, floor: float) -> bool:
    """Whether every request still pending has started and run far past ``slowest`` (the slowest
    answer of this round, or of the last round that had answers). Without any answer to judge by,
    or with a request still waiting for a worker (it may yet answer quickly), the round waits on."""
    if slowest is None:
        return False
    limit = max(STRAGGLER_FACTOR * slowest, floor)
    return all(isinstance(f, TimedFuture) and f.started_at is not None and now - f.started_at > limit
               for f in pending)


@dataclass(frozen=True)
class Handover:
    """What a poller knew, for the poller that replaces it on a reload of the same workspace."""

    api_up: bool | None
    jobs: Mapping[str, KnownJob]
    job_list: KnownList | None
    data_jobs: KnownDataJobs | None = None


# ``wait_until(futures, deadline)``: the futures done by ``deadline`` (a ``monotonic`` time), returned
# once all are done or the deadline has come.
WaitUntil = Callable[[Collection[Future], float], AbstractSet[Future]]


class Keeper(Protocol):
    """Turns a settled job into what is kept of it (exposition.Renderer): rendered, without records."""

    def render_settled(self, job_id: str, job: IngestionJob, now: float | None = None) -> RenderedJob: ...

    def serves(self, job: RenderedJob) -> bool:
        """Whether ``job`` was rendered the way this keeper renders (same metrics settings)."""
        ...


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
        has workers of its own, shut down with it."""
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
        self._wait_until = wait_until or self._wait_in_real_time
        # What to keep of a settled job, made in the fetch worker as its answer arrives.
        self._keeper = keeper
        self._owns_pool = pool is None
        self._pool: FetchPool | None = pool if pool is not None else FetchPool(api.max_concurrency, monotonic)
        self._states = {job_id: JobState(job_id) for job_id in self._configured}
        self._job_list = (JobList(self._discovery, max_jobs=self._discovery.max_jobs, owns=self._owns)
                          if self._discovery is not None else None)
        # The data-job list uses discovery's interval and max_age, whether or not discovery is on.
        self._data = (DataJobWatch(data_jobs, discovery or DiscoveryConfig())
                      if data_jobs is not None and data_jobs.active else None)
        self._refresh_lock = threading.Lock()
        self._slowest_answer: float | None = None  # of the latest round with answers: what "slow" means
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
            return Handover(self._api_up,
                            MappingProxyType({job_id: state.known() for job_id, state in self._states.items()}),
                            None if self._job_list is None else self._job_list.known(),
                            None if self._data is None else self._data.known())
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
                self._carry_over(carried)

    def _carry_over(self, carried: Handover) -> None:
        if self._discovery is not None and carried.job_list is not None:
            self._job_list = JobList(self._discovery, carried.job_list, max_jobs=self._discovery.max_jobs,
                                    owns=self._owns)
        elif carried.job_list is not None and carried.job_list.in_flight is not None:
            carried.job_list.in_flight.cancel()  # discovery is off now: a list read still queued is dropped
        self._api_up = carried.api_up
        if self._data is not None and carried.data_jobs is not None:
            self._data.carry_over(carried.data_jobs)
        elif carried.data_jobs is not None:
            carried.data_jobs.cancel()  # data jobs are off now: requests still queued are dropped
        watched = set(self.job_ids)
        for job_id, known in carried.jobs.items():
            if job_id in watched and isinstance(known.job, RenderedJob) and not self._serves(known.job):
                continue  # rendered for other metrics settings: fetched again, as if new
            if job_id in watched:
                # Its request in flight, if any, is waited for rather than sent again.
                self._states[job_id] = JobState.carried_over(job_id, known)
            elif known.in_flight is not None:
                known.in_flight.cancel()  # no longer watched: if it has not started, it never will

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
        answered, key_accepted = self._collect_late_answers()
        listing = None
        job_list = self._job_list
        if job_list is not None:
            # The list is judged as it streams in, so only what may be watched is kept of it.
            listing = job_list.request(now, lambda: pool.submit(
                self._client.list_jobs, job_list.timeout, job_list.keeper(self._wall_clock())))
        data_listing = None
        data_submitted: dict[Future, JobState] = {}
        covered: set[str] = set()
        if self._data is not None:
            data_list = self._data.job_list
            if data_list is not None:  # every page within discovery.timeout, as the job list
                data_listing = data_list.request(
                    now, lambda: pool.submit(self._client.list_data_jobs, data_list.timeout))
            data_due = [s for s in self._data.watched_states()
                        if self._shard.owns(s.job_id) and s.is_due(now, self._settings.finished_job_refresh)]
            for state in data_due:
                self._submit(pool, state, data_submitted, self._client.fetch_data_job)
            covered = self._data.covered(data_due)
        for job_id in self.job_ids:
            self._states.setdefault(job_id, JobState(job_id))
        due = [job_id for job_id in self.job_ids
               if job_id not in covered and self._states[job_id].is_due(now, self._settings.finished_job_refresh)]
        # Oldest data first: when the pool cannot serve every job before the deadline, the jobs
        # left out this time are served first next time, so none goes dark for good.
        due.sort(key=lambda job_id: self._states[job_id].data_from or float("-inf"))
        submitted: dict[Future, JobState] = {}
        for job_id in due:
            self._submit(pool, self._states[job_id], submitted)
        unanswered = 0  # jobs with no data whose request missed the deadline
        if listing is not None:
            # The list first (the jobs' requests run meanwhile): a job it shows without records
            # is fetched on its own, still in this round.
            if listing in self._wait_until([listing], deadline):
                started, listed = listing.result()
                answered += 1
                key_accepted = key_accepted or listed.key_accepted
                for job_id in self._accept_list(started, listed):
                    self._submit(pool, self._states[job_id], submitted)
        if data_listing is not None and data_listing in self._wait_until([data_listing], deadline):
            assert self._data is not None
            started, listed = data_listing.result()
            answered += 1
            key_accepted = key_accepted or listed.key_accepted
            for job_id in self._data.accept_list(started, listed, self._monotonic(), self._wall_clock(),
                                                 self._settings.finished_job_refresh):
                if self._shard.owns(job_id):
                    self._submit(pool, self._data.states[job_id], data_submitted, self._client.fetch_data_job)
        # Ready means parsed (and rendered) by the deadline: a later one waits for the next round.
        done = {future for future in self._wait_for_answers(list(submitted) + list(data_submitted), deadline,
                                                                 deadline - now)
                if future.result()[1][1] <= deadline}
        # Data jobs first: their answers feed their ingestion jobs, which the jobs' own answers
        # (ordered by when each request started) may then replace.
        for future, state in [*data_submitted.items(), *submitted.items()]:
            if future in done:
                state.in_flight = None
                started, (result, _) = future.result()
                answered += 1
                key_accepted = key_accepted or result.key_accepted
                self._take(state, started, result)
            else:
                if future.cancel():  # never started: free its place in the pool
                    state.in_flight = None
                if state.job is None:
                    unanswered += 1
                    state.note_failure(FetchResult(state.job_id, None, "timeout", "no answer before the scrape deadline"))
        # A request still on its way for a job that has data says nothing about the API yet.
        if answered or unanswered:
            self._api_up = key_accepted
        if self._data is not None:
            self._data.prune()
        watched = set(self.job_ids)
        for job_id in [j for j in self._states if j not in watched]:
            del self._states[job_id]  # no longer listed (or too old): its series go
        now = self._monotonic()
        snapshots = tuple(self._states[j].snapshot(now, self._settings.serve_stale_for) for j in self.job_ids)
        discovery = None if self._job_list is None else self._job_list.status
        data_jobs: tuple[JobSnapshot, ...] = ()
        data_job_discovery = None
        if self._data is not None:
            data_jobs = tuple(s for s in self._data.snapshots(now, self._settings.serve_stale_for)
                              if self._shard.owns(s.job_id))
            data_job_discovery = None if self._data.job_list is None else self._data.job_list.status
        self._result = ScrapeResult(snapshots, self._api_up, discovery, data_jobs, data_job_discovery)

    def _wait_for_answers(self, futures: list[Future], deadline: float, budget: float) -> AbstractSet[Future]:
        """The futures done by ``deadline``; sooner once only stragglers are left (module docstring)."""
        floor = max(STRAGGLER_MIN_SECONDS, STRAGGLER_BUDGET_SHARE * budget)
        pending: set[Future] = set(futures)
        done: set[Future] = set()
        while pending:
            now = self._monotonic()
            if now >= deadline:
                break
            newly = self._wait_until(pending, min(deadline, now + STRAGGLER_CHECK_EVERY))
            done |= newly
            pending -= newly
            slowest = _slowest_answer(done)
            if slowest is not None:
                self._slowest_answer = slowest
            if pending and _only_stragglers(pending, self._slowest_answer, self._monotonic(), floor):
                break
        return done

    def _wait_in_real_time(self, futures: Collection[Future], deadline: float) -> AbstractSet[Future]:
        return wait(futures, timeout=max(deadline - self._monotonic(), 0.0)).done

    def _submit(self, pool: FetchPool, state: JobState, submitted: dict[Future, JobState],
                fetch: Callable[[str, float], FetchResult] | None = None) -> None:
        if state.in_flight is None:
            state.in_flight = pool.submit(self._ready, fetch or self._client.fetch_job, state.job_id)
        submitted[state.in_flight] = state

    def _ready(self, fetch: Callable[[str, float], FetchResult], job_id: str) -> tuple[FetchResult, float]:
        """In a worker: fetch, parse and, for a settled job, render it; (result, when it was ready)."""
        return self._kept(fetch(job_id, self._request_timeout)), self._monotonic()

    def _kept(self, result: FetchResult) -> FetchResult:
        job = result.job
        if self._keeper is None or not isinstance(job, IngestionJob) or not job.is_settled:
            return result
        return replace(result, job=self._keeper.render_settled(result.job_id, job, self._wall_clock()))

    def _serves(self, job: RenderedJob) -> bool:
        return self._keeper is not None and self._keeper.serves(job)

    def _take(self, state: JobState, started: float, result: FetchResult) -> None:
        """Apply an answer; a data job's also brings the data of its ingestion jobs."""
        if isinstance(result.job, RenderedJob) and not self._serves(result.job):
            return  # rendered before a reload that changed the metrics settings: asked again next round
        wall_now, now = self._wall_clock(), self._monotonic()
        state.apply(started, result, wall_now, now)
        if isinstance(result.job, DataJob) and state.job is result.job:
            for nested in result.job.watchable_ingestion_jobs:
                if not self._shard.owns(nested.id):
                    continue  # another shard's: it reads that job from the job list or on its own
                self._states.setdefault(nested.id, JobState(nested.id)).apply(
                    started, self._kept(FetchResult(nested.id, nested, http_status=200)), wall_now, now, from_list=True)

    def _collect_late_answers(self) -> tuple[int, bool]:
        """Apply answers that arrived after their scrape's deadline: they may be the newest data."""
        count, key_accepted = 0, False
        data_states = list(self._data.states.values()) if self._data is not None else []
        for state in [*data_states, *self._states.values()]:
            if state.in_flight is not None and state.in_flight.done():
                started, (result, _) = state.in_flight.result()
                state.in_flight = None
                count += 1
                key_accepted = key_accepted or result.key_accepted
                self._take(state, started, result)
        return count, key_accepted

    def _accept_list(self, started: float, listed: ListResult) -> list[str]:
        """Take the list's answer; the IDs of the watched jobs that need their own fetch now."""
        assert self._job_list is not None
        self._job_list.answered()
        held = {job_id: state.job for job_id, state in self._states.items()
                if isinstance(state.job, (IngestionJob, RenderedJob))}
        watch = self._job_list.accept(listed, self._monotonic(), self._wall_clock(), held)
        if watch is None:
            return []
        jobs, invalid = watch
        wall_now, now = self._wall_clock(), self._monotonic()
        fetch_now = []
        for job in jobs:
            state = self._states.setdefault(job.id, JobState(job.id))
            if job.records_known:  # the list's copy is as good as the job's own answer
                state.apply(started, self._kept(FetchResult(job.id, job, http_status=200)), wall_now, now,
                            from_list=True)
            elif state.job is None and state.is_due(now, self._settings.finished_job_refresh):
                # Listed without records: never replaces records held, and without any the job
                # is fetched on its own, so its first scrape shows its files.
                fetch_now.append(job.id)
        for job_id, detail in invalid.items():
            state = self._states.setdefault(job_id, JobState(job_id))
            state.apply(started, FetchResult(job_id, None, "invalid_schema", detail, 200), wall_now, now, from_list=True)
        return fetch_now
