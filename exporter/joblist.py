"""Discovery's reads of the job list: when to read it, what the last read gave, and back-off.

The list is read every ``discovery.interval``. After a failed read it is asked again sooner: 10 s,
doubling per failure, at most the interval; a Retry-After wins (at most ``MAX_RETRY_AFTER``). A
failed read keeps the jobs found before. Which listed jobs are watched is discovery.py's choice.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable, Mapping

from .config import DiscoveryConfig
from .discovery import ListKeeper, newest, watched_jobs
from .jobstate import MAX_RETRY_AFTER
from .model import IngestionJob, RenderedJob
from .results import DiscoveryStatus, ListResult

log = logging.getLogger("seekrflow_exporter.scrape")

# After a failed read of the job list, wait this long, doubling per failure, up to the interval.
LIST_RETRY_FIRST = 10.0


@dataclass(frozen=True)
class KnownList:
    """What the job list carries over a reload, its request in flight too (not sent twice)."""

    job_ids: tuple[str, ...]
    ok: bool | None
    next_read: float | None
    failures: int
    in_flight: Future | None = field(default=None, compare=False)
    over_limit: int = 0


class JobList:
    """``choose`` picks what to watch from a read (``watched_jobs``, or ``watched_data_jobs`` for the
    data-job list); ``what`` names the list in the log."""

    def __init__(self, settings: DiscoveryConfig, known: KnownList | None = None,
                 choose: Callable[..., tuple[list, dict[str, str]]] = watched_jobs, what: str = "job list",
                 max_jobs: int | None = None, owns: Callable[[str], bool] | None = None):
        """``max_jobs``: watch at most this many of the listed jobs, the newest (discovery.max_jobs);
        ``owns``: with sharding, which jobs are this shard's (the others are not kept)."""
        self._settings = settings
        self._max_jobs = max_jobs
        self._owns = owns
        self._over_limit = 0
        self._choose = choose
        self._what = what
        self.job_ids: tuple[str, ...] = ()
        self._ok: bool | None = None
        self._next_read: float | None = None  # monotonic; None: read at the next round
        self._failures = 0
        self._in_flight: Future | None = None
        if known is not None:
            self.job_ids, self._ok, self._next_read, self._failures, self._in_flight, self._over_limit = (
                known.job_ids, known.ok, known.next_read, known.failures, known.in_flight, known.over_limit)

    @property
    def status(self) -> DiscoveryStatus:
        return DiscoveryStatus(self._ok, len(self.job_ids), self._over_limit)

    def known(self) -> KnownList:
        return KnownList(self.job_ids, self._ok, self._next_read, self._failures, self._in_flight, self._over_limit)

    @property
    def timeout(self) -> float:
        """How long one read of the list may take, from the request to its last item parsed."""
        return self._settings.timeout

    def keeper(self, wall_now: float) -> ListKeeper:
        """What a read of the list starting at ``wall_now`` keeps as it streams in."""
        return ListKeeper(wall_now, self._settings.max_age, self._max_jobs, self._owns)

    def request(self, now: float, submit: Callable[[], Future]) -> Future | None:
        """This round's list request: the one still on its way, a new one when due, else None."""
        if self._in_flight is None:
            if self._next_read is not None and now < self._next_read:
                return None
            self._in_flight = submit()
        return self._in_flight

    def answered(self) -> None:
        """The request returned by ``request`` has been taken; the next read needs a new one."""
        self._in_flight = None

    def accept(self, listed: ListResult, now: float, wall_now: float, held: Mapping[str, IngestionJob | RenderedJob],
               ) -> tuple[list[IngestionJob], dict[str, str]] | None:
        """Take one read of the list (at monotonic ``now``); what to watch from it, or None if it failed.

        ``held``: the jobs as last fetched, for listed jobs that come without records.
        """
        if listed.failure is not None:
            if self._ok is not False:
                log.warning(f"{self._what} failed", extra={"fields": {
                    "reason": listed.failure.reason, "detail": listed.failure.detail}})
            self._ok, self._failures = False, self._failures + 1
            if listed.failure.retry_after:
                wait_for = min(listed.failure.retry_after, MAX_RETRY_AFTER)
            else:
                wait_for = min(LIST_RETRY_FIRST * 2 ** (self._failures - 1), self._settings.interval)
            self._next_read = now + wait_for
            return None  # keep the jobs found before
        self._ok, self._failures = True, 0
        self._next_read = now + self._settings.interval
        jobs, invalid = self._choose(listed, wall_now, self._settings.max_age, held)
        if self._max_jobs is not None:
            created = {job_id: created_at for job_id, (_, created_at) in listed.invalid.items()}
            jobs, invalid, over = newest(jobs, invalid, created, self._max_jobs)
            over += listed.left_out
            if over and not self._over_limit:
                log.warning("discovery.max_jobs reached, watching only the newest jobs", extra={"fields": {
                    "list": self._what, "max_jobs": self._max_jobs, "left_out": over}})
            self._over_limit = over
        previous = set(self.job_ids)
        self.job_ids = tuple(sorted({job.id for job in jobs} | set(invalid)))
        if set(self.job_ids) != previous:
            log.info(f"{self._what} read", extra={"fields": {"discovered": len(self.job_ids)}})
        return jobs, invalid
