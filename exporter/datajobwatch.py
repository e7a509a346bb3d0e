"""The data jobs a poller watches: the configured ones and the list's, each with its state.

- The IDs under ``data_jobs.jobs`` are always watched. With ``data_jobs.enabled`` the data-job list
  is read every ``discovery.interval`` (a ``JobList`` with its back-off) and adds every unfinished
  data job and every finished one that ended within ``discovery.max_age``, at most
  ``discovery.max_jobs`` of them, the newest by creation (the rest counted, as for the job list).
- A list item has no ingestion jobs, so a data job the list brings is fetched on its own in the
  same round (``GET /v1/flow/data-jobs/{id}``).
- Each data job's detail holds its ingestion jobs with their records. Those ingestion jobs are
  watched like any other; while their data job is fetched and healthy, its answer is their data
  and they are not fetched on their own, so an ingestion job costs one request per round at most.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from .config import DataJobsConfig, DiscoveryConfig
from .datajob import DataJob
from .discovery import watched_data_jobs
from .joblist import JobList, KnownList
from .jobstate import JobState, KnownJob
from .model import JobSnapshot
from .results import ListResult


@dataclass(frozen=True)
class KnownDataJobs:
    """What the data-job watch carries over a reload."""

    jobs: Mapping[str, KnownJob]
    job_list: KnownList | None

    def cancel(self) -> None:
        """Drop the requests not started yet: nobody waits for them any more."""
        for future in [known.in_flight for known in self.jobs.values()] + [
                self.job_list.in_flight if self.job_list is not None else None]:
            if future is not None:
                future.cancel()


class DataJobWatch:
    def __init__(self, settings: DataJobsConfig, intervals: DiscoveryConfig):
        self._configured = settings.jobs
        self._intervals = intervals
        self.states: dict[str, JobState] = {job_id: JobState(job_id) for job_id in self._configured}
        self.job_list = self._new_list() if settings.enabled else None

    def _new_list(self, known: KnownList | None = None) -> JobList:
        # Capped like the job list: an account's whole history of data jobs, each with its
        # ingestion jobs, must not become series.
        return JobList(self._intervals, known, choose=watched_data_jobs, what="data job list",
                       max_jobs=self._intervals.max_jobs)

    @property
    def ids(self) -> tuple[str, ...]:
        """The configured data jobs, then the listed ones not configured."""
        if self.job_list is None:
            return self._configured
        configured = set(self._configured)
        return self._configured + tuple(j for j in self.job_list.job_ids if j not in configured)

    def watched_states(self) -> list[JobState]:
        return [self.states.setdefault(job_id, JobState(job_id)) for job_id in self.ids]

    def links(self) -> list[tuple[str, str]]:
        """(ingestion job ID, data job ID) for every ingestion job in the watched data jobs' data."""
        found: dict[str, str] = {}
        for job_id in self.ids:
            data_job = self.states[job_id].job if job_id in self.states else None
            for nested in _nested(data_job):
                found.setdefault(nested.id, job_id)
        return list(found.items())

    @staticmethod
    def covered(fetched: Iterable[JobState]) -> set[str]:
        """The ingestion jobs whose data comes with these data jobs' answers this round: those of a
        data job with good data. A failing data job covers nothing, so its ingestion jobs are
        fetched on their own meanwhile."""
        return {nested.id for state in fetched if state.error is None for nested in _nested(state.job)}

    def accept_list(self, started: float, listed: ListResult, now: float, wall_now: float,
                    finished_job_refresh: float) -> list[str]:
        """Take a read of the data-job list; the IDs that need their own fetch in this round."""
        assert self.job_list is not None
        self.job_list.answered()
        watch = self.job_list.accept(listed, now, wall_now, {})
        if watch is None:
            return []
        data_jobs, invalid = watch
        fetch_now = []
        for data_job in data_jobs:
            state = self.states.setdefault(data_job.id, JobState(data_job.id))
            if state.job is None and state.is_due(now, finished_job_refresh):
                fetch_now.append(data_job.id)
        for job_id, detail in invalid.items():
            state = self.states.setdefault(job_id, JobState(job_id))
            state.apply_unusable_listing(started, detail, wall_now, now)
        return fetch_now

    def prune(self) -> None:
        watched = set(self.ids)
        for job_id in [j for j in self.states if j not in watched]:
            del self.states[job_id]  # no longer listed (or too old): its series go

    def snapshots(self, now: float, serve_stale_for: float) -> tuple[JobSnapshot, ...]:
        return tuple(self.states[j].snapshot(now, serve_stale_for) for j in self.ids)

    def known(self) -> KnownDataJobs:
        return KnownDataJobs({job_id: state.known() for job_id, state in self.states.items()},
                             None if self.job_list is None else self.job_list.known())

    def carry_over(self, known: KnownDataJobs) -> None:
        """Continue from what the watch of the replaced poller knew; its requests in flight are
        waited for, those of data jobs no longer watched dropped if not started."""
        if self.job_list is not None and known.job_list is not None:
            self.job_list = self._new_list(known.job_list)
        elif known.job_list is not None and known.job_list.in_flight is not None:
            known.job_list.in_flight.cancel()
        watched = set(self.ids)
        for job_id, carried in known.jobs.items():
            if job_id in watched:
                self.states[job_id] = JobState.carried_over(job_id, carried)
            elif carried.in_flight is not None:
                carried.in_flight.cancel()


def _nested(data_job: object) -> tuple:
    return data_job.watchable_ingestion_jobs if isinstance(data_job, DataJob) else ()
