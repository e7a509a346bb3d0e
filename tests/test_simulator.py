"""The SeekrFlow API simulator: faithful bodies, auth, progression, faults, fixtures, CLI."""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pydantic
import pytest
import requests
import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from seekrai.types.ingestion import IngestionList, IngestionResponse

from exporter.simulator import SimulatedWorld, SimulatorServer, catalog
from exporter.simulator.world import format_timestamp

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).parent.parent
T0 = 1768487400.0  # 2026-01-15T14:30:00Z
KEY = "sim-test-key-7d1c"
JOB_ROUTES = ("/v1/flow/alignment/ingestion/", "/v1/flow/ingestion/")
LIST_ROUTES = ("/v1/flow/alignment/ingestion", "/v1/flow/ingestion")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


def _schema_validator(name: str) -> Draft202012Validator:
    spec = yaml.safe_load((FIXTURES / "seekrflow-openapi-seed.yaml").read_text())
    schema = {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


RESPONSE_SCHEMA = _schema_validator("IngestionResponse")
RECORD_FIELDS = set(
    yaml.safe_load((FIXTURES / "seekrflow-openapi-seed.yaml").read_text())
    ["components"]["schemas"]["IngestionFileRecord"]["properties"]
)


class Clock:
    """The simulator's clock, set by the test: the same moment gives the same body."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _get(url: str, key: str | None = KEY, **headers) -> requests.Response:
    if key is not None:
        headers["Authorization"] = key
    return requests.get(url, headers=headers, timeout=10)


def _assert_faithful(body: dict) -> None:
    RESPONSE_SCHEMA.validate(body)
    IngestionResponse.model_validate(body)
    for record in body["file_records"]:
        # Every field of the record is present, nullable ones as null (team_id is the SDK's).
        assert set(record) == RECORD_FIELDS | {"team_id"}


# --- faithful to the schema and the SDK ---------------------------------------------------------


def test_date_time_format_is_really_checked():
    assert "date-time" in Draft202012Validator.FORMAT_CHECKER.checkers
    body = {"id": "ij-1", "created_at": "2026-01-15T14:30:00", "status": "queued",
            "output_files": []}
    with pytest.raises(ValidationError, match="is not a 'date-time'"):
        RESPONSE_SCHEMA.validate(body)


@pytest.mark.parametrize("options", [
    {"jobs": 5, "seed": 1},
    {"jobs": 2, "seed": 3, "fail_records": 12},  # every file fails: failed jobs
    {"jobs": 2, "seed": 4, "deleted_rate": 0.5, "stalled_jobs": [1]},
])
@pytest.mark.slow
def test_every_endpoint_serves_schema_valid_sdk_parsable_bodies_over_a_jobs_life(options):
    world = SimulatedWorld(files_per_job=12, started_at=T0, **options)
    clock = Clock(T0)
    end = max(world.job_finished_at(j) or T0 for j in world.job_ids())
    job_statuses, record_statuses = set(), set()
    with SimulatorServer(world, KEY, clock=clock) as simulator:
        for clock.now in (T0, (T0 + end) / 2, end):
            for job_id in world.job_ids():
                for route in JOB_ROUTES:
                    response = _get(simulator.url + route + job_id)
                    assert response.status_code == 200
                    assert response.headers["Content-Type"] == "application/json"
                    body = response.json()
                    _assert_faithful(body)
                    assert body == world.job_response(job_id, clock.now)
                    job_statuses.add(body["status"])
                    record_statuses.update(r["status"] for r in body["file_records"])
            for route in LIST_ROUTES:
                listing = _get(simulator.url + route).json()
                assert listing["object"] == "list"
                assert [job["id"] for job in listing["data"]] == world.job_ids()
                for job in listing["data"]:
                    _assert_faithful(job)
                IngestionList.model_validate(listing)
    expected = {
        1: ({"queued", "running", "completed"}, {"queued", "processing", "completed", "failed"}),
        3: ({"queued", "running", "failed"}, {"queued", "processing", "failed"}),
        4: ({"queued", "running", "completed"}, {"queued", "processing", "completed"}),
    }[options["seed"]]
    assert (job_statuses, record_statuses) == expected


# --- auth and routing ----------------------------------------------------------------------------


@pytest.fixture
def simulator():
    world = SimulatedWorld(jobs=2, files_per_job=4, seed=1, started_at=T0)
    with SimulatorServer(world, KEY, clock=Clock(T0)) as server:
        yield server


@pytest.mark.parametrize("key", [None, "", "wrong-key", f"Bearer {KEY}", f"{KEY} "])
@pytest.mark.parametrize("route", [JOB_ROUTES[0], JOB_ROUTES[1], LIST_ROUTES[0], LIST_ROUTES[1]])
def test_a_missing_or_wrong_key_is_401_and_never_echoed(simulator, key, route):
    job_id = simulator.world.job_ids()[0] if route.endswith("/") else ""
    response = _get(simulator.url + route + job_id, key=key)
    assert response.status_code == 401
    assert list(response.json()) == ["detail"]
    assert KEY not in response.text


def test_the_bare_key_is_accepted_with_or_without_a_team(simulator):
    job_id = simulator.world.job_ids()[0]
    assert _get(f"{simulator.url}/v1/flow/ingestion/{job_id}").status_code == 200
    assert _get(f"{simulator.url}/v1/flow/ingestion/{job_id}", **{"x-team-id": "team-9"}).json() \
        == simulator.world.job_response(job_id, T0)


def test_unknown_jobs_and_paths_are_404(simulator):
    for path in ("/v1/flow/ingestion/ij-nope", "/v1/flow/alignment/ingestion/ij-nope",
                 "/v1/flow/ingestion/..%2F..%2Fdata-jobs"):
        response = _get(simulator.url + path)
        assert (response.status_code, list(response.json())) == (404, ["detail"])
    for path in ("/v1/flow/data-job", "/v1/flow/ingestion/a/b", "/", "/v1/flow/ingestion/"):
        assert (_get(simulator.url + path).status_code, _get(simulator.url + path).json()) \
            == (404, {"detail": "Not Found"})
    assert requests.post(simulator.url + LIST_ROUTES[1], data="x", timeout=10).status_code == 405


def test_requests_are_counted_per_path_template_and_job(simulator):
    first, second = simulator.world.job_ids()
    for path in (f"/v1/flow/ingestion/{first}", f"/v1/flow/ingestion/{first}",
                 f"/v1/flow/alignment/ingestion/{second}", "/v1/flow/ingestion",
                 "/v1/flow/ingestion/ij-nope", "/elsewhere"):
        _get(simulator.url + path)
    assert simulator.requests == Counter({
        "/v1/flow/ingestion/{id}": 3, "/v1/flow/alignment/ingestion/{id}": 1,
        "/v1/flow/ingestion": 1, "<unknown>": 1,
    })
    assert simulator.job_requests == Counter({first: 2, second: 1, "ij-nope": 1})


def test_stop_ends_kept_alive_connections_too():
    world = SimulatedWorld(jobs=1, files_per_job=2, started_at=T0)
    simulator = SimulatorServer(world, KEY, clock=Clock(T0))
    url = simulator.start() + "/v1/flow/ingestion"
    with requests.Session() as session:
        assert session.get(url, headers={"Authorization": KEY}, timeout=10).status_code == 200
        simulator.stop()
        with pytest.raises(requests.ConnectionError):
            session.get(url, headers={"Authorization": KEY}, timeout=10)
    simulator.stop()  # a second stop is harmless


# --- progression ---------------------------------------------------------------------------------

STATUS_ORDER = {"queued": 0, "processing": 1, "completed": 2, "failed": 2}


@pytest.mark.slow
def test_a_job_progresses_from_queued_to_completed():
    # Seed 7 gives 12 records: 1 deleted, 9 that complete and 2 that fail.
    world = SimulatedWorld(jobs=1, files_per_job=12, seed=7, failure_rate=0.25,
                           deleted_rate=0.1, started_at=T0, staggered=False)
    (job_id,) = world.job_ids()
    end = world.job_finished_at(job_id)

    start = world.job_response(job_id, T0)
    assert (start["status"], start["output_files"], start["created_at"]) \
        == ("queued", [], "2026-01-15T14:30:00.000000Z")
    live = [r for r in start["file_records"] if not r["deleted"]]
    assert [r["queue_position"] for r in live] == list(range(1, 12))
    assert [(r["status"], r["queue_position"]) for r in start["file_records"] if r["deleted"]] \
        == [("queued", None)]

    previous = {r["record_id"]: r for r in start["file_records"]}
    seen = Counter()
    for step in range(1, int(end - T0) + 2):
        body = world.job_response(job_id, T0 + step)
        _assert_faithful(body)
        processing = [r for r in body["file_records"] if r["status"] == "processing"]
        assert len(processing) <= 3
        for record in body["file_records"]:
            before = previous[record["record_id"]]
            assert STATUS_ORDER[record["status"]] >= STATUS_ORDER[before["status"]]
            if record["queue_position"] is not None and before["queue_position"] is not None:
                assert record["queue_position"] <= before["queue_position"]
            if record["status"] == "processing":
                assert record["worker_id"] in {"worker-1", "worker-2", "worker-3"}
                assert record["metaflow_job_id"].startswith("mf-")
                assert record["processing_at"] <= format_timestamp(round((T0 + step) * 1e6))
            seen[record["status"]] += 1
        positions = [r["queue_position"] for r in body["file_records"] if r["queue_position"]]
        assert positions == list(range(1, len(positions) + 1))
        seen[body["status"]] += 1
        previous = {r["record_id"]: r for r in body["file_records"]}
    assert seen["running"] > 0 and seen["processing"] > 0 and seen["failed"] > 0

    final = world.job_response(job_id, end)
    assert final == world.job_response(job_id, end + 86400)
    assert final["status"] == "completed"
    records = [r for r in final["file_records"] if not r["deleted"]]
    completed = sorted((r for r in records if r["status"] == "completed"),
                       key=lambda r: r["completed_at"])
    failed = [r for r in records if r["status"] == "failed"]
    assert (len(completed), len(failed)) == (9, 2)
    assert final["output_files"] == [r["alignment_file_id"] for r in completed]
    known_errors = {(e.error_message, e.suggested_fix) for e in catalog.ERRORS}
    for record in failed:
        assert (record["error_message"], record["suggested_fix"]) in known_errors
        assert record["completed_at"] is None and record["failed_at"] > record["processing_at"]
    for record in completed:
        assert (record["error_message"], record["suggested_fix"], record["failed_at"]) \
            == (None, None, None)
        assert record["completed_at"] > record["processing_at"] > record["created_at"]
    assert all(r["queue_position"] is None for r in final["file_records"])


def test_ids_and_timestamps_look_real_and_depend_only_on_the_seed():
    world = SimulatedWorld(seed=5, started_at=T0)
    job_id = world.job_ids()[1]
    body = world.job_response(job_id, T0)
    assert re.fullmatch(f"ij-{UUID}", job_id)
    for record in body["file_records"]:
        assert re.fullmatch(f"ijf-{UUID}", record["record_id"])
        assert re.fullmatch(f"md-file-{UUID}", record["alignment_file_id"])
        assert record["method"] in ("accuracy-optimized", "speed-optimized")
        for field in ("created_at", "processing_at", "completed_at", "failed_at"):
            assert record[field] is None or TIMESTAMP.match(record[field])
    assert body == SimulatedWorld(seed=5, started_at=T0).job_response(job_id, T0)
    # More jobs leave the first ones as they were; another seed is another world.
    assert SimulatedWorld(jobs=9, seed=5, started_at=T0).job_ids()[:5] == world.job_ids()
    assert set(SimulatedWorld(seed=6, started_at=T0).job_ids()).isdisjoint(world.job_ids())


def test_jobs_are_staggered_so_a_demo_opens_on_a_mix_of_states():
    world = SimulatedWorld(started_at=T0)
    statuses = [world.job_response(j, T0)["status"] for j in world.job_ids()]
    assert statuses == ["queued", "running", "completed", "running", "running"]
    unstaggered = SimulatedWorld(started_at=T0, staggered=False)
    assert {unstaggered.job_created_at(j) for j in unstaggered.job_ids()} == {T0}


def test_speed_compresses_the_timeline():
    slow = SimulatedWorld(jobs=1, seed=2, started_at=T0, staggered=False)
    fast = SimulatedWorld(jobs=1, seed=2, started_at=T0, staggered=False, speed=20)
    (job_id,) = slow.job_ids()
    assert fast.job_finished_at(job_id) - T0 == pytest.approx(
        (slow.job_finished_at(job_id) - T0) / 20, abs=1e-5)


def test_fail_records_makes_the_first_picked_file_fail_soon_after_start():
    world = SimulatedWorld(jobs=3, failure_rate=0.0, deleted_rate=0.0, fail_records=1,
                           started_at=T0, staggered=False, speed=10)
    for job_id in world.job_ids():
        final = world.job_response(job_id, world.job_finished_at(job_id))
        statuses = [r["status"] for r in final["file_records"]]
        assert statuses == ["failed"] + ["completed"] * 11
        assert final["status"] == "completed"
        # First pick within 6 s, a failure within 25 s more: 3.1 s at speed 10.
        failed_at = final["file_records"][0]["failed_at"]
        assert world.job_response(job_id, T0 + 3.1)["file_records"][0]["failed_at"] == failed_at


def test_a_job_whose_every_file_fails_or_is_deleted_is_failed():
    all_failing = SimulatedWorld(jobs=1, files_per_job=4, fail_records=4, started_at=T0)
    (job_id,) = all_failing.job_ids()
    final = all_failing.job_response(job_id, all_failing.job_finished_at(job_id))
    assert (final["status"], final["output_files"]) == ("failed", [])
    all_deleted = SimulatedWorld(jobs=1, files_per_job=4, deleted_rate=1.0, started_at=T0)
    (job_id,) = all_deleted.job_ids()
    body = all_deleted.job_response(job_id, T0 + 3600)
    assert body["status"] == "failed"
    assert [(r["deleted"], r["status"], r["queue_position"]) for r in body["file_records"]] \
        == [(True, "queued", None)] * 4


def test_a_stalled_queue_never_moves():
    world = SimulatedWorld(jobs=2, files_per_job=5, deleted_rate=0.0, stalled_jobs=[1],
                           started_at=T0)
    stalled = world.job_ids()[1]
    assert world.job_finished_at(stalled) is None
    for later in (T0, T0 + 600, T0 + 86400 * 30):
        body = world.job_response(stalled, later)
        assert body["status"] == "queued"
        assert [r["queue_position"] for r in body["file_records"]] == [1, 2, 3, 4, 5]
    assert world.job_response(world.job_ids()[0], T0 + 86400)["status"] == "completed"


@pytest.mark.parametrize("options", [
    {"speed": 0}, {"failure_rate": 1.5}, {"deleted_rate": -0.1}, {"files_per_job": 0},
    {"stalled_jobs": [5]}, {"workers": 0},
])
def test_impossible_worlds_are_refused(options):
    with pytest.raises(ValueError):
        SimulatedWorld(**options)


# --- faults and fixtures -------------------------------------------------------------------------


@pytest.fixture
def faulty():
    world = SimulatedWorld(jobs=6, files_per_job=3, seed=2, started_at=T0)
    ids = world.job_ids()
    faults = dict(zip(ids, ["http_500", "http_503", "http_403", "bad_json", "bad_schema",
                            "slow:0.2"]))
    faults["ij-x"] = "bad_json"
    faults["ij-stuck"] = "slow:60"  # stop() cuts the wait short
    with SimulatorServer(world, KEY, faults=faults, clock=Clock(T0)) as server:
        yield server, ids


def test_each_fault_kind_answers_as_specified(faulty):
    simulator, ids = faulty
    url = simulator.url + "/v1/flow/ingestion/"
    for job_id, status in zip(ids, (500, 503, 403)):
        response = _get(url + job_id)
        assert (response.status_code, list(response.json())) == (status, ["detail"])

    healthy = json.dumps(simulator.world.job_response(ids[3], T0), separators=(",", ":"))
    truncated = _get(url + ids[3])
    assert truncated.status_code == 200
    assert healthy.startswith(truncated.text) and len(truncated.text) < len(healthy)
    with pytest.raises(ValueError):
        json.loads(truncated.text)

    broken = _get(url + ids[4])
    assert broken.status_code == 200
    with pytest.raises(ValidationError):
        RESPONSE_SCHEMA.validate(broken.json())
    with pytest.raises(pydantic.ValidationError):
        IngestionResponse.model_validate(broken.json())

    slow = _get(url + ids[5])
    assert slow.json() == simulator.world.job_response(ids[5], T0)
    with pytest.raises(requests.ReadTimeout):
        requests.get(url + "ij-stuck", headers={"Authorization": KEY}, timeout=0.1)

    # A fault makes an ID known; the lists keep the healthy bodies of every world job.
    assert _get(url + "ij-x").status_code == 200
    listing = _get(simulator.url + "/v1/flow/ingestion").json()
    assert listing["data"] == [simulator.world.job_response(j, T0) for j in ids]


def test_faults_are_refused_when_unknown():
    world = SimulatedWorld(jobs=1, started_at=T0)
    for kind in ("http_418", "slow", "slow:x", "slow:-1"):
        with pytest.raises(ValueError, match="fault"):
            SimulatorServer(world, KEY, faults={"ij-1": kind})


def test_latency_is_added_to_every_answer():
    world = SimulatedWorld(jobs=1, started_at=T0)
    with SimulatorServer(world, KEY, latency=5, clock=Clock(T0)) as simulator:
        for path in ("/v1/flow/ingestion", "/nowhere"):
            with pytest.raises(requests.ReadTimeout):
                requests.get(simulator.url + path, headers={"Authorization": KEY}, timeout=0.05)


def test_fixtures_are_served_verbatim():
    world = SimulatedWorld(jobs=2, files_per_job=2, started_at=T0)
    odd = {"id": "ij-fixed", "created_at": "2026-01-15T14:30:00+02:00", "status": "paused",
           "output_files": [], "file_records": None, "extra": {"nested": [1, 2.5]}}
    replaced = {"id": world.job_ids()[0], "created_at": "2026-01-15T14:30:00Z",
                "status": "completed", "output_files": ["md-file-1"], "file_records": []}
    fixtures = {odd["id"]: odd, replaced["id"]: replaced}
    with SimulatorServer(world, KEY, fixtures=fixtures, clock=Clock(T0)) as simulator:
        for route in JOB_ROUTES:
            assert _get(simulator.url + route + "ij-fixed").json() == odd
            assert _get(simulator.url + route + replaced["id"]).json() == replaced
        listing = _get(simulator.url + LIST_ROUTES[1]).json()
    assert listing["data"] == [replaced, world.job_response(world.job_ids()[1], T0), odd]


# --- the command line ----------------------------------------------------------------------------


class _Lines:
    """Lines from a subprocess pipe, read without buffering so select() sees what is pending."""

    def __init__(self, stream) -> None:
        self.fd = stream.fileno()
        self.pending = b""

    def read(self, count: int, timeout: float = 30.0) -> list[str]:
        """`count` lines, failing after `timeout` instead of hanging."""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self.fd, selectors.EVENT_READ)
            while self.pending.count(b"\n") < count:
                remaining = deadline - time.monotonic()
                assert remaining > 0 and selector.select(remaining), f"got only {self.pending!r}"
                chunk = os.read(self.fd, 65536)
                assert chunk, f"stream closed after {self.pending!r}"
                self.pending += chunk
        *lines, self.pending = self.pending.split(b"\n", count)
        return [line.decode() for line in lines]


def _simulator_process(args: list[str], env_key: str | None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "SEEKR_API_KEY"}
    if env_key is not None:
        env["SEEKR_API_KEY"] = env_key
    return subprocess.Popen(
        [sys.executable, "-m", "exporter.simulator", "--listen-address", "127.0.0.1:0", *args],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
    )


@pytest.fixture
def start_process():
    processes = []

    def start(args, env_key=KEY):
        processes.append(_simulator_process(args, env_key))
        return processes[-1]

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


def test_the_module_prints_its_url_and_jobs_serves_and_stops_on_sigterm(start_process, tmp_path):
    fixture = tmp_path / "fixed.json"
    fixture.write_text(json.dumps({"id": "ij-fixed", "created_at": "2026-01-15T14:30:00Z",
                                   "status": "queued", "output_files": []}))
    process = start_process(["--jobs", "3", "--files-per-job", "4", "--speed", "50",
                             "--seed", "9", "--fault", "ij-broken=http_503",
                             "--fixture", str(fixture)])
    url, *job_ids = _Lines(process.stdout).read(5)
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
    assert job_ids[:3] == SimulatedWorld(jobs=3, seed=9).job_ids()
    assert job_ids[3] == "ij-fixed"
    body = _get(f"{url}/v1/flow/alignment/ingestion/{job_ids[0]}").json()
    _assert_faithful(body)
    assert _get(f"{url}/v1/flow/ingestion/ij-fixed").json()["status"] == "queued"
    assert _get(f"{url}/v1/flow/ingestion/ij-broken").status_code == 503
    assert _get(f"{url}/v1/flow/ingestion", key="nope").status_code == 401

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    out, err = process.communicate(timeout=30)
    assert (out, err) == (b"", b"")  # quiet: no access log, and the key never printed
    with pytest.raises(requests.ConnectionError):
        _get(f"{url}/v1/flow/ingestion")


def test_without_a_key_in_the_environment_one_is_generated_and_shown_once(start_process):
    process = start_process(["--jobs", "1"], env_key=None)
    (url, _job_id) = _Lines(process.stdout).read(2)
    (notice,) = _Lines(process.stderr).read(1)
    key = re.fullmatch(r"seekrflow-simulator: SEEKR_API_KEY is not set; generated API key: (\S+)",
                       notice).group(1)
    assert _get(f"{url}/v1/flow/ingestion", key=key).status_code == 200
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0
    assert process.communicate(timeout=30) == (b"", b"")


@pytest.mark.parametrize("args, message", [
    (["--fault", "ij-1=http_418"], "--fault 'ij-1=http_418': unknown fault 'http_418'"),
    (["--fault", "http_500"], "--fault 'http_500': expected JOB_ID=KIND"),
    (["--listen-address", "localhost"], "--listen-address 'localhost': expected HOST:PORT"),
    (["--speed", "0"], "speed must be > 0"),
    (["--fixture", "/nonexistent/fixture.json"], "--fixture /nonexistent/fixture.json: "),
])
def test_bad_arguments_stop_with_one_line(start_process, args, message):
    process = start_process(args)
    assert process.wait(timeout=30) == 2
    out, err = process.communicate(timeout=30)
    assert out == b""
    assert message in err.decode().splitlines()[-1]
