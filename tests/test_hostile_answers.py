"""Nothing the API sends may crash the exporter: any answer either parses or fails that job alone."""

import copy
import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from exporter.config import MetricsConfig
from exporter.metrics import FamiliesCollector, build_job_families
from exporter.model import InvalidResponse, JobSnapshot, parse_job

GOOD = json.loads((Path(__file__).parent / "fixtures" / "job_running.json").read_text())
NOW = 1768488000.0

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30)
    | st.sampled_from(["2026-01-15T14:30:00Z", "2026-01-15T14:30:00.123456789+05:30", "9999-12-31T23:59:59Z",
                       "0001-01-01T00:00:00Z", "\ud800", "queued", "processing", "completed", "failed"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6,
)
record_keys = st.sampled_from(sorted(GOOD["file_records"][0]) + ["deleted", "queue_position", "extra"])
job_keys = st.sampled_from(["id", "created_at", "status", "output_files", "file_records", "extra"])


def render(body) -> None:
    try:
        job = parse_job(body)
    except InvalidResponse:
        return
    families = build_job_families([JobSnapshot("ij-x", job, True, last_success=NOW)], NOW, MetricsConfig())
    for family in families:
        for sample in family.samples:
            assert not math.isnan(sample.value), sample
            if family.name.endswith("_seconds") and not family.name.endswith("timestamp_seconds"):
                assert sample.value >= 0, sample
    generate_latest(FamiliesCollector(families)).decode("utf-8")
    generate_openmetrics(FamiliesCollector(families)).decode("utf-8")


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 7), record_keys, json_values), max_size=6),
       st.lists(st.tuples(job_keys, json_values), max_size=2))
def test_mutated_answers_parse_or_fail_cleanly(record_changes, job_changes):
    body = copy.deepcopy(GOOD)
    for index, key, new in record_changes:
        body["file_records"][index][key] = new
    for key, new in job_changes:
        body[key] = new
    render(body)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_arbitrary_json_parses_or_fails_cleanly(anything):
    render(anything)


def test_lone_surrogates_and_huge_numbers_become_safe_values():
    body = copy.deepcopy(GOOD)
    body["file_records"][0]["filename"] = "bad\ud800name.pdf"
    body["file_records"][4]["queue_position"] = 2**60
    with pytest.raises(InvalidResponse) as err:
        parse_job(body)
    assert str(err.value) == "file_records[4].queue_position: expected an integer or null"
    body["file_records"][4]["queue_position"] = 3
    job = parse_job(body)
    assert job.records[0].filename == "bad?name.pdf"
    render(body)
