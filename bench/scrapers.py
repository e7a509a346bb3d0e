"""Timed scrapes of an exporter process: one, or many sent at the same moment."""

from __future__ import annotations

import gzip
import threading
import time

import requests

from exporter_process import ExporterProcess


def api_requests(simulator) -> int:
    return sum(simulator.requests.values())


def timed_scrape(exporter: ExporterProcess, simulator, session: requests.Session,
                 headers: dict | None = None) -> tuple[float, int, bytes]:
    """(seconds, API requests it caused, the body as sent) of one scrape."""
    before = api_requests(simulator)
    started = time.perf_counter()
    body = exporter.scrape(session, headers=headers)
    return time.perf_counter() - started, api_requests(simulator) - before, body


def scrape_together(exporter: ExporterProcess, simulator, sessions: list[requests.Session],
                    headers: dict | None = None) -> tuple[float, int, list[bytes]]:
    """(seconds until every one of the simultaneous scrapes answered, API requests they caused, bodies)."""
    gate = threading.Barrier(len(sessions) + 1)
    errors: list[BaseException] = []
    bodies: list[bytes] = []

    def scrape(session):
        try:
            gate.wait(timeout=30)
            bodies.append(exporter.scrape(session, headers=headers))
        except BaseException as err:  # noqa: BLE001 - reported by the calling thread
            errors.append(err)

    threads = [threading.Thread(target=scrape, args=(s,), daemon=True) for s in sessions]
    for thread in threads:
        thread.start()
    before = api_requests(simulator)
    gate.wait(timeout=30)
    started = time.perf_counter()
    for thread in threads:
        thread.join(timeout=300)
    seconds = time.perf_counter() - started
    if errors or any(t.is_alive() for t in threads):
        raise RuntimeError(f"concurrent scrape failed: {errors[:1] or 'no answer'}")
    return seconds, api_requests(simulator) - before, bodies


def decoded(body: bytes) -> str:
    """The exposition text of a body as sent, gzipped or not."""
    return (gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body).decode()
