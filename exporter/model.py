"""The ingestion job as the exporter understands it, parsed defensively from an API answer.

The API schema allows extra fields (they are ignored) and leaves the record status an open string.
Anything that breaks the documented shape raises ``InvalidResponse`` so that only this one job fails.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # a data job's snapshot holds a DataJob; datajob.py imports this module
    from .datajob import DataJob

JOB_STATUSES = ("queued", "running", "completed", "failed")
RECORD_STATUSES = ("queued", "processing", "completed", "failed")
FINISHED_JOB_STATUSES = frozenset({"completed", "failed"})
# Record statuses that mean the record has ended even without an end timestamp. The record status
# is an open string; alignment and data jobs also use cancelled (and canceled) and stopped.
# Configurable as api.terminal_record_statuses.
DEFAULT_TERMINAL_RECORD_STATUSES = frozenset({"completed", "failed", "cancelled", "canceled", "stopped"})
# The one status in which a record waits in the queue; its queue_position means something only then.
QUEUED = "queued"
UNKNOWN_STATUS = "unknown"

# Status strings become label values; a runaway string must not become a runaway series.
MAX_STATUS_LENGTH = 64
# Queue positions become float samples; anything beyond exact float range is not a position.
MAX_QUEUE_POSITION = 2**53

_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d\d):(\d\d))?"
)

_EPOCH = datetime(1970, 1, 1)


class InvalidResponse(ValueError):
    """The API answered, but not with a usable ingestion job."""


@dataclass(frozen=True, slots=True)
class FileRecord:
    record_id: str
    filename: str
    status: str
    created_at: float
    method: str | None = None
    worker_id: str | None = None
    queue_position: int | None = None
    error_message: str | None = None
    suggested_fix: str | None = None
    deleted: bool = False
    processing_at: float | None = None
    completed_at: float | None = None
    failed_at: float | None = None
    # Whether the status is one of the terminal statuses the record was parsed with.
    terminal: bool = False

    @property
    def ended_at(self) -> float | None:
        """When the record finished, successfully or not."""
        if self.completed_at is not None and self.failed_at is not None:
            return max(self.completed_at, self.failed_at)
        return self.completed_at if self.completed_at is not None else self.failed_at

    @property
    def is_finished(self) -> bool:
        """Ended: a terminal status or an end timestamp. Any other status is still in progress."""
        return self.terminal or self.ended_at is not None

    @property
    def is_waiting(self) -> bool:
        """Still in the queue: status queued, not started and not finished.

        A record leaves the queue when processing starts or its status moves on, whatever the new
        status is called; from then on its queue wait no longer grows.
        """
        return self.status == QUEUED and self.processing_at is None and not self.is_finished


@dataclass(frozen=True, slots=True)
class IngestionJob:
    id: str
    status: str
    created_at: float
    output_files: int
    records: tuple[FileRecord, ...]
    # False when the answer had no file_records (null or left out, as the SDK allows, and as a job
    # list may send): "no records" is then unknown, not zero.
    records_known: bool = True

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_JOB_STATUSES

    @property
    def is_settled(self) -> bool:
        """A finished job whose records are all finished no longer changes."""
        return self.is_finished and all(r.deleted or r.is_finished for r in self.records)

    @property
    def ended_at(self) -> float | None:
        """When a finished job ended: the last end among its live records. None while the job is
        unfinished, or when none of its live records says when it ended."""
        if not self.is_finished:
            return None
        return max((r.ended_at for r in self.records if not r.deleted and r.ended_at is not None), default=None)


def parse_timestamp(value: str) -> float:
    """RFC 3339 to Unix seconds; 0-9 fractional digits; no offset means UTC."""
    if _has_api_shape(value):
        # The shape the API sends, some three times per record: the C parser is several times
        # faster than the general reader, and plain character checks cost less than a regex.
        try:
            return (datetime.fromisoformat(value[:-1]) - _EPOCH).total_seconds()
        except ValueError:
            pass  # a leap second or a day that does not exist: the general reader decides
    return parse_rfc3339(value)


def _has_api_shape(value: str) -> bool:
    """``2026-01-15T14:30:00Z`` or ``2026-01-15T14:30:00.123456Z``, ASCII only.

    The digits of the date and time are left to ``fromisoformat``, which refuses anything else
    there; the fraction is checked here, since ``fromisoformat`` would read ``.0+0000`` as a
    fraction and an offset.
    """
    size = len(value)
    return ((size == 20 or size == 27 and value[19] == "." and value[20:26].isdigit())
            and value[-1] == "Z" and value[4] == "-" and value[7] == "-" and value[10] == "T"
            and value[13] == ":" and value[16] == ":" and value.isascii())


def parse_rfc3339(value: str) -> float:
    """The general reader: every spelling RFC 3339 allows (and a missing offset, read as UTC)."""
    match = _RFC3339.fullmatch(value)
    if not match:
        raise ValueError(f"not an RFC 3339 timestamp: {value[:40]!r}")
    year, month, day, hour, minute, second = (int(g) for g in match.group(1, 2, 3, 4, 5, 6))
    moment = datetime(year, month, day, hour, minute, min(second, 59), tzinfo=timezone.utc)
    seconds = moment.timestamp() + (second - min(second, 59))
    if match.group(7):
        seconds += int(match.group(7)) / 10 ** len(match.group(7))
    if match.group(9):
        offset = timedelta(hours=int(match.group(10)), minutes=int(match.group(11))).total_seconds()
        seconds -= offset if match.group(9) == "+" else -offset
    return seconds


def parse_job(payload: Any, terminal_statuses: frozenset[str] = DEFAULT_TERMINAL_RECORD_STATUSES) -> IngestionJob:
    """Build an ``IngestionJob`` from a decoded JSON body, or raise ``InvalidResponse``.

    A record whose status is in ``terminal_statuses`` counts as finished without an end timestamp.
    """
    if not isinstance(payload, dict):
        raise InvalidResponse(f"expected a JSON object, got {type(payload).__name__}")
    output_files = payload.get("output_files")
    if not isinstance(output_files, list):
        raise InvalidResponse("output_files: expected a list")
    raw_records = payload.get("file_records")
    if raw_records is not None and not isinstance(raw_records, list):
        raise InvalidResponse("file_records: expected a list or null")
    records = tuple(_record(raw, "file_records", i, terminal_statuses) for i, raw in enumerate(raw_records or ()))
    return IngestionJob(
        id=_text(payload, "id", "id"),
        status=_status(payload, "status"),
        created_at=_required_time(payload, "created_at", "created_at"),
        output_files=len(output_files),
        records=records,
        records_known=raw_records is not None,
    )


def parse_nested_job(payload: Any, where: str,
                     terminal_statuses: frozenset[str] = DEFAULT_TERMINAL_RECORD_STATUSES) -> IngestionJob:
    """An ingestion job nested in a data job (``IngestionJobDetail``), or raise ``InvalidResponse``.

    Its records are under ``records`` (not ``file_records``) and it has no ``output_files``. That
    count is taken from the records instead: a completed record's ``alignment_file_id`` is the ID
    that appears in ``output_files``, so it is the number of live completed records.
    """
    if not isinstance(payload, dict):
        raise InvalidResponse(f"{where}: expected a JSON object, got {type(payload).__name__}")
    raw_records = payload.get("records")
    if raw_records is not None and not isinstance(raw_records, list):
        raise InvalidResponse(f"{where}.records: expected a list or null")
    records = tuple(_record(raw, f"{where}.records", i, terminal_statuses) for i, raw in enumerate(raw_records or ()))
    return IngestionJob(
        id=_text(payload, "id", f"{where}.id"),
        status=_status(payload, "status", where),
        created_at=_required_time(payload, "created_at", f"{where}.created_at"),
        output_files=sum(1 for r in records if not r.deleted and (r.status == "completed" or r.completed_at is not None)),
        records=records,
        records_known=raw_records is not None,
    )


def _record(raw: Any, records: str, index: int, terminal_statuses: frozenset[str]) -> FileRecord:
    """A record in the shape the API sends, read with as few steps as that allows; anything else
    (a missing or mistyped field, non-ASCII text, another timestamp spelling) goes through
    ``_checked_record``, which gives the same result or says what is wrong. A property test holds
    the two together. ``records[index]`` is where the record is, for the error."""
    if type(raw) is not dict:
        return _checked_record(raw, f"{records}[{index}]", terminal_statuses)
    get = raw.get
    record_id, filename, status = get("record_id"), get("filename"), get("status")
    method, worker_id = get("method"), get("worker_id")
    error_message, suggested_fix = get("error_message"), get("suggested_fix")
    deleted, queue_position = get("deleted", False), get("queue_position")
    created_at = _api_time(get("created_at"))
    processing_at, completed_at, failed_at = get("processing_at"), get("completed_at"), get("failed_at")
    if processing_at is not None:
        processing_at = _api_time(processing_at)
    if completed_at is not None:
        completed_at = _api_time(completed_at)
    if failed_at is not None:
        failed_at = _api_time(failed_at)
    if not (type(record_id) is str and type(filename) is str and type(status) is str and status
            and (method is None or type(method) is str) and (worker_id is None or type(worker_id) is str)
            and (error_message is None or type(error_message) is str)
            and (suggested_fix is None or type(suggested_fix) is str)
            and (deleted is False or deleted is True or deleted is None)
            and (queue_position is None or type(queue_position) is int and abs(queue_position) <= MAX_QUEUE_POSITION)
            and created_at is not None
            and (processing_at is not None or get("processing_at") is None)
            and (completed_at is not None or get("completed_at") is None)
            and (failed_at is not None or get("failed_at") is None)
            and record_id.isascii() and filename.isascii() and status.isascii()
            and (method is None or method.isascii()) and (worker_id is None or worker_id.isascii())
            and (error_message is None or error_message.isascii())
            and (suggested_fix is None or suggested_fix.isascii())):
        return _checked_record(raw, f"{records}[{index}]", terminal_statuses)
    status = status[:MAX_STATUS_LENGTH]
    return FileRecord(record_id, filename, status, created_at, method, worker_id, queue_position, error_message,
                      suggested_fix, bool(deleted), processing_at, completed_at, failed_at,
                      status in terminal_statuses)


def _api_time(value: Any) -> float | None:
    """A timestamp in the API's own shape as Unix seconds; None for anything else (or nothing)."""
    if type(value) is str and _has_api_shape(value):
        try:
            return (datetime.fromisoformat(value[:-1]) - _EPOCH).total_seconds()
        except ValueError:
            return None
    return None


def _checked_record(raw: Any, where: str, terminal_statuses: frozenset[str]) -> FileRecord:
    if not isinstance(raw, dict):
        raise InvalidResponse(f"{where}: expected an object")
    deleted = raw.get("deleted", False)
    if deleted is None:
        deleted = False
    if not isinstance(deleted, bool):
        raise InvalidResponse(f"{where}.deleted: expected a boolean")
    queue_position = raw.get("queue_position")
    if queue_position is not None and (isinstance(queue_position, bool) or not isinstance(queue_position, int)
                                       or abs(queue_position) > MAX_QUEUE_POSITION):
        raise InvalidResponse(f"{where}.queue_position: expected an integer or null")
    status = _status(raw, "status", where)
    return FileRecord(
        record_id=_text(raw, "record_id", f"{where}.record_id"),
        filename=_text(raw, "filename", f"{where}.filename"),
        status=status,
        created_at=_required_time(raw, "created_at", f"{where}.created_at"),
        method=_optional_text(raw, "method", where),
        worker_id=_optional_text(raw, "worker_id", where),
        queue_position=queue_position,
        error_message=_optional_text(raw, "error_message", where),
        suggested_fix=_optional_text(raw, "suggested_fix", where),
        deleted=deleted,
        processing_at=_time(raw, "processing_at", f"{where}.processing_at"),
        completed_at=_time(raw, "completed_at", f"{where}.completed_at"),
        failed_at=_time(raw, "failed_at", f"{where}.failed_at"),
        terminal=status in terminal_statuses,
    )


def _text(raw: dict, key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str):
        raise InvalidResponse(f"{where}: expected a string, got {_kind(value)}")
    return _encodable(value)


def _optional_text(raw: dict, key: str, where: str) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidResponse(f"{where}.{key}: expected a string or null, got {_kind(value)}")
    return value if value is None else _encodable(value)


def _encodable(value: str) -> str:
    """JSON may carry lone surrogates ("\\ud800"); they cannot be written as UTF-8 label values."""
    if value.isascii():
        return value
    return value.encode("utf-8", "replace").decode("utf-8")


def _status(raw: dict, key: str, where: str = "") -> str:
    value = _text(raw, key, f"{where}.{key}" if where else key)
    # An empty label value is no label at all in Prometheus; it would merge into other series.
    return value[:MAX_STATUS_LENGTH] or UNKNOWN_STATUS


def _time(raw: dict, key: str, where: str) -> float | None:
    return None if raw.get(key) is None else _required_time(raw, key, where)


def _required_time(raw: dict, key: str, where: str) -> float:
    value = raw.get(key)
    if not isinstance(value, str):
        raise InvalidResponse(f"{where}: expected an RFC 3339 timestamp, got {_kind(value)}")
    try:
        return parse_timestamp(value)
    except (ValueError, OverflowError):
        raise InvalidResponse(f"{where}: not an RFC 3339 timestamp") from None


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


@dataclass(frozen=True, slots=True, eq=False)
class RenderedJob:
    """A job as the exporter keeps it: its series rendered once when its answer arrived (``pieces``,
    for the ``settings`` they were rendered with; see exposition.py), the few facts the poller and
    discovery still ask about, and none of its records.

    An unfinished job (``settled`` false) is kept the same way: the values that grow with time are
    filled in by each scrape, and the next answer replaces it, or, when its body is the same bytes
    (``digest``), confirms it without being parsed again.
    """

    id: str
    status: str
    created_at: float
    ended_at: float  # its last record's end, or its creation if none ended
    pieces: object
    settings: object
    settled: bool = True
    digest: bytes | None = None  # of the answer's body and how it was read; None if not from its own answer

    @property
    def is_settled(self) -> bool:
        return self.settled


@dataclass(frozen=True, slots=True)
class JobSnapshot:
    """What the exporter knows about one configured job at the moment of a scrape.

    ``job`` is the last good answer (possibly stale when ``fresh`` is false); ``error`` is the short
    reason the latest fetch failed, or None when it succeeded.
    """

    job_id: str
    job: IngestionJob | RenderedJob | DataJob | None  # a DataJob in a data job's snapshot
    fresh: bool
    error: str | None = None
    last_success: float | None = None
