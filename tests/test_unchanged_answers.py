"""An answer whose body did not change is the job kept from the last one: not parsed nor rendered
again, while the values that grow with time (waits, running times, the job's duration) still grow.

The simulator's clock is the test's, so the API's answer changes only when the test moves it.
"""

import json
import time
import urllib.request
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.client import SeekrFlowClient, body_digest
from exporter.collector import ScrapeCollector
from exporter.config import ApiConfig, MetricsConfig, ScrapeConfig
from exporter.exposition import TEXT, Renderer
from exporter.handover import carry_jobs
from exporter.intake import Intake
from exporter.jobstate import KnownJob
from exporter.metrics import FamiliesCollector, build_job_families
from exporter.model import JobSnapshot, parse_job
from exporter.scrape import JobPoller
from exporter.selfmetrics import SelfMetrics
from exporter.sharding import Shard
from exporter.simulator import SimulatedWorld, SimulatorServer

KEY = "sk-test-unchanged-5e1d"
# Series that say how the scrape went rather than what the job is: left out of the comparison.
STATE = {"seekrflow_ingestion_job_scrape_success", "seekrflow_ingestion_job_scrape_error_info",
         "seekrflow_ingestion_job_last_success_timestamp_seconds"}


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


class CountingRenderer(Renderer):
    def __init__(self, settings):
        super().__init__(settings)
        self.renders = 0

    def render_data(self, job_id, job, now, keep=False):
        self.renders += 1
        return super().render_data(job_id, job, now, keep)


def job_series(text):
    return sorted((s.name, sorted(s.labels.items()), s.value) for family in text_string_to_metric_families(text)
                  for s in family.samples if s.name.startswith("seekrflow_ingestion_") and s.name not in STATE)


def expected_series(api, job_id, now):
    """The job's series at ``now`` as the library writes them, from the API's current answer."""
    request = urllib.request.Request(f"{api.url}/v1/flow/alignment/ingestion/{job_id}",
                                     headers={"Authorization": KEY})
    with urllib.request.urlopen(request, timeout=30) as answer:
        job = parse_job(json.loads(answer.read()))
    assert not job.is_settled  # the values that grow with time are what this test is about
    families = build_job_families([JobSnapshot(job_id, job, True)], now, MetricsConfig())
    return job_series(generate_latest(FamiliesCollector(families)).decode())


def test_an_unchanged_answer_is_not_read_again_and_its_waits_still_grow():
    world = SimulatedWorld(jobs=1, files_per_job=30, failure_rate=0.2)
    [job_id] = world.job_ids()
    middle = (world.job_created_at(job_id) + world.job_finished_at(job_id)) / 2
    api_clock, wall = Clock(middle), Clock(middle + 5)
    with SimulatorServer(world, KEY, clock=api_clock) as api:
        settings = ApiConfig(base_url=api.url, api_key=KEY, request_timeout=30.0)
        client = SeekrFlowClient(settings, Counter("requests", "r", ["endpoint", "code"], registry=CollectorRegistry()))
        renderer = CountingRenderer(MetricsConfig())
        poller = JobPoller([job_id], client, ScrapeConfig(timeout=30.0, cache_ttl=0.0), settings, keeper=renderer,
                           wall_clock=wall)
        collector = ScrapeCollector(poller, renderer, 30.0, SelfMetrics(), wall_clock=wall)
        try:
            def scrape():
                return job_series(b"".join(collector.body(None, TEXT, False)).decode())

            first = scrape()
            assert first == expected_series(api, job_id, wall.now)

            wall.now += 60  # the API's answer is the same bytes
            later = scrape()
            assert later == expected_series(api, job_id, wall.now)
            assert later != first  # waits and running times grew by a minute
            assert renderer.renders == 1
            assert api.job_requests[job_id] == 4  # each scrape asked, and so did the test (expected_series)

            api_clock.now += 120  # files move on: a new body, read and rendered
            wall.now += 120
            moved = scrape()
            assert moved == expected_series(api, job_id, wall.now)
            assert renderer.renders == 2
        finally:
            poller.close()


def test_the_same_body_read_with_other_terminal_statuses_is_another_answer():
    body = b'{"id": "ij-1"}'
    statuses = frozenset({"completed", "failed"})
    assert body_digest(body, statuses) == body_digest(bytearray(body), frozenset({"failed", "completed"}))
    assert body_digest(body, statuses) != body_digest(body, statuses | {"stopped"})
    assert body_digest(body, statuses) != body_digest(body + b" ", statuses)


def test_a_kept_job_rendered_for_other_settings_is_asked_again_but_its_back_off_and_request_carry_over():
    job = parse_job(json.loads((Path(__file__).parent / "fixtures" / "job_running.json").read_text()))
    old, new = Renderer(MetricsConfig()), Renderer(MetricsConfig(per_file="none"))
    rendered = old.render_kept(job.id, job, 1000.0, digest=b"d")
    in_flight = Future()
    known = KnownJob(rendered, data_from=5.0, last_success=1000.0, error="http_429", error_from=6.0,
                     retry_at=3600.0, in_flight=in_flight)
    states = {}
    carry_jobs({job.id: known}, {job.id}, states, new.serves)
    carried = states[job.id]
    assert (carried.job, carried.data_from) == (None, None)  # its data is asked for again
    assert (carried.last_success, carried.error, carried.error_from, carried.retry_at, carried.in_flight) == \
        (1000.0, "http_429", 6.0, 3600.0, in_flight)
    # An answer with the same body is not taken for the job rendered under the old settings.
    intake = Intake(states, new, Shard(), time.time, time.monotonic)
    assert intake.reusable(rendered) is None
    assert Intake(states, old, Shard(), time.time, time.monotonic).reusable(rendered) is rendered
    # A settled job's is, when it is read again after scrape.finished_job_refresh.
    settled = old.render_kept(job.id, replace(job, status="completed", records=()), 1000.0, digest=b"d")
    assert settled.is_settled and Intake(states, old, Shard(), time.time, time.monotonic).reusable(settled) is settled


def test_a_settled_job_read_again_with_the_same_answer_is_not_rendered_again():
    body = json.loads((Path(__file__).parent / "fixtures" / "job_completed.json").read_text())
    with SimulatorServer(SimulatedWorld(jobs=0), KEY, fixtures={body["id"]: body}) as api:
        settings = ApiConfig(base_url=api.url, api_key=KEY, request_timeout=30.0)
        client = SeekrFlowClient(settings, Counter("requests", "r", ["endpoint", "code"], registry=CollectorRegistry()))
        renderer = CountingRenderer(MetricsConfig())
        clock = Clock(1000.0)
        poller = JobPoller([body["id"]], client, ScrapeConfig(timeout=30.0, cache_ttl=0.0, finished_job_refresh=600.0),
                           settings, keeper=renderer, monotonic=clock)
        try:
            first = poller.scrape(clock() + 30).snapshots[0].job
            clock.now += 601  # due again
            again = poller.scrape(clock() + 30).snapshots[0].job
        finally:
            poller.close()
        assert api.job_requests[body["id"]] == 2
    assert first.is_settled and again is first
    assert renderer.renders == 1
