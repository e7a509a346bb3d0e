"""One scrape, from a poller round to the exposition body; no HTTP here (web.py serves the body).

- The scrape's budget follows blackbox_exporter: ``min(scrape.timeout,
  X-Prometheus-Scrape-Timeout-Seconds - 0.5 s)``, at least 0.1 s. It bounds the whole answer:
  the poller gets the budget minus what building the body is expected to take (``BuildReserve``),
  so fetching, parsing, rendering and encoding together end by the deadline.
- One body per round: scrapes that share a poller round (two Prometheus replicas, a retry within
  ``scrape.cache_ttl``) share its body for their format, encoding and budget, built once. The
  per-scrape series in it (scrape duration, the process metrics) are those of the first scrape of
  the round that asked for it.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from prometheus_client.core import Metric

from .datajobmetrics import build_data_job_families
from .exposition import Renderer
from .results import ScrapeResult
from .scrape import JobPoller
from .selfmetrics import SelfMetrics

# Prometheus sends its scrape timeout; leave this much of it for the network.
SCRAPE_TIMEOUT_MARGIN = 0.5


class BuildReserve:
    """How much of a scrape's budget to keep for building its body, learnt from the last builds.

    Until a body was built, a tenth of the budget; then 1.5 times the slowest of the last few
    builds, never more than half the budget (the fetching must get a chance too).
    """

    FIRST_SHARE, FACTOR, MAX_SHARE, REMEMBERED = 0.1, 1.5, 0.5, 5

    def __init__(self) -> None:
        self._recent: list[float] = []

    def seconds(self, budget: float) -> float:
        if not self._recent:
            return budget * self.FIRST_SHARE
        return min(max(self._recent) * self.FACTOR, budget * self.MAX_SHARE)

    def took(self, seconds: float) -> None:
        self._recent = (self._recent + [seconds])[-self.REMEMBERED:]


class ScrapeCollector:
    def __init__(self, poller: JobPoller, renderer: Renderer, scrape_budget: float,
                 self_metrics: SelfMetrics,
                 wall_clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic):
        self._poller = poller
        self._renderer = renderer
        self._budget = scrape_budget
        self._self_metrics = self_metrics
        self._wall_clock = wall_clock
        self._monotonic = monotonic
        self._reserve = BuildReserve()
        self._bodies_lock = threading.Lock()
        self._round: tuple[ScrapeResult, int] | None = None  # a poller round, and the reload generation
        self._bodies: dict[tuple[str, bool, float], list[bytes]] = {}
        self._tails: dict[float, list[Metric]] = {}
        self._now = 0.0  # the wall clock time the round's bodies are rendered at

    def budget(self, timeout_header: str | None) -> float:
        """Seconds this scrape may take, given Prometheus's scrape timeout header."""
        budget = self._budget
        if timeout_header:
            try:
                budget = min(budget, float(timeout_header) - SCRAPE_TIMEOUT_MARGIN)
            except ValueError:
                pass
        return max(budget, 0.1)

    def body(self, timeout_header: str | None, fmt: str, gzipped: bool) -> list[bytes]:
        """The exposition in ``fmt`` (exposition.TEXT or OPENMETRICS), gzipped or not, as byte strings."""
        started = self._monotonic()
        budget = self.budget(timeout_header)
        result = self._poller.scrape(started + budget - self._reserve.seconds(budget))
        with self._bodies_lock:
            round_ = (result, self._self_metrics.generation)
            if self._round is None or round_[0] is not self._round[0] or round_[1] != self._round[1]:
                self._round, self._bodies, self._tails = round_, {}, {}
                self._now = self._wall_clock()
            body = self._bodies.get((fmt, gzipped, budget))
            if body is None:
                building = self._monotonic()
                # The exporter's own series once per round and budget, so every body of the round
                # (text or OpenMetrics, gzipped or not) says the same.
                tail = self._tails.get(budget)
                if tail is None:
                    tail = self._tails[budget] = self._tail(result, building - started, budget)
                body = self._renderer.body(result.snapshots, self._now, fmt, gzipped, tail)
                self._reserve.took(self._monotonic() - building)
                self._bodies[(fmt, gzipped, budget)] = body
            return body

    def _tail(self, result: ScrapeResult, duration: float, budget: float) -> list[Metric]:
        """What follows the ingestion jobs: the data jobs' families (few: built each round), then
        the exporter's own."""
        families = build_data_job_families(result.data_jobs, self._renderer.settings) \
            if self._poller.watches_data_jobs else []
        return families + self._self_metrics.families(result, duration, budget)

    @property
    def job_count(self) -> int:
        return len(self._poller.job_ids)
