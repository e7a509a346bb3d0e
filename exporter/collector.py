"""One scrape, from a poller round to the exposition body; no HTTP here (web.py serves the body).

- The scrape's budget follows blackbox_exporter: ``min(scrape.timeout,
  X-Prometheus-Scrape-Timeout-Seconds - 0.5 s)``, at least 0.1 s. It bounds the whole answer:
  the poller gets the budget minus what rendering and joining are expected to take
  (``BuildReserve``, learnt from the last scrapes); an answer parsed after the poller's deadline
  waits for the next round. A job's own answer is rendered as it arrives, in the fetch worker, so
  this bounds rendering it too. An unfinished job held as a parsed answer (its copy in the job
  list or in a data job) whose rendering would not end before joining must start is exported as
  timed out, and rendered first next round.
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
from .exposition import Exposition, RenderCost, Renderer, RoundPieces
from .results import ScrapeResult
from .scrape import JobPoller
from .selfmetrics import SelfMetrics

# Prometheus sends its scrape timeout; leave this much of it for the network.
SCRAPE_TIMEOUT_MARGIN = 0.5


class BuildReserve:
    """How much of a scrape's budget to keep for building its body, learnt from the last builds.

    Until a body was built, ``first_share`` of the budget; then 1.5 times the slowest of the last
    few builds, never more than half the budget (the fetching must get a chance too).
    """

    FACTOR, MAX_SHARE, REMEMBERED = 1.5, 0.5, 5

    def __init__(self, first_share: float) -> None:
        self._first_share = first_share
        self._recent: list[float] = []

    def seconds(self, budget: float) -> float:
        if not self._recent:
            return budget * self._first_share
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
        # The budget is shared: the poller's round, rendering what the round did not keep rendered,
        # joining the body.
        self._render_reserve = BuildReserve(first_share=0.1)
        self._join_reserve = BuildReserve(first_share=0.05)
        self._cost = RenderCost()
        self._late: set[str] = set()
        self._pieces: RoundPieces | None = None
        self._bodies_lock = threading.Lock()
        self._round: tuple[ScrapeResult, int] | None = None  # a poller round, and the reload generation
        self._bodies: dict[tuple[str, bool, float], Exposition] = {}
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

    def body(self, timeout_header: str | None, fmt: str, gzipped: bool) -> Exposition:
        """The exposition in ``fmt`` (exposition.TEXT or OPENMETRICS), gzipped or not, as byte strings."""
        started = self._monotonic()
        budget = self.budget(timeout_header)
        deadline = started + budget
        # The poller gets what rendering and joining are expected to leave, and at least half.
        kept_back = min(self._render_reserve.seconds(budget) + self._join_reserve.seconds(budget), budget / 2)
        result = self._poller.scrape(deadline - kept_back)
        with self._bodies_lock:
            round_ = (result, self._self_metrics.generation)
            if self._round is None or round_[0] is not self._round[0] or round_[1] != self._round[1]:
                self._round, self._bodies, self._tails = round_, {}, {}
                self._now = self._wall_clock()
                rendering = self._monotonic()
                # Parsed answers are rendered until what joining the body takes is all that is left.
                self._pieces = self._renderer.render_round(
                    result.snapshots, self._now, until=deadline - self._join_reserve.seconds(budget),
                    clock=self._monotonic, cost=self._cost, first=self._late)
                self._late = set(self._pieces.late)
                self._render_reserve.took(self._monotonic() - rendering)
            body = self._bodies.get((fmt, gzipped, budget))
            if body is None:
                joining = self._monotonic()
                # The exporter's own series once per round and budget, so every body of the round
                # (text or OpenMetrics, gzipped or not) says the same.
                tail = self._tails.get(budget)
                if tail is None:
                    tail = self._tails[budget] = self._tail(result, joining - started, budget)
                assert self._pieces is not None  # made with the round
                body = self._renderer.body(self._pieces, fmt, gzipped, tail)
                self._join_reserve.took(self._monotonic() - joining)
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
