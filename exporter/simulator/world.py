"""A deterministic world of SeekrFlow ingestion jobs that move over time.

Pure: no I/O and no clock reads. Every job is planned once, from the seed, when the world is built;
``job_response(job_id, now)`` renders the IngestionResponse body as the API would show it at ``now``
(Unix seconds). The same seed and options always give the same bodies.

The life of a job
-----------------
- Every record is created with its job and joins the job's queue in creation order. A queued record
  shows ``queue_position`` 1..n among the job's records still waiting; the numbers fall as workers
  pick files.
- Each job has its own pool of workers, ``worker-1`` .. ``worker-N``. A free worker picks the head
  of the queue after a short pause; the record turns ``processing`` with ``processing_at``,
  ``worker_id`` and a ``metaflow_job_id``.
- A record ends ``completed`` (``completed_at`` set; its ``alignment_file_id`` then appears in the
  job's ``output_files``, in completion order) or ``failed`` (``failed_at``, ``error_message`` and
  ``suggested_fix`` set). Failures end sooner than conversions: most are found early (an encrypted
  or empty file). Finished records keep their ``worker_id``.
- A record's ``alignment_file_id`` (``md-file-<uuid>``) is fixed from creation.
- Soft-deleted records (``deleted: true``) were removed right after upload: they keep status
  ``queued`` with no queue position, are never picked, and do not count towards the job status.
- Job status, over the records that are not deleted:
  ``queued`` while none has started; ``running`` once one has started and until all have ended;
  then ``completed`` if at least one record completed, else ``failed``. A job whose every record
  was deleted is ``failed`` (nothing was converted).
- ``speed`` compresses the simulated timeline (speed=10 runs ten times faster than real time).
  Timestamps are real Unix times, so durations read from them shrink with the speed as well.
- Jobs are staggered: job 0 is created at ``started_at``, the others earlier by a fraction of their
  own run time, so at start the set shows fresh, running and finished jobs side by side.
  ``staggered=False`` creates every job at ``started_at``.

Knobs for tests and demos
-------------------------
- ``failure_rate``: the chance that a record fails.
- ``fail_records=N``: the first N records that each job's workers pick fail, whatever the rate says:
  a failure soon after start, reliably (``N >= files_per_job`` makes every job fail).
- ``stalled_jobs``: indices (into ``job_ids()``) of jobs whose queue never moves: their records stay
  queued, with the same positions, forever.
"""

from __future__ import annotations

import random
import uuid
from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from ..model import parse_job
from . import catalog

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# Later than any planned record ends: a job's body then is its final one.
_END_OF_TIME = 253402300799.0  # 9999-12-31T23:59:59Z

# Simulated seconds. Real conversions take minutes; failures are usually detected early.
_FIRST_PICK = (2.0, 6.0)
_PAUSE_BETWEEN_FILES = (0.5, 3.0)
_CONVERSION_SECONDS = {"accuracy-optimized": (40.0, 150.0), "speed-optimized": (15.0, 60.0)}
_FAILURE_SECONDS = (3.0, 25.0)
# How far through its run each job is at `started_at` (cycled), so a demo opens on a mix of states.
_STAGGER = (0.0, 0.5, 1.3, 0.25, 0.8)


@dataclass(frozen=True)
class _RecordPlan:
    record_id: str
    alignment_file_id: str
    filename: str
    deleted: bool
    failed: bool
    error: catalog.ConversionError
    metaflow_job_id: str
    # Microseconds since the epoch; None when the record is never picked (deleted or stalled).
    start_us: int | None = None
    end_us: int | None = None
    worker_id: str | None = None


@dataclass(frozen=True)
class _JobPlan:
    job_id: str
    created_us: int
    method: str
    user_id: str
    records: tuple[_RecordPlan, ...]
    # Start times of the live records in queue order (non-decreasing), to count picks by bisection.
    queue_starts: tuple[int, ...]
    stalled: bool


class SimulatedWorld:
    """Ingestion jobs planned from a seed; render one with `job_response(job_id, now)`."""

    def __init__(
        self,
        jobs: int = 5,
        files_per_job: int = 12,
        seed: int = 1,
        speed: float = 1.0,
        failure_rate: float = 0.1,
        deleted_rate: float = 0.05,
        started_at: float = 1768487400.0,
        *,
        workers: int = 3,
        fail_records: int = 0,
        stalled_jobs: tuple[int, ...] | list[int] = (),
        staggered: bool = True,
    ) -> None:
        if jobs < 0 or files_per_job < 1 or workers < 1 or fail_records < 0:
            raise ValueError("jobs must be >= 0; files_per_job and workers >= 1; fail_records >= 0")
        if not speed > 0:
            raise ValueError("speed must be > 0")
        for name, rate in (("failure_rate", failure_rate), ("deleted_rate", deleted_rate)):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        unknown = [i for i in stalled_jobs if not 0 <= i < jobs]
        if unknown:
            raise ValueError(f"stalled_jobs: no job with index {unknown[0]}")
        self.speed = speed
        self.started_at = started_at
        started_us = round(started_at * 1_000_000)
        plans = [
            _plan_job(
                seed, index, files_per_job, speed, failure_rate, deleted_rate, workers,
                fail_records, stalled=index in stalled_jobs,
                age_fraction=_STAGGER[index % len(_STAGGER)] if staggered else 0.0,
                started_us=started_us,
            )
            for index in range(jobs)
        ]
        self._jobs = {plan.job_id: plan for plan in plans}
        self._finished_at: dict[str, float | None] = {}

    def job_ids(self) -> list[str]:
        return list(self._jobs)

    def job_created_at(self, job_id: str) -> float | None:
        """The job's `created_at` in Unix seconds, None for an unknown job."""
        plan = self._jobs.get(job_id)
        return None if plan is None else plan.created_us / 1_000_000

    def job_finished_at(self, job_id: str) -> float | None:
        """When the job ends, in Unix seconds; None if it never does (or unknown).

        Read from the job's final body the way the exporter reads it (``IngestionJob.ended_at``), so
        the simulator and the exporter agree on what "ended" means; a job none of whose live
        records ends (all deleted) ended when it was created.
        """
        if job_id not in self._jobs:
            return None
        if job_id not in self._finished_at:  # plans never change: computed once per job
            final = parse_job(self.job_body(job_id, _END_OF_TIME))
            ended = final.ended_at if final.ended_at is not None else final.created_at
            self._finished_at[job_id] = ended if final.is_finished else None
        return self._finished_at[job_id]

    def job_response(self, job_id: str, now: float) -> dict | None:
        """The IngestionResponse body of `job_id` as seen at `now`, None for an unknown job."""
        return self.job_body(job_id, now) if job_id in self._jobs else None

    def job_body(self, job_id: str, now: float) -> dict:
        """The IngestionResponse body of a job of this world (one of `job_ids()`) as seen at `now`."""
        plan = self._jobs[job_id]
        now_us = round(now * 1_000_000)
        picked = 0 if plan.stalled else bisect_right(plan.queue_starts, now_us)
        records = []
        queue_index = 0
        for record in plan.records:
            records.append(_render_record(plan, record, now_us, queue_index - picked + 1))
            if not record.deleted:
                queue_index += 1
        live = [r for r in records if not r["deleted"]]
        return {
            "id": plan.job_id,
            "created_at": format_timestamp(plan.created_us),
            "status": _job_status(live),
            "output_files": _output_files(plan, now_us),
            "file_records": records,
        }


def format_timestamp(micros: int) -> str:
    """The API's timestamp shape: UTC, six fractional digits, `Z`."""
    return (_EPOCH + timedelta(microseconds=micros)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _timestamp(micros: int | None) -> str | None:
    return None if micros is None else format_timestamp(micros)


def _job_status(live_records: list[dict]) -> str:
    statuses = [r["status"] for r in live_records]
    if all(s == "queued" for s in statuses) and statuses:
        return "queued"
    if any(s in ("queued", "processing") for s in statuses):
        return "running"
    return "completed" if "completed" in statuses else "failed"


def _output_files(plan: _JobPlan, now_us: int) -> list[str]:
    done = [
        r for r in plan.records
        if not r.failed and r.end_us is not None and r.end_us <= now_us
    ]
    done.sort(key=lambda r: r.end_us or 0)  # every one has an end; stable: ties keep queue order
    return [r.alignment_file_id for r in done]


def _render_record(plan: _JobPlan, record: _RecordPlan, now_us: int, queue_position: int) -> dict:
    started = record.start_us is not None and record.start_us <= now_us
    ended = record.end_us is not None and record.end_us <= now_us
    if not started:
        status = "queued"
    elif not ended:
        status = "processing"
    else:
        status = "failed" if record.failed else "completed"
    failed = status == "failed"
    return {
        "record_id": record.record_id,
        "ingestion_job_id": plan.job_id,
        "alignment_file_id": record.alignment_file_id,
        "user_id": plan.user_id,
        "team_id": None,
        "filename": record.filename,
        "metaflow_job_id": record.metaflow_job_id if started else None,
        "method": plan.method,
        "status": status,
        "queue_position": queue_position if status == "queued" and not record.deleted else None,
        "error_message": record.error.error_message if failed else None,
        "suggested_fix": record.error.suggested_fix if failed else None,
        "worker_id": record.worker_id if started else None,
        "deleted": record.deleted,
        "created_at": format_timestamp(plan.created_us),
        "processing_at": _timestamp(record.start_us) if started else None,
        "completed_at": _timestamp(record.end_us) if ended and not failed else None,
        "failed_at": _timestamp(record.end_us) if failed else None,
    }


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _plan_job(
    seed, index, files, speed, failure_rate, deleted_rate, workers, fail_records, *,
    stalled, age_fraction, started_us,
) -> _JobPlan:
    # A string seed is hashed with SHA-512: stable across runs and Python versions, and each job
    # depends only on (seed, index), so adding jobs leaves the existing ones as they were.
    rng = random.Random(f"seekrflow-simulator:{seed}:{index}")
    job_id = f"ij-{_uuid(rng)}"
    method = rng.choice(catalog.METHODS)
    user_id = f"user-{rng.randrange(1, 1000)}"
    conversion_range = _CONVERSION_SECONDS[method]

    # Draw everything in a fixed order first, so options never shift the random stream.
    drafts = []
    taken_names: set[str] = set()
    for _ in range(files):
        record_id = f"ijf-{_uuid(rng)}"
        file_id = f"md-file-{_uuid(rng)}"
        stem = "-".join(p for p in (
            rng.choice(catalog.TOPICS), rng.choice(catalog.KINDS), rng.choice(catalog.PERIODS),
        ) if p)
        extension = rng.choice(catalog.EXTENSIONS)
        filename = _unique(f"{stem}.{extension}", taken_names)
        draws = {
            "deleted": rng.random() < deleted_rate,
            "fail": rng.random(),
            "error": rng.choice(catalog.errors_for(extension)),
            "conversion": rng.uniform(*conversion_range),
            "failure": rng.uniform(*_FAILURE_SECONDS),
            "pause": rng.uniform(*_PAUSE_BETWEEN_FILES),
            "metaflow": f"mf-{rng.randrange(10_000, 100_000)}",
        }
        drafts.append((record_id, file_id, filename, draws))

    worker_rng = random.Random(f"seekrflow-simulator:{seed}:{index}:workers")
    free_at = [worker_rng.uniform(*_FIRST_PICK) for _ in range(workers)]

    # Schedule in simulated seconds from the job's creation. The earliest-free worker takes the head
    # of the queue, so start times never decrease along the queue.
    # (record id, file id, filename, draws, failed, start, end, worker); no start for a deleted record.
    schedule: list[tuple[str, str, str, dict[str, Any], bool, float | None, float | None, int | None]] = []
    live_index = 0
    for record_id, file_id, filename, draws in drafts:
        if draws["deleted"]:
            schedule.append((record_id, file_id, filename, draws, False, None, None, None))
            continue
        failed = live_index < fail_records or draws["fail"] < failure_rate
        live_index += 1
        worker = min(range(workers), key=lambda w: (free_at[w], w))
        start = free_at[worker]
        end = start + (draws["failure"] if failed else draws["conversion"])
        free_at[worker] = end + draws["pause"]
        schedule.append((record_id, file_id, filename, draws, failed, start, end, worker))

    run_seconds = max((s[6] for s in schedule if s[6] is not None), default=0.0)
    created_us = started_us - _real_us(age_fraction * run_seconds, speed)

    def at(offset):
        return None if offset is None or stalled else created_us + _real_us(offset, speed)

    records = tuple(
        _RecordPlan(
            record_id=record_id,
            alignment_file_id=file_id,
            filename=filename,
            deleted=draws["deleted"],
            failed=failed,
            error=draws["error"],
            metaflow_job_id=draws["metaflow"],
            start_us=at(start),
            end_us=at(end),
            worker_id=None if worker is None else f"worker-{worker + 1}",
        )
        for record_id, file_id, filename, draws, failed, start, end, worker in schedule
    )
    return _JobPlan(
        job_id=job_id,
        created_us=created_us,
        method=method,
        user_id=user_id,
        records=records,
        queue_starts=tuple(r.start_us for r in records if not r.deleted and r.start_us is not None),
        stalled=stalled,
    )


def _real_us(simulated_seconds: float, speed: float) -> int:
    return round(simulated_seconds * 1_000_000 / speed)


def _unique(filename: str, taken: set[str]) -> str:
    """Distinct names within a job, as an upload of one folder would have."""
    stem, _, extension = filename.rpartition(".")
    candidate, n = filename, 2
    while candidate in taken:
        candidate = f"{stem}-{n}.{extension}"
        n += 1
    taken.add(candidate)
    return candidate
