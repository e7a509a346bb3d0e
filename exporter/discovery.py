"""Which listed jobs to watch: a pure choice from the API's job list and the time.

Every unfinished job is watched; a settled one only until ``max_age`` after it ended (its last
live record's end, or its creation if no record has one), so an account's history does not pile up as
series while a job that just failed is still seen failing. A listed job whose body is unusable is
watched (and reported) unless its creation is readable and older than ``max_age``. IDs that could
not be configured are not taken from the list either.
"""

from __future__ import annotations

from .config import JOB_ID_PATTERN
from .model import IngestionJob
from .results import ListResult


def watched_jobs(listed: ListResult, now: float, max_age: float) -> tuple[list[IngestionJob], dict[str, str]]:
    """(jobs to watch, {job id: why its listed body is unusable}) from one read of the list."""
    jobs = [job for job in listed.jobs
            if JOB_ID_PATTERN.fullmatch(job.id) and (not job.is_settled or now - _ended_at(job) <= max_age)]
    invalid = {job_id: detail for job_id, (detail, created_at) in listed.invalid.items()
               if JOB_ID_PATTERN.fullmatch(job_id) and (created_at is None or now - created_at <= max_age)}
    return jobs, invalid



def _ended_at(job: IngestionJob) -> float:
    # A job that does not say when it ended is as old as its creation: it leaves no later than that.
    return job.ended_at if job.ended_at is not None else job.created_at
