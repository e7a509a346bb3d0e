"""The data job as the exporter understands it, parsed defensively like the ingestion job.

A data job (``dj-...``) groups ingestion jobs on the way to an alignment job. The list endpoint
gives its summary (``DataJobResponse``); the detail endpoint adds the nested ingestion jobs with
their records (``IngestionJobDetail``) and the files list (``DataJobFile``). Extra fields are
ignored; anything that breaks the documented shape raises ``InvalidResponse`` for this data job only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import JOB_ID_PATTERN
from .model import (
    DEFAULT_TERMINAL_RECORD_STATUSES,
    UNKNOWN_STATUS,
    IngestionJob,
    InvalidResponse,
    _required_time,
    _status,
    _text,
    parse_nested_job,
)

# Before an alignment job is linked: file_processing, needs_review, ready_to_start. After /start the
# status mirrors the alignment job's.
DATA_JOB_STATUSES = ("file_processing", "needs_review", "ready_to_start",
                     "pending", "queued", "running", "cancelled", "failed", "completed", "stopped")
FINISHED_DATA_JOB_STATUSES = frozenset({"cancelled", "failed", "completed", "stopped"})


@dataclass(frozen=True, slots=True)
class DataJob:
    id: str
    name: str
    job_type: str
    status: str
    created_at: float
    updated_at: float
    # Only the detail carries these; a list item has neither (``detailed`` False).
    ingestion_jobs: tuple[IngestionJob, ...] = ()
    file_statuses: tuple[str, ...] = ()
    detailed: bool = True

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_DATA_JOB_STATUSES

    @property
    def is_settled(self) -> bool:
        """Finished, and every nested ingestion job settled: nothing here changes any more."""
        return self.is_finished and all(job.is_settled for job in self.ingestion_jobs)

    @property
    def watchable_ingestion_jobs(self) -> tuple[IngestionJob, ...]:
        """The nested ingestion jobs whose IDs could be configured: only those become label values
        and, while the data job fails, request paths; the others are left out."""
        return tuple(job for job in self.ingestion_jobs if JOB_ID_PATTERN.fullmatch(job.id))

    @property
    def ended_at(self) -> float | None:
        """When a finished data job ended: its last update. None while it is unfinished."""
        return self.updated_at if self.is_finished else None


def parse_data_job(payload: Any, terminal_statuses: frozenset[str] = DEFAULT_TERMINAL_RECORD_STATUSES) -> DataJob:
    """A ``DataJobDetailResponse`` body, or raise ``InvalidResponse``."""
    summary = parse_data_job_summary(payload)
    nested = _list(payload, "ingestion_jobs")
    files = _list(payload, "files")
    jobs = tuple(parse_nested_job(raw, f"ingestion_jobs[{i}]", terminal_statuses) for i, raw in enumerate(nested))
    return DataJob(summary.id, summary.name, summary.job_type, summary.status, summary.created_at,
                   summary.updated_at, ingestion_jobs=jobs,
                   file_statuses=tuple(_file_status(raw, i) for i, raw in enumerate(files)))


def parse_data_job_summary(payload: Any) -> DataJob:
    """A ``DataJobResponse`` (a list item), or raise ``InvalidResponse``."""
    if not isinstance(payload, dict):
        raise InvalidResponse(f"expected a JSON object, got {type(payload).__name__}")
    return DataJob(
        id=_text(payload, "id", "id"),
        name=_text(payload, "name", "name"),
        job_type=_text(payload, "job_type", "job_type"),
        status=_status(payload, "status"),
        created_at=_required_time(payload, "created_at", "created_at"),
        updated_at=_required_time(payload, "updated_at", "updated_at"),
        detailed=False,
    )


def _list(payload: dict, key: str) -> list:
    value = payload.get(key)
    if value is None:  # the SDK's default is an empty list
        return []
    if not isinstance(value, list):
        raise InvalidResponse(f"{key}: expected a list")
    return value


def _file_status(raw: Any, index: int) -> str:
    where = f"files[{index}]"
    if not isinstance(raw, dict):
        raise InvalidResponse(f"{where}: expected an object")
    if raw.get("status") is None:  # nullable: a file with no ingestion record yet
        return UNKNOWN_STATUS
    return _status(raw, "status", where)
