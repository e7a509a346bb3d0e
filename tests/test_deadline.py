"""The deadline bounds the whole scrape: fetching, parsing, rendering and joining together.

The scrape's clock is the test's: the API answers at once, while turning an answer into series is
slow (two seconds a job on that clock, one job at a time, as on one core). The answer must still
come by the deadline, the jobs whose answers were not rendered in time are reported as timed out,
and the next scrape has them. An answer whose body did not change is not rendered again.
"""

import json
import threading
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from exporter.client import SeekrFlowClient
from exporter.collector import ScrapeCollector
from exporter.config import ApiConfig, MetricsConfig, ScrapeConfig
from exporter.exposition import TEXT, Renderer
from exporter.scrape import JobPoller
from exporter.selfmetrics import SelfMetrics
from exporter.simulator import SimulatedWorld, SimulatorServer
from harness import wait_until

KEY = "sk-test-deadline-0c4a"
RUNNING = json.loads((Path(__file__).parent / "fixtures" / "job_running.json").read_text())
JOBS = [f"ij-{n}" for n in range(1, 7)]
BUDGET = 10.0
SLOW_STEP = 2.0


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class SlowRenderer(Renderer):
    """Renders an answer in ``SLOW_STEP`` seconds of the test's clock, one answer at a time: the
    worker that renders is held until the clock reaches the end of its render. ``wait_until`` is
    the poller's wait: it moves the clock from one render's end to the next, up to the deadline."""

    def __init__(self, settings, clock, workers):
        super().__init__(settings)
        self.clock, self.workers = clock, workers
        self.renders = 0
        self._lock = threading.Lock()
        self._held: list[tuple[float, threading.Event]] = []
        self._free_at = clock.now

    def render_data(self, job_id, job, now, keep=False):
        released = threading.Event()
        with self._lock:
            self.renders += 1
            self._free_at = max(self._free_at, self.clock.now) + SLOW_STEP
            self._held.append((self._free_at, released))
        released.wait(timeout=60)
        return super().render_data(job_id, job, now, keep)

    def wait_until(self, futures, deadline):
        futures = list(futures)
        while True:
            self._settle(futures)
            with self._lock:
                first = min(self._held, key=lambda held: held[0], default=None)
                if first is None or first[0] > deadline:
                    break
                self._held.remove(first)
            self.clock.now = max(self.clock.now, first[0])
            first[1].set()
        self.clock.now = max(self.clock.now, deadline)
        return {future for future in futures if future.done()}

    def release_all(self):
        with self._lock:
            for _, released in self._held:
                released.set()
            self._held.clear()

    def _settle(self, futures):
        """Wait until every worker with an answer to render is held rendering it."""
        def settled():
            running = sum(future.running() for future in futures)
            unanswered = sum(not future.done() for future in futures)
            with self._lock:
                held = len(self._held)
            return running == min(self.workers, unanswered) and held == running

        wait_until(settled, timeout=30, interval=0.002, what="the workers' answers to reach their render")


def scrape(collector, clock):
    started = clock.now
    body = b"".join(collector.body(None, TEXT, False)).decode()
    answered = clock.now
    success, reasons = {}, {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == "seekrflow_ingestion_job_scrape_success":
                success[sample.labels["job_id"]] = sample.value
            if sample.name == "seekrflow_ingestion_job_scrape_error_info":
                reasons[sample.labels["job_id"]] = sample.labels["reason"]
    with_data = {line.split('job_id="')[1].split('"')[0] for line in body.splitlines()
                 if line.startswith("seekrflow_ingestion_job_created_timestamp_seconds{")}
    return answered - started, success, reasons, with_data


def test_a_slow_step_from_answer_to_series_still_answers_by_the_deadline_and_the_next_scrape_has_the_rest():
    clock = Clock()
    fixtures = {job_id: dict(RUNNING, id=job_id) for job_id in JOBS}
    with SimulatorServer(SimulatedWorld(jobs=0), KEY, fixtures=fixtures) as api:
        settings = ApiConfig(base_url=api.url, api_key=KEY, max_concurrency=2, request_timeout=30.0)
        client = SeekrFlowClient(settings, Counter("requests", "r", ["endpoint", "code"], registry=CollectorRegistry()))
        renderer = SlowRenderer(MetricsConfig(), clock, workers=2)
        poller = JobPoller(JOBS, client, ScrapeConfig(timeout=BUDGET, cache_ttl=0.0), settings, monotonic=clock,
                           wait_until=renderer.wait_until, keeper=renderer)
        collector = ScrapeCollector(poller, renderer, BUDGET, SelfMetrics(), monotonic=clock)
        try:
            took, success, reasons, with_data = scrape(collector, clock)
            assert took <= BUDGET
            # The poller waits until what rendering the round and joining it are expected to take
            # is left (1.5 s of 10 at first): four renders of two seconds end by then, a fifth would not.
            assert took == BUDGET - 1.5
            assert with_data == set(JOBS[:4])
            assert success == {job_id: (1.0 if job_id in JOBS[:4] else 0.0) for job_id in JOBS}
            assert reasons == {"ij-5": "timeout", "ij-6": "timeout"}

            clock.now += 30
            took, success, reasons, with_data = scrape(collector, clock)
            assert took <= BUDGET
            # The two left out were rendered meanwhile, and the four others answered with the same
            # bodies: not parsed nor rendered again.
            assert with_data == set(JOBS)
            assert reasons == {}
            assert renderer.renders == len(JOBS)
        finally:
            renderer.release_all()
            poller.close()
