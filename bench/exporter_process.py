"""The real exporter as a subprocess on 127.0.0.1, always stopped, scraped like Prometheus would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
import yaml

ROOT = Path(__file__).resolve().parent.parent
# The classic text format, uncompressed: the format the exposition floor encodes.
TEXT_FORMAT = {"Accept": "text/plain; version=0.0.4", "Accept-Encoding": "identity"}
# What Prometheus 2.42 sends: OpenMetrics preferred, gzip accepted.
PROMETHEUS_FORMAT = {
    "Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
              "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
}
# Proxy settings must not divert loopback traffic, in the exporter or in the bench.
_PROXY_VARIABLES = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def loopback_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    return session


def child_environment(api_key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SEEKR_") and k.lower() not in _PROXY_VARIABLES}
    env["SEEKR_API_KEY"] = api_key
    return env


def resident_memory(pid: int) -> tuple[int, int]:
    """(current, peak) resident set size of a process in bytes, from /proc (Linux)."""
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            fields[name] = value.strip()
    return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024


def get_raw(session: requests.Session, url: str, headers: dict, timeout: float) -> bytes:
    """The body as sent, still compressed if it was: decoding is the reader's work, not the server's."""
    with session.get(url, headers=headers, timeout=timeout, stream=True) as response:
        response.raise_for_status()
        return response.raw.read(decode_content=False)


class ExporterProcess:
    def __init__(self, config: dict, api_key: str, start_timeout: float = 20.0):
        self._dir = tempfile.TemporaryDirectory(prefix="seekrflow-bench-")
        config_path = Path(self._dir.name) / "config.yaml"
        config_path.write_text(yaml.safe_dump(config))
        self.url = f"http://127.0.0.1:{free_port()}"
        self._args = [sys.executable, "-m", "exporter", "--config.file", str(config_path),
                      "--web.listen-address", self.url.removeprefix("http://"), "--log.level", "error"]
        self._env = child_environment(api_key)
        self._start_timeout = start_timeout
        self._session = loopback_session()
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> ExporterProcess:
        # A file, not a pipe: a chatty exporter must never block on a full pipe mid-benchmark.
        self._stderr = open(Path(self._dir.name) / "stderr.log", "w+b")
        self.proc = subprocess.Popen(self._args, cwd=ROOT, env=self._env,
                                     stdout=subprocess.DEVNULL, stderr=self._stderr)
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_healthy(self) -> None:
        end = time.monotonic() + self._start_timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                self._stderr.seek(0)
                raise RuntimeError(f"exporter exited with {self.proc.returncode}: "
                                   f"{self._stderr.read().decode(errors='replace')[-500:]}")
            try:
                if self._session.get(self.url + "/-/healthy", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"exporter not healthy within {self._start_timeout:.0f}s")

    def scrape(self, session: requests.Session | None = None, timeout: float = 600.0,
               headers: dict | None = None) -> bytes:
        """The exposition as sent (gzipped if asked): decoding is left to the reader, outside the timing."""
        return get_raw(session or self._session, self.url + "/metrics", headers or TEXT_FORMAT, timeout)

    def memory(self) -> tuple[int, int]:
        """(current, peak) resident set size in bytes."""
        return resident_memory(self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self._stderr.close()
        self._session.close()
        self._dir.cleanup()

    def __exit__(self, *exc_info) -> None:
        self.stop()
