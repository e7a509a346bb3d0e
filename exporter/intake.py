"""How answers change the watched jobs: a job's own answer, a data job's (it brings its ingestion
jobs), a read of the job list, and answers that came after their round's deadline."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Iterable, Protocol

from .datajob import DataJob
from .joblist import JobList
from .jobstate import JobState
from .model import IngestionJob, RenderedJob
from .results import FetchResult, ListResult
from .sharding import Shard


class Keeper(Protocol):
    """Turns a job's answer into what is kept of it (exposition.Renderer): rendered, without records."""

    def render_kept(self, job_id: str, job: IngestionJob, now: float | None = None,
                    digest: bytes | None = None) -> RenderedJob: ...

    def trimmed(self, job: RenderedJob, now: float) -> RenderedJob:
        """A kept settled job without what it no longer exports at ``now`` (per-file series past
        metrics.per_file_window under metrics.per_file: recent)."""
        ...

    def serves(self, job: RenderedJob) -> bool:
        """Whether ``job`` was rendered the way this keeper renders (same metrics settings)."""
        ...


@dataclass
class Tally:
    """The answers of a round so far, and whether any of them says the API took the key."""

    answered: int = 0
    key_accepted: bool = False

    def count(self, key_accepted: bool) -> None:
        self.answered += 1
        self.key_accepted = self.key_accepted or key_accepted


class Intake:
    """Applies answers to ``states`` (the poller's ingestion jobs, by ID), keeping only this shard's."""

    def __init__(self, states: dict[str, JobState], keeper: Keeper | None, shard: Shard,
                 wall_clock: Callable[[], float], monotonic: Callable[[], float]):
        self._states = states
        self._keeper = keeper
        self._shard = shard
        self._wall_clock = wall_clock
        self._monotonic = monotonic

    def kept(self, result: FetchResult) -> FetchResult:
        """What is kept of an answer: the job rendered, without its records.

        A settled job always; an unfinished one only from its own answer (which has a digest),
        rendered in the fetch worker before the round's deadline. An unfinished job's copy in the
        job list or in a data job is left to the scrape, which renders it within its deadline, and
        the job's own answer replaces it in the same round.
        """
        job = result.job
        if self._keeper is not None and isinstance(job, RenderedJob) and job.is_settled:
            # The same answer as the kept job: under metrics.per_file: recent, its per-file text
            # goes once the window has passed.
            return replace(result, job=self._keeper.trimmed(job, self._wall_clock()))
        if self._keeper is None or not isinstance(job, IngestionJob) or \
                not (job.is_settled or result.digest is not None):
            return result
        return replace(result, job=self._keeper.render_kept(result.job_id, job, self._wall_clock(), result.digest))

    def serves(self, job: RenderedJob) -> bool:
        return self._keeper is not None and self._keeper.serves(job)

    def reusable(self, job: object) -> RenderedJob | None:
        """``job`` if an answer with the same body may stand for it again: a job rendered as this
        keeper renders, from an answer of its own."""
        return job if isinstance(job, RenderedJob) and job.digest is not None and self.serves(job) else None

    def take(self, state: JobState, started: float, result: FetchResult) -> None:
        """Apply an answer; a data job's also brings the data of its ingestion jobs."""
        if isinstance(result.job, RenderedJob) and not self.serves(result.job):
            return  # rendered before a reload that changed the metrics settings: asked again next round
        wall_now, now = self._wall_clock(), self._monotonic()
        state.apply(started, result, wall_now, now)
        if isinstance(result.job, DataJob) and state.job is result.job:
            for nested in result.job.watchable_ingestion_jobs:
                if not self._shard.owns(nested.id):
                    continue  # another shard's: it reads that job from the job list or on its own
                self._states.setdefault(nested.id, JobState(nested.id)).apply(
                    started, self.kept(FetchResult(nested.id, nested, http_status=200)), wall_now, now, from_list=True)

    def late_answers(self, data_states: Iterable[JobState]) -> Tally:
        """Apply answers that arrived after their scrape's deadline: they may be the newest data."""
        tally = Tally()
        for state in [*data_states, *self._states.values()]:
            if state.in_flight is not None and state.in_flight.done():
                started, (result, _) = state.in_flight.result()
                state.in_flight = None
                tally.count(result.key_accepted)
                self.take(state, started, result)
        return tally

    def accept_list(self, job_list: JobList, started: float, listed: ListResult,
                    finished_job_refresh: float) -> list[str]:
        """Take the list's answer; the IDs of the watched jobs that need their own fetch now."""
        job_list.answered()
        held = {job_id: state.job for job_id, state in self._states.items()
                if isinstance(state.job, (IngestionJob, RenderedJob))}
        watch = job_list.accept(listed, self._monotonic(), self._wall_clock(), held)
        if watch is None:
            return []
        jobs, invalid = watch
        wall_now, now = self._wall_clock(), self._monotonic()
        fetch_now = []
        for job in jobs:
            state = self._states.setdefault(job.id, JobState(job.id))
            if job.records_known:  # the list's copy is as good as the job's own answer
                state.apply(started, self.kept(FetchResult(job.id, job, http_status=200)), wall_now, now,
                            from_list=True)
            elif state.job is None and state.is_due(now, finished_job_refresh):
                # Listed without records: never replaces records held, and without any the job
                # is fetched on its own, so its first scrape shows its files.
                fetch_now.append(job.id)
        for job_id, detail in invalid.items():
            state = self._states.setdefault(job_id, JobState(job_id))
            state.apply_unusable_listing(started, detail, wall_now, now)
        return fetch_now
