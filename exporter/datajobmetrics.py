"""Pure step from data-job snapshots to metric families; the ingestion jobs inside a data job are
exported by metrics.py like any other ingestion job.

Example exposition for one data job holding one ingestion job::

    seekrflow_data_job_status{data_job_id="dj-1",status="needs_review"} 1.0
    seekrflow_data_job_info{data_job_id="dj-1",job_type="principle_files",name="support docs"} 1.0
    seekrflow_data_job_created_timestamp_seconds{data_job_id="dj-1"} 1.7684874e+09
    seekrflow_data_job_updated_timestamp_seconds{data_job_id="dj-1"} 1.7684877e+09
    seekrflow_data_job_files{data_job_id="dj-1",status="failed"} 1.0
    seekrflow_ingestion_job_info{data_job_id="dj-1",job_id="ij-1"} 1.0
    seekrflow_data_job_scrape_success{data_job_id="dj-1"} 1.0
"""

from __future__ import annotations

from typing import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from .cardinality import allowed_families
from .config import MetricsConfig
from .datajob import DATA_JOB_STATUSES, DataJob
from .metrics import cut_label, status_counts
from .model import JobSnapshot

_PREFIX = "seekrflow_data_job_"


def build_data_job_families(snapshots: Iterable[JobSnapshot], settings: MetricsConfig) -> list[Metric]:
    """Every data-job family for the given snapshots (their ``job`` is a ``DataJob``), those
    ``metrics.allow`` / ``metrics.deny`` let through."""
    d, ds = ["data_job_id"], ["data_job_id", "status"]
    status = _gauge("status", "Current status of the data job: 1 for the current one, 0 for the others.", ds)
    info = _gauge("info", "Name and type of the data job; always 1.", ["data_job_id", "name", "job_type"])
    created = _gauge("created_timestamp_seconds", "When the data job was created, as Unix seconds.", d)
    updated = _gauge("updated_timestamp_seconds", "When the data job last changed (updated_at), as Unix seconds.", d)
    files = _gauge("files", "Files of the data job (its files list), per processing status.", ds)
    links = GaugeMetricFamily("seekrflow_ingestion_job_info",
                              "Joins an ingestion job to the data job it belongs to; always 1.",
                              labels=["job_id", "data_job_id"])
    success = _gauge("scrape_success", "1 when this scrape holds fresh data for the data job, else 0.", d)
    error = _gauge("scrape_error_info", "Why the latest fetch of the data job failed; present only while it fails.",
                   ["data_job_id", "reason"])
    last_success = _gauge("last_success_timestamp_seconds",
                          "When the data job was last fetched successfully, as Unix seconds.", d)
    cut = settings.error_text_limit
    for snap in snapshots:
        job_id = snap.job_id
        success.add_metric([job_id], 1.0 if snap.fresh else 0.0)
        if snap.error is not None:
            error.add_metric([job_id, snap.error], 1.0)
        if snap.last_success is not None:
            last_success.add_metric([job_id], snap.last_success)
        data_job = snap.job
        if not isinstance(data_job, DataJob):
            continue
        for state in DATA_JOB_STATUSES:
            status.add_metric([job_id, state], 1.0 if data_job.status == state else 0.0)
        if data_job.status not in DATA_JOB_STATUSES:
            status.add_metric([job_id, data_job.status], 1.0)
        info.add_metric([job_id, cut_label(data_job.name, cut), cut_label(data_job.job_type, cut)], 1.0)
        created.add_metric([job_id], data_job.created_at)
        updated.add_metric([job_id], data_job.updated_at)
        for state, count in status_counts(data_job.file_statuses, settings.record_status_limit):
            files.add_metric([job_id, state], float(count))
        seen = set()
        for nested in data_job.watchable_ingestion_jobs:
            if nested.id not in seen:
                seen.add(nested.id)
                links.add_metric([nested.id, job_id], 1.0)
    families = [status, info, created, updated, files, links, success, error, last_success]
    return allowed_families(families, settings.allow, settings.deny)


def _gauge(name: str, documentation: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(_PREFIX + name, documentation, labels=labels)
