"""The official SDK's conventions: the base URL without its /vN, and retry-after-ms before Retry-After."""

from __future__ import annotations

import json
import time
from email.utils import formatdate
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter

from exporter.client import SeekrFlowClient
from exporter.config import ApiConfig, ConfigError, ScrapeConfig, build_config
from exporter.scrape import JobPoller
from exporter.simulator import SimulatedWorld, SimulatorServer
from harness import ExporterProcess
from metric_samples import parse_exposition, value
from test_hostile_http import RawAPI, http

KEY = "sk-test-conventions-3e1f"
FIXTURES = Path(__file__).parent / "fixtures"
GOOD = json.loads((FIXTURES / "job_completed.json").read_text())


def base_url_of(**given) -> str:
    environ = {"SEEKR_API_KEY": "sk-test-key"}
    if "env" in given:
        environ["SEEKR_BASE_URL"] = given["env"]
    api = {"base_url": given["config"]} if "config" in given else {}
    return build_config({"jobs": ["ij-1"], "api": api}, environ).api.base_url


@pytest.mark.parametrize("given, used", [
    ("https://flow.seekr.com", "https://flow.seekr.com"),
    ("https://flow.seekr.com/", "https://flow.seekr.com"),
    ("https://flow.seekr.com/v1", "https://flow.seekr.com"),
    ("https://flow.seekr.com/v1/", "https://flow.seekr.com"),
    ("https://flow.seekr.com/v1//", "https://flow.seekr.com"),
    ("https://flow.seekr.com/v2", "https://flow.seekr.com"),
    ("http://gateway.internal:8443/seekr/v10/", "http://gateway.internal:8443/seekr"),
    ("https://flow.seekr.com/v1beta", "https://flow.seekr.com/v1beta"),
    ("https://flow.seekr.com/api", "https://flow.seekr.com/api"),
])
def test_a_trailing_api_version_and_slashes_are_stripped_from_both_spellings(given, used):
    assert base_url_of(config=given) == used
    assert base_url_of(env=given) == used


def test_a_base_url_that_is_only_a_version_is_still_refused_by_its_key():
    with pytest.raises(ConfigError, match=r"^SEEKR_BASE_URL: must be an http\(s\) URL .* got '/v1'$"):
        base_url_of(env="/v1")


@pytest.mark.parametrize("spelling", ["env", "config"])
@pytest.mark.slow
def test_the_exporter_reaches_the_api_with_a_v1_base_url_and_logs_the_url_it_uses(spelling):
    world = SimulatedWorld(jobs=0, files_per_job=1)
    with SimulatorServer(world, KEY, fixtures={GOOD["id"]: GOOD}) as simulator:
        given = simulator.url + ("/v1" if spelling == "env" else "/v1/")
        config = {"jobs": [GOOD["id"]]}
        env = {}
        if spelling == "env":
            env["SEEKR_BASE_URL"] = given
        else:
            config["api"] = {"base_url": given}
        with ExporterProcess(config, KEY, env=env) as exporter:
            got = parse_exposition(exporter.scrape().text)
        assert value(got, "seekrflow_ingestion_job_scrape_success", job_id=GOOD["id"]) == 1
        assert value(got, "seekrflow_up") == 1
        assert simulator.requests == {"/v1/flow/alignment/ingestion/{id}": 1}
    (line,) = [line for line in exporter.log.splitlines() if 'msg=listening' in line]
    assert f"base_url={simulator.url} " in line


# --- retry headers -------------------------------------------------------------------------------


def busy(status: bytes, *headers: bytes) -> bytes:
    # The raw server closes after each answer: say so, or the client may reuse the closed connection.
    return http(status, [*headers, b"Content-Length: 2", b"Connection: close"], b"{}")


def client_for(url: str) -> SeekrFlowClient:
    api = ApiConfig(base_url=url, api_key=KEY, request_timeout=5.0)
    return SeekrFlowClient(api, Counter("r", "r", ["endpoint", "code"], registry=CollectorRegistry()))


def test_retry_after_ms_comes_first_then_retry_after_in_seconds_or_as_a_date():
    in_two_minutes = formatdate(time.time() + 120, usegmt=True).encode()
    answers = {
        "ij-ms": busy(b"HTTP/1.1 429 Too Many Requests", b"retry-after-ms: 2500", b"Retry-After: 60"),
        "ij-ms-fraction": busy(b"HTTP/1.1 503 Busy", b"Retry-After-Ms: 1500.5"),
        "ij-ms-garbled": busy(b"HTTP/1.1 429 Too Many Requests", b"retry-after-ms: soon", b"Retry-After: 7"),
        "ij-ms-negative": busy(b"HTTP/1.1 429 Too Many Requests", b"retry-after-ms: -5", b"Retry-After: 8"),
        "ij-ms-nan": busy(b"HTTP/1.1 503 Busy", b"retry-after-ms: nan"),
        "ij-ms-other-digits": busy(b"HTTP/1.1 503 Busy", "retry-after-ms: ١٢".encode(), b"Retry-After: 9"),
        "ij-seconds": busy(b"HTTP/1.1 503 Busy", b"Retry-After: 30"),
        "ij-date": busy(b"HTTP/1.1 503 Busy", b"Retry-After: " + in_two_minutes),
        "ij-none": busy(b"HTTP/1.1 429 Too Many Requests"),
        "ij-500": busy(b"HTTP/1.1 500 Oops", b"retry-after-ms: 1000"),  # only 429 and 503 are asked to wait
    }
    with RawAPI(answers) as api:
        client = client_for(api.url)
        results = {job_id: client.fetch_job(job_id, 5.0) for job_id in answers}
        client.close()
    assert {job_id: r.http_status for job_id, r in results.items()} == {
        job_id: int(answer[9:12]) for job_id, answer in answers.items()}
    got = {job_id: r.retry_after for job_id, r in results.items()}
    date_wait = got.pop("ij-date")
    assert 110 < date_wait <= 120
    assert got == {"ij-ms": 2.5, "ij-ms-fraction": 1.5005, "ij-ms-garbled": 7.0, "ij-ms-negative": 8.0,
                   "ij-ms-nan": None, "ij-ms-other-digits": 9.0, "ij-seconds": 30.0, "ij-none": None,
                   "ij-500": None}


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class CountedAnswers(dict):
    """The raw server's answers, counting how often each job was asked for over HTTP."""

    def __init__(self, answers):
        super().__init__(answers)
        self.asked = {job_id: 0 for job_id in answers}

    def get(self, job_id, default=None):
        if job_id in self.asked:
            self.asked[job_id] += 1
        return super().get(job_id, default)


def test_retry_after_ms_is_honoured_with_the_same_cap_as_retry_after():
    answers = CountedAnswers({
        "ij-short": busy(b"HTTP/1.1 429 Too Many Requests", b"retry-after-ms: 30000", b"Retry-After: 3600"),
        "ij-long": busy(b"HTTP/1.1 429 Too Many Requests", b"retry-after-ms: 86400000")})
    clock = Clock()
    with RawAPI(answers) as api:
        client = client_for(api.url)
        poller = JobPoller(["ij-short", "ij-long"], client, ScrapeConfig(cache_ttl=0.0),
                           ApiConfig(base_url=api.url, api_key=KEY, request_timeout=30.0), monotonic=clock)
        try:
            asked = []
            for step in (0, 29, 2, 568, 2):  # at 0, 29, 31, 599, 601 s
                clock.now += step
                poller.scrape(clock() + 30.0)
                asked.append((answers.asked["ij-short"], answers.asked["ij-long"]))
        finally:
            poller.close()
    # 30 s from retry-after-ms (not 3600 from Retry-After); a day is cut to the 600 s cap.
    assert asked == [(1, 1), (1, 1), (2, 1), (3, 1), (3, 2)]
