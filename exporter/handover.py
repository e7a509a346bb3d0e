"""What a poller hands to the poller that replaces it on a reload of the same workspace.

The new poller continues from the old one's job states, list reads and data jobs, so a reload is no
cold start: requests in flight are waited for rather than sent again, and those no longer wanted
are dropped before they start.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import AbstractSet, Callable, Mapping

from .config import DiscoveryConfig
from .datajobwatch import DataJobWatch, KnownDataJobs
from .joblist import JobList, KnownList
from .jobstate import JobState, KnownJob
from .model import RenderedJob


@dataclass(frozen=True)
class Handover:
    """What a poller knew, for the poller that replaces it on a reload of the same workspace."""

    api_up: bool | None
    jobs: Mapping[str, KnownJob]
    job_list: KnownList | None
    data_jobs: KnownDataJobs | None = None


def handover_of(api_up: bool | None, states: Mapping[str, JobState], job_list: JobList | None,
                data: DataJobWatch | None) -> Handover:
    return Handover(api_up, MappingProxyType({job_id: state.known() for job_id, state in states.items()}),
                    None if job_list is None else job_list.known(),
                    None if data is None else data.known())


def carried_job_list(discovery: DiscoveryConfig | None, carried: KnownList | None, current: JobList | None,
                     owns: Callable[[str], bool] | None) -> JobList | None:
    """The job list reader that continues from ``carried``; ``current`` if there is nothing to carry."""
    if discovery is not None and carried is not None:
        return JobList(discovery, carried, max_jobs=discovery.max_jobs, owns=owns)
    if carried is not None and carried.in_flight is not None:
        carried.in_flight.cancel()  # discovery is off now: a list read still queued is dropped
    return current


def carry_data_jobs(data: DataJobWatch | None, carried: KnownDataJobs | None) -> None:
    if data is not None and carried is not None:
        data.carry_over(carried)
    elif carried is not None:
        carried.cancel()  # data jobs are off now: requests still queued are dropped


def carry_jobs(carried: Mapping[str, KnownJob], watched: AbstractSet[str], states: dict[str, JobState],
               serves: Callable[[RenderedJob], bool]) -> None:
    """Continue the watched jobs' states in ``states``; drop the requests of the others."""
    for job_id, known in carried.items():
        if job_id in watched and isinstance(known.job, RenderedJob) and not serves(known.job):
            # Rendered for other metrics settings, and its records are gone: its data is asked
            # for again, while its back-off, last success, failure and request in flight carry over.
            known = replace(known, job=None, data_from=None)
        if job_id in watched:
            # Its request in flight, if any, is waited for rather than sent again.
            states[job_id] = JobState.carried_over(job_id, known)
        elif known.in_flight is not None:
            known.in_flight.cancel()  # no longer watched: if it has not started, it never will
