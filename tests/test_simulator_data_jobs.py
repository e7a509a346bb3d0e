"""The simulator's data jobs: SDK-parsable bodies, paging, statuses that move, faults and fixtures."""

from __future__ import annotations

import re
from collections import Counter

import pytest
import requests
from seekrai.types.data_jobs import DataJobDetailResponse, DataJobListResponse, DataJobResponse

from exporter.simulator import SimulatedWorld, SimulatorServer
from exporter.simulator.datajobs import DETAIL_ONLY, SimulatedDataJobs

T0 = 1768487400.0  # 2026-01-15T14:30:00Z
KEY = "sim-test-key-dj"
LIST = "/v1/flow/data-jobs"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _get(url: str, **params) -> requests.Response:
    return requests.get(url, params=params, headers={"Authorization": KEY}, timeout=10)


def _read_all_pages(url: str, limit: int) -> list[dict]:
    """As a client must: page until a short page (the API has no total and no next link)."""
    items, offset = [], 0
    while True:
        page = _get(url + LIST, limit=limit, offset=offset).json()
        DataJobListResponse.model_validate(page)
        items += page["data"]
        if len(page["data"]) < limit:
            return items
        offset += limit


@pytest.mark.slow
def test_statuses_move_from_file_processing_to_the_alignment_statuses_and_every_answer_parses_with_the_sdk():
    # No failures: every data job with files becomes ready; the even ones start on their own.
    world = SimulatedWorld(jobs=5, files_per_job=4, seed=1, failure_rate=0.0, deleted_rate=0.0,
                           started_at=T0, staggered=False, speed=10)
    data_jobs = SimulatedDataJobs(world, 3)
    clock = Clock(T0)
    seen: dict[str, list[str]] = {dj: [] for dj in data_jobs.ids()}
    with SimulatorServer(world, KEY, data_jobs=data_jobs, clock=clock) as simulator:
        for step in range(0, 120):
            clock.now = T0 + step
            for data_job_id in data_jobs.ids():
                body = _get(f"{simulator.url}{LIST}/{data_job_id}").json()
                DataJobDetailResponse.model_validate(body)
                if not seen[data_job_id] or seen[data_job_id][-1] != body["status"]:
                    seen[data_job_id].append(body["status"])
            assert len(_read_all_pages(simulator.url, 2)) == 3
    started = ["file_processing", "ready_to_start", "pending", "queued", "running", "completed"]
    assert seen == dict(zip(data_jobs.ids(), [started, ["file_processing", "ready_to_start"], started]))


def test_a_data_job_with_a_failed_record_or_without_files_stays_in_needs_review():
    world = SimulatedWorld(jobs=1, files_per_job=3, seed=2, fail_records=1, deleted_rate=0.0,
                           started_at=T0, staggered=False)
    data_jobs = SimulatedDataJobs(world, 2)
    failing, empty = data_jobs.ids()
    (job_id,) = data_jobs.ingestion_job_ids(failing)
    ended = world.job_finished_at(job_id)
    assert data_jobs.ingestion_job_ids(empty) == ()
    assert data_jobs.status_at(failing, ended - 0.001) == "file_processing"
    for later in (ended, ended + 86400 * 30):
        body = data_jobs.detail(failing, later)
        assert (body["status"], body["status_message"], body["alignment_job_id"], body["alignment_job"]) \
            == ("needs_review", "1 ingestion record(s) failed: review them before starting", None, None)
        nobody = data_jobs.detail(empty, later)
        assert (nobody["status"], nobody["status_message"], nobody["ingestion_jobs"], nobody["files"]) \
            == ("needs_review", "no files: add files before starting", [], [])
        DataJobDetailResponse.model_validate(body)
        DataJobDetailResponse.model_validate(nobody)


def test_the_detail_nests_the_ingestion_jobs_as_the_api_does():
    world = SimulatedWorld(jobs=4, files_per_job=5, seed=3, deleted_rate=0.3, started_at=T0)
    data_jobs = SimulatedDataJobs(world, 2)
    first = data_jobs.ids()[0]
    now = T0 + 60
    body = data_jobs.detail(first, now)
    assert re.fullmatch(f"dj-{UUID}", first)
    assert [job["id"] for job in body["ingestion_jobs"]] == [world.job_ids()[0], world.job_ids()[2]]
    for nested in body["ingestion_jobs"]:
        plain = world.job_response(nested["id"], now)
        # The key is `records` and there is no output_files, as in IngestionJobDetail.
        assert set(nested) == {"id", "status", "created_at", "updated_at", "file_ids", "records"}
        assert (nested["records"], nested["status"], nested["created_at"]) \
            == (plain["file_records"], plain["status"], plain["created_at"])
        stamps = [plain["created_at"]] + [r[k] for r in plain["file_records"]
                                          for k in ("processing_at", "completed_at", "failed_at") if r[k]]
        assert nested["updated_at"] == max(stamps)
        assert len(nested["file_ids"]) == sum(not r["deleted"] for r in plain["file_records"])
    live = [r for job in body["ingestion_jobs"] for r in job["records"] if not r["deleted"]]
    assert [(f["record_id"], f["name"], f["status"]) for f in body["files"]] \
        == [(r["record_id"], r["filename"], r["status"]) for r in live]
    assert body["user_id"] == live[0]["user_id"]
    assert body["created_at"] < min(job["created_at"] for job in body["ingestion_jobs"])
    assert body["updated_at"] == body["timeline"][-1]["timestamp"]
    # The same seed gives the same bodies.
    assert body == SimulatedDataJobs(SimulatedWorld(jobs=4, files_per_job=5, seed=3, deleted_rate=0.3,
                                                    started_at=T0), 2).detail(first, now)


def test_the_list_pages_by_limit_and_offset_newest_first_with_list_items_without_detail_fields():
    world = SimulatedWorld(jobs=7, files_per_job=2, seed=4, started_at=T0)
    data_jobs = SimulatedDataJobs(world, 7)
    clock = Clock(T0)
    with SimulatorServer(world, KEY, data_jobs=data_jobs, clock=clock) as simulator:
        newest_first = sorted(data_jobs.summaries(T0), key=lambda d: (d["created_at"], d["id"]), reverse=True)
        for limit in (1, 3, 7, 100):
            assert _read_all_pages(simulator.url, limit) == newest_first
        default_page = _get(simulator.url + LIST).json()["data"]
        assert default_page == newest_first  # default limit 25
        for item in default_page:
            DataJobResponse.model_validate(item)
            assert not set(DETAIL_ONLY) & set(item)
        assert _get(simulator.url + LIST, limit=3, offset=6).json()["data"] == newest_first[6:]
        assert _get(simulator.url + LIST, offset=50).json() == {"object": "list", "data": []}
        oldest_first = _get(simulator.url + LIST, sort_order="asc").json()["data"]
        assert oldest_first == newest_first[::-1]
        by_name = _get(simulator.url + LIST, sort_by="name", sort_order="asc").json()["data"]
        assert [d["name"] for d in by_name] == sorted(d["name"] for d in newest_first)
        grounded = _get(simulator.url + LIST, job_type="context_grounded_files").json()["data"]
        assert [d["id"] for d in grounded] == [d["id"] for d in newest_first if d["job_type"] == "context_grounded_files"]
        # 7 items: 8 pages of 1 (the last empty), 3 of 3, 2 of 7, 1 of 100; then 6 single reads.
        assert simulator.requests[LIST] == 8 + 3 + 2 + 1 + 6


@pytest.mark.parametrize("params, loc, kind", [
    ({"limit": 0}, "limit", "greater_than_equal"),
    ({"limit": 101}, "limit", "less_than_equal"),
    ({"limit": "ten"}, "limit", "int_parsing"),
    ({"offset": -1}, "offset", "greater_than_equal"),
    ({"sort_by": "status"}, "sort_by", "enum"),
    ({"sort_order": "up"}, "sort_order", "enum"),
    ({"job_type": "other"}, "job_type", "enum"),
])
def test_a_bad_query_parameter_is_a_422_like_fastapi(params, loc, kind):
    world = SimulatedWorld(jobs=1, files_per_job=1, started_at=T0)
    with SimulatorServer(world, KEY, data_jobs=SimulatedDataJobs(world, 1), clock=Clock(T0)) as simulator:
        response = _get(simulator.url + LIST, **params)
    assert response.status_code == 422
    (problem,) = response.json()["detail"]
    assert (problem["loc"], problem["type"], problem["input"]) == (["query", loc], kind, str(params[loc]))


def test_without_data_jobs_the_list_is_empty_and_a_detail_is_404_after_the_key_check():
    world = SimulatedWorld(jobs=1, files_per_job=1, started_at=T0)
    with SimulatorServer(world, KEY, clock=Clock(T0)) as simulator:
        assert _get(simulator.url + LIST).json() == {"object": "list", "data": []}
        missing = _get(f"{simulator.url}{LIST}/dj-nope")
        assert (missing.status_code, missing.json()) == (404, {"detail": "Data job dj-nope not found"})
        anonymous = requests.get(f"{simulator.url}{LIST}/dj-nope", timeout=10)
        assert anonymous.status_code == 401
        assert _get(f"{simulator.url}{LIST}/a/b").status_code == 404
        assert simulator.requests == Counter({LIST: 1, LIST + "/{id}": 2, "<unknown>": 1})


def test_faults_and_fixtures_apply_to_data_jobs_and_the_list_keeps_healthy_bodies():
    world = SimulatedWorld(jobs=2, files_per_job=2, seed=5, started_at=T0)
    data_jobs = SimulatedDataJobs(world, 2)
    broken, slow = data_jobs.ids()
    fixed = {"id": "dj-fixed", "user_id": "u", "name": "fixed", "job_type": "principle_files",
             "alignment_job_id": None, "created_at": "2026-01-15T14:00:00Z",
             "updated_at": "2026-01-15T14:00:00+00:00", "status": "needs_review",
             "ingestion_jobs": [], "extra": 1}
    with SimulatorServer(world, KEY, data_jobs=data_jobs, data_job_fixtures={"dj-fixed": fixed},
                         faults={broken: "http_503", slow: "bad_json"}, clock=Clock(T0)) as simulator:
        assert _get(f"{simulator.url}{LIST}/{broken}").status_code == 503
        assert _get(f"{simulator.url}{LIST}/{slow}").status_code == 200
        with pytest.raises(ValueError):
            _get(f"{simulator.url}{LIST}/{slow}").json()
        assert _get(f"{simulator.url}{LIST}/dj-fixed").json() == fixed
        listed = _get(simulator.url + LIST).json()["data"]
    assert [d["id"] for d in listed] == [d["id"] for d in sorted(
        data_jobs.summaries(T0), key=lambda d: d["created_at"], reverse=True)] + ["dj-fixed"]
    assert listed[-1] == {k: v for k, v in fixed.items() if k != "ingestion_jobs"}



def test_the_command_line_serves_data_jobs_and_prints_their_ids_after_the_jobs():
    import os
    import subprocess
    import sys
    from pathlib import Path

    from test_simulator import _Lines

    env = {k: v for k, v in os.environ.items() if k != "SEEKR_API_KEY"}
    env["SEEKR_API_KEY"] = KEY
    process = subprocess.Popen(
        [sys.executable, "-m", "exporter.simulator", "--listen-address", "127.0.0.1:0", "--jobs", "3",
         "--data-jobs", "2", "--seed", "4"],
        cwd=Path(__file__).parent.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    try:
        url, *ids = _Lines(process.stdout).read(6)
        world = SimulatedWorld(jobs=3, seed=4)
        assert ids == world.job_ids() + SimulatedDataJobs(world, 2, seed=4).ids()
        listed = _get(url + LIST).json()
        DataJobListResponse.model_validate(listed)
        assert sorted(d["id"] for d in listed["data"]) == sorted(ids[3:])
        DataJobDetailResponse.model_validate(_get(f"{url}{LIST}/{ids[3]}").json())
    finally:
        process.terminate()
        process.communicate(timeout=10)
