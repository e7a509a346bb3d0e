"""The two floors every exporter number is divided by, measured in the same run.

- Fetch floor: what reading the jobs from this API costs any client at all (``fetch_floor.py``).
- Exposition floor: what ``prometheus_client``'s text format costs for exactly the samples the
  exporter served, re-encoded from its own exposition.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter_process import child_environment

FETCH_FLOOR_SCRIPT = Path(__file__).resolve().with_name("fetch_floor.py")


def fetch_floor(urls: list[str], api_key: str, concurrency: int, repetitions: int,
                timeout: float = 60.0) -> list[float]:
    """Wall seconds per round of fetching ``urls``, from a separate client process."""
    request = {"urls": urls, "concurrency": concurrency, "repetitions": repetitions, "timeout": timeout}
    env = child_environment(api_key)
    env.pop("SEEKR_API_KEY")
    env["BENCH_API_KEY"] = api_key
    done = subprocess.run([sys.executable, str(FETCH_FLOOR_SCRIPT)], input=json.dumps(request),
                          capture_output=True, text=True, env=env,
                          timeout=timeout * (repetitions + 1) + 30)
    if done.returncode != 0:
        raise RuntimeError(f"fetch floor failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout)["seconds"]


class _Families:
    def __init__(self, families):
        self._families = families

    def collect(self):
        return self._families


def count_samples(exposition: str) -> int:
    return sum(1 for line in exposition.splitlines() if line and not line.startswith("#"))


def exposition_floor(exposition: str, repetitions: int) -> tuple[list[float], int]:
    """(seconds per encoding, samples encoded) for the samples of ``exposition``."""
    families = list(text_string_to_metric_families(exposition))
    collector = _Families(families)
    seconds = []
    for _ in range(repetitions):
        started = time.perf_counter()
        encoded = generate_latest(collector)
        seconds.append(time.perf_counter() - started)
    samples = count_samples(encoded.decode())
    if samples != count_samples(exposition):
        raise RuntimeError(f"exposition floor encoded {samples} samples, the exporter served "
                           f"{count_samples(exposition)}")
    return seconds, samples
