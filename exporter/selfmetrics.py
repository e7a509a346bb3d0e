"""The exporter's own metrics, all built here: build info, API requests, process, reloads, scrapes.

Two kinds live side by side:
- long-lived ones in a registry of their own (``SelfMetrics``): ``seekrflow_exporter_build_info``,
  ``seekrflow_exporter_api_requests_total``, the ``process_*`` series and the reload gauges;
- per-scrape ones, a pure function of what one scrape saw (``build_exporter_families``)::

    seekrflow_up 1.0
    seekrflow_exporter_scrape_duration_seconds 0.25
    seekrflow_exporter_scrape_timeout_seconds 9.5
    seekrflow_exporter_discovery_success 1.0      (discovery on only)
    seekrflow_exporter_discovered_jobs 12.0       (discovery on only)
"""

from __future__ import annotations

import platform

from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric

from . import __version__
from .results import DiscoveryStatus, ScrapeResult
from .sharding import Shard


class SelfMetrics:
    """The exporter's long-lived metrics; one set per process, kept across reloads."""

    def __init__(self, process_metrics: bool = True, shard: Shard = Shard()) -> None:
        """``process_metrics``: the exporter process's own process_* series (CPU, memory, file
        descriptors), which --web.disable-exporter-metrics leaves out, as node_exporter does."""
        # Prometheus asks for OpenMetrics, which would otherwise add a *_created series to the counter.
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=True)
        # Counts reload outcomes: a body built before one is not served after it (collector.py).
        self.generation = 0
        if process_metrics:
            ProcessCollector(registry=self.registry)
        build_info = Gauge("seekrflow_exporter_build_info", "Version of the exporter and of Python; always 1.",
                           ["version", "python_version"], registry=self.registry)
        build_info.labels(__version__, platform.python_version()).set(1)
        # As kube-state-metrics does: which share of the jobs this exporter serves.
        Gauge("seekrflow_exporter_shard_ordinal", "The shard this exporter serves (--shard), 0 when not sharded.",
              registry=self.registry).set(shard.index)
        Gauge("seekrflow_exporter_total_shards", "Shards the jobs are split into (--total-shards), 1 when not sharded.",
              registry=self.registry).set(shard.total)
        self.api_requests = Counter("seekrflow_exporter_api_requests",
                                    "Requests sent to the SeekrFlow API, by endpoint and outcome.",
                                    ["endpoint", "code"], registry=self.registry)
        self.connections_shed = Counter("seekrflow_exporter_http_connections_shed",
                                        "Connections to the exporter closed or refused (503) at the open-connection cap, "
                                        "by reason: idle (the oldest still sending its request) or full.",
                                        ["reason"], registry=self.registry)
        for reason in ("idle", "full"):  # present at 0 from the start, so rate() sees the first one
            self.connections_shed.labels(reason)
        self._reload_ok = Gauge("seekrflow_exporter_config_last_reload_successful",
                                "1 when the last configuration reload succeeded, else 0.", registry=self.registry)
        self._reload_time = Gauge("seekrflow_exporter_config_last_reload_success_timestamp_seconds",
                                  "When the configuration was last loaded successfully, as Unix seconds.",
                                  registry=self.registry)

    def config_loaded(self, now: float) -> None:
        self.generation += 1
        self._reload_ok.set(1)
        self._reload_time.set(now)

    def config_refused(self) -> None:
        self.generation += 1
        self._reload_ok.set(0)

    def families(self, result: ScrapeResult, scrape_duration: float, scrape_budget: float) -> list[Metric]:
        """Everything about the exporter itself for one scrape that produced ``result``."""
        return (build_exporter_families(result.api_up, scrape_duration, scrape_budget, result.discovery,
                                        result.data_job_discovery)
                + list(self.registry.collect()))


def build_exporter_families(api_up: bool | None, scrape_duration: float, scrape_budget: float,
                            discovery: DiscoveryStatus | None = None,
                            data_job_discovery: DiscoveryStatus | None = None) -> list[Metric]:
    """The exporter's view of this scrape; ``discovery`` only when discovery is on,
    ``data_job_discovery`` only when data_jobs.enabled."""
    families: list[Metric] = [
        _plain("seekrflow_up", "1 when the SeekrFlow API answered with the key accepted, else 0.",
               1.0 if api_up else 0.0),
        _plain("seekrflow_exporter_scrape_duration_seconds",
               "Time this scrape took to fetch the jobs and build the metrics.", scrape_duration),
        _plain("seekrflow_exporter_scrape_timeout_seconds",
               "Time this scrape allowed itself for fetching the jobs.", scrape_budget),
    ]
    if discovery is not None:
        families += _discovery_families(discovery, "seekrflow_exporter_discovery", "job list", "jobs", "Jobs",
                                        "seekrflow_exporter_discovered_jobs")
    if data_job_discovery is not None:
        families += _discovery_families(data_job_discovery, "seekrflow_exporter_data_job_discovery",
                                        "data-job list", "data jobs", "Data jobs",
                                        "seekrflow_exporter_discovered_data_jobs")
    return families


def _discovery_families(status: DiscoveryStatus, prefix: str, what: str, items: str, items_title: str,
                        discovered: str) -> list[Metric]:
    """The three families of one list's discovery: success, how many it gave, how many were left out."""
    return [
        _plain(f"{prefix}_success", f"1 when the latest read of the {what} succeeded, else 0.",
               1.0 if status.ok else 0.0),
        _plain(discovered, f"{items_title} taken from the {what}: unfinished, or ended within discovery.max_age.",
               float(status.job_count)),
        _plain(f"{prefix}_jobs_over_limit",
               f"Listed {items} left out because discovery.max_jobs was reached (the newest are watched).",
               float(status.over_limit)),
    ]


def _plain(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)
