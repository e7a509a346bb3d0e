"""Golden expositions: fixed fixture jobs at a fixed time give exactly the committed text.

Every change to what /metrics shows (a name, a help text, a label, a value, the order) is a diff
of ``tests/golden/``. The text is built on the pure path (snapshots and a time -> families) and
encoded the way ``/metrics`` encodes it. After an intended change, write the files again and
review the diff (tests/golden/README.md):

    UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client.exposition import choose_encoder

from exporter.config import MetricsConfig
from exporter.datajob import parse_data_job
from exporter.datajobmetrics import build_data_job_families
from exporter.metrics import FamiliesCollector, build_job_families
from exporter.model import JobSnapshot, parse_job
from exporter.results import DiscoveryStatus
from exporter.selfmetrics import build_exporter_families

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"

T0 = 1768487400.0  # 2026-01-15T14:30:00Z, creation of ij-running
NOW = T0 + 600
TEXT = ""  # no Accept header: Prometheus's text format 0.0.4
OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def load(name: str):
    return parse_job(json.loads((FIXTURES / name).read_text()))


def snapshots() -> list[JobSnapshot]:
    """One job of each kind a scrape shows."""
    return [
        JobSnapshot("ij-running", load("job_running.json"), True, last_success=NOW - 1),  # failed, queued, unknown statuses
        JobSnapshot("ij-done", load("job_completed.json"), True, last_success=NOW - 1),  # finished, a deleted record
        JobSnapshot("ij-odd", load("job_unknown_status.json"), True, last_success=NOW - 1),  # paused, records null
        # The last fetch failed: four-minute-old data stands in, marked not fresh.
        JobSnapshot("ij-queued", load("job_queued.json"), False, error="http_503", last_success=NOW - 240),
        JobSnapshot("ij-gone", None, False, error="timeout"),  # never answered
    ]


def data_job_snapshots() -> list[JobSnapshot]:
    """A data job holding two ingestion jobs (one completed, one running with a failed record), and
    one that failed to answer."""
    data_job = parse_data_job(json.loads((FIXTURES / "data_job.json").read_text()))
    return [JobSnapshot("dj-support", data_job, True, last_success=NOW - 1),
            JobSnapshot("dj-gone", None, False, error="http_404")]


def nested_snapshots(data_jobs: list[JobSnapshot]) -> list[JobSnapshot]:
    """The ingestion jobs inside the data jobs, from the data job's answer, as a scrape serves them."""
    return [JobSnapshot(nested.id, nested, True, last_success=snapshot.last_success)
            for snapshot in data_jobs if snapshot.job is not None
            for nested in snapshot.job.watchable_ingestion_jobs]


def exposition(accept: str, settings: MetricsConfig, jobs: list[JobSnapshot], exporter: bool,
               data_jobs: list[JobSnapshot] | None = None) -> str:
    """Ordered as /metrics orders it: ingestion jobs (the nested ones too), data jobs, the exporter."""
    families = build_job_families(jobs + nested_snapshots(data_jobs or []), NOW, settings)
    if data_jobs is not None:
        families += build_data_job_families(data_jobs, settings)
    if exporter:
        families += build_exporter_families(api_up=True, scrape_duration=0.25, scrape_budget=9.5,
                                            discovery=DiscoveryStatus(True, 5),
                                            data_job_discovery=None if data_jobs is None else DiscoveryStatus(True, 2))
    encoder, _ = choose_encoder(accept)
    return encoder(FamiliesCollector(families)).decode("utf-8")


def jobs_of(*job_ids: str) -> list[JobSnapshot]:
    return [snapshot for snapshot in snapshots() if snapshot.job_id in job_ids]


# file name -> (Accept header, settings, snapshots, with the exporter's own per-scrape series, data jobs)
CASES = {
    "jobs.prom": (TEXT, MetricsConfig(), snapshots(), True, data_job_snapshots()),
    "jobs.openmetrics.txt": (OPENMETRICS, MetricsConfig(), snapshots(), True, data_job_snapshots()),
    # Every cap at work: per-file series for two records only, one extra record status, label values cut.
    "capped.prom": (TEXT, MetricsConfig(per_file_limit=2, record_status_limit=1, error_text_limit=16),
                    jobs_of("ij-running", "ij-queued"), False),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_exposition_is_exactly_the_golden_file(name):
    got = exposition(*CASES[name])
    path = GOLDEN / name
    if UPDATE:
        path.write_text(got, encoding="utf-8")
    want = path.read_text(encoding="utf-8")
    diff = "".join(difflib.unified_diff(want.splitlines(True), got.splitlines(True), f"golden/{name}", "now"))
    assert got == want, f"the exposition changed; if that is intended, regenerate (see tests/golden/README.md):\n{diff}"


def test_golden_files_are_exactly_the_cases():
    assert sorted(p.name for p in GOLDEN.iterdir() if p.name != "README.md") == sorted(CASES)


@pytest.mark.parametrize("name", sorted(name for name, case in CASES.items() if case[0] == TEXT))
def test_golden_text_passes_promtool_check_metrics(name):
    promtool = shutil.which("promtool")
    assert promtool, "promtool is installed by .ci/run (Debian package prometheus)"
    check = subprocess.run([promtool, "check", "metrics"], input=(GOLDEN / name).read_text(encoding="utf-8"),
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
