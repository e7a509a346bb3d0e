"""The SeekrFlow ingestion API over HTTP, served from a SimulatedWorld.

Routes (GET):
    /v1/flow/alignment/ingestion/{id}   one job (the seed page's endpoint)
    /v1/flow/ingestion/{id}             one job (the current endpoint, same body)
    /v1/flow/alignment/ingestion        every job: {"object": "list", "data": [...]}
    /v1/flow/ingestion                  the same list
    /v1/flow/data-jobs                  data jobs, a page: ?limit=1..100 (25)&offset=0&sort_by=&sort_order=&job_type=
    /v1/flow/data-jobs/{id}             one data job with its ingestion jobs and their records

Like the FastAPI backend it imitates, an unknown path is a 404 before any key check; on a known
path a missing or wrong ``Authorization`` header (the bare key, no ``Bearer``) is a 401, then an
unknown job is a 404. Error bodies are ``{"detail": "..."}``; none of them repeats the key.

A job's body comes from ``fixtures`` (served verbatim) before the world; a data job's from
``data_job_fixtures`` before ``data_jobs`` (no data jobs: an empty list). The data-job list has no
total and no next link, like the API: a client reads pages until one is short. A bad query
parameter is a 422 with FastAPI's ``{"detail": [{"loc": ["query", name], ...}]}``.
``faults`` replace the answer for a job (or data job) on the single-job routes only; the lists
always hold the healthy bodies. ``list_file_records`` makes the ingestion lists send each job's
``file_records`` in full (the default), as null, or not at all (the SDK types it optional). A fault
also makes its job ID known, so a fault can be set for an ID that nothing else serves (a body fault
then breaks a minimal queued body).
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Mapping
from urllib.parse import parse_qs, unquote, urlsplit

from .datajobs import JOB_TYPES, SimulatedDataJobs, summary_of
from .world import SimulatedWorld, format_timestamp

DATA_JOB_PATH = "/v1/flow/data-jobs/"
DATA_JOBS_PATH = "/v1/flow/data-jobs"
JOB_PATHS = ("/v1/flow/alignment/ingestion/", "/v1/flow/ingestion/", DATA_JOB_PATH)
LIST_PATHS = ("/v1/flow/alignment/ingestion", "/v1/flow/ingestion", DATA_JOBS_PATH)
UNKNOWN_PATH = "<unknown>"

FAULT_STATUS = {
    "http_500": (500, "Internal Server Error"),
    "http_503": (503, "Service temporarily unavailable for maintenance"),
    "http_403": (403, "Not enough permissions to access this ingestion job"),
    "http_429": (429, "Too many requests"),
}
# A 429 tells the client when to come back, as a polite server does.
RETRY_AFTER_SECONDS = 60
BODY_FAULTS = ("bad_json", "bad_schema")
# How the ingestion lists carry each job's records: in full, as null, or not at all.
LIST_FILE_RECORDS = ("full", "null", "missing")


def parse_fault(kind: str) -> tuple[str, float]:
    """("http_500" | ... | "slow", seconds) from a fault spec; ValueError names what is wrong."""
    if kind in FAULT_STATUS or kind in BODY_FAULTS:
        return kind, 0.0
    name, _, value = kind.partition(":")
    if name == "slow":
        try:
            seconds = float(value)
        except ValueError:
            seconds = -1.0
        if seconds >= 0:
            return "slow", seconds
        raise ValueError(f"fault {kind!r}: slow needs seconds >= 0, e.g. slow:2.5")
    known = ", ".join([*FAULT_STATUS, *BODY_FAULTS, "slow:<seconds>"])
    raise ValueError(f"unknown fault {kind!r} (known: {known})")


class SimulatorServer:
    """Serves `world` on a loopback port; `start()` returns the base URL, `stop()` ends it."""

    def __init__(
        self,
        world: SimulatedWorld,
        api_key: str,
        *,
        latency: float = 0.0,
        faults: Mapping[str, str] | None = None,
        fixtures: Mapping[str, dict | bytes] | None = None,
        data_jobs: SimulatedDataJobs | None = None,
        data_job_fixtures: Mapping[str, dict] | None = None,
        list_file_records: str = "full",
        clock: Callable[[], float] = time.time,
        access_log: bool = False,
    ) -> None:
        if not api_key:
            raise ValueError("api_key must not be empty")
        self.world = world
        self.latency = latency
        self.clock = clock
        self.access_log = access_log
        self.url: str | None = None
        self._api_key = api_key
        self._faults = {job_id: parse_fault(kind) for job_id, kind in (faults or {}).items()}
        self._fixtures = dict(fixtures or {})
        self.data_jobs = data_jobs
        self._data_job_fixtures = dict(data_job_fixtures or {})
        if list_file_records not in LIST_FILE_RECORDS:
            raise ValueError(f"list_file_records must be one of {', '.join(LIST_FILE_RECORDS)}")
        self._list_file_records = list_file_records
        self._counts: Counter[str] = Counter()
        self._job_counts: Counter[str] = Counter()
        self._team_counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        if self._httpd is not None:
            raise RuntimeError("simulator already started")
        self._stopping.clear()
        self._httpd = _HTTPServer((host, port), _Handler, self)
        bound_host, bound_port = str(self._httpd.server_address[0]), self._httpd.server_address[1]
        shown_host = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.url = f"http://{shown_host}:{bound_port}"
        self._thread = threading.Thread(
            # A short poll interval makes stop() quick.
            target=self._httpd.serve_forever, args=(0.05,), name="seekrflow-simulator", daemon=True
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()  # wakes handlers sleeping on latency or a slow fault
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> SimulatorServer:
        if self._httpd is None:
            self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # --- counters for tests ----------------------------------------------------------------

    @property
    def requests(self) -> Counter[str]:
        """Requests answered per path template (a copy), e.g. {"/v1/flow/ingestion/{id}": 3}."""
        with self._lock:
            return Counter(self._counts)

    @property
    def job_requests(self) -> Counter[str]:
        """Requests per job ID on the single-job routes (a copy)."""
        with self._lock:
            return Counter(self._job_counts)

    @property
    def team_requests(self) -> Counter[str]:
        """Requests per `x-team-id` header value, "" for none (a copy)."""
        with self._lock:
            return Counter(self._team_counts)

    # --- answering -------------------------------------------------------------------------

    def answer(self, path: str, authorization: str | None, team_id: str | None = None) -> tuple[int, bytes]:
        """(status, body) for a GET of `path` with that Authorization header (team: `x-team-id`)."""
        template, job_id = _route(path)
        with self._lock:
            self._team_counts[team_id or ""] += 1
            self._counts[template] += 1
            if job_id is not None:
                self._job_counts[job_id] += 1
        self._pause(self.latency)
        if template == UNKNOWN_PATH:
            return _detail(404, "Not Found")
        if not authorization:
            return _detail(401, "Not authenticated: send the API key in the Authorization header")
        if authorization != self._api_key:
            return _detail(401, "Invalid API key")
        now = self.clock()
        if template == DATA_JOBS_PATH:
            return self._data_job_page(urlsplit(path).query, now)
        if job_id is None:
            return 200, _json({"object": "list", "data": self._all_jobs(now)})
        if template == DATA_JOB_PATH + "{id}":
            return self._answer_job(job_id, now, self._data_job_body, "Data job")
        return self._answer_job(job_id, now, self._job_body, "Ingestion job")

    def _answer_job(self, job_id: str, now: float, body_of: Callable[[str, float], dict | None],
                    kind: str) -> tuple[int, bytes]:
        fault, seconds = self._faults.get(job_id, (None, 0.0))
        if fault in FAULT_STATUS:
            return _detail(*FAULT_STATUS[fault])
        if fault == "slow":
            self._pause(seconds)
            now = self.clock()
        frozen = self._fixtures.get(job_id) if kind == "Ingestion job" else None
        if fault is None and isinstance(frozen, bytes):
            return 200, frozen  # a frozen body, already encoded: served verbatim
        body = body_of(job_id, now)
        if body is None and fault in BODY_FAULTS:
            body = {"id": job_id, "created_at": format_timestamp(round(now * 1e6)),
                    "status": "queued", "output_files": [], "file_records": []}
        if body is None:
            return _detail(404, f"{kind} {job_id} not found")
        if fault == "bad_json":
            text = _json(body)
            return 200, text[: max(1, len(text) // 2)]
        if fault == "bad_schema":
            # A required field gone and another of the wrong type: both break the schema.
            broken = {k: v for k, v in body.items() if k != "created_at"}
            broken["output_files"] = ",".join(body.get("output_files") or [])
            return 200, _json(broken)
        return 200, _json(body)

    def serve_fixtures(self, fixtures: Mapping[str, dict | bytes]) -> None:
        """From now on, these jobs answer with these bodies (as ``fixtures`` at start): what a
        benchmark uses to move jobs between two scrapes without a world to move them."""
        self._fixtures.update(fixtures)

    def _job_body(self, job_id: str, now: float) -> dict | None:
        if job_id in self._fixtures:
            fixture = self._fixtures[job_id]
            return json.loads(fixture) if isinstance(fixture, bytes) else fixture
        return self.world.job_response(job_id, now)

    def _all_jobs(self, now: float) -> list[dict]:
        ids = self.world.job_ids()
        ids += [job_id for job_id in self._fixtures if job_id not in ids]
        # Every ID here is the world's or a fixture's: each has a body.
        bodies = [body for job_id in ids if (body := self._job_body(job_id, now)) is not None]
        if self._list_file_records == "full":
            return bodies
        # The SDK types file_records as optional: a list may leave the records out, or send null.
        return [{k: v for k, v in body.items() if k != "file_records"}
                | ({"file_records": None} if self._list_file_records == "null" else {}) for body in bodies]

    def _data_job_body(self, data_job_id: str, now: float) -> dict | None:
        if data_job_id in self._data_job_fixtures:
            return self._data_job_fixtures[data_job_id]
        return None if self.data_jobs is None else self.data_jobs.detail(data_job_id, now)

    def _data_job_page(self, query: str, now: float) -> tuple[int, bytes]:
        try:
            page = _DataJobQuery.parse(query)
        except _QueryError as err:
            return 422, _json({"detail": [err.detail]})
        ids = [] if self.data_jobs is None else self.data_jobs.ids()
        ids += [i for i in self._data_job_fixtures if i not in ids]
        items = [summary_of(body) for i in ids if (body := self._data_job_body(i, now)) is not None]
        if page.job_type is not None:
            items = [item for item in items if item.get("job_type") == page.job_type]
        # Ties (and the rest) by id, so pages never overlap or skip an item.
        items.sort(key=lambda item: str(item.get("id")), reverse=page.descending)
        items.sort(key=lambda item: str(item.get(page.sort_by)), reverse=page.descending)
        return 200, _json({"object": "list", "data": items[page.offset: page.offset + page.limit]})

    def _pause(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)


class _QueryError(ValueError):
    def __init__(self, detail: dict) -> None:
        super().__init__(detail["msg"])
        self.detail = detail


@dataclass(frozen=True)
class _DataJobQuery:
    """The list's query parameters as the API validates them (SDK ``DataJobListQuery``)."""

    limit: int = 25
    offset: int = 0
    sort_by: str = "created_at"
    descending: bool = True
    job_type: str | None = None

    @classmethod
    def parse(cls, query: str) -> _DataJobQuery:
        values = {name: given[-1] for name, given in parse_qs(query, keep_blank_values=True).items()}
        limit = _int_param(values, "limit", cls.limit, 1, 100)
        offset = _int_param(values, "offset", cls.offset, 0, None)
        sort_by = _enum_param(values, "sort_by", cls.sort_by, ("name", "created_at", "job_type")) or cls.sort_by
        order = _enum_param(values, "sort_order", "desc", ("asc", "desc"))
        job_type = _enum_param(values, "job_type", None, JOB_TYPES)
        return cls(limit, offset, sort_by, order == "desc", job_type)


def _int_param(values: dict, name: str, default: int, low: int, high: int | None) -> int:
    raw = values.get(name)
    if raw is None:
        return default
    try:
        number = int(raw)
    except ValueError:
        raise _QueryError(_problem("int_parsing", name, "Input should be a valid integer", raw)) from None
    if number < low:
        raise _QueryError(_problem("greater_than_equal", name, f"Input should be greater than or equal to {low}",
                                   raw, {"ge": low}))
    if high is not None and number > high:
        raise _QueryError(_problem("less_than_equal", name, f"Input should be less than or equal to {high}",
                                   raw, {"le": high}))
    return number


def _enum_param(values: dict, name: str, default: str | None, allowed: tuple[str, ...]) -> str | None:
    raw = values.get(name)
    if raw is None:
        return default
    if raw not in allowed:
        expected = ", ".join(f"'{a}'" for a in allowed)
        raise _QueryError(_problem("enum", name, f"Input should be {expected}", raw, {"expected": expected}))
    return raw


def _problem(kind: str, name: str, message: str, raw: str, ctx: dict | None = None) -> dict:
    problem: dict[str, Any] = {"type": kind, "loc": ["query", name], "msg": message, "input": raw}
    if ctx:
        problem["ctx"] = ctx
    return problem


def _route(path: str) -> tuple[str, str | None]:
    """(path template, job ID or None) for a request path; the query string is ignored."""
    path = urlsplit(path).path
    if path in LIST_PATHS:
        return path, None
    for prefix in JOB_PATHS:
        if path.startswith(prefix):
            segment = path[len(prefix):]
            # One path segment only: "a/b" is no job route, just as on the real API.
            if segment and "/" not in segment:
                return prefix + "{id}", unquote(segment)
    return UNKNOWN_PATH, None


def _json(body) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def _detail(status: int, message: str) -> tuple[int, bytes]:
    return status, _json({"detail": message})


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 drops SYNs when a pool of clients connects at once, and
    # each dropped one waits a second or more to retry.
    request_queue_size = 128
    # Idle keep-alive connections would make server_close() wait; stop() closes them instead.
    block_on_close = False

    def __init__(self, address, handler, simulator: SimulatorServer) -> None:
        self.simulator = simulator
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def track(self, connection: socket.socket, open_: bool) -> None:
        with self._connections_lock:
            (self._connections.add if open_ else self._connections.discard)(connection)

    def handle_error(self, request, client_address) -> None:
        # A client that hangs up mid-answer (or stop() cutting a connection) is no server error.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """End kept-alive connections, so nothing is answered once the simulator has stopped."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the client


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"  # keep-alive, as a client pool expects
    # Headers and body leave in separate writes; with Nagle on, a kept-alive client's delayed ACK
    # holds the body back about 40 ms per answer. The real API's servers set TCP_NODELAY too.
    disable_nagle_algorithm = True
    server_version = "seekrflow-simulator"
    timeout = 60  # an idle kept-alive connection is dropped after this

    def version_string(self) -> str:
        return self.server_version

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        self.server.track(self.connection, False)
        super().finish()

    def do_GET(self) -> None:
        simulator: SimulatorServer = self.server.simulator
        status, body = simulator.answer(self.path, self.headers.get("Authorization"), self.headers.get("x-team-id"))
        self._send(status, body)

    def do_HEAD(self) -> None:
        # A request body would stay unread on a kept-alive connection: close it after answering.
        self.close_connection = True
        self._send(405, _json({"detail": "Method Not Allowed"}))

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if status == 429:
            self.send_header("Retry-After", str(RETRY_AFTER_SECONDS))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - signature fixed by the base class
        # Quiet unless asked; the request line never holds the key (it travels in a header).
        if self.server.simulator.access_log:
            super().log_message(format, *args)
