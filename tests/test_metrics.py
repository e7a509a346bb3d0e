"""Exact metric values from fixture answers: the pure step from snapshot and time to families."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from exporter.config import MetricsConfig
from exporter.metrics import build_job_families
from exporter.model import JobSnapshot, parse_job
from metric_samples import samples_of, series, value

FIXTURES = Path(__file__).parent / "fixtures"
T0 = 1768487400.0  # 2026-01-15T14:30:00Z, creation of ij-running
NOW = T0 + 600
SETTINGS = MetricsConfig()
P = "seekrflow_ingestion_"


def load(name: str):
    return parse_job(json.loads((FIXTURES / name).read_text()))


def exposition(snapshots, now=NOW, settings=SETTINGS):
    return samples_of(build_job_families(snapshots, now, settings))


@pytest.fixture(scope="module")
def running():
    return exposition([JobSnapshot("ij-running", load("job_running.json"), True, last_success=NOW - 1)])


def buckets(samples, name, **labels):
    found = series(samples, name + "_bucket", **labels)
    return {dict(key)["le"]: val for key, val in found.items()}


def test_job_status_is_a_state_set(running):
    assert series(running, P + "job_status") == {
        frozenset({("job_id", "ij-running"), ("status", s)}): (1.0 if s == "running" else 0.0)
        for s in ("queued", "running", "completed", "failed")
    }


def test_job_scalars(running):
    assert value(running, P + "job_created_timestamp_seconds", job_id="ij-running") == T0
    assert value(running, P + "job_output_files", job_id="ij-running") == 2
    assert value(running, P + "job_files_deleted", job_id="ij-running") == 1
    assert value(running, P + "job_queue_position_min", job_id="ij-running") == 1
    assert value(running, P + "job_queue_position_max", job_id="ij-running") == 4
    assert value(running, P + "job_duration_seconds", job_id="ij-running") == 600
    assert value(running, P + "job_scrape_success", job_id="ij-running") == 1
    assert value(running, P + "job_last_success_timestamp_seconds", job_id="ij-running") == NOW - 1
    assert series(running, P + "job_scrape_error_info") == {}


def test_files_per_status_count_live_records_and_keep_unknown_status_verbatim(running):
    got = {dict(k)["status"]: v for k, v in series(running, P + "job_files", job_id="ij-running").items()}
    assert got == {"queued": 2, "processing": 1, "completed": 2, "failed": 1, "converting": 1}


def test_processing_duration_histogram_per_final_status(running):
    name = P + "job_file_processing_duration_seconds"
    assert buckets(running, name, status="completed") == {
        "1.0": 0, "5.0": 0, "10.0": 1, "30.0": 1, "60.0": 1, "120.0": 2, "300.0": 2,
        "600.0": 2, "1800.0": 2, "3600.0": 2, "+Inf": 2}
    assert value(running, name + "_gcount", job_id="ij-running", status="completed") == 2
    assert value(running, name + "_gsum", job_id="ij-running", status="completed") == 68.5
    assert buckets(running, name, status="failed") == {
        "1.0": 0, "5.0": 0, "10.0": 0, "30.0": 0, "60.0": 1, "120.0": 1, "300.0": 1,
        "600.0": 1, "1800.0": 1, "3600.0": 1, "+Inf": 1}
    assert value(running, name + "_gsum", job_id="ij-running", status="failed") == pytest.approx(37.0, abs=1e-6)


def test_queue_wait_histogram_clamps_skew_to_zero(running):
    name = P + "job_file_queue_wait_seconds"
    assert buckets(running, name) == {
        "1.0": 1, "5.0": 3, "15.0": 4, "30.0": 4, "60.0": 4, "300.0": 5, "900.0": 5,
        "1800.0": 5, "3600.0": 5, "7200.0": 5, "+Inf": 5}
    assert value(running, name + "_gcount", job_id="ij-running") == 5
    assert value(running, name + "_gsum", job_id="ij-running") == pytest.approx(316.123456789, abs=1e-6)


def test_file_info_carries_descriptive_labels_and_skips_deleted(running):
    info = series(running, P + "file_info")
    assert {dict(k)["record_id"]: (dict(k)["filename"], dict(k)["status"], dict(k)["method"], dict(k)["worker_id"])
            for k in info} == {
        "ijf-c1": ("report.pdf", "completed", "accuracy-optimized", "worker-3"),
        "ijf-c2": ("notes.docx", "completed", "speed-optimized", "worker-1"),
        "ijf-f1": ("scanned-contract.pdf", "failed", "accuracy-optimized", "worker-2"),
        "ijf-p1": ("slides.pptx", "processing", "accuracy-optimized", "worker-1"),
        "ijf-q1": ("quarterly-report.docx", "queued", "", ""),
        "ijf-q2": ("appendix.pdf", "queued", "", ""),
        "ijf-u1": ("scan.tiff", "converting", "accuracy-optimized", "worker-4"),
    }
    assert set(info.values()) == {1.0}


def per_record(samples, name):
    return {dict(k)["record_id"]: v for k, v in series(samples, name, job_id="ij-running").items()}


def test_file_queue_positions(running):
    assert per_record(running, P + "file_queue_position") == {"ijf-q1": 1, "ijf-q2": 4}


def test_file_queue_wait_started_and_still_waiting(running):
    got = per_record(running, P + "file_queue_wait_seconds")
    assert got == pytest.approx({
        "ijf-c1": 2, "ijf-c2": 10, "ijf-f1": 4.123456789, "ijf-p1": 300,
        "ijf-q1": 600, "ijf-q2": 480, "ijf-u1": 0}, abs=1e-6)


def test_file_processing_duration_finished_and_running(running):
    got = per_record(running, P + "file_processing_duration_seconds")
    assert got == pytest.approx({"ijf-c1": 63, "ijf-c2": 5.5, "ijf-f1": 37, "ijf-p1": 300, "ijf-u1": 602}, abs=1e-6)


def test_file_error_info_only_for_live_records_with_an_error(running):
    assert series(running, P + "file_error_info") == {frozenset({
        ("job_id", "ij-running"), ("record_id", "ijf-f1"), ("error_message", "PDF is encrypted"),
        ("suggested_fix", "Remove the password and upload the file again")}): 1.0}


def test_finished_job_duration_ends_at_last_live_record():
    got = exposition([JobSnapshot("ij-done", load("job_completed.json"), True)], now=T0 + 99999)
    assert value(got, P + "job_duration_seconds", job_id="ij-done") == 200
    assert value(got, P + "job_status", job_id="ij-done", status="completed") == 1
    assert value(got, P + "job_file_processing_duration_seconds_gsum", job_id="ij-done", status="completed") == 90
    assert value(got, P + "job_file_processing_duration_seconds_gsum", job_id="ij-done", status="failed") == 140
    assert value(got, P + "file_queue_wait_seconds", job_id="ij-done", record_id="ijf-1") == 30
    assert value(got, P + "file_error_info", job_id="ij-done", record_id="ijf-2",
                 error_message="Unsupported format", suggested_fix="") == 1


def test_finished_job_without_any_record_end_has_no_duration():
    job = replace(load("job_completed.json"), records=())
    got = exposition([JobSnapshot("ij-done", job, True)])
    assert series(got, P + "job_duration_seconds") == {}


def test_unknown_job_status_and_null_file_records():
    created = 1768485600.5  # 2026-01-15T14:00:00.5+00:00
    got = exposition([JobSnapshot("ij-odd", load("job_unknown_status.json"), True)], now=created + 30)
    statuses = {dict(k)["status"]: v for k, v in series(got, P + "job_status").items()}
    assert statuses == {"queued": 0, "running": 0, "completed": 0, "failed": 0, "paused": 1}
    files = {dict(k)["status"]: v for k, v in series(got, P + "job_files").items()}
    assert files == {"queued": 0, "processing": 0, "completed": 0, "failed": 0}
    assert value(got, P + "job_created_timestamp_seconds", job_id="ij-odd") == created
    assert value(got, P + "job_duration_seconds", job_id="ij-odd") == 30
    assert series(got, P + "job_queue_position_min") == {}
    assert value(got, P + "job_file_queue_wait_seconds_gcount", job_id="ij-odd") == 0
    assert series(got, P + "file_info") == {}


def test_failed_fetch_without_data_exports_only_the_failure():
    got = exposition([JobSnapshot("ij-gone", None, False, error="http_404")])
    assert {k[0] for k in got} == {P + "job_scrape_success", P + "job_scrape_error_info"}
    assert value(got, P + "job_scrape_success", job_id="ij-gone") == 0
    assert value(got, P + "job_scrape_error_info", job_id="ij-gone", reason="http_404") == 1


def test_stale_data_is_served_with_scrape_success_zero():
    job = load("job_completed.json")
    got = exposition([JobSnapshot("ij-done", job, False, error="timeout", last_success=T0)])
    assert value(got, P + "job_scrape_success", job_id="ij-done") == 0
    assert value(got, P + "job_status", job_id="ij-done", status="completed") == 1
    assert value(got, P + "job_last_success_timestamp_seconds", job_id="ij-done") == T0


def test_future_created_at_clamps_duration_to_zero():
    job = replace(load("job_unknown_status.json"), status="running")
    got = exposition([JobSnapshot("ij-odd", job, True)], now=job.created_at - 5)
    assert value(got, P + "job_duration_seconds", job_id="ij-odd") == 0


def test_per_file_off_drops_every_per_file_family():
    settings = replace(SETTINGS, per_file="none")
    got = exposition([JobSnapshot("ij-running", load("job_running.json"), True)], settings=settings)
    assert not [k for k in got if k[0].startswith(P + "file_") or k[0] == P + "job_file_records_omitted"]
    assert value(got, P + "job_files", job_id="ij-running", status="queued") == 2


def test_per_file_limit_keeps_unfinished_then_failed_records():
    settings = replace(SETTINGS, per_file_limit=5)
    got = exposition([JobSnapshot("ij-running", load("job_running.json"), True)], settings=settings)
    kept = {dict(k)["record_id"] for k in series(got, P + "file_info")}
    assert kept == {"ijf-p1", "ijf-q1", "ijf-q2", "ijf-u1", "ijf-f1"}
    assert value(got, P + "job_file_records_omitted", job_id="ij-running") == 2


def test_extra_record_statuses_are_capped_into_other():
    job = load("job_running.json")
    records = job.records + tuple(
        replace(job.records[0], record_id=f"x{i}", status=s) for i, s in enumerate(["ocr", "ocr", "zip", "tar"]))
    settings = replace(SETTINGS, record_status_limit=2)
    got = exposition([JobSnapshot("ij-running", replace(job, records=records), True)], settings=settings)
    files = {dict(k)["status"]: v for k, v in series(got, P + "job_files").items()}
    # converting (1), ocr (2), tar (1), zip (1): the two most common stay, ties broken by name.
    assert files == {"queued": 2, "processing": 1, "completed": 2, "failed": 1, "ocr": 2, "converting": 1, "other": 2}


def test_long_error_text_is_cut_to_the_limit():
    job = load("job_running.json")
    long_error = replace(job.records[2], error_message="x" * 500, suggested_fix="y" * 10)
    settings = replace(SETTINGS, error_text_limit=50)
    got = exposition([JobSnapshot("ij-running", replace(job, records=(long_error,)), True)], settings=settings)
    (labels,) = series(got, P + "file_error_info")
    assert dict(labels)["error_message"] == "x" * 49 + "…"
    assert dict(labels)["suggested_fix"] == "y" * 10


def test_duplicate_record_ids_give_one_series():
    job = load("job_running.json")
    got = exposition([JobSnapshot("ij-running", replace(job, records=job.records + job.records[:1]), True)])
    assert len(series(got, P + "file_info", record_id="ijf-c1")) == 1


def test_record_finished_by_status_without_end_time_does_not_keep_growing():
    body = json.loads((FIXTURES / "job_running.json").read_text())
    never_started = dict(body["file_records"][4], status="failed", queue_position=None)  # no timestamps at all
    no_end = dict(body["file_records"][3], status="completed")                           # processing_at, no end
    job = parse_job(dict(body, file_records=[never_started, no_end]))
    got_early = exposition([JobSnapshot("ij-running", job, True)])
    got_late = exposition([JobSnapshot("ij-running", job, True)], now=NOW + 100000)
    for got in (got_early, got_late):
        assert per_record(got, P + "file_queue_wait_seconds") == {"ijf-p1": 300}
        assert per_record(got, P + "file_processing_duration_seconds") == {}


def test_empty_status_strings_become_unknown():
    body = json.loads((FIXTURES / "job_unknown_status.json").read_text())
    body["status"] = ""
    body["file_records"] = [dict(json.loads((FIXTURES / "job_running.json").read_text())["file_records"][4], status="")]
    got = exposition([JobSnapshot("ij-odd", parse_job(body), True)])
    assert value(got, P + "job_status", job_id="ij-odd", status="unknown") == 1
    assert value(got, P + "job_files", job_id="ij-odd", status="unknown") == 1
    assert not [k for k in got if ("status", "") in k[1]]


def test_exporter_families_without_and_with_discovery():
    from exporter.results import DiscoveryStatus
    from exporter.selfmetrics import build_exporter_families

    plain = samples_of(build_exporter_families(api_up=True, scrape_duration=0.25, scrape_budget=9.5))
    assert plain == {
        ("seekrflow_up", frozenset()): 1.0,
        ("seekrflow_exporter_scrape_duration_seconds", frozenset()): 0.25,
        ("seekrflow_exporter_scrape_timeout_seconds", frozenset()): 9.5,
    }
    never_asked = samples_of(build_exporter_families(api_up=None, scrape_duration=0.0, scrape_budget=1.0,
                                                     discovery=DiscoveryStatus(None, 0)))
    assert value(never_asked, "seekrflow_up") == 0
    assert value(never_asked, "seekrflow_exporter_discovery_success") == 0
    assert value(never_asked, "seekrflow_exporter_discovered_jobs") == 0
    found = samples_of(build_exporter_families(api_up=True, scrape_duration=0.0, scrape_budget=1.0,
                                               discovery=DiscoveryStatus(True, 12)))
    assert (value(found, "seekrflow_exporter_discovery_success"), value(found, "seekrflow_exporter_discovered_jobs")) == (1, 12)
