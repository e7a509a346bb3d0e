"""Discovery keeps what it knew: job lists with and without file_records, and empty lists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter

from exporter.client import SeekrFlowClient
from exporter.config import ApiConfig, DiscoveryConfig, ScrapeConfig
from exporter.discovery import watched_jobs
from exporter.model import parse_job
from exporter.results import DiscoveryStatus, ListResult
from exporter.scrape import JobPoller
from exporter.simulator import SimulatedWorld, SimulatorServer
from test_hostile_http import RawAPI, http

KEY = "sk-test-discovery-records"
FIXTURES = Path(__file__).parent / "fixtures"
LIST = "/v1/flow/alignment/ingestion"
JOB = "/v1/flow/alignment/ingestion/{id}"
DONE = json.loads((FIXTURES / "job_completed.json").read_text())  # ended 2026-01-15T15:00:00Z
RUNNING = json.loads((FIXTURES / "job_running.json").read_text())
ENDED = 1768489200.0  # 2026-01-15T15:00:00Z
DAY = 86400.0


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def without_records(body: dict) -> dict:
    return {k: v for k, v in body.items() if k != "file_records"}


# --- the pure choice ---------------------------------------------------------------------------


def test_a_finished_job_listed_without_records_is_judged_by_the_records_held():
    listed = ListResult((parse_job(without_records(DONE)),))
    held = {"ij-done": parse_job(DONE)}
    # Nothing held: when it ended is unknown, so it is watched (its own fetch brings the records).
    assert [j.id for j in watched_jobs(listed, ENDED + 30 * DAY, 7 * DAY)[0]] == ["ij-done"]
    # Held records say it ended 6 days ago, then 8 days ago.
    assert [j.id for j in watched_jobs(listed, ENDED + 6 * DAY, 7 * DAY, held)[0]] == ["ij-done"]
    assert watched_jobs(listed, ENDED + 8 * DAY, 7 * DAY, held)[0] == []
    # With its records in the list, the list decides alone.
    assert watched_jobs(ListResult((parse_job(DONE),)), ENDED + 8 * DAY, 7 * DAY)[0] == []


def test_records_left_out_or_null_are_unknown_but_an_empty_list_is_known():
    assert parse_job(without_records(DONE)).records_known is False
    assert parse_job(dict(DONE, file_records=None)).records_known is False
    assert parse_job(dict(DONE, file_records=[])).records_known is True


# --- empty lists as the SDK reads them -----------------------------------------------------------


@pytest.mark.parametrize("body, jobs", [
    (b'{"object": "list", "data": null}', 0),
    (b'{"object": "list"}', 0),
    (b'{}', 0),
    (b'{"object": "list", "data": []}', 0),
    (json.dumps({"object": "list", "data": [DONE]}).encode(), 1),
])
def test_a_null_or_missing_data_is_an_empty_list(body, jobs):
    answer = http(b"HTTP/1.1 200 OK", [b"Content-Length: %d" % len(body), b"Connection: close"], body)
    with RawAPI({"ingestion": answer}) as api:
        config = ApiConfig(base_url=api.url, api_key=KEY, request_timeout=5.0)
        client = SeekrFlowClient(config, Counter("r", "r", ["endpoint", "code"], registry=CollectorRegistry()))
        listed = client.list_jobs(5.0)
        client.close()
    assert (listed.failure, len(listed.jobs), listed.invalid) == (None, jobs, {})


@pytest.mark.parametrize("body", [b'{"object": "list", "data": {"id": "ij-1"}}', b'[]', b'{"data": "none"}'])
def test_a_list_that_is_not_a_list_still_fails_as_invalid_schema(body):
    answer = http(b"HTTP/1.1 200 OK", [b"Content-Length: %d" % len(body), b"Connection: close"], body)
    with RawAPI({"ingestion": answer}) as api:
        config = ApiConfig(base_url=api.url, api_key=KEY, request_timeout=5.0)
        client = SeekrFlowClient(config, Counter("r", "r", ["endpoint", "code"], registry=CollectorRegistry()))
        listed = client.list_jobs(5.0)
        client.close()
    assert listed.failure.reason == "invalid_schema"


# --- the poller over real HTTP -------------------------------------------------------------------


def poller_for(simulator, clock, wall, jobs=()):
    api = ApiConfig(base_url=simulator.url, api_key=KEY, request_timeout=5.0)
    client = SeekrFlowClient(api, Counter("r", "r", ["endpoint", "code"], registry=CollectorRegistry()))
    return JobPoller(jobs, client, ScrapeConfig(cache_ttl=0.0, finished_job_refresh=600.0), api,
                     DiscoveryConfig(enabled=True, interval=300.0, max_age=7 * DAY), monotonic=clock,
                     wall_clock=wall)


def files_of(result) -> dict[str, int | None]:
    return {s.job_id: None if s.job is None else len(s.job.records) for s in result.snapshots}


@pytest.mark.parametrize("listed_as", ["missing", "null"])
def test_jobs_listed_without_records_are_fetched_in_the_same_round_and_keep_their_records(listed_as):
    clock, wall = Clock(), Clock(ENDED + DAY)
    with SimulatorServer(SimulatedWorld(jobs=0, files_per_job=1), KEY, fixtures={"ij-done": DONE, "ij-running": RUNNING},
                         list_file_records=listed_as) as simulator:
        poller = poller_for(simulator, clock, wall)
        try:
            first = poller.scrape(clock() + 10)
            # Both listed without records: each fetched on its own in the first round, so the
            # first scrape already shows their files.
            assert files_of(first) == {"ij-done": 3, "ij-running": 8}
            assert all(s.fresh for s in first.snapshots)
            assert simulator.requests == {LIST: 1, JOB: 2}

            clock.now += 300  # the list again, still without records: nothing held is replaced
            second = poller.scrape(clock() + 10)
            assert files_of(second) == {"ij-done": 3, "ij-running": 8}
            # ij-running is unfinished (read every round); ij-done is settled (read every 10 minutes).
            assert simulator.job_requests == {"ij-done": 1, "ij-running": 2}
            assert simulator.requests[LIST] == 2

            clock.now += 301  # past finished_job_refresh: the settled job is read again, on its own
            assert files_of(poller.scrape(clock() + 10)) == {"ij-done": 3, "ij-running": 8}
            assert simulator.job_requests == {"ij-done": 2, "ij-running": 3}

            # Eight days after it ended, the records held say ij-done is too old: it leaves.
            wall.now = ENDED + 8 * DAY
            clock.now += 300
            result = poller.scrape(clock() + 10)
            assert files_of(result) == {"ij-running": 8}
            assert result.discovery == DiscoveryStatus(True, 1)
        finally:
            poller.close()


def test_jobs_listed_with_records_need_no_second_request_in_that_round():
    clock, wall = Clock(), Clock(ENDED + DAY)
    with SimulatorServer(SimulatedWorld(jobs=0, files_per_job=1), KEY,
                         fixtures={"ij-done": DONE, "ij-running": RUNNING}) as simulator:
        poller = poller_for(simulator, clock, wall)
        try:
            assert files_of(poller.scrape(clock() + 10)) == {"ij-done": 3, "ij-running": 8}
            assert simulator.requests == {LIST: 1}
        finally:
            poller.close()


def test_a_null_list_drops_the_discovered_jobs_but_not_the_configured_ones():
    clock, wall = Clock(), Clock(ENDED + DAY)
    empty = json.dumps({"object": "list", "data": None}).encode()
    answers = {"ingestion": http(b"HTTP/1.1 200 OK", [b"Content-Length: %d" % len(empty), b"Connection: close"], empty),
               "ij-done": http(b"HTTP/1.1 200 OK", [b"Content-Length: %d" % len(json.dumps(DONE)), b"Connection: close"],
                               json.dumps(DONE).encode())}
    with RawAPI(answers) as api:
        poller = poller_for(api, clock, wall, jobs=["ij-done"])
        try:
            result = poller.scrape(clock() + 10)
        finally:
            poller.close()
    assert result.discovery == DiscoveryStatus(True, 0)
    assert files_of(result) == {"ij-done": 3}
