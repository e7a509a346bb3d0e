"""Fetch floor: a plain ``requests`` client reading the same job bodies with the same concurrency.

Run as its own process (like the exporter), so it never competes with the in-process simulator for
the interpreter lock. It reads a JSON request on stdin, the API key from ``BENCH_API_KEY``, and
prints ``{"seconds": [...]}``: one wall time per round of fetching every listed job and decoding it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import requests


def fetch_rounds(urls: list[str], api_key: str, concurrency: int, repetitions: int, timeout: float) -> list[float]:
    session = requests.Session()
    session.trust_env = False
    adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=concurrency, max_retries=0)
    session.mount("http://", adapter)
    session.headers.update({"Authorization": api_key, "Accept": "application/json"})

    def fetch(url: str) -> None:
        response = session.get(url, timeout=timeout)
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code} from {url}")
        json.loads(response.content)

    seconds = []
    with session, ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(fetch, urls))  # warm-up: open the kept-alive connections, as a running exporter has
        for _ in range(repetitions):
            started = time.perf_counter()
            list(pool.map(fetch, urls))
            seconds.append(time.perf_counter() - started)
    return seconds


def main() -> int:
    job = json.load(sys.stdin)
    seconds = fetch_rounds(job["urls"], os.environ["BENCH_API_KEY"], job["concurrency"],
                           job["repetitions"], job["timeout"])
    json.dump({"seconds": seconds}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
