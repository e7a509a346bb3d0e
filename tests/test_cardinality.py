"""Cardinality the user controls: metrics.allow / metrics.deny over family names (full-match regular
expressions, as kube-state-metrics reads them) and metrics.per_file (which jobs get per-file series)."""

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest
import requests

from exporter.cardinality import allowed_families, name_allowed, per_file_wanted
from exporter.config import MetricsConfig
from exporter.datajobmetrics import build_data_job_families
from exporter.metrics import build_job_families
from exporter.model import FileRecord, IngestionJob, JobSnapshot, parse_job
from exporter.simulator import SimulatedWorld, SimulatorServer
from harness import ExporterProcess
from metric_samples import parse_exposition, samples_of, series, value

FIXTURES = Path(__file__).parent / "fixtures"
P = "seekrflow_ingestion_"
DONE_ENDED = 1768485800.0  # the last record end of ij-done (job_completed.json): it is settled
NOW = DONE_ENDED + 3600


def load(name: str):
    return parse_job(json.loads((FIXTURES / name).read_text()))


@pytest.fixture(scope="module")
def jobs():
    return [JobSnapshot("ij-done", load("job_completed.json"), True),
            JobSnapshot("ij-running", load("job_running.json"), True),
            JobSnapshot("ij-queued", load("job_queued.json"), True)]


def per_file_jobs(snapshots, now=NOW, **settings):
    got = samples_of(build_job_families(snapshots, now, MetricsConfig(**settings)))
    return sorted(dict(key)["job_id"] for key in series(got, P + "job_file_records_omitted")), got


@pytest.mark.parametrize("policy, window, expected", [
    ("all", 3600, ["ij-done", "ij-queued", "ij-running"]),
    ("recent", 3600, ["ij-done", "ij-queued", "ij-running"]),  # ended exactly one window ago: still in
    ("recent", 3599, ["ij-queued", "ij-running"]),
    ("unfinished", 86400, ["ij-queued", "ij-running"]),
    ("none", 3600, []),
])
def test_per_file_policy_picks_the_jobs_with_per_file_series(jobs, policy, window, expected):
    picked, got = per_file_jobs(jobs, per_file=policy, per_file_window=window)
    assert picked == expected
    # A job left out loses every per-file family, the omitted count included; its job series stay.
    assert sorted({dict(key)["job_id"] for key in series(got, P + "file_info")}) == expected
    assert value(got, P + "job_files", job_id="ij-done", status="failed") == 1
    assert value(got, P + "job_duration_seconds", job_id="ij-done") == 200


def test_a_finished_job_with_a_record_still_running_counts_as_unfinished():
    job = load("job_completed.json")
    running = replace(job.records[0], status="processing", completed_at=None, terminal=False)
    job = replace(job, records=(running,) + job.records[1:])
    picked, got = per_file_jobs([JobSnapshot("ij-done", job, True)], now=NOW + 10 * 86400, per_file="unfinished")
    assert picked == ["ij-done"]
    assert value(got, P + "file_processing_duration_seconds", job_id="ij-done", record_id="ijf-1") == \
        NOW + 10 * 86400 - running.processing_at


def test_recent_judges_a_settled_job_without_end_times_by_its_creation():
    job = IngestionJob("ij-empty", "completed", created_at=1000.0, output_files=0, records=())
    assert per_file_jobs([JobSnapshot("ij-empty", job, True)], now=1000.0 + 60, per_file="recent",
                         per_file_window=60)[0] == ["ij-empty"]
    assert per_file_jobs([JobSnapshot("ij-empty", job, True)], now=1000.0 + 61, per_file="recent",
                         per_file_window=60)[0] == []


def test_per_file_wanted_on_plain_values():
    # The same decision for whatever keeps a job: only settledness and the end time matter.
    assert per_file_wanted("recent", 60.0, settled=False, ended_at=None, now=10**9)
    assert per_file_wanted("recent", 60.0, settled=True, ended_at=1000.0, now=1060.0)
    assert not per_file_wanted("recent", 60.0, settled=True, ended_at=1000.0, now=1060.5)
    assert not per_file_wanted("recent", 60.0, settled=True, ended_at=None, now=0.0)
    assert not per_file_wanted("unfinished", 60.0, settled=True, ended_at=1000.0, now=1000.0)
    assert per_file_wanted("all", 60.0, settled=True, ended_at=0.0, now=10**9)
    assert not per_file_wanted("none", 60.0, settled=False, ended_at=None, now=0.0)


def test_deny_drops_whole_families_by_full_name(jobs):
    got = samples_of(build_job_families(jobs, NOW, MetricsConfig(
        deny=(P + "file_.*", P + "job_file_(processing_duration|queue_wait)_seconds"))))
    names = sorted({name for name, _ in got})
    assert names == sorted(P + n for n in (
        "job_status", "job_created_timestamp_seconds", "job_output_files", "job_files", "job_files_deleted",
        "job_queue_position_min", "job_queue_position_max", "job_duration_seconds", "job_scrape_success",
        "job_file_records_omitted"))
    assert value(got, P + "job_files", job_id="ij-running", status="queued") == 2


def test_patterns_are_anchored_at_both_ends(jobs):
    # "file_info" is part of a name but not the name: nothing is dropped.
    kept = build_job_families(jobs, NOW, MetricsConfig(deny=("file_info", P + "file", "ingestion_file_info")))
    assert {f.name for f in kept} == {f.name for f in build_job_families(jobs, NOW, MetricsConfig())}
    # A gauge histogram is matched by its family name, never by its _bucket, _gcount or _gsum samples.
    kept = build_job_families(jobs, NOW, MetricsConfig(deny=(P + "job_file_queue_wait_seconds_bucket",)))
    assert P + "job_file_queue_wait_seconds" in {f.name for f in kept}


def test_allow_keeps_only_the_families_listed(jobs):
    got = samples_of(build_job_families(jobs, NOW, MetricsConfig(allow=(P + "job_(status|scrape_success)",))))
    assert sorted({name for name, _ in got}) == [P + "job_scrape_success", P + "job_status"]
    assert len(got) == 3 * 4 + 3
    assert value(got, P + "job_status", job_id="ij-queued", status="queued") == 1


def test_the_filter_keeps_the_order_of_families_and_applies_to_any_metric_list():
    families = build_job_families([], NOW, MetricsConfig())
    names = [f.name for f in families]
    kept = [f.name for f in allowed_families(families, (), (P + "job_status", P + "file_info"))]
    assert kept == [n for n in names if n not in (P + "job_status", P + "file_info")]
    assert name_allowed(P + "job_status", (P + "job_.*",), ())
    assert not name_allowed(P + "file_info", (P + "job_.*",), ())


def test_data_job_families_pass_the_same_filter():
    snapshots = [JobSnapshot("dj-gone", None, False, error="http_404")]
    kept = build_data_job_families(snapshots, MetricsConfig(deny=("seekrflow_data_job_scrape_.*",)))
    assert "seekrflow_data_job_scrape_success" not in {f.name for f in kept}
    kept = build_data_job_families(snapshots, MetricsConfig(allow=("seekrflow_data_job_scrape_.*",)))
    assert [f.name for f in kept] == ["seekrflow_data_job_scrape_success", "seekrflow_data_job_scrape_error_info"]


def _record(index: int, status: str, error: str | None = None) -> FileRecord:
    created = 1000.0 + index
    if status == "queued":
        return FileRecord(f"r{index}", f"f{index}.pdf", status, created, queue_position=index + 1)
    if status == "processing":
        return FileRecord(f"r{index}", f"f{index}.pdf", status, created, processing_at=created + 1)
    return FileRecord(f"r{index}", f"f{index}.pdf", status, created, processing_at=created + 1,
                      completed_at=created + 5 if status == "completed" else None,
                      failed_at=created + 5 if status == "failed" else None, error_message=error)


@pytest.mark.parametrize("status, error, per_record", [
    ("completed", None, 3),  # info, queue wait, processing time
    ("failed", "bad scan", 4),  # and the error info
    ("queued", None, 3),  # info, queue position, queue wait
    ("processing", None, 3),  # info, queue wait, processing time so far
])
def test_series_per_job_and_per_record_as_docs_performance_tabulates(status, error, per_record):
    """The sizing table of docs/performance.md, at the default settings (10 buckets per histogram)."""
    records = tuple(_record(i, status, error) for i in range(10))
    job_status = "completed" if status in ("completed", "failed") else "running"
    job = IngestionJob("ij-size", job_status, 900.0, 0, records)
    snap = JobSnapshot("ij-size", job, True, last_success=900.0)
    job_level = 53 + (2 if status == "queued" else 0)  # queue position min and max while files queue

    def count(**settings):
        return len(samples_of(build_job_families([snap], 2000.0, MetricsConfig(**settings))))

    assert count(per_file="none") == job_level
    assert count() == job_level + 1 + 10 * per_record  # + file_records_omitted + per record
    assert count(per_file_limit=4) == job_level + 1 + 4 * per_record
    assert count(per_file="unfinished") == (job_level if job.is_settled else job_level + 1 + 10 * per_record)
    assert count(per_file="none", deny=(P + "job_file_.*",)) == job_level - 39  # both gauge histograms


@pytest.mark.slow
def test_the_running_exporter_serves_what_the_config_lets_through():
    key = "sk-test-cardinality-7f3a"
    bodies = {name: json.loads((FIXTURES / f"job_{name}.json").read_text()) for name in ("completed", "running")}
    world = SimulatedWorld(jobs=1, files_per_job=2, seed=3, started_at=time.time())
    with SimulatorServer(world, key, fixtures={"ij-done": bodies["completed"], "ij-running": bodies["running"]}) as api:
        config = {"api": {"base_url": api.url}, "jobs": ["ij-done", "ij-running"],
                  "metrics": {"per_file": "unfinished", "deny": [P + "job_file_.*_seconds", "seekrflow_exporter_.*"]}}
        with ExporterProcess(config, key) as exporter:
            text = requests.get(exporter.url + "/metrics", timeout=10).text
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    assert {dict(k)["job_id"] for k in series(parse_exposition(text), P + "file_info")} == {"ij-running"}
    assert not [n for n in names if n.startswith(P + "job_file_") and "seconds" in n]
    # The exporter's own metrics are not subject to metrics.allow / metrics.deny.
    assert "seekrflow_up" in names and "seekrflow_exporter_build_info" in names

