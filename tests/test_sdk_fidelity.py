"""Fidelity to the official SDK: answers built from seekrai's own models, served over HTTP to the
exporter, give exactly the metrics that an independent reading of the same answers predicts.

The bodies are ``model_dump(mode="json", exclude_unset=True)`` of ``seekrai`` objects: optional
fields are left out at random, timestamps come with ``Z``, with offsets and without any (naive,
read as UTC), with and without microseconds; record statuses include ones the exporter does not
name (cancelled, stopped, converting). The expected values below are computed from the SDK
objects with their own ``datetime`` arithmetic, not with the exporter's code.
"""

from __future__ import annotations

import random
import time
from datetime import datetime, timedelta, timezone

import pytest
from seekrai.types.alignment import AlignmentJobStatus
from seekrai.types.data_jobs import DataJobDetailResponse, DataJobFile, DataJobStatus, IngestionJobDetail
from seekrai.types.ingestion import IngestionFileRecord, IngestionResponse

from exporter.simulator import SimulatedWorld, SimulatorServer
from harness import ExporterProcess
from metric_samples import parse_exposition

KEY = "sk-test-sdk-fidelity-6b0e"
TERMINAL = {"completed", "failed", "cancelled", "canceled", "stopped"}
RECORD_STATUSES = ("queued", "processing", "completed", "failed")
JOB_STATUSES = ("queued", "running", "completed", "failed")
DATA_JOB_STATUSES = ("file_processing", "needs_review", "ready_to_start",
                     "pending", "queued", "running", "cancelled", "failed", "completed", "stopped")
PROCESSING_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
QUEUE_WAIT_BUCKETS = (1, 5, 15, 30, 60, 300, 900, 1800, 3600, 7200)
ZONES = (timezone.utc, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30)), None)
P = "seekrflow_ingestion_"
D = "seekrflow_data_job_"


# --- bodies from the SDK's models ----------------------------------------------------------------


class Bodies:
    """Random SDK objects around ``base`` (Unix seconds), and their JSON bodies."""

    def __init__(self, seed: int, base: float):
        self.rng = random.Random(seed)
        self.base = base

    def moment(self, offset: float) -> datetime:
        """A time ``offset`` seconds after base, in a random zone (None: naive, meaning UTC)."""
        micros = self.rng.choice((0, self.rng.randrange(1, 1_000_000)))
        utc = datetime.fromtimestamp(int(self.base + offset), timezone.utc) + timedelta(microseconds=micros)
        zone = self.rng.choice(ZONES)
        return utc.replace(tzinfo=None) if zone is None else utc.astimezone(zone)

    def maybe(self, probability: float = 0.5) -> bool:
        return self.rng.random() < probability

    def record(self, job_id: str, index: int, created: float) -> IngestionFileRecord:
        rng = self.rng
        status = rng.choice(("queued", "queued", "processing", "completed", "completed", "failed",
                             "cancelled", "stopped", "converting"))
        fields: dict = {"record_id": f"ijf-{job_id[3:]}-{index}", "ingestion_job_id": job_id,
                        "alignment_file_id": f"md-file-{index}", "user_id": "user-1",
                        "filename": f"file-{index}.{rng.choice(('pdf', 'docx'))}", "status": status,
                        "created_at": self.moment(created)}
        started = created + rng.uniform(0, 900)
        if status != "queued" and (status in ("processing", "completed", "failed", "converting") or self.maybe()):
            fields["processing_at"] = self.moment(started)
        if status == "queued" and self.maybe(0.2):
            fields["processing_at"] = self.moment(started)  # picked, status not updated yet
        end = started + rng.uniform(1, 4000)
        if status == "completed" and self.maybe(0.9):
            fields["completed_at"] = self.moment(end)
        if status == "failed" and self.maybe(0.9):
            fields["failed_at"] = self.moment(end)
            fields["error_message"] = rng.choice(("PDF is encrypted", "File is empty"))
            if self.maybe():
                fields["suggested_fix"] = "Upload it again"
        if status == "cancelled" and self.maybe(0.3):
            fields["failed_at"] = self.moment(end)
        if status in ("queued", "processing", "converting") and self.maybe(0.6):
            fields["queue_position"] = rng.randrange(1, 40)  # also left over on records that moved on
        if self.maybe(0.4):
            fields["method"] = rng.choice(("accuracy-optimized", "speed-optimized"))
        if "processing_at" in fields and self.maybe(0.7):
            fields["worker_id"] = f"worker-{rng.randrange(1, 5)}"
        if self.maybe(0.1):
            fields["deleted"] = True
        elif self.maybe(0.2):
            fields["deleted"] = False
        for optional in ("team_id", "metaflow_job_id"):
            if self.maybe(0.3):
                fields[optional] = None
        return IngestionFileRecord(**fields)

    def records(self, job_id: str, created: float) -> list[IngestionFileRecord]:
        return [self.record(job_id, i, created + self.rng.uniform(0, 60)) for i in range(self.rng.randrange(0, 9))]

    def ingestion_job(self, job_id: str) -> IngestionResponse:
        created = -self.rng.uniform(600, 10000)
        fields: dict = {"id": job_id, "created_at": self.moment(created),
                        "status": self.rng.choice(JOB_STATUSES),
                        "output_files": [f"md-file-{i}" for i in range(self.rng.randrange(0, 4))]}
        if not self.maybe(0.15):  # left out now and then: "no records" is not the same as "none"
            fields["file_records"] = self.records(job_id, created)
        return IngestionResponse(**fields)

    def data_job(self, data_job_id: str, nested_ids: list[str]) -> DataJobDetailResponse:
        rng = self.rng
        created = -rng.uniform(600, 10000)
        nested = []
        for job_id in nested_ids:
            job_created = created + rng.uniform(1, 30)
            fields: dict = {"id": job_id, "status": rng.choice(JOB_STATUSES), "created_at": self.moment(job_created),
                            "updated_at": self.moment(job_created + 60)}
            if self.maybe(0.8):
                fields["records"] = self.records(job_id, job_created)
            if self.maybe():
                fields["file_ids"] = [f"file-{i}" for i in range(3)]
            nested.append(IngestionJobDetail(**fields))
        files = []
        for i in range(rng.randrange(0, 6)):
            file: dict = {"file_id": f"file-{i}"}
            if self.maybe(0.8):
                file["status"] = rng.choice(("completed", "failed", "processing", "queued", "zipping"))
            if self.maybe():
                file["name"] = f"doc-{i}.pdf"
            files.append(DataJobFile(**file))
        status = rng.choice([*DataJobStatus, *AlignmentJobStatus])
        fields = {"id": data_job_id, "user_id": "user-1", "name": f"data job {data_job_id[-1]}",
                  "job_type": rng.choice(("principle_files", "context_grounded_files")),
                  "alignment_job_id": None, "created_at": self.moment(created),
                  "updated_at": self.moment(created + rng.uniform(0, 500)), "status": status,
                  "ingestion_jobs": nested, "files": files}
        if self.maybe():
            fields["status_message"] = None
        return DataJobDetailResponse(**fields)


def body(model) -> dict:
    return model.model_dump(mode="json", exclude_unset=True)


# --- the independent reading ---------------------------------------------------------------------


def seconds(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


class Expected:
    """Expected samples; a value that grows with the time of the scrape is kept as a function of it."""

    def __init__(self):
        self.samples: dict = {}

    def add(self, metric: str, value, **labels) -> None:
        key = (metric, frozenset(labels.items()))
        assert key not in self.samples, key
        self.samples[key] = value

    def at(self, now: float) -> dict:
        return {key: value(now) if callable(value) else value for key, value in self.samples.items()}


def clamp(value: float) -> float:
    return max(value, 0.0)


def expect_ingestion_job(expected: Expected, job_id: str, status: str, created: datetime, output_files: int,
                         records: list[IngestionFileRecord]) -> None:
    for known in JOB_STATUSES:
        expected.add(P + "job_status", 1.0 if status == known else 0.0, job_id=job_id, status=known)
    created_s = seconds(created)
    expected.add(P + "job_created_timestamp_seconds", created_s, job_id=job_id)
    expected.add(P + "job_output_files", float(output_files), job_id=job_id)
    live = [r for r in records if not r.deleted]
    counts = {s: 0 for s in RECORD_STATUSES}
    for r in live:
        counts[r.status] = counts.get(r.status, 0) + 1
    for record_status, count in counts.items():
        expected.add(P + "job_files", float(count), job_id=job_id, status=record_status)
    expected.add(P + "job_files_deleted", float(len(records) - len(live)), job_id=job_id)

    def ends(r):
        return [seconds(t) for t in (r.completed_at, r.failed_at) if t is not None]

    def finished(r):
        return r.status in TERMINAL or bool(ends(r))

    def waiting(r):
        return r.status == "queued" and r.processing_at is None and not finished(r)

    positions = [r.queue_position for r in live if waiting(r) and r.queue_position is not None]
    if positions:
        expected.add(P + "job_queue_position_min", float(min(positions)), job_id=job_id)
        expected.add(P + "job_queue_position_max", float(max(positions)), job_id=job_id)
    if status not in ("completed", "failed"):
        expected.add(P + "job_duration_seconds", lambda now: clamp(now - created_s), job_id=job_id)
    elif any(ends(r) for r in live):
        expected.add(P + "job_duration_seconds", clamp(max(max(ends(r)) for r in live if ends(r)) - created_s),
                     job_id=job_id)
    processing = {"completed": [], "failed": []}
    waits = []
    for r in live:
        if r.processing_at is None:
            continue
        waits.append(clamp(seconds(r.processing_at) - seconds(r.created_at)))
        if ends(r):
            final = r.status if r.status in ("completed", "failed") else (
                "completed" if r.completed_at is not None else "failed")
            processing[final].append(clamp(max(ends(r)) - seconds(r.processing_at)))
    for final, values in processing.items():
        add_histogram(expected, P + "job_file_processing_duration_seconds", values, PROCESSING_BUCKETS,
                      job_id=job_id, status=final)
    add_histogram(expected, P + "job_file_queue_wait_seconds", waits, QUEUE_WAIT_BUCKETS, job_id=job_id)
    expected.add(P + "job_scrape_success", 1.0, job_id=job_id)
    expected.add(P + "job_file_records_omitted", 0.0, job_id=job_id)
    for r in live:
        ids = {"job_id": job_id, "record_id": r.record_id}
        expected.add(P + "file_info", 1.0, **ids, filename=r.filename, status=r.status, method=r.method or "",
                     worker_id=r.worker_id or "")
        if waiting(r) and r.queue_position is not None:
            expected.add(P + "file_queue_position", float(r.queue_position), **ids)
        created_r = seconds(r.created_at)
        if r.processing_at is not None:
            started = seconds(r.processing_at)
            expected.add(P + "file_queue_wait_seconds", clamp(started - created_r), **ids)
            if ends(r):
                expected.add(P + "file_processing_duration_seconds", clamp(max(ends(r)) - started), **ids)
            elif not finished(r):
                expected.add(P + "file_processing_duration_seconds",
                             lambda now, started=started: clamp(now - started), **ids)
        elif waiting(r):
            expected.add(P + "file_queue_wait_seconds", lambda now, c=created_r: clamp(now - c), **ids)
        if r.error_message:
            expected.add(P + "file_error_info", 1.0, **ids, error_message=r.error_message,
                         suggested_fix=r.suggested_fix or "")


def add_histogram(expected: Expected, metric: str, values: list[float], bounds, **labels) -> None:
    for bound in bounds:
        expected.add(metric + "_bucket", float(sum(v <= bound for v in values)), **labels, le=repr(float(bound)))
    expected.add(metric + "_bucket", float(len(values)), **labels, le="+Inf")
    expected.add(metric + "_gcount", float(len(values)), **labels)
    expected.add(metric + "_gsum", float(sum(values)), **labels)


def expect_data_job(expected: Expected, detail: DataJobDetailResponse) -> None:
    data_job_id = detail.id
    status = detail.status.value
    for known in DATA_JOB_STATUSES:
        expected.add(D + "status", 1.0 if status == known else 0.0, data_job_id=data_job_id, status=known)
    expected.add(D + "info", 1.0, data_job_id=data_job_id, name=detail.name, job_type=detail.job_type)
    expected.add(D + "created_timestamp_seconds", seconds(detail.created_at), data_job_id=data_job_id)
    expected.add(D + "updated_timestamp_seconds", seconds(detail.updated_at), data_job_id=data_job_id)
    counts = {s: 0 for s in RECORD_STATUSES}
    for file in detail.files:
        counts[file.status or "unknown"] = counts.get(file.status or "unknown", 0) + 1
    for file_status, count in counts.items():
        expected.add(D + "files", float(count), data_job_id=data_job_id, status=file_status)
    expected.add(D + "scrape_success", 1.0, data_job_id=data_job_id)
    for nested in detail.ingestion_jobs:
        expected.add(P + "job_info", 1.0, job_id=nested.id, data_job_id=data_job_id)
        # No output_files in IngestionJobDetail: its live completed records are what it would list.
        done = sum(1 for r in nested.records if not r.deleted and (r.status == "completed" or r.completed_at))
        expect_ingestion_job(expected, nested.id, nested.status.value, nested.created_at, done, nested.records)


# --- the comparison ------------------------------------------------------------------------------


def exported(text: str) -> dict:
    """The job and data-job samples of an exposition, without the wall-clock last-success times."""
    return {key: value for key, value in parse_exposition(text).items()
            if key[0].startswith((P, D)) and not key[0].endswith("last_success_timestamp_seconds")}


def differences(got: dict, low: dict, high: dict) -> list:
    """Samples missing on either side, and values outside [value at t0, value at t1]."""
    problems = [("missing", key) for key in low.keys() - got.keys()]
    problems += [("unexpected", key, got[key]) for key in got.keys() - low.keys()]
    for key in got.keys() & low.keys():
        lo, hi = low[key], high[key]
        if not lo - 1e-6 * max(1.0, abs(lo)) <= got[key] <= hi + 1e-6 * max(1.0, abs(hi)):
            problems.append(("value", key, got[key], lo, hi))
    return problems


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.slow
def test_sdk_bodies_served_over_http_give_exactly_the_independently_computed_metrics(seed):
    bodies = Bodies(seed, base=time.time())
    jobs = [bodies.ingestion_job(f"ij-{seed}-{i}") for i in range(6)]
    data_jobs = [bodies.data_job(f"dj-{seed}-{i}", [f"ij-{seed}-nested-{i}-{n}" for n in range(i + 1)])
                 for i in range(3)]
    # The SDK reads its own dumps back: the bodies are what a faithful server sends.
    for job in jobs:
        IngestionResponse.model_validate(body(job))
    for detail in data_jobs:
        DataJobDetailResponse.model_validate(body(detail))

    expected = Expected()
    for job in jobs:
        expect_ingestion_job(expected, job.id, job.status.value, job.created_at, len(job.output_files),
                             job.file_records or [])
    for detail in data_jobs:
        expect_data_job(expected, detail)

    world = SimulatedWorld(jobs=0, files_per_job=1)
    with SimulatorServer(world, KEY, fixtures={job.id: body(job) for job in jobs},
                         data_job_fixtures={detail.id: body(detail) for detail in data_jobs}) as simulator:
        config = {"api": {"base_url": simulator.url}, "jobs": [job.id for job in jobs],
                  "data_jobs": {"jobs": [detail.id for detail in data_jobs]}}
        with ExporterProcess(config, KEY) as exporter:
            before = time.time()
            text = exporter.scrape().text
            after = time.time()
        # Each ingestion job once: the directly configured ones on their own, the nested ones
        # only through their data job.
        assert simulator.job_requests == {**{job.id: 1 for job in jobs}, **{d.id: 1 for d in data_jobs}}
    got = exported(text)
    assert differences(got, expected.at(before), expected.at(after)) == []
    # Not vacuous: every kind of sample is there.
    names = {key[0] for key in got}
    assert {P + "file_queue_position", P + "file_error_info", P + "job_queue_position_min", P + "job_info",
            D + "files", P + "file_processing_duration_seconds"} <= names
