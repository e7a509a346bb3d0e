"""What a validated configuration holds: the settings of each section, their defaults, and
``ConfigError``, which every check raises.

The lowest of the config modules: it imports none of them, so configchecks.py, configapi.py and
config.py can all build on it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .cardinality import PER_FILE_ALL
from .model import DEFAULT_TERMINAL_RECORD_STATUSES

DEFAULT_BASE_URL = "https://flow.seekr.com"

# Path templates of the two "get one ingestion job" endpoints, keyed by the config value, and of
# the list endpoint of the same generation (every job of the caller, no paging).
ENDPOINTS = {
    "alignment": "/v1/flow/alignment/ingestion/{id}",
    "ingestion": "/v1/flow/ingestion/{id}",
}
LIST_ENDPOINTS = {
    "alignment": "/v1/flow/alignment/ingestion",
    "ingestion": "/v1/flow/ingestion",
}

DEFAULT_PROCESSING_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
DEFAULT_QUEUE_WAIT_BUCKETS = (1, 5, 15, 30, 60, 300, 900, 1800, 3600, 7200)

# A job ID travels as one URL path segment; anything outside this set could change the path or
# the query, so it is refused at startup rather than escaped into something surprising.
JOB_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,199}")  # always used with fullmatch

# Longer durations are surely typos, and beyond this the thread and lock timeouts overflow.
MAX_DURATION = 100 * 31536000.0
MAX_TIMEOUT = 3600.0


class ConfigError(ValueError):
    """A configuration mistake; ``str()`` is one line naming the key path and the reason."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}" if path else reason)
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class ApiConfig:
    base_url: str = DEFAULT_BASE_URL
    endpoint: str = "alignment"
    api_key: str = field(default="", repr=False)
    team_id: str | None = None
    request_timeout: float = 10.0
    max_concurrency: int = 8
    # A record in one of these statuses has ended, even without completed_at or failed_at.
    terminal_record_statuses: frozenset[str] = DEFAULT_TERMINAL_RECORD_STATUSES

    @property
    def path_template(self) -> str:
        return ENDPOINTS[self.endpoint]

    @property
    def list_path(self) -> str:
        return LIST_ENDPOINTS[self.endpoint]


@dataclass(frozen=True)
class ScrapeConfig:
    timeout: float = 25.0
    cache_ttl: float = 5.0
    finished_job_refresh: float = 600.0
    serve_stale_for: float = 300.0


@dataclass(frozen=True)
class MetricsConfig:
    # Which jobs get per-file series (cardinality.PER_FILE_POLICIES), for how long after a settled
    # job ended under "recent", and how many records per job.
    per_file: str = PER_FILE_ALL
    per_file_window: float = 3600.0
    per_file_limit: int = 500
    record_status_limit: int = 10
    error_text_limit: int = 200
    processing_duration_buckets: tuple[float, ...] = DEFAULT_PROCESSING_BUCKETS
    queue_wait_buckets: tuple[float, ...] = DEFAULT_QUEUE_WAIT_BUCKETS
    # Regular expressions over family names, fully anchored; at most one of the two is set.
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()


@dataclass(frozen=True)
class DiscoveryConfig:
    enabled: bool = False
    interval: float = 300.0
    max_age: float = 7 * 86400.0
    # The newest this many listed jobs are watched: 20k listed jobs would be a million series.
    max_jobs: int = 1000
    # One read of the job list, its parsing included (it is parsed as it streams in): a list of
    # 20,000 jobs of 20 files is about 150 MB, far more than one job's answer.
    timeout: float = 120.0


@dataclass(frozen=True)
class DataJobsConfig:
    """Data jobs: ``enabled`` reads their list (every discovery.interval, kept for discovery.max_age
    after they ended); the IDs in ``jobs`` are always watched."""

    enabled: bool = False
    jobs: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        return self.enabled or bool(self.jobs)


@dataclass(frozen=True)
class Config:
    jobs: tuple[str, ...]
    api: ApiConfig = ApiConfig()
    scrape: ScrapeConfig = ScrapeConfig()
    metrics: MetricsConfig = MetricsConfig()
    discovery: DiscoveryConfig = DiscoveryConfig()
    data_jobs: DataJobsConfig = DataJobsConfig()
