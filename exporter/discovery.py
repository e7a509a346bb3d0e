"""Which listed jobs to watch: a pure choice from the API's job list and the time.

Every unfinished job is watched; a settled one only while it is younger than ``max_age``, so an
account's history does not pile up as series. IDs that could not be configured are not taken
from the list either.
"""

from __future__ import annotations

from .client import ListResult
from .config import JOB_ID_PATTERN
from .model import IngestionJob


def watched_jobs(listed: ListResult, now: float, max_age: float) -> tuple[list[IngestionJob], dict[str, str]]:
    """(jobs to watch, {job id: why its listed body is unusable}) from one read of the list."""
    jobs = [job for job in listed.jobs
            if JOB_ID_PATTERN.fullmatch(job.id) and (not job.is_settled or now - job.created_at <= max_age)]
    invalid = {job_id: detail for job_id, detail in listed.invalid.items() if JOB_ID_PATTERN.fullmatch(job_id)}
    return jobs, invalid
