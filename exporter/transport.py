"""One bounded GET to the SeekrFlow API: a deadline over the whole request, redirects kept in the
API's origin, a cap on the decoded body, and one retry on a kept-alive connection gone stale.

``requests`` alone bounds none of this: its timeout restarts with every byte received, it follows
redirects anywhere and reads each redirect's body in full, and it decodes gzip without a size cap.
So redirects are followed here, by hand; bodies are read raw in small pieces and decoded here
under the cap; and a watchdog thread shuts down the socket of any request past its deadline, which
ends a header read or a body read that drips one byte at a time. Connecting waits no longer than
what is left, and so does resolving a host name: getaddrinfo cannot be interrupted, so it runs on
a resolver thread the request stops waiting for at its deadline.

Failures raise ``RequestFailed`` with a short ``reason`` fit for a label.
"""

from __future__ import annotations

import heapq
import itertools
import socket
import threading
import time
import zlib
from concurrent.futures import TimeoutError as ResolutionTimeout  # TimeoutError itself from 3.11 on
from dataclasses import dataclass
from typing import Callable, Mapping
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import allowed_gai_family

from .pool import FetchPool

# Bodies above this size (after decoding) are refused: a real job answer is far smaller, and a
# runaway body must not take the exporter's memory with it.
MAX_BODY_BYTES = 64 * 1024 * 1024
# Redirects followed within the API's origin before the fetch fails: enough for a moved path
# (http -> https is another origin and fails), few enough that a loop costs little.
MAX_REDIRECTS = 3
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Raw bytes read per step: the most a gzip step can inflate is bounded by the cap anyway, and a
# small step keeps the compressed and decoded pieces in memory small.
_READ_STEP = 16 * 1024
# An uncompressed body that is kept whole is read in larger steps: a third less time for a job of
# 1,000 files, and at most one step past the cap.
_PLAIN_READ_STEP = 256 * 1024


class RequestFailed(Exception):
    """The request got no usable answer; ``reason`` is a label value, ``detail`` a log sentence."""

    def __init__(self, reason: str, detail: str, http_status: int | None = None):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.http_status = http_status


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes | bytearray


class BoundedSession:
    """GETs within ``origin_url``'s scheme, host and port, each bounded as the module says."""

    def __init__(self, origin_url: str, headers: Mapping[str, str], max_connections: int,
                 max_body: int = MAX_BODY_BYTES):
        self._origin = _origin(origin_url)
        self._max_body = max_body
        self._session = requests.Session()
        self._adapter = _GuardedAdapter(pool_connections=1, pool_maxsize=max_connections, max_retries=0)
        self._session.mount("http://", self._adapter)
        self._session.mount("https://", self._adapter)
        self._session.headers.update(headers)
        # Only what the body decoder below understands.
        self._session.headers["Accept-Encoding"] = "gzip"

    def get(self, url: str, timeout: float, sink: Callable[[bytes], None] | None = None,
            max_streamed: int = MAX_BODY_BYTES) -> Answer:
        """The answer at ``url`` (after same-origin redirects), all of it within ``timeout`` seconds.

        With ``sink``, a 200 answer's body is not kept: its decoded pieces go to ``sink`` as they
        arrive (the answer's ``body`` is empty), at most ``max_streamed`` bytes of them, all within
        the same deadline. What ``sink`` raises ends the request and is raised here.
        """
        deadline = _Deadline(time.monotonic() + timeout)
        _WATCHDOG.watch(deadline)
        _local.deadline = deadline
        try:
            return self._follow(url, deadline, timeout, sink, max_streamed)
        finally:
            _local.deadline = None
            deadline.finish()

    def close(self) -> None:
        self._session.close()

    def _follow(self, url: str, deadline: _Deadline, timeout: float, sink: Callable[[bytes], None] | None,
                max_streamed: int) -> Answer:
        for _ in range(MAX_REDIRECTS + 1):
            response = self._send(url, deadline, timeout)
            status = response.status_code
            location = response.headers.get("Location")
            if status not in REDIRECT_STATUSES or location is None:
                with response:
                    if sink is not None and status == 200:
                        self._read_body(response, deadline, timeout, sink, max_streamed)
                        return Answer(status, response.headers, b"")
                    return Answer(status, response.headers, self._read_body(response, deadline, timeout))
            response.close()  # its body is never read: a redirect has nothing we need
            try:
                url = urljoin(url, location.strip())
                same_origin = _origin(url) == self._origin
            except ValueError:
                raise RequestFailed("redirect", f"HTTP {status} with an unusable Location", status) from None
            if not same_origin:
                # Never followed: our key and team header must not reach another host.
                raise RequestFailed("redirect", f"HTTP {status} to another origin, not followed", status)
        raise RequestFailed("redirect", f"more than {MAX_REDIRECTS} redirects", status)

    def _send(self, url: str, deadline: _Deadline, timeout: float) -> requests.Response:
        retried = False
        while True:
            deadline.reused = False
            remaining = max(deadline.remaining(), 0.001)
            try:
                response = self._adapter_send(url, remaining)
            except requests.RequestException as err:
                if deadline.expired or isinstance(err, requests.Timeout):
                    raise RequestFailed("timeout", f"no answer within {timeout:.1f}s") from None
                # A kept-alive connection the server closed just as we sent: a GET is safe to
                # send once more, on a new connection, within what is left of the deadline.
                if isinstance(err, requests.ConnectionError) and deadline.reused and not retried:
                    retried = True
                    continue
                raise RequestFailed("connection_error", f"cannot reach the API ({type(err).__name__})") from None
            if deadline.expired:  # the headers were cut short by the deadline, not complete
                response.close()
                raise RequestFailed("timeout", f"no answer within {timeout:.1f}s")
            return response

    def _adapter_send(self, url: str, timeout: float) -> requests.Response:
        # Straight to the adapter: even with allow_redirects=False, Session.send reads a redirect's
        # whole body (decompressed, uncapped) to prepare the next hop.
        request = self._session.prepare_request(requests.Request("GET", url))
        env = self._session.merge_environment_settings(request.url, {}, None, None, None)
        return self._adapter.send(request, stream=True, timeout=(timeout, timeout),
                                  verify=True if env["verify"] is None else env["verify"], cert=env["cert"],
                                  proxies=env["proxies"])

    def _read_body(self, response: requests.Response, deadline: _Deadline, timeout: float,
                   sink: Callable[[bytes], None] | None = None, max_streamed: int = 0) -> bytearray:
        """The decoded body, or with ``sink`` each decoded piece handed on and nothing kept."""
        status = response.status_code
        limit = self._max_body if sink is None else max_streamed
        decoder = _decoder(response.headers.get("Content-Encoding", ""), status)
        too_large = RequestFailed("body_too_large", f"HTTP {status} with a body over {limit} bytes", status)
        length = response.headers.get("Content-Length", "")
        if decoder is None and length.isdigit() and int(length) > limit:
            raise too_large
        body = bytearray()
        # Decoded bytes so far, those handed to the sink included. With a sink the cap is far
        # larger, but one read step still inflates to at most about 1,000 times its 16 KiB.
        total = 0
        step = _PLAIN_READ_STEP if decoder is None and sink is None else _READ_STEP
        try:
            while chunk := response.raw.read(step, decode_content=False):
                before = len(body)
                if decoder is None:
                    body += chunk
                else:
                    _inflate(decoder, chunk, body, limit - total + before)
                total += len(body) - before
                if total > limit:
                    raise too_large
                if sink is not None and body:
                    piece = bytes(body)
                    body.clear()
                    sink(piece)
                if deadline.expired:
                    break
            if deadline.expired:
                raise RequestFailed("timeout", f"body not received within {timeout:.1f}s", status)
            if decoder is not None and not decoder.eof:
                raise RequestFailed("bad_encoding", f"HTTP {status} with a truncated compressed body", status)
        except zlib.error:
            raise RequestFailed("bad_encoding", f"HTTP {status} with a body that does not decompress", status) from None
        except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as err:
            if deadline.expired:
                raise RequestFailed("timeout", f"body not received within {timeout:.1f}s", status) from None
            raise RequestFailed("connection_error", f"reading the body failed: {type(err).__name__}", status) from None
        return body


def _decoder(encoding: str, status: int):
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    raise RequestFailed("bad_encoding", f"HTTP {status} with Content-Encoding {encoding[:20]!r}, not asked for", status)


def _inflate(decoder, chunk: bytes, body: bytearray, limit: int) -> None:
    """Decode ``chunk`` onto ``body``, never producing more than one byte past ``limit``."""
    while chunk and len(body) <= limit:
        body += decoder.decompress(chunk, limit - len(body) + 1)
        chunk = decoder.unconsumed_tail
        if decoder.eof:
            return


def _origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) with the default port filled in; ValueError for what is no http(s) URL."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(url)
    return scheme, parts.hostname.lower(), parts.port or (443 if scheme == "https" else 80)


class _Deadline:
    """The end of one request; the sockets it used are shut down when it passes."""

    def __init__(self, at: float):
        self.at = at
        self.expired = False
        self.reused = False  # whether the latest send went out on a kept-alive connection
        self._finished = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def remaining(self) -> float:
        return self.at - time.monotonic()

    @property
    def finished(self) -> bool:
        return self._finished

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            if self.expired:
                _shut(sock)
            elif not self._finished:
                self._sockets.append(sock)

    def expire(self) -> None:
        with self._lock:
            if self._finished:
                return  # the socket may be back in the pool, serving another request
            self.expired = True
            for sock in self._sockets:
                _shut(sock)

    def finish(self) -> None:
        with self._lock:
            self._finished = True
            self._sockets.clear()


def _shut(sock: socket.socket) -> None:
    # The plain socket's shutdown, also for a TLS socket: it ends a read blocked in another thread
    # without touching the TLS object that thread is using.
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


class _Watchdog:
    """One daemon thread for the process that expires deadlines in order."""

    def __init__(self):
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Deadline]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, deadline: _Deadline) -> None:
        with self._cond:
            heapq.heappush(self._heap, (deadline.at, next(self._order), deadline))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="request-deadlines", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    while self._heap and self._heap[0][2].finished:
                        heapq.heappop(self._heap)
                    if not self._heap:
                        self._cond.wait()
                        continue
                    delay = self._heap[0][0] - time.monotonic()
                    if delay <= 0:
                        due = heapq.heappop(self._heap)[2]
                        break
                    self._cond.wait(delay)
            due.expire()


_WATCHDOG = _Watchdog()
_local = threading.local()

# Name resolution (getaddrinfo) cannot be interrupted, so it runs on these daemon threads (a hung
# resolver must not hold up the exporter's exit) while the request waits for it no longer than its
# deadline. A resolver that hangs holds one of them until it gives up, and at most this many:
# further names wait their turn, and their requests time out.
RESOLVER_THREADS = 4
_resolver: FetchPool | None = None
_resolver_lock = threading.Lock()
_getaddrinfo = socket.getaddrinfo  # the system resolver; tests stand in a slow one


def _resolve(host: str, port: int, deadline: _Deadline) -> list:
    """The addresses of ``host``, by the deadline: an address literal at once, a name on a resolver thread."""
    global _resolver
    family = allowed_gai_family()
    try:
        return socket.getaddrinfo(host, port, family, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError):
        pass  # a name, not an address
    with _resolver_lock:
        if _resolver is None:
            _resolver = FetchPool(RESOLVER_THREADS, name="resolve")
    resolving = _resolver.submit(_getaddrinfo, host, port, family, socket.SOCK_STREAM)
    try:
        return resolving.result(timeout=max(deadline.remaining(), 0.0))[1]
    except ResolutionTimeout:
        resolving.cancel()  # not started yet: it never will
        raise


def _connect(addresses: list, deadline: _Deadline, source_address, socket_options) -> socket.socket:
    """A connected socket to the first of ``addresses`` that answers by the deadline, as urllib3 connects."""
    error: OSError | None = None
    for family, kind, proto, _, address in addresses:
        remaining = deadline.remaining()
        if remaining <= 0:
            raise TimeoutError("no time left to connect")
        sock = socket.socket(family, kind, proto)
        try:
            for option in socket_options or ():
                sock.setsockopt(*option)
            sock.settimeout(remaining)
            if source_address:
                sock.bind(source_address)
            sock.connect(address)
            return sock
        except OSError as err:
            error = err
            sock.close()
    raise error if error is not None else OSError("no address to connect to")


def _current() -> _Deadline | None:
    return getattr(_local, "deadline", None)


class _GuardedConnection:
    """Hands every socket a request uses to that request's deadline (see the module docstring)."""

    sock: socket.socket | None

    def _new_conn(self) -> socket.socket:  # urllib3's hook for the plain socket, before any TLS
        deadline = _current()
        if deadline is None:
            return super()._new_conn()  # type: ignore[misc]
        host, port = self._dns_host.strip("[]"), self.port  # type: ignore[attr-defined]
        try:
            addresses = _resolve(host, port, deadline)
            sock = _connect(addresses, deadline, self.source_address, self.socket_options)  # type: ignore[attr-defined]
        except (socket.gaierror, UnicodeError) as err:
            raise NameResolutionError(host, self, err) from err  # type: ignore[arg-type]
        except (TimeoutError, ResolutionTimeout) as err:  # a connect or a resolution past the deadline
            raise ConnectTimeoutError(self, f"no connection to {host} within the request's time") from err
        except OSError as err:
            raise NewConnectionError(self, f"Failed to establish a new connection: {err}") from err  # type: ignore[arg-type]
        deadline.watch(sock)
        return sock

    def request(self, *args, **kwargs) -> None:
        deadline = _current()
        if deadline is not None and self.sock is not None:
            # The same socket as the last request: a kept-alive connection, maybe closed meanwhile.
            deadline.reused = self.sock is getattr(self, "_last_sock", None)
            deadline.watch(self.sock)
        try:
            return super().request(*args, **kwargs)  # type: ignore[misc]
        finally:
            self._last_sock = self.sock


class _GuardedHTTPConnection(_GuardedConnection, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_GuardedConnection, HTTPSConnection):
    pass


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class _GuardedAdapter(requests.adapters.HTTPAdapter):
    """Every connection guarded, direct or through an HTTP(S) proxy (HTTP_PROXY, HTTPS_PROXY)."""

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):  # SOCKS (PySocks) brings connections of its own
            manager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
        return manager
