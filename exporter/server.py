"""The HTTP(S) server under the web routes: it survives floods, slow clients and plain HTTP on TLS.

The standard library's server (wsgiref on socketserver) is kept, hardened here: every limit we need
is a few lines on top of it, TLS comes from the ssl module, and it adds no dependency to audit.

- The listen backlog is 1024 (the kernel caps it at net.core.somaxconn): a burst of scrapers is
  queued, not dropped to SYN retries of 1, 3, 7 s.
- Each connection has ``read_timeout`` seconds in all to complete its TLS handshake and its
  request head (request line and headers), whatever it drips; a reaper thread shuts it down then.
- At most ``max_connections`` are open. One more evicts the oldest connection still sending its
  request (idle or slow, it has had its chance); when every open one is being answered, the new
  one gets a 503 (a close on TLS). Either way ``seekrflow_exporter_http_connections_shed_total``
  counts it and a log line says so (at most once a minute).
- The request head is capped: ``MAX_REQUEST_LINE`` bytes, ``MAX_HEADER_LINES`` headers and
  ``MAX_HEAD_BYTES`` in all, else 414 or 431.
- Plain HTTP to the TLS port gets the answer Go's servers (and so the exporter-toolkit) give.
- The TLS context comes from a callable asked once per connection, so certificates on disk are
  picked up without a restart (webconfig.py).
"""

from __future__ import annotations

import http.client
import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Callable
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

from prometheus_client import Counter

log = logging.getLogger("seekrflow_exporter.server")

BACKLOG = 1024
DEFAULT_MAX_CONNECTIONS = 512
READ_TIMEOUT = 10.0
# Any single blocking send or receive; the total of the request head is READ_TIMEOUT.
SOCKET_TIMEOUT = 30.0
MAX_REQUEST_LINE = 8192
MAX_HEADER_LINES = 64
MAX_HEAD_BYTES = 32 * 1024
SHED_LOG_INTERVAL = 60.0

_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
         b"Content-Length: 27\r\nRetry-After: 1\r\nConnection: close\r\n\r\nToo many open connections.\n")
# Word for word what Go's net/http answers; the toolkit's clients and users know it.
_PLAIN_ON_TLS = (b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")


@dataclass(eq=False)
class _Connection:
    sock: socket.socket
    opened: float
    reading: bool = True  # still in the TLS handshake or the request head
    closed: bool = field(default=False)

    def shut(self) -> None:
        try:
            # The plain socket's call, also on a TLS socket: it ends a blocked read in the
            # connection's thread without touching the TLS object that thread uses.
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)
        except OSError:
            pass


class _Connections:
    """The open connections: the cap, the eviction of the oldest reader, and the read deadline."""

    def __init__(self, limit: int, read_timeout: float, shed: Counter, monotonic: Callable[[], float]):
        self._limit = limit
        self._read_timeout = read_timeout
        self._shed = shed
        self._monotonic = monotonic
        self._open: dict[int, _Connection] = {}
        self._lock = threading.Lock()
        self._shed_since_log = 0
        self._last_log: float | None = None

    def admit(self, sock: socket.socket) -> _Connection | None:
        """The new connection's record, or None when every open connection is busy answering."""
        with self._lock:
            evicted = None
            if len(self._open) >= self._limit:
                readers = [c for c in self._open.values() if c.reading]
                if not readers:
                    self._note_shed("full")
                    return None
                evicted = min(readers, key=lambda c: c.opened)
                del self._open[id(evicted)]
                self._note_shed("idle")
            conn = _Connection(sock, self._monotonic())
            self._open[id(conn)] = conn
        if evicted is not None:
            evicted.shut()
        return conn

    def answering(self, conn: _Connection) -> None:
        conn.reading = False

    def tls_socket(self, conn: _Connection, sock: socket.socket) -> None:
        conn.sock = sock

    def remove(self, conn: _Connection) -> None:
        with self._lock:
            self._open.pop(id(conn), None)

    def reap(self) -> None:
        """Shut down every connection whose request head is still incomplete past the timeout."""
        cutoff = self._monotonic() - self._read_timeout
        with self._lock:
            late = [c for c in self._open.values() if c.reading and c.opened < cutoff]
        for conn in late:
            conn.shut()

    def _note_shed(self, reason: str) -> None:
        self._shed.labels(reason).inc()
        self._shed_since_log += 1
        now = self._monotonic()
        if self._last_log is None or now - self._last_log >= SHED_LOG_INTERVAL:
            log.warning("connection limit reached, shedding connections", extra={"fields": {
                "limit": self._limit, "shed": self._shed_since_log, "latest_reason": reason}})
            self._shed_since_log, self._last_log = 0, now


class ExporterServer(WSGIServer):
    """One thread per admitted connection, one request per connection (HTTP/1.0 semantics)."""

    request_queue_size = BACKLOG
    allow_reuse_address = True

    def __init__(self, host: str, port: int, app: Callable, shed: Counter,
                 tls: Callable[[], ssl.SSLContext | None] | None = None,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS, read_timeout: float = READ_TIMEOUT,
                 monotonic: Callable[[], float] = time.monotonic):
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # Before binding: a bind that fails calls server_close(), which sets it; the OSError then
        # reaches the caller ("cannot listen") rather than an AttributeError.
        self._stopped = threading.Event()
        super().__init__((host, port), _RequestHandler)
        self.set_app(app)
        self._tls = tls
        self._read_timeout = read_timeout
        self.connections = _Connections(max_connections, read_timeout, shed, monotonic)
        threading.Thread(target=self._reap, name="http-reaper", daemon=True).start()

    def process_request(self, request, client_address) -> None:  # a TCP server: request is a socket
        conn = self.connections.admit(request)
        if conn is None:
            _refuse(request, b"" if self._tls is not None else _BUSY)
            return
        request.settimeout(SOCKET_TIMEOUT)
        threading.Thread(target=self._serve, args=(conn, client_address), name="http-conn", daemon=True).start()

    def server_close(self) -> None:
        self._stopped.set()
        super().server_close()

    def _serve(self, conn: _Connection, client_address) -> None:
        try:
            sock = conn.sock if self._tls is None else self._handshake(conn)
            if sock is not None:
                _RequestHandler(sock, client_address, self, conn)
        except OSError as err:
            log.debug("connection ended", extra={"fields": {"client": client_address[0], "err": str(err)}})
        except Exception:  # noqa: BLE001 - one connection's bug must not end the server
            log.error("internal error on a connection", exc_info=True)
        finally:
            self.connections.remove(conn)
            _close(conn.sock)

    def _handshake(self, conn: _Connection) -> socket.socket | None:
        plain = conn.sock
        first = plain.recv(1, socket.MSG_PEEK)
        if not first:
            return None
        if first != b"\x16":  # not a TLS handshake record: someone speaks plain HTTP (or junk)
            _refuse(plain, _PLAIN_ON_TLS)
            return None
        assert self._tls is not None  # only called with TLS on
        context = self._tls()  # the web configuration as it is on disk now
        if context is None:
            return None  # the file became unusable: its error is logged, the connection dropped
        try:
            sock = context.wrap_socket(plain, server_side=True)
        except (ssl.SSLError, OSError) as err:
            log.debug("TLS handshake failed", extra={"fields": {"err": str(err)}})
            return None
        self.connections.tls_socket(conn, sock)
        return sock

    def _reap(self) -> None:
        while not self._stopped.wait(min(self._read_timeout / 4, 0.5)):
            self.connections.reap()


class _LimitedHead:
    """The request's input while its head is read: more lines or bytes than allowed end it (431)."""

    def __init__(self, stream):
        self._stream = stream
        self._lines = 0
        self._bytes = 0

    def readline(self, size: int = -1) -> bytes:
        room = MAX_HEAD_BYTES - self._bytes + 1
        line = self._stream.readline(room if size < 0 else min(size, room))
        self._lines += 1
        self._bytes += len(line)
        if self._bytes > MAX_HEAD_BYTES:
            raise http.client.LineTooLong(f"request head over {MAX_HEAD_BYTES} bytes")
        if self._lines > MAX_HEADER_LINES + 1:  # the empty line that ends the head counts too
            raise http.client.HTTPException(f"more than {MAX_HEADER_LINES} header lines")
        return line

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


class _RequestHandler(WSGIRequestHandler):
    server: ExporterServer

    def __init__(self, request, client_address, server: ExporterServer, conn: _Connection | None = None):
        self._conn = conn
        super().__init__(request, client_address, server)

    def handle(self) -> None:
        # WSGIRequestHandler.handle with the limits on the request head.
        self.raw_requestline = self.rfile.readline(MAX_REQUEST_LINE + 1)
        if len(self.raw_requestline) > MAX_REQUEST_LINE:
            self.requestline = self.request_version = self.command = ""
            self.send_error(414)
            return
        stream, self.rfile = self.rfile, _LimitedHead(self.rfile)  # type: ignore[assignment]
        try:
            if not self.parse_request():
                return
        finally:
            self.rfile = stream
        if self._conn is not None:
            self.server.connections.answering(self._conn)
        handler = ServerHandler(self.rfile, self.wfile, self.get_stderr(),  # type: ignore[arg-type]
                                self.get_environ(), multithread=True)
        handler.request_handler = self  # type: ignore[attr-defined] # wsgiref's own handler does the same
        app = self.server.get_app()
        assert app is not None  # set in ExporterServer.__init__
        handler.run(app)

    def log_message(self, format, *args):  # noqa: A002 - signature fixed by the base class
        log.debug("http request", extra={"fields": {"client": self.client_address[0], "request": format % args}})


def _refuse(sock: socket.socket, answer: bytes) -> None:
    try:
        sock.setblocking(False)
        if answer:
            sock.send(answer)
    except OSError:
        pass  # the client is gone or its buffer is full: the close says enough
    _close(sock)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
