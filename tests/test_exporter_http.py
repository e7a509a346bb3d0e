"""The exporter process against the simulator over real HTTP on 127.0.0.1."""

import gzip
import json
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import yaml

from exporter import __version__
from exporter.simulator import SimulatedWorld, SimulatorServer
from harness import ROOT, ExporterProcess, free_port, read_lines, wait_until
from metric_samples import parse_exposition, series, value

KEY = "sk-test-7f3c9a1e5b2d4c6e8a0b1c2d3e4f5a6b"
P = "seekrflow_ingestion_"
FIXTURES = Path(__file__).parent / "fixtures"
ENDPOINT = "/v1/flow/alignment/ingestion/{id}"
FAULTS = {"ij-500": "http_500", "ij-badjson": "bad_json", "ij-badschema": "bad_schema"}


def fixture_bodies():
    names = ("job_running.json", "job_completed.json", "job_unknown_status.json")
    bodies = [json.loads((FIXTURES / n).read_text()) for n in names]
    return {body["id"]: body for body in bodies}


@pytest.fixture
def simulator():
    world = SimulatedWorld(jobs=3, files_per_job=8, seed=3, started_at=time.time())
    # ij-slow answers only when the simulator stops (stop() cuts the wait short).
    server = SimulatorServer(world, KEY, fixtures=fixture_bodies(), faults=dict(FAULTS, **{"ij-slow": "slow:600"}))
    server.start("127.0.0.1", 0)
    yield server
    server.stop()


def config_for(simulator, jobs, **sections):
    config = {"api": {"base_url": simulator.url}, "jobs": list(jobs)}
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    return config


@pytest.mark.slow
def test_bad_jobs_fail_alone_and_the_rest_keep_exact_series(simulator):
    world_ids = simulator.world.job_ids()
    jobs = ["ij-running", "ij-done", "ij-odd", "ij-404", "ij-500", "ij-badjson", "ij-badschema", *world_ids]
    with ExporterProcess(config_for(simulator, jobs), KEY) as exporter:
        response = exporter.scrape()
        text = response.text
    got = parse_exposition(text)

    assert response.status_code == 200
    assert value(got, "seekrflow_up") == 1
    assert value(got, "seekrflow_exporter_build_info", version=__version__,
                 python_version=platform.python_version()) == 1
    assert value(got, "seekrflow_exporter_scrape_duration_seconds") > 0
    success = {dict(k)["job_id"]: v for k, v in series(got, P + "job_scrape_success").items()}
    assert success == {"ij-running": 1, "ij-done": 1, "ij-odd": 1, "ij-404": 0, "ij-500": 0, "ij-badjson": 0,
                       "ij-badschema": 0, **{job_id: 1 for job_id in world_ids}}
    errors = {dict(k)["job_id"]: dict(k)["reason"] for k in series(got, P + "job_scrape_error_info")}
    assert errors == {"ij-404": "http_404", "ij-500": "http_500", "ij-badjson": "invalid_json",
                      "ij-badschema": "invalid_schema"}

    # The fixture job's values are exactly those of the unit tests, now through HTTP and the text format.
    files = {dict(k)["status"]: v for k, v in series(got, P + "job_files", job_id="ij-running").items()}
    assert files == {"queued": 2, "processing": 1, "completed": 2, "failed": 1, "converting": 1}
    assert value(got, P + "job_created_timestamp_seconds", job_id="ij-running") == 1768487400
    assert value(got, P + "job_queue_position_max", job_id="ij-running") == 4
    assert value(got, P + "job_file_processing_duration_seconds_gsum", job_id="ij-running", status="completed") == 68.5
    assert value(got, P + "job_duration_seconds", job_id="ij-done") == 200
    assert value(got, P + "job_status", job_id="ij-odd", status="paused") == 1
    assert value(got, P + "file_error_info", job_id="ij-running", record_id="ijf-f1", error_message="PDF is encrypted",
                 suggested_fix="Remove the password and upload the file again") == 1
    for job_id in world_ids:
        assert sum(series(got, P + "job_status", job_id=job_id).values()) == 1
        assert series(got, P + "file_info", job_id=job_id)

    # Failing jobs export nothing but their failure.
    for job_id in errors:
        assert {k[0] for k in got if dict(k[1]).get("job_id") == job_id} == {
            P + "job_scrape_success", P + "job_scrape_error_info"}

    codes = {dict(k)["code"]: v for k, v in series(got, "seekrflow_exporter_api_requests_total", endpoint=ENDPOINT).items()}
    assert codes == {"200": 3 + len(world_ids), "404": 1, "500": 1, "invalid_response": 2}

    failures = [line for line in exporter.log.splitlines() if 'msg="fetch failed"' in line]
    reasons = sorted(re.search(r"reason=(\S+)", line).group(1) for line in failures)
    assert reasons == ["http_404", "http_500", "invalid_json", "invalid_schema"]
    assert KEY not in text and KEY not in exporter.log


@pytest.mark.slow
def test_wrong_key_gives_up_zero_and_never_shows_the_key(simulator):
    wrong = "sk-wrong-key-0123456789abcdef0123456789"
    config = config_for(simulator, ["ij-running", "ij-done"])
    with ExporterProcess(config, wrong, extra_args=["--log.level", "debug"]) as exporter:
        text = exporter.scrape().text
        landing = requests.get(exporter.url + "/", timeout=5).text
    got = parse_exposition(text)
    assert value(got, "seekrflow_up") == 0
    assert {dict(k)["reason"] for k in series(got, P + "job_scrape_error_info")} == {"http_401"}
    assert value(got, "seekrflow_exporter_api_requests_total", endpoint=ENDPOINT, code="401") == 2
    for output in (text, exporter.log, landing):
        assert wrong not in output and KEY not in output
    assert "reason=http_401" in exporter.log


@pytest.mark.slow
def test_key_from_file_and_team_header(simulator, tmp_path):
    key_file = tmp_path / "api-key"
    key_file.write_text(KEY + "\n")
    config = config_for(simulator, ["ij-done"], api={"api_key_file": str(key_file), "team_id": "team-7"})
    with ExporterProcess(config, api_key=None) as exporter:
        got = parse_exposition(exporter.scrape().text)
    assert value(got, P + "job_scrape_success", job_id="ij-done") == 1
    assert simulator.team_requests == {"team-7": 1}
    assert KEY not in exporter.log


@pytest.mark.slow
def test_team_from_the_environment(simulator):
    with ExporterProcess(config_for(simulator, ["ij-done"]), KEY, env={"SEEKR_TEAM_ID": "team-env"}) as exporter:
        exporter.scrape()
    assert simulator.team_requests == {"team-env": 1}


@pytest.mark.slow
def test_unreachable_api_gives_up_zero(simulator):
    config = {"api": {"base_url": "http://127.0.0.1:9"}, "jobs": ["ij-1"]}
    with ExporterProcess(config, KEY) as exporter:
        got = parse_exposition(exporter.scrape().text)
    assert value(got, "seekrflow_up") == 0
    assert value(got, P + "job_scrape_error_info", job_id="ij-1", reason="connection_error") == 1
    assert value(got, "seekrflow_exporter_api_requests_total", endpoint=ENDPOINT, code="connection_error") == 1


@pytest.mark.slow
def test_scrape_deadline_from_prometheus_header_fails_only_the_slow_job(simulator):
    # Without the header's deadline a scrape would wait for ij-slow far longer than the test's client.
    config = config_for(simulator, ["ij-slow", "ij-done", "ij-running"], api={"timeout": "10m"},
                        scrape={"timeout": "10m", "cache_ttl": "0s"})

    def every_answer_but_the_slow_one():
        # Each scrape waits 1 s; an answer that misses it serves the next scrape. On a busy machine
        # the first round may miss it, so scrape until a round had every answer but ij-slow's.
        got = parse_exposition(exporter.scrape({"X-Prometheus-Scrape-Timeout-Seconds": "1.5"}).text)
        ok = [value(got, P + "job_scrape_success", job_id=job_id) for job_id in ("ij-done", "ij-running")]
        return got if ok == [1, 1] and value(got, "seekrflow_up") == 1 else None

    with ExporterProcess(config, KEY) as exporter:
        got = wait_until(every_answer_but_the_slow_one, timeout=30, what="a scrape with every answer but ij-slow's")
    assert value(got, P + "job_scrape_error_info", job_id="ij-slow", reason="timeout") == 1
    assert value(got, P + "job_scrape_success", job_id="ij-done") == 1
    assert value(got, P + "job_scrape_success", job_id="ij-running") == 1
    assert value(got, "seekrflow_up") == 1


@pytest.mark.slow
def test_settled_jobs_are_not_fetched_again(simulator):
    # ij-done is completed with every record finished; ij-running is not.
    config = config_for(simulator, ["ij-done", "ij-running"], scrape={"cache_ttl": "0s"})
    with ExporterProcess(config, KEY) as exporter:
        for _ in range(3):
            got = parse_exposition(exporter.scrape().text)
            assert value(got, P + "job_scrape_success", job_id="ij-done") == 1
    assert simulator.job_requests["ij-done"] == 1
    assert simulator.job_requests["ij-running"] == 3


@pytest.mark.slow
def test_concurrent_scrapes_share_one_fetch(simulator):
    simulator.latency = 0.3
    config = config_for(simulator, ["ij-running", "ij-odd"], scrape={"cache_ttl": "30s"})
    with ExporterProcess(config, KEY) as exporter:
        with ThreadPoolExecutor(4) as pool:
            texts = list(pool.map(lambda _: exporter.scrape().text, range(4)))
    for text in texts:
        assert value(parse_exposition(text), P + "job_scrape_success", job_id="ij-running") == 1
    assert simulator.job_requests == {"ij-running": 1, "ij-odd": 1}


@pytest.mark.slow
def test_current_endpoint_is_used_when_configured(simulator):
    config = config_for(simulator, ["ij-done"], api={"endpoint": "ingestion"})
    with ExporterProcess(config, KEY) as exporter:
        got = parse_exposition(exporter.scrape().text)
    assert value(got, "seekrflow_exporter_api_requests_total", endpoint="/v1/flow/ingestion/{id}", code="200") == 1
    assert simulator.requests == {"/v1/flow/ingestion/{id}": 1}


@pytest.mark.slow
def test_stale_data_is_served_while_the_api_fails(simulator):
    config = config_for(simulator, ["ij-running"], scrape={"cache_ttl": "0s", "serve_stale_for": "10m"})
    with ExporterProcess(config, KEY) as exporter:
        exporter.scrape()
        simulator.stop()  # the API goes away
        got = parse_exposition(exporter.scrape().text)
    assert value(got, P + "job_scrape_success", job_id="ij-running") == 0
    assert value(got, P + "job_scrape_error_info", job_id="ij-running", reason="connection_error") == 1
    assert value(got, P + "job_files", job_id="ij-running", status="queued") == 2
    assert value(got, "seekrflow_up") == 0


@pytest.mark.slow
def test_web_pages_and_content_negotiation(simulator):
    with ExporterProcess(config_for(simulator, ["ij-done", "ij-odd"]), KEY) as exporter:
        landing = requests.get(exporter.url + "/", timeout=5)
        healthy = requests.get(exporter.url + "/-/healthy", timeout=5)
        ready = requests.get(exporter.url + "/-/ready", timeout=5)
        missing = requests.get(exporter.url + "/nope", timeout=5)
        om = exporter.scrape({"Accept": "application/openmetrics-text; version=1.0.0"})
        raw = requests.get(exporter.url + "/metrics", headers={"Accept-Encoding": "gzip"}, stream=True, timeout=5)
        compressed = raw.raw.read()
    assert landing.status_code == 200 and "Exporting 2 ingestion jobs" in landing.text
    assert 'href="/metrics"' in landing.text
    assert (healthy.status_code, healthy.text) == (200, "Healthy\n")
    assert (ready.status_code, ready.text) == (200, "Ready\n")
    assert missing.status_code == 404
    assert om.headers["Content-Type"].startswith("application/openmetrics-text")
    assert om.text.endswith("# EOF\n")
    assert "# TYPE seekrflow_ingestion_job_file_queue_wait_seconds gaugehistogram" in om.text
    assert raw.headers["Content-Encoding"] == "gzip"
    assert b"seekrflow_up 1.0" in gzip.decompress(compressed)


@pytest.mark.slow
def test_promtool_check_metrics_is_clean(simulator):
    promtool = shutil.which("promtool")
    assert promtool, "promtool is installed by .ci/run (Debian package prometheus)"
    jobs = ["ij-running", "ij-done", "ij-odd", "ij-404", *simulator.world.job_ids()]
    with ExporterProcess(config_for(simulator, jobs), KEY) as exporter:
        text = exporter.scrape().text
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.slow
def test_demo_starts_serves_data_and_stops_cleanly(tmp_path):
    port = free_port()
    stderr_path = tmp_path / "stderr.log"
    with open(stderr_path, "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "exporter", "--demo", "--web.listen-address", f"127.0.0.1:{port}"],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        simulator_line, metrics_line = read_lines(proc.stdout, 2, timeout=20)
        assert simulator_line.startswith("SeekrFlow API simulator: http://127.0.0.1:")
        assert f"http://127.0.0.1:{port}/metrics" in metrics_line
        text = wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text,
                          what="demo metrics")
        got = parse_exposition(text)
        assert value(got, "seekrflow_up") == 1
        success = series(got, P + "job_scrape_success")
        assert len(success) == 6 and set(success.values()) == {1.0}
        statuses = {dict(k)["status"] for k, v in series(got, P + "job_status").items() if v == 1}
        assert len(statuses) >= 2  # the demo shows jobs in different states side by side
    finally:
        proc.terminate()
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        finally:
            proc.stdout.close()
    assert code == 0
    assert "Traceback" not in stderr_path.read_text()


@pytest.mark.slow
def test_retry_after_is_honoured():
    simulator_faults = {"ij-busy": "http_429"}
    world = SimulatedWorld(jobs=0, files_per_job=1, seed=1)
    with SimulatorServer(world, KEY, faults=simulator_faults, fixtures=fixture_bodies()) as busy:
        config = {"api": {"base_url": busy.url}, "jobs": ["ij-busy", "ij-running"], "scrape": {"cache_ttl": "0s"}}
        with ExporterProcess(config, KEY) as exporter:
            for _ in range(3):
                got = parse_exposition(exporter.scrape().text)
                assert value(got, P + "job_scrape_error_info", job_id="ij-busy", reason="http_429") == 1
                assert value(got, P + "job_scrape_success", job_id="ij-running") == 1
        # Asked to come back in 60 s, the exporter did not ask again; the healthy job was read each time.
        assert busy.job_requests == {"ij-busy": 1, "ij-running": 3}


@pytest.mark.slow
def test_fetch_budget_follows_the_prometheus_header(simulator):
    config = config_for(simulator, ["ij-done"], scrape={"timeout": "20s"})
    with ExporterProcess(config, KEY) as exporter:
        with_header = parse_exposition(exporter.scrape({"X-Prometheus-Scrape-Timeout-Seconds": "10"}).text)
        without = parse_exposition(exporter.scrape().text)
        garbled = parse_exposition(exporter.scrape({"X-Prometheus-Scrape-Timeout-Seconds": "soon"}).text)
    assert value(with_header, "seekrflow_exporter_scrape_timeout_seconds") == 9.5
    assert value(without, "seekrflow_exporter_scrape_timeout_seconds") == 20
    assert value(garbled, "seekrflow_exporter_scrape_timeout_seconds") == 20


@pytest.mark.slow
def test_reload_swaps_in_a_good_file_and_keeps_running_on_a_bad_one(simulator, tmp_path):
    key_file = tmp_path / "api-key"
    key_file.write_text("sk-old-wrong-key-1234567890")
    config = config_for(simulator, ["ij-done"], api={"api_key_file": str(key_file)})
    with ExporterProcess(config, api_key=None, extra_args=["--web.enable-lifecycle"]) as exporter:
        before = parse_exposition(exporter.scrape().text)
        assert value(before, "seekrflow_up") == 0

        # A new job list and a new key, picked up by POST /-/reload.
        key_file.write_text(KEY)
        exporter.config_path.write_text(yaml.safe_dump(config_for(
            simulator, ["ij-done", "ij-odd"], api={"api_key_file": str(key_file)})))
        reloaded = requests.post(exporter.url + "/-/reload", timeout=10)
        assert (reloaded.status_code, reloaded.text) == (200, "Reloaded\n")
        after = parse_exposition(exporter.scrape().text)
        assert value(after, "seekrflow_up") == 1
        assert {dict(k)["job_id"] for k in series(after, P + "job_scrape_success")} == {"ij-done", "ij-odd"}
        assert value(after, "seekrflow_exporter_config_last_reload_successful") == 1

        # A broken file by SIGHUP: the running configuration stays, the failure shows.
        exporter.config_path.write_text(yaml.safe_dump({"jobs": ["ij-done", "ij-done"]}))
        exporter.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: value(parse_exposition(exporter.scrape().text),
                                 "seekrflow_exporter_config_last_reload_successful") == 0, what="a failed reload")
        kept = parse_exposition(exporter.scrape().text)
        assert value(kept, P + "job_scrape_success", job_id="ij-odd") == 1
        refused = requests.post(exporter.url + "/-/reload", timeout=10)
        assert refused.status_code == 500
        assert refused.text == "failed to reload config: jobs[1]: duplicate job ID 'ij-done'\n"
        assert requests.get(exporter.url + "/-/reload", timeout=10).status_code == 405
    failures = [line for line in exporter.log.splitlines() if "reload failed" in line]
    assert len(failures) == 2 and all("jobs[1]: duplicate job ID 'ij-done'" in line for line in failures)
    assert KEY not in exporter.log and "sk-old-wrong-key" not in exporter.log


def test_discovery_exports_the_jobs_the_key_can_see(simulator):
    config = {"api": {"base_url": simulator.url, "endpoint": "ingestion"}, "discovery": {"enabled": True}}
    with ExporterProcess(config, KEY) as exporter:
        got = parse_exposition(exporter.scrape().text)
        landing = requests.get(exporter.url + "/", timeout=5).text
    # The list holds the simulated jobs and the fixtures; ij-done finished long ago (past max_age).
    expected = set(simulator.world.job_ids()) | {"ij-running", "ij-odd"}
    assert {dict(k)["job_id"] for k in series(got, P + "job_scrape_success")} == expected
    assert value(got, "seekrflow_exporter_discovery_success") == 1
    assert value(got, "seekrflow_exporter_discovered_jobs") == len(expected)
    assert value(got, "seekrflow_exporter_api_requests_total", endpoint="/v1/flow/ingestion", code="200") == 1
    # Listed with its records, a job needs no request of its own; ij-odd is listed with
    # file_records null, so it is fetched on its own in the same round.
    assert simulator.requests == {"/v1/flow/ingestion": 1, "/v1/flow/ingestion/{id}": 1}
    assert simulator.job_requests == {"ij-odd": 1}
    assert f"Exporting {len(expected)} ingestion jobs" in landing


@pytest.mark.slow
def test_reload_keeps_what_the_exporter_knew_and_survives_any_file(simulator):
    config = config_for(simulator, ["ij-done"], scrape={"cache_ttl": "0s"})
    with ExporterProcess(config, KEY, extra_args=["--web.enable-lifecycle"]) as exporter:
        exporter.scrape()
        exporter.config_path.write_text(yaml.safe_dump(config_for(simulator, ["ij-done", "ij-odd"],
                                                                  scrape={"cache_ttl": "0s"})))
        assert requests.post(exporter.url + "/-/reload", timeout=10).status_code == 200
        exporter.scrape()
        # ij-done is settled: read once before the reload, and not again after it.
        assert simulator.job_requests == {"ij-done": 1, "ij-odd": 1}

        exporter.config_path.write_text("jobs: " + "[" * 5000 + "]" * 5000 + "\n")
        # Parsing this takes seconds of CPU, ten times that on a busy machine: wait generously.
        refused = requests.post(exporter.url + "/-/reload", timeout=120)
        assert refused.status_code == 500 and "nested too deeply" in refused.text
        got = parse_exposition(exporter.scrape().text)
        assert value(got, "seekrflow_exporter_config_last_reload_successful") == 0
        assert value(got, P + "job_scrape_success", job_id="ij-odd") == 1
        # The same file by SIGHUP, then a good one: the exporter lives through the first.
        exporter.proc.send_signal(signal.SIGHUP)
        exporter.config_path.write_text(yaml.safe_dump(config))
        exporter.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: value(parse_exposition(exporter.scrape().text),
                                 "seekrflow_exporter_config_last_reload_successful") == 1,
                   timeout=120, what="a good reload")
        assert exporter.proc.poll() is None


@pytest.mark.slow
def test_reload_over_http_needs_the_lifecycle_flag(simulator):
    with ExporterProcess(config_for(simulator, ["ij-done"]), KEY) as exporter:
        refused = requests.post(exporter.url + "/-/reload", timeout=10)
    assert (refused.status_code, refused.text) == (403, "Lifecycle API is not enabled.\n")
