"""The baseline a user would write instead of the exporter: a prometheus_client custom collector
that, on every scrape, GETs every job in turn with ``requests`` and yields a status gauge per job
and a file count per job and record status. No cache, no concurrency, no deadline.

    BENCH_API_KEY=... python bench/naive_exporter.py PORT BASE_URL JOB_ID_FILE

It serves /metrics on 127.0.0.1:PORT with prometheus_client's own server until it is terminated.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections import Counter

import requests
from prometheus_client import start_http_server
from prometheus_client.core import REGISTRY, GaugeMetricFamily


class NaiveCollector:
    def __init__(self, base_url: str, job_ids: list[str], api_key: str):
        self.base_url = base_url
        self.job_ids = job_ids
        self.session = requests.Session()
        self.session.trust_env = False  # loopback only
        self.session.headers["Authorization"] = api_key

    def collect(self):
        status = GaugeMetricFamily("seekrflow_naive_job_status", "Job status.", labels=["job_id", "status"])
        files = GaugeMetricFamily("seekrflow_naive_job_files", "Files per status.", labels=["job_id", "status"])
        for job_id in self.job_ids:
            job = self.session.get(f"{self.base_url}/v1/flow/alignment/ingestion/{job_id}", timeout=30).json()
            status.add_metric([job_id, job["status"]], 1.0)
            counts = Counter(r["status"] for r in job["file_records"] or () if not r.get("deleted"))
            for record_status, count in sorted(counts.items()):
                files.add_metric([job_id, record_status], float(count))
        yield status
        yield files


def main() -> int:
    port, base_url, job_file = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    with open(job_file) as handle:
        job_ids = handle.read().split()
    REGISTRY.register(NaiveCollector(base_url, job_ids, os.environ["BENCH_API_KEY"]))
    start_http_server(port, addr="127.0.0.1")
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
