"""The web and log flags exporters usually have, each through the real process (tests/harness.py):
several --web.listen-address, --web.telemetry-path, --web.disable-exporter-metrics. (--log.format
is in test_logging.py.)"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter.simulator import SimulatedWorld, SimulatorServer
from harness import ExporterProcess, free_port

KEY = "flags-test-key"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def api():
    world = SimulatedWorld(jobs=2, files_per_job=3, seed=4)
    with SimulatorServer(world, api_key=KEY) as simulator:
        yield simulator, world.job_ids()


def config_for(api) -> dict:
    simulator, jobs = api
    return {"api": {"base_url": simulator.url}, "jobs": jobs}


def names(text: str) -> set[str]:
    return {family.name for family in text_string_to_metric_families(text)}


def job_ids_in(text: str) -> set[str]:
    return {sample.labels["job_id"] for family in text_string_to_metric_families(text)
            if family.name == "seekrflow_ingestion_job_scrape_success" for sample in family.samples}


def run_exporter(args: list[str], tmp_path: Path, config: dict) -> subprocess.CompletedProcess:
    """The exporter with ``args``, for start-ups that must fail (it exits before serving)."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SEEKR_")}, "SEEKR_API_KEY": KEY}
    return subprocess.run([sys.executable, "-m", "exporter", "--config.file", str(path), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


# --- several --web.listen-address -----------------------------------------------------------

@pytest.mark.slow
def test_every_listen_address_serves_the_same_exporter(api):
    second = free_port()
    with ExporterProcess(config_for(api), KEY, extra_args=["--web.listen-address", f"127.0.0.1:{second}"]) as exporter:
        first_answer = exporter.scrape().text
        second_answer = requests.get(f"http://127.0.0.1:{second}/metrics", timeout=30)
        assert second_answer.status_code == 200
        assert job_ids_in(first_answer) == job_ids_in(second_answer.text) == set(api[1])
        assert requests.get(f"http://127.0.0.1:{second}/-/healthy", timeout=10).status_code == 200
    listening = [line for line in exporter.log.splitlines() if "msg=listening" in line]
    assert [line.split(" address=")[1].split(" ")[0] for line in listening] == [
        f"127.0.0.1:{exporter.port}", f"127.0.0.1:{second}"]


def test_an_address_that_cannot_be_bound_stops_start_up_in_one_line(api, tmp_path):
    first = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        result = run_exporter(["--web.listen-address", f"127.0.0.1:{first}", "--web.listen-address",
                               f"127.0.0.1:{busy}"], tmp_path, config_for(api))
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert f'msg="cannot listen" address=127.0.0.1:{busy} err="Address already in use"' in line


def test_a_bad_listen_address_among_several_is_named(api, tmp_path):
    result = run_exporter(["--web.listen-address", "127.0.0.1:0", "--web.listen-address", "127.0.0.1:99999"],
                          tmp_path, config_for(api))
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert 'msg="invalid flag" err="--web.listen-address ' in line and "99999" in line


# --- --web.telemetry-path ---------------------------------------------------------------------

@pytest.mark.slow
def test_the_telemetry_path_moves_the_metrics(api):
    with ExporterProcess(config_for(api), KEY, extra_args=["--web.telemetry-path", "/seekrflow/metrics"]) as exporter:
        moved = requests.get(exporter.url + "/seekrflow/metrics", timeout=30)
        assert moved.status_code == 200
        assert job_ids_in(moved.text) == set(api[1])
        assert requests.get(exporter.url + "/metrics", timeout=10).status_code == 404
        head = requests.head(exporter.url + "/seekrflow/metrics", timeout=10)
        assert (head.status_code, head.headers["Content-Type"].split(";")[0]) == (200, "text/plain")
        assert requests.post(exporter.url + "/seekrflow/metrics", timeout=10).status_code == 405
        assert '<a href="/seekrflow/metrics">Metrics</a>' in requests.get(exporter.url + "/", timeout=10).text
        assert requests.get(exporter.url + "/-/healthy", timeout=10).status_code == 200
    assert "telemetry_path=/seekrflow/metrics" in exporter.log


def refusal(api, tmp_path, flag: str, value: str) -> str:
    """The one line the exporter writes when it refuses ``flag value`` at start-up (exit code 1)."""
    result = run_exporter(["--web.listen-address", "127.0.0.1:0", flag, value], tmp_path, config_for(api))
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    return line


@pytest.mark.parametrize(("path", "reason"), [
    ("metrics", "must be an absolute path like /metrics"),
    ("/me trics", "must be an absolute path like /metrics"),
    ("/-/healthy", "is the path of another page"),
    ("/", "is the path of another page"),
])
def test_a_telemetry_path_that_cannot_serve_is_refused_in_one_line(api, tmp_path, path, reason):
    line = refusal(api, tmp_path, "--web.telemetry-path", path)
    assert 'msg="invalid flag" err="--web.telemetry-path ' in line and reason in line


# --- --web.disable-exporter-metrics -------------------------------------------------------------

@pytest.mark.slow
def test_disable_exporter_metrics_leaves_out_the_process_series_only(api):
    with ExporterProcess(config_for(api), KEY) as exporter:
        full = names(exporter.scrape().text)
    with ExporterProcess(config_for(api), KEY, extra_args=["--web.disable-exporter-metrics"]) as exporter:
        lean = names(exporter.scrape().text)
    process = {name for name in full if name.startswith("process_")}
    assert {"process_cpu_seconds", "process_resident_memory_bytes", "process_open_fds"} <= process
    assert lean == full - process
    assert {"seekrflow_up", "seekrflow_exporter_build_info", "seekrflow_ingestion_job_status"} <= lean


# --- --web.read-timeout -------------------------------------------------------------------------

@pytest.mark.slow
def test_the_read_timeout_closes_a_connection_that_never_finishes_its_request(api):
    with ExporterProcess(config_for(api), KEY, extra_args=["--web.read-timeout", "1s"]) as exporter:
        with socket.create_connection(("127.0.0.1", exporter.port), timeout=20) as sock:
            sock.sendall(b"GET /metrics HTTP/1.1\r\n")  # one line, then nothing
            # Closed by the 1 s deadline: the 10 s default would leave this receive to time out.
            sock.settimeout(9)
            assert sock.recv(4096) == b""
        assert exporter.scrape().status_code == 200


@pytest.mark.parametrize(("given", "reason"), [
    ("10", "is not a duration like 30s"),
    ("1.5s", "is not a duration like 30s"),
    ("0s", "must be longer than 0s"),
])
def test_a_read_timeout_that_is_not_a_positive_duration_is_refused_in_one_line(api, tmp_path, given, reason):
    line = refusal(api, tmp_path, "--web.read-timeout", given)
    assert 'msg="invalid flag" err="--web.read-timeout ' in line and reason in line
