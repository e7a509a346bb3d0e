"""Pure step from job snapshots at a given time to their metric families (the exporter's own: selfmetrics.py).

Nothing here reads a clock, a socket or a global, so every value can be pinned by a test.

Example exposition for one running job (per-file series on)::

    seekrflow_ingestion_job_status{job_id="ij-1",status="running"} 1.0
    seekrflow_ingestion_job_files{job_id="ij-1",status="queued"} 3.0
    seekrflow_ingestion_job_queue_position_min{job_id="ij-1"} 1.0
    seekrflow_ingestion_job_file_queue_wait_seconds_bucket{job_id="ij-1",le="5.0"} 2.0
    seekrflow_ingestion_file_info{filename="a.pdf",job_id="ij-1",method="",record_id="ijf-1",status="queued",worker_id=""} 1.0
    seekrflow_ingestion_job_scrape_success{job_id="ij-1"} 1.0
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric

from .cardinality import PER_FILE_NONE, allowed_families, per_file_wanted
from .config import MetricsConfig
from .model import JOB_STATUSES, RECORD_STATUSES, FileRecord, IngestionJob, JobSnapshot

OTHER_STATUS = "other"
_PREFIX = "seekrflow_ingestion_"


class Elapsed(float):
    """A duration that grows with the time it is read at: ``now - since`` (never below zero).

    It is a float, so every encoder takes it as one; exposition.py keeps where it sits in a job's
    lines, so a job that did not change is written at a later time without building its families again.
    """

    __slots__ = ("since",)
    since: float

    def __new__(cls, now: float, since: float) -> Elapsed:
        value = super().__new__(cls, _clamp(now - since))
        value.since = since
        return value


@dataclass
class _JobFamilies:
    """The families of job-level series, filled one job at a time."""

    status: GaugeMetricFamily
    created: GaugeMetricFamily
    output_files: GaugeMetricFamily
    files: GaugeMetricFamily
    deleted: GaugeMetricFamily
    queue_min: GaugeMetricFamily
    queue_max: GaugeMetricFamily
    duration: GaugeMetricFamily
    processing: GaugeHistogramMetricFamily
    queue_wait: GaugeHistogramMetricFamily
    success: GaugeMetricFamily
    error: GaugeMetricFamily
    last_success: GaugeMetricFamily

    @classmethod
    def empty(cls) -> _JobFamilies:
        j = ["job_id"]
        js = ["job_id", "status"]
        return cls(
            status=_gauge("job_status", "Current status of the ingestion job: 1 for the current one, 0 for the others.", js),
            created=_gauge("job_created_timestamp_seconds", "When the ingestion job was created, as Unix seconds.", j),
            output_files=_gauge("job_output_files",
                                "Converted files the ingestion job has produced (length of output_files).", j),
            files=_gauge("job_files", "File records of the ingestion job that are not deleted, per record status.", js),
            deleted=_gauge("job_files_deleted", "Soft-deleted file records of the ingestion job (counted nowhere else).", j),
            queue_min=_gauge("job_queue_position_min",
                             "Best (lowest) queue position among the job's live file records that have one.", j),
            queue_max=_gauge("job_queue_position_max",
                             "Worst (highest) queue position among the job's live file records that have one.", j),
            duration=_gauge("job_duration_seconds",
                            "Time from job creation to its last record end (finished jobs) or to now (unfinished jobs).", j),
            processing=GaugeHistogramMetricFamily(
                _PREFIX + "job_file_processing_duration_seconds",
                "Processing time (end minus processing_at) of the job's finished file records, per final status.",
                labels=js,
            ),
            queue_wait=GaugeHistogramMetricFamily(
                _PREFIX + "job_file_queue_wait_seconds",
                "Queue wait (processing_at minus created_at) of the job's file records that have started.",
                labels=j,
            ),
            success=_gauge("job_scrape_success", "1 when this scrape holds fresh data for the job, else 0.", j),
            error=_gauge("job_scrape_error_info",
                         "Why the latest fetch of the job failed; present only while it fails.", ["job_id", "reason"]),
            last_success=_gauge("job_last_success_timestamp_seconds",
                                "When the job was last fetched successfully, as Unix seconds.", j),
        )

    def all(self) -> list[Metric]:
        return list(vars(self).values())


@dataclass
class _FileFamilies:
    """The families of per-file-record series."""

    info: GaugeMetricFamily
    queue_position: GaugeMetricFamily
    queue_wait: GaugeMetricFamily
    processing: GaugeMetricFamily
    error: GaugeMetricFamily
    omitted: GaugeMetricFamily

    @classmethod
    def empty(cls) -> _FileFamilies:
        jr = ["job_id", "record_id"]
        return cls(
            info=_gauge("file_info", "Descriptive labels of a file record; always 1.",
                        ["job_id", "record_id", "filename", "status", "method", "worker_id"]),
            queue_position=_gauge("file_queue_position", "Queue position of a queued file record.", jr),
            queue_wait=_gauge("file_queue_wait_seconds",
                              "Time the file record waited (or has been waiting) before processing started.", jr),
            processing=_gauge("file_processing_duration_seconds",
                              "Time the file record spent (or has spent so far) processing.", jr),
            error=_gauge("file_error_info", "Error message and suggested fix of a file record; always 1.",
                         ["job_id", "record_id", "error_message", "suggested_fix"]),
            omitted=GaugeMetricFamily(
                _PREFIX + "job_file_records_omitted",
                "File records of the job left out of the per-file series by metrics.per_file_limit.",
                labels=["job_id"],
            ),
        )

    def all(self) -> list[Metric]:
        return list(vars(self).values())


class FamiliesCollector:
    """A collector over families built beforehand, so prometheus_client's encoders can take them."""

    def __init__(self, families: Iterable[Metric]):
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def build_job_families(snapshots: Iterable[JobSnapshot], now: float, settings: MetricsConfig) -> list[Metric]:
    """All job-level and per-file families for the given snapshots at time ``now``.

    Only the families ``metrics.allow`` / ``metrics.deny`` let through, and per-file series only for
    the jobs ``metrics.per_file`` picks (cardinality.py).
    """
    jobs = _JobFamilies.empty()
    files = _FileFamilies.empty() if settings.per_file != PER_FILE_NONE else None
    for snap in snapshots:
        jobs.success.add_metric([snap.job_id], 1.0 if snap.fresh else 0.0)
        if snap.error is not None:
            jobs.error.add_metric([snap.job_id, snap.error], 1.0)
        if snap.last_success is not None:
            jobs.last_success.add_metric([snap.job_id], snap.last_success)
        if not isinstance(snap.job, IngestionJob):
            continue  # no data (or not an ingestion job)
        _add_job(jobs, snap.job_id, snap.job, now, settings)
        if files is not None and wants_per_file(snap.job, now, settings):
            _add_files(files, snap.job_id, snap.job.records, now, settings)
    families = jobs.all() + (files.all() if files is not None else [])
    return allowed_families(families, settings.allow, settings.deny)


def wants_per_file(job: IngestionJob, now: float, settings: MetricsConfig) -> bool:
    """Whether ``job`` gets per-file series at ``now`` under ``metrics.per_file``."""
    settled = job.is_settled
    ended_at = None
    if settled:
        # A settled job that does not say when it ended is as old as its creation (as discovery judges it).
        ended_at = job.ended_at if job.ended_at is not None else job.created_at
    return per_file_wanted(settings.per_file, settings.per_file_window, settled, ended_at, now)


def _add_job(f: _JobFamilies, job_id: str, job: IngestionJob, now: float, settings: MetricsConfig) -> None:
    for status in JOB_STATUSES:
        f.status.add_metric([job_id, status], 1.0 if job.status == status else 0.0)
    if job.status not in JOB_STATUSES:
        f.status.add_metric([job_id, job.status], 1.0)
    f.created.add_metric([job_id], job.created_at)
    f.output_files.add_metric([job_id], float(job.output_files))

    live = [r for r in job.records if not r.deleted]
    for status, count in status_counts([r.status for r in live], settings.record_status_limit):
        f.files.add_metric([job_id, status], float(count))
    f.deleted.add_metric([job_id], float(len(job.records) - len(live)))

    # "Position in queue if status is queued": a record that has moved on may still carry one.
    positions = [r.queue_position for r in live if r.queue_position is not None and r.is_waiting]
    if positions:
        f.queue_min.add_metric([job_id], float(min(positions)))
        f.queue_max.add_metric([job_id], float(max(positions)))

    duration = _job_duration(job, now)
    if duration is not None:
        f.duration.add_metric([job_id], duration)

    finished: dict[str, list[float]] = {"completed": [], "failed": []}
    waits = []
    for record in live:
        if record.processing_at is None:
            continue
        waits.append(_clamp(record.processing_at - record.created_at))
        end = record.ended_at
        if end is not None:
            finished[_final_status(record)].append(_clamp(end - record.processing_at))
    for status, values in finished.items():
        buckets, total = _histogram(values, settings.processing_duration_buckets)
        f.processing.add_metric([job_id, status], buckets, total)
    buckets, total = _histogram(waits, settings.queue_wait_buckets)
    f.queue_wait.add_metric([job_id], buckets, total)


def _add_files(f: _FileFamilies, job_id: str, records: Sequence[FileRecord], now: float, settings: MetricsConfig) -> None:
    cut = settings.error_text_limit
    chosen = _records_to_export(records, settings.per_file_limit, cut)
    live_count = len({_cut(r.record_id, cut) for r in records if not r.deleted})
    f.omitted.add_metric([job_id], float(live_count - len(chosen)))
    for r in chosen:
        # Every string the API supplies is cut, the record's ID too: 500 records with 100 KB IDs
        # would otherwise make every scrape hundreds of megabytes.
        ids = [job_id, _cut(r.record_id, cut)]
        f.info.add_metric(ids + [_cut(r.filename, cut), r.status, _cut(r.method or "", cut), _cut(r.worker_id or "", cut)], 1.0)
        if r.queue_position is not None and r.is_waiting:
            f.queue_position.add_metric(ids, float(r.queue_position))
        end = r.ended_at
        if r.processing_at is not None:
            f.queue_wait.add_metric(ids, _clamp(r.processing_at - r.created_at))
            if end is not None:
                f.processing.add_metric(ids, _clamp(end - r.processing_at))
            elif not r.is_finished:  # still in progress; finished without an end time: unknown
                f.processing.add_metric(ids, Elapsed(now, r.processing_at))
        elif r.is_waiting:
            f.queue_wait.add_metric(ids, Elapsed(now, r.created_at))
        # Left the queue without processing_at (a status other than queued): when it left is
        # unknown, so no wait is shown rather than one that grows for ever.
        if r.error_message:
            f.error.add_metric(ids + [_cut(r.error_message, cut), _cut(r.suggested_fix or "", cut)], 1.0)


def _records_to_export(records: Sequence[FileRecord], limit: int, cut: int) -> list[FileRecord]:
    """Live records, one per record_id as exported (cut), unfinished and failed first, at most ``limit``."""
    seen: set[str] = set()
    unique = []
    for r in records:
        exported_id = _cut(r.record_id, cut)
        if not r.deleted and exported_id not in seen:
            seen.add(exported_id)
            unique.append(r)
    if len(unique) <= limit:
        return unique
    # Completed records are the least interesting to look at one by one, so they go first.
    unique.sort(key=lambda r: 0 if not r.is_finished else 1 if _final_status(r) == "failed" else 2)
    return unique[:limit]


def status_counts(statuses: Iterable[str], extra_limit: int) -> list[tuple[str, int]]:
    """Counts per status: the four record statuses always, up to ``extra_limit`` others, the rest
    summed under ``other``."""
    counts = Counter(statuses)
    result = [(status, counts.pop(status, 0)) for status in RECORD_STATUSES]
    extras = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    kept = [(s, n) for s, n in extras[:extra_limit] if s != OTHER_STATUS]
    kept_names = {s for s, _ in kept}
    overflow = sum(n for s, n in extras if s not in kept_names)
    if overflow:
        kept.append((OTHER_STATUS, overflow))
    return result + sorted(kept)


def _job_duration(job: IngestionJob, now: float) -> float | None:
    if not job.is_finished:
        return Elapsed(now, job.created_at)
    ended = job.ended_at
    return None if ended is None else _clamp(ended - job.created_at)


def _final_status(record: FileRecord) -> str:
    if record.status in ("completed", "failed"):
        return record.status
    return "completed" if record.completed_at is not None else "failed"


def _histogram(values: Sequence[float], bounds: Sequence[float]) -> tuple[list[tuple[str, float]], float]:
    ordered = sorted(values)
    buckets, index = [], 0
    for bound in bounds:
        while index < len(ordered) and ordered[index] <= bound:
            index += 1
        buckets.append((_le(bound), float(index)))
    buckets.append(("+Inf", float(len(ordered))))
    return buckets, float(sum(ordered))


def _le(bound: float) -> str:
    return repr(float(bound))


def _clamp(seconds: float) -> float:
    """Clock skew between API servers can make an interval negative; report it as zero."""
    return seconds if seconds > 0 else 0.0


def cut_label(text: str, limit: int) -> str:
    """A label value cut to ``limit`` characters (the last one an ellipsis)."""
    return _cut(text, limit)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _gauge(name: str, documentation: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(_PREFIX + name, documentation, labels=labels)


# The families a job has only when metrics.per_file gives it per-file series.
PER_FILE_FAMILY_NAMES = frozenset(family.name for family in _FileFamilies.empty().all())
