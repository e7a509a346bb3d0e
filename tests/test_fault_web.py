"""The fault suite, exporter side: floods of connections, slow and oversized requests, odd methods,
and control characters from the network in the log."""

import errno
import re
import selectors
import socket
import struct
import subprocess
import threading
import time

import pytest
import requests
from prometheus_client import CollectorRegistry, Counter

from exporter.server import ExporterServer
from harness import ExporterProcess, peak_rss_mib, wait_until
from hostile_api import HostileAPI, good
from metric_samples import parse_exposition, value

KEY = "sk-test-fault-web-3b8e"


def shed_counter() -> Counter:
    return Counter("shed", "s", ["reason"], registry=CollectorRegistry())


def shed_values(counter: Counter) -> dict[str, float]:
    return {s.labels["reason"]: s.value for s in counter.collect()[0].samples if s.name.endswith("_total")}


class InProcess:
    """An ExporterServer on 127.0.0.1 with a small WSGI app, for limits that need small numbers."""

    def __init__(self, app, **limits):
        self.shed = shed_counter()
        self.server = ExporterServer("127.0.0.1", 0, app, self.shed, **limits)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self.server.shutdown()
        self.server.server_close()


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "6")])
    return [b"hello\n"]


def raw(port: int, data: bytes, timeout: float = 20) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def status_of(answer: bytes) -> str:
    return answer.split(b"\r\n", 1)[0].decode()


@pytest.fixture(scope="module")
def exporter():
    with HostileAPI({"ij-1": good()}) as api:
        with ExporterProcess({"api": {"base_url": api.url}, "jobs": ["ij-1"]}, KEY,
                             extra_args=["--log.level", "debug"]) as running:
            running.api = api
            yield running


# --- floods ------------------------------------------------------------------------------------


def closed_count(socks: list[socket.socket]) -> int:
    """How many of ``socks`` the other end has closed (without select(): they may be past fd 1024)."""
    closed = 0
    for sock in socks:
        sock.settimeout(0)  # a peek that never waits
        try:
            closed += sock.recv(1, socket.MSG_PEEK) == b""
        except BlockingIOError:
            pass
        except ConnectionResetError:
            closed += 1
    return closed


@pytest.mark.slow
def test_a_thousand_idle_connections_leave_room_for_a_scrape():
    # A read timeout far beyond the test: only the connection cap closes the idle ones, however
    # long opening 1,000 of them takes.
    with HostileAPI({"ij-1": good()}) as api:
        # No cached round: the scrape's own series are read as it is answered.
        config = {"api": {"base_url": api.url}, "jobs": ["ij-1"], "scrape": {"cache_ttl": "0s"}}
        with ExporterProcess(config, KEY, extra_args=["--web.read-timeout", "300s"]) as exporter:
            idle = []
            try:
                for _ in range(1000):
                    sock = socket.create_connection(("127.0.0.1", exporter.port), timeout=20)
                    sock.sendall(b"GET /metrics HTTP/1.1\r\n")  # one line, then nothing
                    idle.append(sock)
                # The server accepts at its own pace: the scrape comes once it has taken them all.
                wait_until(lambda: closed_count(idle) == 488, timeout=60,
                           what="the server to accept every connection")
                response = exporter.scrape()
                got = parse_exposition(response.text)
                wait_until(lambda: closed_count(idle) == 489, what="the scrape to close one more")
                peak = peak_rss_mib(exporter.proc.pid)
            finally:
                for sock in idle:
                    sock.close()
            wait_until(lambda: "connection limit reached" in exporter._stderr_path.read_text(),
                       what="the shed log line")
    assert value(got, "seekrflow_ingestion_job_scrape_success", job_id="ij-1") == 1
    # 512 fit; the other 488 and the scrape each made room by closing the oldest idle one.
    assert value(got, "seekrflow_exporter_http_connections_shed_total", reason="idle") == 489
    assert value(got, "seekrflow_exporter_http_connections_shed_total", reason="full") == 0
    assert peak < 250, f"peak RSS {peak:.0f} MiB"


@pytest.mark.slow
def test_at_the_cap_each_new_connection_closes_the_oldest_idle_one():
    """On a clock that stands still no read deadline passes: the count is exact."""
    with InProcess(hello, monotonic=lambda: 1000.0) as server:
        idle = []
        try:
            for _ in range(1000):
                sock = socket.create_connection(("127.0.0.1", server.port), timeout=20)
                sock.sendall(b"GET / HTTP/1.0\r\n")
                idle.append(sock)
            wait_until(lambda: shed_values(server.shed) == {"idle": 488.0}, timeout=60,
                       what="the server to accept every connection")
            answer = raw(server.port, b"GET / HTTP/1.0\r\n\r\n", timeout=60)
        finally:
            for sock in idle:
                sock.close()
    assert status_of(answer) == "HTTP/1.0 200 OK"
    assert shed_values(server.shed) == {"idle": 489.0}


def listen_backlog(port: int) -> int:
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    return int(out.split()[2])  # State Recv-Q Send-Q: a listening socket's Send-Q is its backlog


@pytest.mark.slow
def test_two_hundred_simultaneous_connects_are_all_answered_without_a_syn_retry(exporter):
    assert listen_backlog(exporter.port) >= 128
    # One thread, non-blocking sockets: the 200 SYNs leave within milliseconds, and each
    # connection is seen to complete without 200 threads queueing for the interpreter.
    selector = selectors.DefaultSelector()
    for _ in range(200):
        sock = socket.socket()
        sock.setblocking(False)
        assert sock.connect_ex(("127.0.0.1", exporter.port)) in (0, errno.EINPROGRESS)
        selector.register(sock, selectors.EVENT_WRITE)
    connected: list[socket.socket] = []
    gives_up = time.monotonic() + 60
    while len(connected) < 200 and time.monotonic() < gives_up:
        for key, _ in selector.select(timeout=1):
            sock = key.fileobj
            connected.append(sock)
            selector.unregister(sock)
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
    statuses, retransmitted = [], []
    for sock in connected:
        sock.setblocking(True)
        sock.settimeout(60)
        with sock:
            sock.sendall(b"GET /-/healthy HTTP/1.0\r\n\r\n")
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
            retransmitted.append(total_retransmits(sock))
        statuses.append(status_of(answer))
    assert statuses == ["HTTP/1.0 200 OK"] * 200
    # A SYN dropped by a full backlog is sent again, and so is a request whose handshake's last ACK
    # was dropped: the kernel's count of the connection's retransmissions says so, however long
    # anything took.
    assert retransmitted == [0] * 200


def total_retransmits(sock: socket.socket) -> int:
    """tcpi_total_retrans of the socket's struct tcp_info (linux/tcp.h: the u32 at byte 100)."""
    return struct.unpack_from("I", sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104), 100)[0]


def test_at_the_cap_with_every_connection_busy_a_new_one_gets_a_503():
    release = threading.Event()

    def slow(environ, start_response):
        release.wait(timeout=60)
        return hello(environ, start_response)

    with InProcess(slow, max_connections=2) as server:
        busy = [socket.create_connection(("127.0.0.1", server.port), timeout=20) for _ in range(2)]
        for sock in busy:
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        wait_until(lambda: len([c for c in server.server.connections._open.values() if not c.reading]) == 2,
                   what="both requests to be in the app")
        refused = raw(server.port, b"GET / HTTP/1.0\r\n\r\n")
        release.set()
        answers = [sock.recv(4096) for sock in busy]
        for sock in busy:
            sock.close()
    assert status_of(refused) == "HTTP/1.1 503 Service Unavailable"
    assert refused.endswith(b"Too many open connections.\n")
    assert [status_of(a) for a in answers] == ["HTTP/1.0 200 OK"] * 2
    assert shed_values(server.shed) == {"full": 1.0}


@pytest.mark.slow
def test_a_request_head_dripped_byte_by_byte_is_cut_off_at_the_read_timeout():
    drip = b"GET / HTTP/1.0\r\nX-Drip: " + b"d" * 600  # a minute at this pace
    with InProcess(hello, read_timeout=1.0) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
            started, sent = time.monotonic(), 0
            for byte in drip:
                if _closed_by_peer(sock):
                    break
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    break
                sent += 1
                time.sleep(0.1)
            took = time.monotonic() - started
    assert sent < len(drip)
    assert took < 30, took


def _readable(sock: socket.socket) -> bool:
    import select
    return bool(select.select([sock], [], [], 0)[0])


def _closed_by_peer(sock: socket.socket) -> bool:
    if not _readable(sock):
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except ConnectionResetError:
        return True


# --- request limits and methods ----------------------------------------------------------------


def test_oversized_request_heads_are_refused():
    with InProcess(hello) as server:
        many = raw(server.port, b"GET / HTTP/1.0\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(65)) + b"\r\n")
        big = raw(server.port, b"GET / HTTP/1.0\r\nX-Big: " + b"b" * 40_000 + b"\r\n\r\n")
        long_line = raw(server.port, b"GET /" + b"p" * 9000 + b" HTTP/1.0\r\n\r\n")
        fine = raw(server.port, b"GET / HTTP/1.0\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(60)) + b"\r\n")
    assert status_of(many) == "HTTP/1.0 431 Too many headers"
    assert status_of(big) == "HTTP/1.0 431 Line too long"
    assert status_of(long_line) == "HTTP/1.0 414 Request-URI Too Long"
    assert status_of(fine) == "HTTP/1.0 200 OK"


def test_metrics_answers_get_and_head_only_and_head_asks_nothing(exporter):
    exporter.scrape()
    asked = len(exporter.api.requests)
    head = requests.head(exporter.url + "/metrics", timeout=10)
    after_head = len(exporter.api.requests)
    others = {m: requests.request(m, exporter.url + "/metrics", timeout=10) for m in ("DELETE", "POST", "FOO")}
    healthy_put = requests.put(exporter.url + "/-/healthy", timeout=10)
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "Content-Length" not in head.headers
    assert after_head == asked
    for method, response in others.items():
        assert (method, response.status_code, response.headers["Allow"]) == (method, 405, "GET, HEAD")
    assert healthy_put.status_code == 405


# --- log hygiene -------------------------------------------------------------------------------


def test_control_characters_from_the_network_are_escaped_in_the_log(exporter):
    raw(exporter.port, b"GET /\x1b[31mred\rlevel=error msg=forged\x07 HTTP/1.0\r\n\r\n")
    raw(exporter.port, b"GET /x\x1b]0;title\x07 HTTP/1.0\r\nUser-Agent: a\x1bb\r\n\r\n")
    wait_until(lambda: "msg=forged" in exporter._stderr_path.read_text(), what="the request in the log")
    log = exporter._stderr_path.read_bytes()
    assert not re.search(rb"[\x00-\x08\x0b-\x1f\x7f]", log), "a control character reached the log raw"
    assert rb"\x1b[31mred\rlevel=error msg=forged\x07" in log
    assert all(line.startswith(b"ts=") for line in log.splitlines())
