"""Load and validate the exporter's configuration file.

Every mistake raises ``ConfigError`` whose message starts with the dotted path of the offending key,
so the command line can print it as one line and exit 1. What a configuration holds is in
configtypes.py (re-exported here), the checks of single values in configchecks.py, the ``api``
section in configapi.py; the other sections are checked here.
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping

from .cardinality import PER_FILE_ALL, PER_FILE_NONE, PER_FILE_POLICIES, compile_patterns
from .configapi import _api, strip_api_version
from .configchecks import _buckets, _duration, _positive_duration, _positive_int, _section, _show, _timeout, parse_duration
from .configtypes import (
    DEFAULT_BASE_URL,
    DEFAULT_PROCESSING_BUCKETS,
    DEFAULT_QUEUE_WAIT_BUCKETS,
    ENDPOINTS,
    JOB_ID_PATTERN,
    LIST_ENDPOINTS,
    MAX_DURATION,
    MAX_TIMEOUT,
    ApiConfig,
    Config,
    ConfigError,
    DataJobsConfig,
    DiscoveryConfig,
    MetricsConfig,
    ScrapeConfig,
)
from .files import FileProblem, load_yaml

# The names other modules and the tests import from here, where they lived before the split.
__all__ = [
    "DEFAULT_BASE_URL", "DEFAULT_PROCESSING_BUCKETS", "DEFAULT_QUEUE_WAIT_BUCKETS", "ENDPOINTS", "JOB_ID_PATTERN",
    "LIST_ENDPOINTS", "MAX_DURATION", "MAX_TIMEOUT", "ApiConfig", "Config", "ConfigError", "DataJobsConfig",
    "DiscoveryConfig", "MetricsConfig", "ScrapeConfig", "build_config", "load_config", "parse_duration",
    "strip_api_version",
]


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
