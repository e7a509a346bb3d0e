"""The deadline bounds the whole scrape: fetching, parsing, rendering and joining together.

The scrape's clock is the test's: the API answers at once, while turning a job's records into
series is slow (two seconds a job on that clock). The answer must still come by the deadline, the
jobs that could not be rendered in time are reported as timed out, and the next scrape has them.
"""

import json
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
    """Renders an unfinished job's series in ``SLOW_STEP`` seconds of the test's clock."""

    def __init__(self, settings, clock):
        super().__init__(settings)
        self.clock = clock

    def render_data(self, job_id, job, now, keep=False):
        self.clock.now += SLOW_STEP
        return super().render_data(job_id, job, now, keep)


def every_answer(futures, deadline):
    """The poller's wait: the API answers at once, so every request is done (in real time)."""
    futures = list(futures)
    wait_until(lambda: all(f.done() for f in futures), what="the simulator's answers")
    return set(futures)


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
        renderer = SlowRenderer(MetricsConfig(), clock)
        poller = JobPoller(JOBS, client, ScrapeConfig(timeout=BUDGET, cache_ttl=0.0), settings, monotonic=clock,
                           wait_until=every_answer, keeper=renderer)
        collector = ScrapeCollector(poller, renderer, BUDGET, SelfMetrics(), monotonic=clock)
        try:
            took, success, reasons, with_data = scrape(collector, clock)
            assert took <= BUDGET
            # Four renders of two seconds fit before the deadline; a fifth would end past it.
            assert with_data == set(JOBS[:4])
            assert success == {job_id: (1.0 if job_id in JOBS[:4] else 0.0) for job_id in JOBS}
            assert reasons == {"ij-5": "timeout", "ij-6": "timeout"}

            clock.now += 30
            took, success, reasons, with_data = scrape(collector, clock)
            assert took <= BUDGET
            # The two left out come first now; the time left then serves three more.
            assert {"ij-5", "ij-6"} <= with_data and len(with_data) == 5
            assert reasons == {job_id: "timeout" for job_id in JOBS if job_id not in with_data}
        finally:
            poller.close()
