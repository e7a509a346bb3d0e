"""One body per round, gzip from kept pieces, Accept-Encoding q-values: over real HTTP, and read by
a real Prometheus."""

import gzip
import json
import threading
from pathlib import Path

import pytest
import requests

from exporter.simulator import SimulatedWorld, SimulatorServer
from exporter.web import gzip_accepted
from harness import ExporterProcess
from promstack import PrometheusServer, scrape_config

KEY = "sk-test-body-5d1e"
FIXTURES = Path(__file__).parent / "fixtures"
OPENMETRICS = {"Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
               "Accept-Encoding": "gzip"}


@pytest.fixture(scope="module")
def simulator():
    world = SimulatedWorld(jobs=6, files_per_job=40, seed=5, failure_rate=0.2)
    with SimulatorServer(world, KEY) as server:
        yield server


def config(simulator, **scrape):
    return {"api": {"base_url": simulator.url}, "jobs": simulator.world.job_ids(), "scrape": scrape}


def raw(url, headers):
    with requests.get(url + "/metrics", headers=headers, timeout=30, stream=True) as response:
        response.raise_for_status()
        return response.headers, response.raw.read(decode_content=False)


@pytest.mark.parametrize("header, gzipped", [
    ("gzip", True), ("GZIP", True), ("gzip;q=0.5, identity", True), ("deflate, gzip;q=1.0", True),
    ("gzip;q=0", False), ("gzip; q=0.0, identity", False), ("identity", False), ("", False),
    ("*", True), ("*;q=0", False), ("gzip;q=0, *", False), ("br, *;q=0.1", True), ("gzip;q=abc", False),
])
def test_accept_encoding_q_values(header, gzipped):
    assert gzip_accepted(header) is gzipped


@pytest.mark.slow
def test_scrapes_sharing_a_round_get_the_same_body_and_gzip_is_the_same_text(simulator):
    with ExporterProcess(config(simulator, cache_ttl="1m"), KEY) as exporter:
        raw(exporter.url, OPENMETRICS)  # the round
        bodies, errors = [], []

        def scrape():
            try:
                bodies.append(raw(exporter.url, OPENMETRICS))
            except Exception as err:  # noqa: BLE001 - reported below
                errors.append(err)

        threads = [threading.Thread(target=scrape) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors
        assert len({body for _, body in bodies}) == 1
        headers, body = bodies[0]
        assert headers["Content-Encoding"] == "gzip"
        assert int(headers["Content-Length"]) == len(body)
        assert headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
        plain_headers, plain = raw(exporter.url, {**OPENMETRICS, "Accept-Encoding": "gzip;q=0"})
        assert "Content-Encoding" not in plain_headers
        # The plain body inflates the kept pieces as it is sent: its length was known beforehand.
        assert int(plain_headers["Content-Length"]) == len(plain)
        assert gzip.decompress(body) == plain
        assert plain.endswith(b"# EOF\n")


@pytest.mark.slow
def test_prometheus_reads_the_gzip_body_assembled_from_kept_pieces(simulator):
    # A settled job's pieces are deflated once and reused: the job must arrive whole in Prometheus.
    bodies = {"ij-done": json.loads((FIXTURES / "job_completed.json").read_text())}
    with SimulatorServer(SimulatedWorld(jobs=0), KEY, fixtures=bodies) as api, \
            ExporterProcess({"api": {"base_url": api.url}, "jobs": ["ij-done"] + simulator.world.job_ids()[:2],
                             "scrape": {"cache_ttl": "0s"}}, KEY) as exporter, \
            PrometheusServer(scrape_configs=[scrape_config("seekrflow", exporter.url)]) as prometheus:
        prometheus.wait_for('up{job="seekrflow"} == 1')
        expected = {}
        _, text = raw(exporter.url, {"Accept": "text/plain", "Accept-Encoding": "identity"})
        for line in text.decode().splitlines():
            if line.startswith("seekrflow_ingestion_file_info{") and 'job_id="ij-done"' in line:
                expected[line.split('record_id="')[1].split('"')[0]] = 1.0
        rows = prometheus.query('seekrflow_ingestion_file_info{job_id="ij-done"}')
        assert {row["metric"]["record_id"] for row in rows} == set(expected)
        # A wrong CRC or a broken deflate stream would have failed the scrape (up 0, no samples).
        assert prometheus.values('up{job="seekrflow"}', "job") == {"seekrflow": 1.0}
