"""A hostile stand-in for the SeekrFlow API, for the fault suite (the simulator stays faithful).

Each job ID maps to a behaviour: a function that gets the request and the socket and writes
whatever it likes (redirects, drips, bombs, a close without an answer). Every request is recorded
with its headers and the connection it came on, so tests can say exactly what reached the server.
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

GOOD_BODY = (Path(__file__).parent / "fixtures" / "job_completed.json").read_bytes()


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    connection: int  # which accepted connection it came on
    number_on_connection: int  # 1 for the first request of a connection


@dataclass
class Exchange:
    """What a behaviour sees: the request, and the way to answer it."""

    request: Request
    sock: socket.socket
    server: HostileAPI
    keep_alive: bool = True

    def send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def drip(self, data: bytes, every: float) -> None:
        """One byte at a time, ``every`` seconds apart, until done or the client hangs up."""
        for i in range(len(data)):
            if not self.send(data[i:i + 1]):
                return
            time.sleep(every)
        self.keep_alive = False


Behaviour = Callable[[Exchange], None]


def http(status: int, body: bytes = b"", headers: dict[str, str] | None = None, reason: str = "X") -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}"]
    merged = {"Content-Length": str(len(body))}
    merged.update(headers or {})
    lines += [f"{k}: {v}" for k, v in merged.items() if v is not None]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def answer(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Behaviour:
    return lambda ex: ex.send(http(status, body, headers))


def good() -> Behaviour:
    return answer(200, GOOD_BODY, {"Content-Type": "application/json"})


def redirect(location: str, status: int = 302, body: bytes = b"", headers: dict[str, str] | None = None) -> Behaviour:
    return answer(status, body, dict({"Location": location}, **(headers or {})))


def gzip_bomb(mebibytes: int) -> bytes:
    """A valid gzip body that inflates to ``mebibytes`` MiB of zeros (about 1/1000 of it on the wire).

    After a full flush the compressor forgets its history, so one MiB of zeros compresses to the
    same bytes every time: compressed once, repeated.
    """
    block = bytes(1 << 20)
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    packed = packer.compress(block) + packer.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(mebibytes):
        crc = zlib.crc32(block, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    trailer = struct.pack("<II", crc, (mebibytes << 20) & 0xFFFFFFFF)
    return header + packed * mebibytes + packer.flush() + trailer


class HostileAPI(socketserver.ThreadingTCPServer):
    """Routes ``GET .../{id}`` to ``behaviours[id]`` (404 for others); keep-alive unless told not to."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, behaviours: dict[str, Behaviour]):
        self.behaviours = behaviours
        self.requests: list[Request] = []
        self._connections = 0
        self._lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)
        self.port = self.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)

    def requests_for(self, job_id: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path.rsplit("/", 1)[-1] == job_id]

    def _next_connection(self) -> int:
        with self._lock:
            self._connections += 1
            return self._connections

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def __enter__(self) -> HostileAPI:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.shutdown()
        self.server_close()


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: HostileAPI = self.server  # type: ignore[assignment]
        connection = server._next_connection()
        reader = self.request.makefile("rb")
        number = 0
        while True:
            try:
                request_line = reader.readline(65537).decode("latin-1")
            except OSError:
                return
            if not request_line.strip():
                return
            headers = {}
            while (line := reader.readline(65537)) not in (b"\r\n", b"\n", b""):
                name, _, val = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = val.strip()
            number += 1
            method, path = (request_line.split(" ") + ["", ""])[:2]
            request = Request(method, path, headers, connection, number)
            server._record(request)
            exchange = Exchange(request, self.request, server)
            behaviour = server.behaviours.get(path.rsplit("/", 1)[-1], answer(404, b"{}"))
            behaviour(exchange)
            if not exchange.keep_alive:
                break
        try:
            self.request.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
