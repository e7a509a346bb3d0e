"""One scrape, from a poller round to metric families; no HTTP here (web.py serves the result).

The scrape's budget follows blackbox_exporter: ``min(scrape.timeout,
X-Prometheus-Scrape-Timeout-Seconds - 0.5 s)``, at least 0.1 s.
"""

from __future__ import annotations

import time
from typing import Callable

from prometheus_client.core import Metric

from .config import MetricsConfig
from .datajobmetrics import build_data_job_families
from .metrics import build_job_families
from .scrape import JobPoller
from .selfmetrics import SelfMetrics

# Prometheus sends its scrape timeout; leave this much of it for encoding and the network.
SCRAPE_TIMEOUT_MARGIN = 0.5


class ScrapeCollector:
    def __init__(self, poller: JobPoller, settings: MetricsConfig, scrape_budget: float,
                 self_metrics: SelfMetrics,
                 wall_clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic):
        self._poller = poller
        self._settings = settings
        self._budget = scrape_budget
        self._self_metrics = self_metrics
        self._wall_clock = wall_clock
        self._monotonic = monotonic

    def budget(self, timeout_header: str | None) -> float:
        """Seconds this scrape may spend fetching, given Prometheus's scrape timeout header."""
        budget = self._budget
        if timeout_header:
            try:
                budget = min(budget, float(timeout_header) - SCRAPE_TIMEOUT_MARGIN)
            except ValueError:
                pass
        return max(budget, 0.1)

    def families(self, timeout_header: str | None) -> list[Metric]:
        started = self._monotonic()
        budget = self.budget(timeout_header)
        result = self._poller.scrape(started + budget)
        families = build_job_families(result.snapshots, self._wall_clock(), self._settings)
        if self._poller.watches_data_jobs:
            families += build_data_job_families(result.data_jobs, self._settings)
        return families + self._self_metrics.families(result, self._monotonic() - started, budget)

    @property
    def job_count(self) -> int:
        return len(self._poller.job_ids)
