"""Fetch floor: a plain ``requests`` client reading the same job bodies with the same concurrency.

Runs as its own process (like the exporter), so it never competes with the in-process simulator for
the interpreter lock. The first stdin line is a JSON object: ``concurrency``, ``timeout`` and
``url_sets`` (name -> URLs); the API key comes from ``BENCH_API_KEY``. Each later line names a URL
set: the client fetches and decodes every URL of it once, concurrently, and prints the wall seconds
that round took on one line. It ends when stdin closes.
"""

from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import requests


def make_session(api_key: str, concurrency: int) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # loopback only: no proxy from the environment
    adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=concurrency, max_retries=0)
    session.mount("http://", adapter)
    session.headers.update({"Authorization": api_key, "Accept": "application/json"})
    return session


def main() -> int:
    setup = json.loads(sys.stdin.readline())
    url_sets: dict[str, list[str]] = setup["url_sets"]
    timeout = setup["timeout"]
    session = make_session(os.environ["BENCH_API_KEY"], setup["concurrency"])

    def fetch(url: str) -> None:
        response = session.get(url, timeout=timeout)
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code} from {url}")
        json.loads(response.content)

    with session, ThreadPoolExecutor(max_workers=setup["concurrency"]) as pool:
        for urls in url_sets.values():
            list(pool.map(fetch, urls))  # warm-up: open the kept-alive connections, as a running exporter has
        print("ready", flush=True)
        for line in sys.stdin:
            urls = url_sets[line.strip()]
            started = time.perf_counter()
            list(pool.map(fetch, urls))
            print(time.perf_counter() - started, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
