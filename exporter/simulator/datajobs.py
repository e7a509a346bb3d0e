"""SeekrFlow data jobs over a SimulatedWorld: each groups some of the world's ingestion jobs.

Pure like the world: no I/O, no clock reads; ``detail(id, now)`` and ``summaries(now)`` render the
bodies of ``GET /v1/flow/data-jobs/{id}`` and of the list as the API would show them at ``now``.

The life of a data job
----------------------
- Data job ``i`` holds the world's ingestion jobs whose index ``j`` has ``j % count == i``; it is
  created a few seconds before the first of them. A data job with no ingestion job has no files.
- ``file_processing`` while one of its ingestion jobs is queued or running;
  ``needs_review`` once all have ended and a record failed, or when it has no files at all (the
  API's "failed ingestion records, missing files"): it stays there, as nobody reviews it here;
  ``ready_to_start`` once every ingestion job ended with no failed record.
- Every other data job (even indices) is started on its own ``AUTO_START`` seconds after it became
  ready, and then mirrors its alignment job: ``pending``, ``queued``, ``running``, ``completed``.
- ``updated_at`` is the latest change seen so far; ``timeline`` lists those changes.
- Times are simulated seconds, compressed by the world's ``speed`` like the ingestion jobs.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass

from .world import SimulatedWorld, format_timestamp

JOB_TYPES = ("principle_files", "context_grounded_files", "context_grounded_vector_db")
# Fields of the detail that the list's items do not carry.
DETAIL_ONLY = ("additional_alignment_file_ids", "ingestion_jobs", "alignment_job", "files",
               "fine_tuning_job_ids", "timeline")
# Simulated seconds: how long a ready data job waits to be started, then each alignment phase.
AUTO_START = 30.0
ALIGNMENT_PHASES = (("pending", 5.0), ("queued", 15.0), ("running", 180.0))
_CREATED_BEFORE_FILES = 5.0
_NAME_TOPICS = ("support", "policies", "product", "onboarding", "compliance", "research")


@dataclass(frozen=True)
class _DataJobPlan:
    data_job_id: str
    alignment_job_id: str
    name: str
    job_type: str
    user_id: str
    ingestion_job_ids: tuple[str, ...]
    auto_start: bool


class SimulatedDataJobs:
    """``count`` data jobs over ``world``'s ingestion jobs; the same seed gives the same bodies."""

    def __init__(self, world: SimulatedWorld, count: int, seed: int = 1) -> None:
        if count < 0:
            raise ValueError("data jobs must be >= 0")
        self.world = world
        ingestion_ids = world.job_ids()
        plans = []
        for index in range(count):
            rng = random.Random(f"seekrflow-simulator:{seed}:data-job:{index}")
            members = tuple(j for n, j in enumerate(ingestion_ids) if n % count == index)
            user_id = f"user-{rng.randrange(1, 1000)}"
            if members:  # the owner of the data job uploaded its files
                records: list[dict] = world.job_body(members[0], 0.0)["file_records"]
                user_id = next(iter(records), {}).get("user_id", user_id)
            plans.append(_DataJobPlan(
                data_job_id=f"dj-{_uuid(rng)}",
                alignment_job_id=f"aj-{_uuid(rng)}",
                name=f"{rng.choice(_NAME_TOPICS)}-knowledge-{index + 1}",
                job_type=JOB_TYPES[index % len(JOB_TYPES)],
                user_id=user_id,
                ingestion_job_ids=members,
                auto_start=index % 2 == 0,
            ))
        self._plans = {plan.data_job_id: plan for plan in plans}

    def ids(self) -> list[str]:
        return list(self._plans)

    def ingestion_job_ids(self, data_job_id: str) -> tuple[str, ...]:
        return self._plans[data_job_id].ingestion_job_ids

    def status_at(self, data_job_id: str, now: float) -> str:
        return self._events(self._plans[data_job_id], now)[-1][2]

    def summaries(self, now: float) -> list[dict]:
        """Every data job as a list item (``DataJobResponse``), in creation order."""
        return [summary_of(self._detail(plan, now)) for plan in self._plans.values()]

    def detail(self, data_job_id: str, now: float) -> dict | None:
        """The ``DataJobDetailResponse`` body at ``now``; None for an unknown data job."""
        plan = self._plans.get(data_job_id)
        return None if plan is None else self._detail(plan, now)

    def _detail(self, plan: _DataJobPlan, now: float) -> dict:
        events = self._events(plan, now)
        created, status = events[0][0], events[-1][2]
        linked = _alignment_start(events)
        ingestion_jobs = [self._ingestion_job(job_id, now) for job_id in plan.ingestion_job_ids]
        status_message = None
        if status == "needs_review":
            failed = sum(r["status"] == "failed" for job in ingestion_jobs for r in job["records"])
            status_message = (f"{failed} ingestion record(s) failed: review them before starting"
                              if failed else "no files: add files before starting")
        return {
            "id": plan.data_job_id,
            "user_id": plan.user_id,
            "team_id": None,
            "name": plan.name,
            "job_type": plan.job_type,
            "alignment_job_id": plan.alignment_job_id if linked is not None else None,
            "origin_data_job_id": None,
            "deleted": False,
            "created_at": _ts(created),
            "updated_at": _ts(events[-1][0]),
            "status": status,
            "status_message": status_message,
            "system_prompt": f"Answer questions using the {plan.name} documents.",
            "system_prompt_updated_at": _ts(created),
            "instructions": None,
            "instructions_updated_at": None,
            "resolved_instructions": None,
            "additional_alignment_file_ids": [],
            "ingestion_jobs": ingestion_jobs,
            "alignment_job": None if linked is None else {
                "id": plan.alignment_job_id,
                "created_at": _ts(linked),
                "updated_at": _ts(events[-1][0]),
                "status": status,
            },
            "files": [_file(record) for job in ingestion_jobs for record in job["records"]
                      if not record["deleted"]],
            "fine_tuning_job_ids": [],
            "timeline": [{"timestamp": _ts(at), "event_type": kind, "message": f"status: {state}",
                          "metadata": {"status": state}} for at, kind, state in events],
        }

    def _ingestion_job(self, job_id: str, now: float) -> dict:
        body = self.world.job_body(job_id, now)
        records = body["file_records"]
        changes = [body["created_at"]] + [r[key] for r in records
                                          for key in ("processing_at", "completed_at", "failed_at") if r[key]]
        return {
            "id": body["id"],
            "status": body["status"],
            "created_at": body["created_at"],
            "updated_at": max(changes),  # one timestamp shape, so the text order is the time order
            "file_ids": [_input_file_id(r["record_id"]) for r in records if not r["deleted"]],
            "records": records,
        }

    def _events(self, plan: _DataJobPlan, now: float) -> list[tuple[float, str, str]]:
        """(when, event type, status after it) up to ``now``, oldest first; never empty."""
        world = self.world
        # The world's own jobs: each has a creation time.
        starts = [at for j in plan.ingestion_job_ids if (at := world.job_created_at(j)) is not None]
        created = min(starts, default=world.started_at) - _CREATED_BEFORE_FILES / world.speed
        events = [(created, "created", "needs_review" if not starts else "file_processing")]
        ends = [world.job_finished_at(j) for j in plan.ingestion_job_ids]
        finished = [end for end in ends if end is not None]
        if starts and len(finished) == len(ends):
            ready = max(finished)
            failed = any(r["status"] == "failed" for j in plan.ingestion_job_ids
                         for r in world.job_body(j, ready)["file_records"] if not r["deleted"])
            events.append((ready, "ingestion_finished", "needs_review" if failed else "ready_to_start"))
            if plan.auto_start and not failed:
                at = ready + AUTO_START / world.speed
                for phase, seconds in ALIGNMENT_PHASES:
                    events.append((at, "alignment_status", phase))
                    at += seconds / world.speed
                events.append((at, "alignment_status", "completed"))
        return [event for event in events if event[0] <= now] or events[:1]


def summary_of(detail: dict) -> dict:
    """The list item of a data job: its detail without the detail-only fields."""
    return {key: value for key, value in detail.items() if key not in DETAIL_ONLY}


def _alignment_start(events: list[tuple[float, str, str]]) -> float | None:
    return next((at for at, kind, _ in events if kind == "alignment_status"), None)


def _file(record: dict) -> dict:
    name = record["filename"]
    return {
        "file_id": _input_file_id(record["record_id"]),
        "record_id": record["record_id"],
        "name": name,
        "type": name.rpartition(".")[2],
        "created_at": record["created_at"],
        "status": record["status"],
        "suggested_fix": record["suggested_fix"],
        "bytes": 10_000 + uuid.UUID(record["record_id"][4:]).int % 5_000_000,
    }


def _input_file_id(record_id: str) -> str:
    """The uploaded file behind a record: fixed by the record, as the upload came first."""
    return f"file-{uuid.uuid5(uuid.NAMESPACE_URL, record_id)}"


def _ts(seconds: float) -> str:
    return format_timestamp(round(seconds * 1_000_000))


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))
