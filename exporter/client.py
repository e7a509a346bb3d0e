"""HTTP client for the SeekrFlow ingestion API: one GET per job (or the job list), every outcome classified.

The client never raises for a bad answer: it returns a ``FetchResult`` whose ``reason`` is a short,
bounded code (fit for a label) and whose ``detail`` is a human sentence for the log. Neither ever
contains the API key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
from dataclasses import replace
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Mapping
from urllib.parse import quote

from prometheus_client import Counter

from . import __version__
from .config import ApiConfig
from .datajob import DataJob, parse_data_job, parse_data_job_summary
from .discovery import ListKeeper
from .jsonstream import ItemTooLarge, ListItems
from .model import InvalidResponse, RenderedJob, parse_job, parse_timestamp
from .results import FetchResult, ListResult
from .transport import MAX_BODY_BYTES, BoundedSession, RequestFailed

log = logging.getLogger("seekrflow_exporter.client")

# The ``code`` of seekrflow_exporter_api_requests_total for a request that got no usable answer;
# the others (redirect) count under the HTTP status they got.
_REQUEST_CODES = {"timeout": "timeout", "connection_error": "connection_error",
                  "body_too_large": "invalid_response", "bad_encoding": "invalid_response"}


# The job list is read as a stream, one job at a time, so its length costs time, not memory. One
# listed job may be as long as one job's own answer; the whole list far longer than any real one
# (4 GiB is about 300,000 jobs of 1,000 files): past it the read fails with reason body_too_large,
# which the "job list failed" log line and seekrflow_exporter_discovery_success show.
MAX_LIST_ITEM_CHARS = MAX_BODY_BYTES
MAX_LIST_BYTES = 4 * 1024 ** 3

DATA_JOB_PATH = "/v1/flow/data-jobs/{id}"
DATA_JOBS_PATH = "/v1/flow/data-jobs"
# The data-job list is paged: the API's largest page, and a bound on pages for a server that never
# sends a short one (100,000 data jobs).
DATA_JOB_PAGE = 100
MAX_DATA_JOB_PAGES = 1000


class SeekrFlowClient:
    def __init__(self, api: ApiConfig, requests_total: Counter, max_list_bytes: int = MAX_LIST_BYTES):
        self._api = api
        self._requests_total = requests_total
        self._max_list_bytes = max_list_bytes
        headers = {
            "Authorization": api.api_key,
            "Accept": "application/json",
            "User-Agent": f"seekrflow-exporter/{__version__}",
        }
        if api.team_id:
            headers["x-team-id"] = api.team_id
        self._http = BoundedSession(api.base_url, headers, api.max_concurrency)

    def job_url(self, job_id: str) -> str:
        # quote() with safe="" keeps the ID a single path segment whatever it contains.
        return self._api.base_url + self._api.path_template.replace("{id}", quote(job_id, safe=""))

    def fetch_job(self, job_id: str, timeout: float, known: RenderedJob | None = None) -> FetchResult:
        """GET one job, taking at most about ``timeout`` seconds; every failure becomes a result.

        ``known``: the job as kept from an earlier answer. An answer whose body is the same bytes
        is that job again, and is not parsed: an unfinished job that did not move costs its
        transfer only.
        """
        read = _JobReader(job_id, self._api.terminal_record_statuses, known)
        return self._call(self.job_url(job_id), self._api.path_template, job_id, timeout, read.parse,
                          same_as=read.same_as)

    def list_jobs(self, timeout: float, keeper: ListKeeper | None = None) -> ListResult:
        """GET every job of the caller in one answer (the API has no paging), read as it streams in;
        ``keeper`` chooses what is kept of it (everything without one)."""
        reader = _ListReader(keeper or ListKeeper(), self._api.terminal_record_statuses)
        outcome = self._call(self._api.base_url + self._api.list_path, self._api.list_path, "", timeout,
                             lambda payload, status: payload, reader)
        return outcome if isinstance(outcome, ListResult) else ListResult(failure=outcome)

    def fetch_data_job(self, data_job_id: str, timeout: float) -> FetchResult:
        """GET one data job with its nested ingestion jobs; every failure becomes a result."""
        url = self._api.base_url + DATA_JOB_PATH.replace("{id}", quote(data_job_id, safe=""))
        return self._call(url, DATA_JOB_PATH, data_job_id, timeout,
                          lambda payload, status: FetchResult(
                              data_job_id, parse_data_job(payload, self._api.terminal_record_statuses),
                              http_status=status))

    def list_data_jobs(self, timeout: float) -> ListResult:
        """Every data job of the caller, page by page until a short page, all within ``timeout``.

        The list has no total and no next link. A data job created while the pages are read can
        shift the pages: one may show up twice (kept once) or be missed until the next read.
        """
        give_up_at = time.monotonic() + timeout
        jobs: list[DataJob] = []
        invalid: dict[str, tuple[str, float | None]] = {}
        seen: set[str] = set()
        for page in range(MAX_DATA_JOB_PAGES):
            remaining = give_up_at - time.monotonic()
            if remaining <= 0:
                return ListResult(failure=FetchResult("", None, "timeout", f"data-job pages not read within {timeout:.1f}s"))
            url = f"{self._api.base_url}{DATA_JOBS_PATH}?limit={DATA_JOB_PAGE}&offset={page * DATA_JOB_PAGE}"
            outcome = self._call(url, DATA_JOBS_PATH, "", remaining, lambda payload, status: _parse_data_job_page(payload))
            if isinstance(outcome, FetchResult):
                return ListResult(failure=outcome)
            listed, size = outcome
            jobs += [job for job in listed.jobs if isinstance(job, DataJob) and job.id not in seen]
            seen.update(job.id for job in listed.jobs)
            invalid.update(listed.invalid)
            if size < DATA_JOB_PAGE:
                return ListResult(tuple(jobs), invalid)
        return ListResult(failure=FetchResult("", None, "too_many_pages",
                                              f"more than {MAX_DATA_JOB_PAGES} full pages of data jobs"))

    def _call(self, url: str, endpoint: str, job_id: str, timeout: float, parse: Callable[[Any, int], Any],
              stream: _ListReader | None = None, same_as: Callable[[bytes | bytearray], FetchResult | None] | None = None):
        try:
            return self._get(url, endpoint, job_id, timeout, parse, stream, same_as)
        except Exception as err:  # noqa: BLE001 - whatever the API sends, only this job may fail
            _log_first_of_its_kind(err, job_id)
            return self._failed(job_id, endpoint, "internal_error",
                                f"unexpected {type(err).__name__} while fetching", code="internal_error")

    def _get(self, url: str, endpoint: str, job_id: str, timeout: float, parse: Callable[[Any, int], Any],
             stream: _ListReader | None = None, same_as: Callable[[bytes | bytearray], FetchResult | None] | None = None):
        """``stream``: a 200 answer's body goes to it as it arrives, and ``parse`` gets what it made.
        ``same_as``: what a 200 answer's body is when it need not be parsed, or None."""
        try:
            if stream is None:
                answer = self._http.get(url, timeout)
            else:
                answer = self._http.get(url, timeout, stream.feed, self._max_list_bytes)
        except RequestFailed as err:
            return self._failed(job_id, endpoint, err.reason, err.detail, err.http_status,
                                code=_REQUEST_CODES.get(err.reason, str(err.http_status)))
        except _Refused as err:
            return self._failed(job_id, endpoint, err.reason, err.detail, 200,
                                code=_REQUEST_CODES.get(err.reason, "invalid_response"))
        status, body = answer.status, answer.body
        if status != 200:
            failed = self._failed(job_id, endpoint, f"http_{status}", f"HTTP {status}{_detail_of(body)}", status,
                                  code=str(status))
            if status in (429, 503):
                failed = replace(failed, retry_after=_retry_after(answer.headers))
            return failed
        unchanged = None if same_as is None else same_as(body)
        if unchanged is not None:
            self._requests_total.labels(endpoint, "200").inc()
            return unchanged
        try:
            payload = json.loads(body) if stream is None else stream.finish()
        except _Refused as err:
            return self._failed(job_id, endpoint, err.reason, err.detail, status)
        except (ValueError, RecursionError):
            return self._failed(job_id, endpoint, "invalid_json", "HTTP 200 with a body that is not JSON", status)
        try:
            parsed = parse(payload, status)
        except InvalidResponse as err:
            return self._failed(job_id, endpoint, "invalid_schema", f"HTTP 200 with an unusable body: {err}", status)
        self._requests_total.labels(endpoint, "200").inc()
        return parsed

    def _failed(self, job_id: str, endpoint: str, reason: str, detail: str, http_status: int | None = None,
                code: str | None = None) -> FetchResult:
        if code is None:
            code = reason if reason in ("timeout", "connection_error") else "invalid_response"
        self._requests_total.labels(endpoint, code).inc()
        return FetchResult(job_id, None, reason, _redact(detail, self._api.api_key), http_status)

    def close(self) -> None:
        self._http.close()


def _parse_list(payload: Any, terminal_statuses: frozenset[str], parse: Callable[..., Any] = parse_job) -> ListResult:
    """One bad job in the list fails that job, not the list. ``"data": null`` (or none) is an empty
    list, as the SDK reads it."""
    jobs, invalid = [], {}
    for item in _list_items(payload):
        try:
            jobs.append(parse(item, terminal_statuses))
        except InvalidResponse as err:
            job_id = item.get("id") if isinstance(item, dict) else None
            if isinstance(job_id, str) and job_id:
                invalid[job_id] = (f"listed with an unusable body: {err}", _created_at_if_readable(item))
    return ListResult(tuple(jobs), invalid)


def body_digest(body: bytes | bytearray, terminal_statuses: frozenset[str]) -> bytes:
    """What identifies a job's answer as read: its bytes, and the record statuses it was read with."""
    digest = hashlib.blake2b(",".join(sorted(terminal_statuses)).encode(), digest_size=16)
    digest.update(b"\0")
    digest.update(body)
    return digest.digest()


class _JobReader:
    """One job's answer: the job kept from an earlier answer if the body is the same, else parsed."""

    def __init__(self, job_id: str, terminal_statuses: frozenset[str], known: RenderedJob | None):
        self._job_id = job_id
        self._terminal = terminal_statuses
        self._known = known
        self._digest: bytes | None = None

    def same_as(self, body: bytes | bytearray) -> FetchResult | None:
        self._digest = body_digest(body, self._terminal)
        known = self._known
        if known is not None and known.digest == self._digest:
            return FetchResult(self._job_id, known, http_status=200, digest=self._digest)
        return None

    def parse(self, payload: Any, status: int) -> FetchResult:
        return FetchResult(self._job_id, parse_job(payload, self._terminal), http_status=status, digest=self._digest)


class _Refused(Exception):
    """A streamed body that cannot be used; ``reason`` is a label value, ``detail`` a log sentence."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


class _ListReader:
    """The job list as it streams in: each item parsed and judged by the keeper, then let go.

    One bad job in the list fails that job, not the list, as ``_parse_list`` does for a whole body.
    """

    def __init__(self, keeper: ListKeeper, terminal_statuses: frozenset[str]):
        self._keeper = keeper
        self._terminal = terminal_statuses
        self._items = ListItems(MAX_LIST_ITEM_CHARS)

    def feed(self, chunk: bytes) -> None:
        self._guarded(lambda: self._items.feed(chunk))

    def finish(self) -> ListResult:
        self._guarded(self._items.close)
        return self._keeper.result()

    def _guarded(self, items: Callable[[], Any]) -> None:
        try:
            for item in items():
                self._take(item)
        except ItemTooLarge as err:
            raise _Refused("body_too_large", f"HTTP 200 with {err}") from None
        except InvalidResponse as err:
            raise _Refused("invalid_schema", f"HTTP 200 with an unusable body: {err}") from None
        except (ValueError, RecursionError):
            raise _Refused("invalid_json", "HTTP 200 with a body that is not JSON") from None

    def _take(self, item: Any) -> None:
        try:
            self._keeper.add(parse_job(item, self._terminal))
        except InvalidResponse as err:
            job_id = item.get("id") if isinstance(item, dict) else None
            if isinstance(job_id, str) and job_id:
                self._keeper.add_invalid(job_id, f"listed with an unusable body: {err}", _created_at_if_readable(item))


def _list_items(payload: Any) -> list:
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(payload, dict) or not isinstance(data, (list, type(None))):
        raise InvalidResponse('expected {"object": "list", "data": [...]}')
    return data or []


def _parse_data_job_page(payload: Any) -> tuple[ListResult, int]:
    """One page of data jobs, and how many items it had (a short page is the last)."""
    return _parse_list(payload, frozenset(), lambda item, _: parse_data_job_summary(item)), len(_list_items(payload))


def _created_at_if_readable(item: dict) -> float | None:
    try:
        return parse_timestamp(item["created_at"])
    except (KeyError, TypeError, ValueError, OverflowError):
        return None


def _detail_of(body: bytes | bytearray) -> str:
    """FastAPI puts a reason in {"detail": ...}; show a short, single-line piece of it."""
    try:
        detail = json.loads(body).get("detail")
    except (ValueError, AttributeError, RecursionError):
        return ""
    if not isinstance(detail, str):
        return ""
    return ": " + " ".join(detail.split())[:120]


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait: ``retry-after-ms`` first, as the official SDK reads it, then ``Retry-After``."""
    millis = headers.get("retry-after-ms")
    if millis and millis.isascii():  # float() would also take other scripts' digits
        try:
            value = float(millis)
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value >= 0:
            return value / 1000
    return _retry_after_header(headers.get("Retry-After"))


def _retry_after_header(header: str | None) -> float | None:
    """Retry-After is either delay-seconds or an HTTP date."""
    if not header:
        return None
    header = header.strip()
    if header.isascii() and header.isdigit():
        return float(header)
    try:
        moment = parsedate_to_datetime(header)
        if moment.tzinfo is None:  # "-0000": HTTP dates are UTC
            moment = moment.replace(tzinfo=timezone.utc)
        return max(moment.timestamp() - time.time(), 0.0)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None


def _redact(text: str, secret: str) -> str:
    return text.replace(secret, "<redacted>") if secret else text


_UNEXPECTED_SEEN: set[str] = set()
_UNEXPECTED_LOCK = threading.Lock()


def _log_first_of_its_kind(err: Exception, job_id: str) -> None:
    """A bug met while fetching is logged with its traceback the first time its kind (type and the
    line that raised) is seen; after that the job's "fetch failed" line (reason internal_error)
    says it again without repeating the traceback on every scrape. The kinds are bounded by the code."""
    frame = err.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    kind = f"{type(err).__qualname__}@{frame.tb_frame.f_code.co_filename}:{frame.tb_lineno}" if frame else type(err).__qualname__
    with _UNEXPECTED_LOCK:
        if kind in _UNEXPECTED_SEEN:
            return
        _UNEXPECTED_SEEN.add(kind)
    log.error("unexpected error while fetching", exc_info=err, extra={"fields": {"job_id": job_id}})
