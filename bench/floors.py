"""The two floors every exporter number is divided by, measured in the same run.

- Fetch floor: what reading the jobs from this API costs any client at all (``fetch_floor.py``, a
  client process that stays up so its rounds can alternate with the exporter's scrapes).
- Exposition floor: what ``prometheus_client``'s text format costs for exactly the samples the
  exporter served, re-encoded from its own exposition.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from pathlib import Path

from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.metrics import FamiliesCollector
from exporter_process import child_environment

FETCH_FLOOR_SCRIPT = Path(__file__).resolve().with_name("fetch_floor.py")


class FetchFloorClient:
    """The fetch floor's client process; ``round(name)`` fetches one URL set once and times it."""

    def __init__(self, url_sets: dict[str, list[str]], api_key: str, concurrency: int, timeout: float = 60.0):
        env = child_environment(api_key)
        env.pop("SEEKR_API_KEY")
        env["BENCH_API_KEY"] = api_key
        self._timeout = timeout
        self._proc = subprocess.Popen([sys.executable, str(FETCH_FLOOR_SCRIPT)], env=env, text=True,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            self._send(json.dumps({"url_sets": url_sets, "concurrency": concurrency, "timeout": timeout}))
            if self._receive() != "ready":
                raise RuntimeError("fetch floor client did not start")
        except BaseException:
            self.close()
            raise

    def round(self, name: str) -> float:
        self._send(name)
        return float(self._receive())

    def _send(self, line: str) -> None:
        self._proc.stdin.write(line + "\n")
        self._proc.stdin.flush()

    def _receive(self) -> str:
        # A round has its own request timeouts; this bound only catches a client that died silently.
        ready, _, _ = select.select([self._proc.stdout], [], [], self._timeout * 2)
        line = self._proc.stdout.readline() if ready else ""
        if not line:
            # Only a dead client's stderr is read: it is a short traceback and the pipe cannot block.
            why = self._proc.stderr.read()[-500:] if self._proc.poll() is not None else "no answer"
            raise RuntimeError(f"fetch floor client failed: {why}")
        return line.strip()

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc.stdout.close()
        self._proc.stderr.close()

    def __enter__(self) -> FetchFloorClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def count_samples(exposition: str) -> int:
    return sum(1 for line in exposition.splitlines() if line and not line.startswith("#"))


class ExpositionFloor:
    """prometheus_client's text encoder over the samples of one exporter exposition."""

    def __init__(self, exposition: str):
        self._collector = FamiliesCollector(list(text_string_to_metric_families(exposition)))
        encoded = generate_latest(self._collector).decode()
        self.samples = count_samples(encoded)
        if self.samples != count_samples(exposition):
            raise RuntimeError(f"exposition floor encodes {self.samples} samples, the exporter served "
                               f"{count_samples(exposition)}")

    def encode(self) -> float:
        """Seconds one encoding takes."""
        started = time.perf_counter()
        generate_latest(self._collector)
        return time.perf_counter() - started
