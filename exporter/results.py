"""The results that cross module boundaries: what a fetch, a list read and a scrape round yield.

The client produces ``FetchResult`` and ``ListResult``; the poller consumes them and produces
``ScrapeResult`` (with ``DiscoveryStatus``); the collector turns that into families. Each side
imports them from here, so none depends on another's implementation for a type.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .datajob import DataJob
from .model import IngestionJob, JobSnapshot, RenderedJob


@dataclass(frozen=True)
class FetchResult:
    """One job's answer: the parsed job, or a short ``reason`` (fit for a label) and a log ``detail``.

    The same shape serves an ingestion job and a data job (``job_id`` is then the data job's ID).
    """

    job_id: str
    job: IngestionJob | RenderedJob | DataJob | None
    reason: str | None = None
    detail: str | None = None
    # The HTTP status if the API answered at all; None for timeouts and connection errors.
    http_status: int | None = None
    # Seconds the API asked us to wait (Retry-After on a 429 or 503) before asking again.
    retry_after: float | None = None
    # Of a 200 answer's body (client.body_digest): the same digest later means the same job.
    digest: bytes | None = None

    @property
    def key_accepted(self) -> bool:
        """Whether the API answered and took the key: no 401 or 403, no server error, no silence."""
        status = self.http_status
        return status is not None and status < 500 and status not in (401, 403)


@dataclass(frozen=True)
class ListResult:
    """The job list: the jobs that parsed, the reason of each listed job that did not, or a failure."""

    jobs: tuple[IngestionJob, ...] | tuple[DataJob, ...] = ()
    # {job id: (why its body is unusable, its created_at if that much could be read)}
    invalid: dict[str, tuple[str, float | None]] = field(default_factory=dict)
    failure: FetchResult | None = None
    # Jobs the read dropped while streaming, beyond discovery.max_jobs (discovery.ListKeeper).
    left_out: int = 0

    @property
    def key_accepted(self) -> bool:
        return self.failure is None or self.failure.key_accepted


@dataclass(frozen=True)
class DiscoveryStatus:
    ok: bool | None  # None until the list was first read
    job_count: int
    over_limit: int = 0  # listed jobs left out by discovery.max_jobs


@dataclass(frozen=True)
class ScrapeResult:
    snapshots: tuple[JobSnapshot, ...]
    # Whether the API answered with the key accepted; None until anything was asked.
    api_up: bool | None
    discovery: DiscoveryStatus | None = None
    # Data jobs (data_jobs on only): a snapshot per watched data job, and the state of their list.
    data_jobs: tuple[JobSnapshot, ...] = ()
    data_job_discovery: DiscoveryStatus | None = None
