"""Load and validate the exporter's configuration file.

Every mistake raises ``ConfigError`` whose message starts with the dotted path of the offending key,
so the command line can print it as one line and exit 1.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import urlsplit

from . import durations
from .cardinality import PER_FILE_ALL, PER_FILE_NONE, PER_FILE_POLICIES, compile_patterns
from .files import FileProblem, load_yaml, read_text
from .model import DEFAULT_TERMINAL_RECORD_STATUSES, MAX_STATUS_LENGTH

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

_API_VERSION_SUFFIX = re.compile(r"/v\d+$")
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


def parse_duration(text: Any, path: str) -> float:
    """Seconds in a Prometheus duration such as ``10s``, ``1m30s`` or ``500ms`` (durations.py)."""
    try:
        if not isinstance(text, str):
            raise ValueError(text)
        total = durations.parse_duration(text)
    except ValueError:
        raise ConfigError(path, f"must be a duration like 10s or 5m, got {_show(text)}") from None
    if total > MAX_DURATION:
        raise ConfigError(path, f"must be at most 100y, got {_show(text)}")
    return total


def load_config(path: str, environ: Mapping[str, str] | None = None) -> Config:
    """Read ``path`` and build a validated ``Config``; secrets come from the environment or files."""
    environ = os.environ if environ is None else environ
    try:
        raw = load_yaml(path, what="config file")
    except FileProblem as err:
        raise ConfigError("", str(err)) from None
    return build_config(raw, environ)


def build_config(raw: Any, environ: Mapping[str, str]) -> Config:
    root = _section(raw, "", {"api", "scrape", "metrics", "discovery", "data_jobs", "jobs"})
    discovery = _discovery(root.get("discovery"))
    data_jobs = _data_jobs(root.get("data_jobs"))
    return Config(
        jobs=_jobs(root.get("jobs"), required=not discovery.enabled and not data_jobs.active),
        api=_api(root.get("api"), environ),
        scrape=_scrape(root.get("scrape")),
        metrics=_metrics(root.get("metrics")),
        discovery=discovery,
        data_jobs=data_jobs,
    )


def _api(raw: Any, environ: Mapping[str, str]) -> ApiConfig:
    keys = {"base_url", "endpoint", "api_key_file", "team_id", "timeout", "max_concurrency", "terminal_record_statuses"}
    section = _section(raw, "api", keys)
    base_url = _optional_str(section, "api.base_url") or environ.get("SEEKR_BASE_URL") or DEFAULT_BASE_URL
    where = "api.base_url" if "base_url" in section else "SEEKR_BASE_URL"
    _check_url(base_url, where)
    base_url = strip_api_version(base_url)
    endpoint = _optional_str(section, "api.endpoint") or "alignment"
    if endpoint not in ENDPOINTS:
        raise ConfigError("api.endpoint", f"must be one of {', '.join(ENDPOINTS)}, got {_show(endpoint)}")
    return ApiConfig(
        base_url=base_url.rstrip("/"),
        endpoint=endpoint,
        api_key=_api_key(section, environ),
        team_id=_team_id(section, environ),
        request_timeout=_timeout(section, "api.timeout", ApiConfig.request_timeout),
        max_concurrency=_positive_int(section, "api.max_concurrency", ApiConfig.max_concurrency, 256),
        terminal_record_statuses=_statuses(section, "api.terminal_record_statuses", DEFAULT_TERMINAL_RECORD_STATUSES),
    )


def _check_url(url: str, where: str) -> None:
    """Whatever would make every request fail is refused here, with the reason."""
    if _has_space_or_control(url):
        raise ConfigError(where, f"must not contain spaces or control characters, got {_show(url)}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as err:
        reason = "port out of range 1-65535" if "port" in str(err).lower() else "not a URL"
        raise ConfigError(where, f"{reason}, got {_show(url)}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(where, f"must be an http(s) URL like {DEFAULT_BASE_URL}, got {_show(url)}")
    if port == 0:
        raise ConfigError(where, f"port out of range 1-65535, got {_show(url)}")


def _has_space_or_control(text: str) -> bool:
    return any(c.isspace() or not c.isprintable() for c in text)


def _statuses(section: dict, path: str, default: frozenset[str]) -> frozenset[str]:
    value = section.get(path.rsplit(".", 1)[-1])
    if value is None:
        return default
    if not isinstance(value, list):
        raise ConfigError(path, f"must be a list of record statuses, got {_show(value)}")
    for index, status in enumerate(value):
        # Compared with the status as the exporter keeps it: cut to MAX_STATUS_LENGTH characters.
        if not isinstance(status, str) or not status or len(status) > MAX_STATUS_LENGTH:
            raise ConfigError(f"{path}[{index}]", f"must be a status string of 1 to {MAX_STATUS_LENGTH} characters, "
                                                  f"got {_show(status)}")
    return frozenset(value)


def strip_api_version(url: str) -> str:
    """``https://flow.seekr.com/v1/`` -> ``https://flow.seekr.com``: the paths carry the version.

    The official SDK strips a trailing ``/vN`` the same way; older SDKs defaulted to the ``/v1``
    spelling, so SEEKR_BASE_URL may still hold it.
    """
    return _API_VERSION_SUFFIX.sub("", url.rstrip("/")).rstrip("/")


def _api_key(section: dict, environ: Mapping[str, str]) -> str:
    key_file = _optional_str(section, "api.api_key_file")
    if key_file:
        try:
            key = read_text(key_file).strip()
        except FileProblem as err:
            raise ConfigError("api.api_key_file", str(err)) from None
        if not key:
            raise ConfigError("api.api_key_file", f"{key_file} is empty")
        return _redactable(_header_safe(key, "api.api_key_file", "the API key"), "api.api_key_file")
    key = environ.get("SEEKR_API_KEY", "").strip()
    if not key:
        raise ConfigError("api.api_key_file", "no API key: set api.api_key_file or the SEEKR_API_KEY environment variable")
    return _redactable(_header_safe(key, "SEEKR_API_KEY", "the API key"), "SEEKR_API_KEY")


# The log redacts the key by finding it as is in a line (log.py), which a key fails when it is
# short enough to be an ordinary word, or when a traceback would show it only through repr(), which
# escapes a backslash, may escape a quote and escapes characters beyond ASCII (in bytes, all of them).
MIN_API_KEY_LENGTH = 8
_REPR_ESCAPED = frozenset("\\'")


def _redactable(key: str, path: str) -> str:
    """The key, if the log can always recognise it to redact it; the message never shows it."""
    if len(key) < MIN_API_KEY_LENGTH:
        raise ConfigError(path, f"the API key is shorter than {MIN_API_KEY_LENGTH} characters, "
                                "so it could not be told apart in the log to keep it out")
    if any(c in _REPR_ESCAPED or c > "~" for c in key):
        raise ConfigError(path, "the API key holds a backslash, a single quote or characters beyond ASCII, "
                                "which an error could show escaped, out of reach of redaction")
    return key


def _header_safe(value: str, path: str, what: str) -> str:
    """The value travels as an HTTP header; say so at startup rather than fail every scrape.

    The message never repeats the value: it may be the API key.
    """
    if not all(" " <= c <= "~" or "\xa0" <= c <= "\xff" for c in value):
        raise ConfigError(path, f"{what} holds characters that cannot be sent in an HTTP header")
    return value


def _team_id(section: dict, environ: Mapping[str, str]) -> str | None:
    team_id = _optional_str(section, "api.team_id")
    where = "api.team_id"
    if not team_id:
        team_id, where = environ.get("SEEKR_TEAM_ID", "").strip(), "SEEKR_TEAM_ID"
    if not team_id:
        return None
    _header_safe(team_id, where, "the team ID")
    if _has_space_or_control(team_id):
        # Sent as is in x-team-id: a stray space would make every request ask for another team.
        raise ConfigError(where, "the team ID must not contain spaces or control characters")
    return team_id


def _scrape(raw: Any) -> ScrapeConfig:
    section = _section(raw, "scrape", {"timeout", "cache_ttl", "finished_job_refresh", "serve_stale_for"})
    return ScrapeConfig(
        timeout=_timeout(section, "scrape.timeout", ScrapeConfig.timeout),
        cache_ttl=_duration(section, "scrape.cache_ttl", ScrapeConfig.cache_ttl),
        finished_job_refresh=_duration(section, "scrape.finished_job_refresh", ScrapeConfig.finished_job_refresh),
        serve_stale_for=_duration(section, "scrape.serve_stale_for", ScrapeConfig.serve_stale_for),
    )


def _metrics(raw: Any) -> MetricsConfig:
    keys = {
        "per_file", "per_file_window", "per_file_limit", "record_status_limit", "error_text_limit",
        "processing_duration_buckets", "queue_wait_buckets", "allow", "deny",
    }
    section = _section(raw, "metrics", keys)
    allow = _patterns(section, "metrics.allow")
    deny = _patterns(section, "metrics.deny")
    if allow and deny:
        # As kube-state-metrics refuses --metric-allowlist with --metric-denylist: which one wins
        # would be a guess.
        raise ConfigError("metrics.deny", "cannot be set together with metrics.allow: use one of the two")
    return MetricsConfig(
        per_file=_per_file(section.get("per_file", MetricsConfig.per_file)),
        per_file_window=_positive_duration(section, "metrics.per_file_window", MetricsConfig.per_file_window),
        per_file_limit=_positive_int(section, "metrics.per_file_limit", MetricsConfig.per_file_limit, 100_000),
        record_status_limit=_positive_int(section, "metrics.record_status_limit", MetricsConfig.record_status_limit, 1000),
        error_text_limit=_positive_int(section, "metrics.error_text_limit", MetricsConfig.error_text_limit, 10_000),
        processing_duration_buckets=_buckets(section, "metrics.processing_duration_buckets", DEFAULT_PROCESSING_BUCKETS),
        queue_wait_buckets=_buckets(section, "metrics.queue_wait_buckets", DEFAULT_QUEUE_WAIT_BUCKETS),
        allow=allow,
        deny=deny,
    )


def _per_file(value: Any) -> str:
    # true and false were the only values before the policies; they keep their meaning.
    if value is True:
        return PER_FILE_ALL
    if value is False:
        return PER_FILE_NONE
    if value not in PER_FILE_POLICIES:
        raise ConfigError("metrics.per_file", f"must be one of {', '.join(PER_FILE_POLICIES)}, got {_show(value)}")
    return value


def _patterns(section: dict, path: str) -> tuple[str, ...]:
    value = section.get(path.rsplit(".", 1)[-1])
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(path, f"must be a list of regular expressions over metric names, got {_show(value)}")
    for index, pattern in enumerate(value):
        if not isinstance(pattern, str) or not pattern:
            raise ConfigError(f"{path}[{index}]", f"must be a non-empty regular expression, got {_show(pattern)}")
        try:
            compile_patterns([pattern])
        except (re.error, RecursionError, OverflowError) as err:
            reason = err.msg if isinstance(err, re.error) else type(err).__name__
            raise ConfigError(f"{path}[{index}]", f"not a valid regular expression ({reason}): {_show(pattern)}") from None
    return tuple(value)


def _discovery(raw: Any) -> DiscoveryConfig:
    section = _section(raw, "discovery", {"enabled", "interval", "max_age", "max_jobs", "timeout"})
    enabled = section.get("enabled", DiscoveryConfig.enabled)
    if not isinstance(enabled, bool):
        raise ConfigError("discovery.enabled", f"must be true or false, got {_show(enabled)}")
    return DiscoveryConfig(
        enabled=enabled,
        interval=_duration(section, "discovery.interval", DiscoveryConfig.interval),
        max_age=_positive_duration(section, "discovery.max_age", DiscoveryConfig.max_age),
        max_jobs=_positive_int(section, "discovery.max_jobs", DiscoveryConfig.max_jobs, 100_000),
        timeout=_timeout(section, "discovery.timeout", DiscoveryConfig.timeout),
    )


def _data_jobs(raw: Any) -> DataJobsConfig:
    section = _section(raw, "data_jobs", {"enabled", "jobs"})
    enabled = section.get("enabled", DataJobsConfig.enabled)
    if not isinstance(enabled, bool):
        raise ConfigError("data_jobs.enabled", f"must be true or false, got {_show(enabled)}")
    jobs = section.get("jobs")
    return DataJobsConfig(enabled=enabled, jobs=() if jobs is None else _jobs(jobs, False, "data_jobs.jobs", "data job"))


def _jobs(raw: Any, required: bool, where: str = "jobs", what: str = "ingestion job") -> tuple[str, ...]:
    if raw is None and not required:
        return ()
    if raw is None:
        raise ConfigError("jobs", "is required: list the ingestion job IDs to export, or turn on discovery.enabled "
                                  "or data_jobs.enabled")
    if not isinstance(raw, list) or (required and not raw):
        raise ConfigError(where, f"must be a non-empty list of {what} IDs, got {_show(raw)}")
    seen: set[str] = set()
    for index, job_id in enumerate(raw):
        path = f"{where}[{index}]"
        if not isinstance(job_id, str) or not job_id.strip():
            raise ConfigError(path, f"must be a non-empty job ID string, got {_show(job_id)}")
        if not JOB_ID_PATTERN.fullmatch(job_id):
            raise ConfigError(path, f"{_show(job_id)} is not a valid job ID (letters, digits, '.', '_', '~', '-' only)")
        if job_id in seen:
            raise ConfigError(path, f"duplicate job ID {_show(job_id)}")
        seen.add(job_id)
    return tuple(raw)


def _section(raw: Any, path: str, allowed: set[str]) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(path, f"must be a mapping, got {_show(raw)}")
    for key in raw:
        if key not in allowed:
            full = f"{path}.{key}" if path else str(key)
            raise ConfigError(full, f"unknown key (allowed: {', '.join(sorted(allowed))})")
    return raw


def _optional_str(section: dict, path: str) -> str | None:
    value = section.get(path.rsplit(".", 1)[-1])
    if value is not None and not isinstance(value, str):
        raise ConfigError(path, f"must be a string, got {_show(value)}")
    return value


def _duration(section: dict, path: str, default: float) -> float:
    key = path.rsplit(".", 1)[-1]
    return default if key not in section else parse_duration(section[key], path)


def _positive_duration(section: dict, path: str, default: float) -> float:
    value = _duration(section, path, default)
    if value <= 0:
        raise ConfigError(path, "must be longer than 0s")
    return value


def _timeout(section: dict, path: str, default: float) -> float:
    value = _positive_duration(section, path, default)
    if value > MAX_TIMEOUT:
        raise ConfigError(path, "must be at most 1h")
    return value


def _positive_int(section: dict, path: str, default: int, maximum: int) -> int:
    value = section.get(path.rsplit(".", 1)[-1], default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise ConfigError(path, f"must be a whole number from 1 to {maximum}, got {_show(value)}")
    return value


def _buckets(section: dict, path: str, default: tuple[float, ...]) -> tuple[float, ...]:
    value = section.get(path.rsplit(".", 1)[-1])
    if value is None:
        return default
    if not isinstance(value, list) or not value:
        raise ConfigError(path, f"must be a non-empty list of upper bounds in seconds, got {_show(value)}")
    for item in value:
        if (isinstance(item, bool) or not isinstance(item, (int, float)) or abs(item) > MAX_DURATION
                or not math.isfinite(item) or item <= 0):
            raise ConfigError(path, f"bucket bounds must be positive numbers of seconds, got {_show(item)}")
    if any(b >= a for a, b in zip(value[1:], value)):
        raise ConfigError(path, "bucket bounds must be strictly increasing")
    return tuple(float(b) for b in value)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
