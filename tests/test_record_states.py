"""Record states the API allows: terminal statuses, unknown statuses, queue positions, settling."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter

from exporter.client import SeekrFlowClient
from exporter.config import ApiConfig, ConfigError, MetricsConfig, ScrapeConfig, build_config
from exporter.metrics import build_job_families
from exporter.model import DEFAULT_TERMINAL_RECORD_STATUSES, JobSnapshot, parse_job
from exporter.scrape import JobPoller
from exporter.simulator import SimulatedWorld, SimulatorServer
from metric_samples import samples_of, series, value

T0 = 1768487400.0  # 2026-01-15T14:30:00Z
NOW = T0 + 600
LATER = NOW + 10**6
P = "seekrflow_ingestion_"
KEY = "sk-record-states"


def stamp(offset: float | None) -> str | None:
    if offset is None:
        return None
    whole = int(offset)
    return f"2026-01-15T14:{30 + whole // 60:02d}:{whole % 60:02d}Z"


def record(record_id, status, processing=None, completed=None, failed=None, queue_position=None, created=0):
    return {"record_id": record_id, "ingestion_job_id": "ij-1", "alignment_file_id": f"md-{record_id}",
            "user_id": "user-1", "filename": f"{record_id}.pdf", "status": status,
            "queue_position": queue_position, "created_at": stamp(created), "processing_at": stamp(processing),
            "completed_at": stamp(completed), "failed_at": stamp(failed)}


def body(status, *records, job_id="ij-1"):
    return {"id": job_id, "created_at": stamp(0), "status": status, "output_files": [],
            "file_records": list(records)}


def samples(job, now=NOW):
    return samples_of(build_job_families([JobSnapshot(job.id, job, True)], now, MetricsConfig()))


def per_record(got, name):
    return {dict(k)["record_id"]: v for k, v in series(got, P + name).items()}


def test_the_default_terminal_statuses():
    assert DEFAULT_TERMINAL_RECORD_STATUSES == {"completed", "failed", "cancelled", "canceled", "stopped"}


@pytest.mark.parametrize("status", ["cancelled", "canceled", "stopped"])
def test_a_job_whose_only_unfinished_record_is_cancelled_settles_and_its_numbers_stop(status):
    job = parse_job(body("completed",
                         record("c1", "completed", processing=2, completed=65),
                         # No timestamp at all, and a queue position left over from its queued days.
                         record("x1", status, queue_position=3)))
    assert job.is_settled
    for now in (NOW, LATER):
        got = samples(job, now)
        assert per_record(got, "file_queue_wait_seconds") == {"c1": 2.0}
        assert per_record(got, "file_processing_duration_seconds") == {"c1": 63.0}
        assert per_record(got, "file_queue_position") == {}
        assert value(got, P + "job_queue_position_min", job_id="ij-1") is None
        assert value(got, P + "job_queue_position_max", job_id="ij-1") is None
        assert value(got, P + "job_files", job_id="ij-1", status=status) == 1.0
        assert value(got, P + "job_duration_seconds", job_id="ij-1") == 65.0
        assert buckets(got, "job_file_queue_wait_seconds") == {"1.0": 0, "5.0": 1, "+Inf": 1}


def test_a_cancelled_record_that_started_keeps_its_wait_and_reports_no_processing_time():
    job = parse_job(body("completed", record("x1", "cancelled", processing=30)))
    assert job.is_settled
    for now in (NOW, LATER):
        got = samples(job, now)
        assert per_record(got, "file_queue_wait_seconds") == {"x1": 30.0}
        assert per_record(got, "file_processing_duration_seconds") == {}


def test_an_unknown_status_that_started_is_in_progress_its_wait_fixed_at_processing_at():
    job = parse_job(body("completed", record("u1", "converting", processing=5)))
    assert not job.is_settled  # still in progress: the job is fetched every round
    assert per_record(samples(job), "file_queue_wait_seconds") == {"u1": 5.0}
    assert per_record(samples(job), "file_processing_duration_seconds") == {"u1": 595.0}
    assert per_record(samples(job, LATER), "file_processing_duration_seconds") == {"u1": LATER - T0 - 5}


def test_an_unknown_status_without_processing_at_has_left_the_queue_and_its_wait_is_not_made_up():
    job = parse_job(body("running", record("u1", "uploading", queue_position=1), record("q1", "queued", created=60)))
    assert not job.is_settled
    for now in (NOW, LATER):
        got = samples(job, now)
        # Only the queued record waits, and only it has a position.
        assert per_record(got, "file_queue_wait_seconds") == {"q1": now - T0 - 60}
        assert per_record(got, "file_processing_duration_seconds") == {}
        assert per_record(got, "file_queue_position") == {}
    assert value(samples(job), P + "job_files", job_id="ij-1", status="uploading") == 1.0


def test_queue_positions_count_only_records_still_queued():
    job = parse_job(body("running",
                         record("p1", "processing", processing=10, queue_position=1),  # left over
                         record("q1", "queued", queue_position=2),
                         record("q2", "queued", queue_position=5),
                         record("s1", "queued", processing=20, queue_position=1),  # started: not waiting
                         record("f1", "failed", failed=40, queue_position=1)))
    got = samples(job)
    assert value(got, P + "job_queue_position_min", job_id="ij-1") == 2.0
    assert value(got, P + "job_queue_position_max", job_id="ij-1") == 5.0
    assert per_record(got, "file_queue_position") == {"q1": 2.0, "q2": 5.0}
    assert per_record(got, "file_queue_wait_seconds") == {"p1": 10.0, "q1": 600.0, "q2": 600.0, "s1": 20.0}


def test_the_terminal_statuses_are_the_configured_ones():
    raw = body("completed", record("a1", "archived"), record("x1", "cancelled"))
    custom = frozenset({"completed", "failed", "archived"})
    job = parse_job(raw, custom)
    assert [r.is_finished for r in job.records] == [True, False]
    assert not job.is_settled  # cancelled is not terminal here: still in progress
    got = samples(job)
    assert per_record(got, "file_queue_wait_seconds") == {}  # neither is queued
    assert [r.is_finished for r in parse_job(raw).records] == [False, True]


def test_an_end_timestamp_finishes_a_record_whatever_its_status():
    job = parse_job(body("failed", record("u1", "weird", processing=1, failed=9)))
    assert job.is_settled
    assert per_record(samples(job, LATER), "file_processing_duration_seconds") == {"u1": 8.0}


def buckets(got, name):
    found = series(got, P + name + "_bucket", job_id="ij-1")
    wanted = {"1.0", "5.0", "+Inf"}
    return {dict(k)["le"]: v for k, v in found.items() if dict(k)["le"] in wanted}


# --- configuration ---------------------------------------------------------------------------


def config(api: dict):
    return build_config({"jobs": ["ij-1"], "api": api}, {"SEEKR_API_KEY": "sk-test-key"})


def test_terminal_record_statuses_are_configured_under_api():
    assert config({}).api.terminal_record_statuses == DEFAULT_TERMINAL_RECORD_STATUSES
    assert config({"terminal_record_statuses": ["done", "failed"]}).api.terminal_record_statuses == {"done", "failed"}
    assert config({"terminal_record_statuses": []}).api.terminal_record_statuses == frozenset()


@pytest.mark.parametrize("given, message", [
    ("cancelled", "api.terminal_record_statuses: must be a list of record statuses, got 'cancelled'"),
    (["done", 3], "api.terminal_record_statuses[1]: must be a status string of 1 to 64 characters, got 3"),
    ([""], "api.terminal_record_statuses[0]: must be a status string of 1 to 64 characters, got ''"),
    (["x" * 65], "api.terminal_record_statuses[0]: must be a status string of 1 to 64 characters"),
])
def test_bad_terminal_record_statuses_name_the_key(given, message):
    with pytest.raises(ConfigError) as caught:
        config({"terminal_record_statuses": given})
    assert str(caught.value).startswith(message)


# --- a settled job is not fetched every round ----------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_a_job_left_with_a_cancelled_record_is_read_only_every_finished_job_refresh():
    fixtures = {"ij-1": body("completed", record("c1", "completed", processing=2, completed=65),
                             record("x1", "cancelled")),
                "ij-2": body("completed", record("u1", "converting", processing=5), job_id="ij-2")}
    clock = Clock()
    with SimulatorServer(SimulatedWorld(jobs=0, files_per_job=1), KEY, fixtures=fixtures) as simulator:
        api = ApiConfig(base_url=simulator.url, api_key=KEY, request_timeout=30.0)
        client = SeekrFlowClient(api, Counter("r", "r", ["endpoint", "code"], registry=CollectorRegistry()))
        poller = JobPoller(["ij-1", "ij-2"], client, ScrapeConfig(cache_ttl=0.0, finished_job_refresh=600.0), api,
                           monotonic=clock)
        try:
            for _ in range(4):
                poller.scrape(clock() + 30.0)
                clock.now += 100
            assert simulator.job_requests == {"ij-1": 1, "ij-2": 4}
        finally:
            poller.close()
