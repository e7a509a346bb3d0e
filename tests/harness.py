"""Run the real exporter as a process on 127.0.0.1 for tests, and always stop it."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
import yaml

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A port free now; another process may take it before ours binds it (see ``PORT_ATTEMPTS``)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Other test runs on the machine pick free ports too: a process that finds its port taken is
# started again on another one, this many times in all.
PORT_ATTEMPTS = 5


def port_was_taken(output: str) -> bool:
    return "address already in use" in output.lower()


def wait_until(check, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    end = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < end:
        try:
            result = check()
            if result:
                return result
        except Exception as err:  # noqa: BLE001 - the last error is reported below
            last_error = err
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last error: {last_error!r}")


def read_lines(stream, count: int, timeout: float) -> list[str]:
    """The next ``count`` lines of a child's output, or an AssertionError after ``timeout``."""
    lines: queue.SimpleQueue = queue.SimpleQueue()
    threading.Thread(target=lambda: [lines.put(stream.readline()) for _ in range(count)], daemon=True).start()
    try:
        return [lines.get(timeout=timeout) for _ in range(count)]
    except queue.Empty:
        raise AssertionError(f"no {count} lines of output within {timeout}s") from None


class ExporterProcess:
    """The exporter as a subprocess; ``log`` holds what it wrote to stderr once stopped."""

    def __init__(self, config: dict, api_key: str | None, extra_args=(), env=None, scheme: str = "http",
                 client: dict | None = None):
        """``scheme`` and ``client`` (keyword arguments for requests: verify, cert, auth) serve the
        exporter behind ``--web.config.file``."""
        self._dir = tempfile.TemporaryDirectory(prefix="seekrflow-exporter-test-")
        self.config_path = Path(self._dir.name) / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self._scheme = scheme
        self._choose_port()
        self.client = client or {}
        self._stderr_path = Path(self._dir.name) / "stderr.log"
        self._env = {k: v for k, v in os.environ.items() if not k.startswith("SEEKR_")}
        self._env.update(env or {})
        if api_key is not None:
            self._env["SEEKR_API_KEY"] = api_key
        self._extra_args = list(extra_args)
        # Below info the exporter does not log the address it listens on.
        self._says_where = not re.search(r"--log\.level[ =](warn|error)", " ".join(self._extra_args))
        self.proc: subprocess.Popen | None = None
        self.log = ""

    def _choose_port(self) -> None:
        self.port = free_port()
        self.url = f"{self._scheme}://127.0.0.1:{self.port}"

    def __enter__(self) -> ExporterProcess:
        for attempt in range(PORT_ATTEMPTS):
            self._stderr = open(self._stderr_path, "w")
            args = ["--config.file", str(self.config_path), "--web.listen-address", f"127.0.0.1:{self.port}",
                    *self._extra_args]
            self.proc = subprocess.Popen([sys.executable, "-m", "exporter", *args], cwd=ROOT, env=self._env,
                                         stdout=subprocess.DEVNULL, stderr=self._stderr)
            try:
                wait_until(self._healthy, timeout=60, what="the exporter to answer /-/healthy")
                return self
            except BaseException:
                self.stop()
                if attempt == PORT_ATTEMPTS - 1 or not port_was_taken(self.log):
                    raise
                self._choose_port()
        raise AssertionError("unreachable")

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"exporter exited with {self.proc.returncode}: {self._stderr_path.read_text()}")
        # Whoever took the port first answers too: only our exporter's own word that it listens counts.
        if self._says_where and f"127.0.0.1:{self.port}" not in self._stderr_path.read_text():
            return False
        return requests.get(self.url + "/-/healthy", timeout=1, **self.client).status_code == 200

    def scrape(self, headers=None) -> requests.Response:
        response = requests.get(self.url + "/metrics", headers=headers or {}, timeout=30, **self.client)
        response.raise_for_status()
        return response

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()
        self.log = self._stderr_path.read_text()
        return self.proc.returncode

    def __exit__(self, *exc_info) -> None:
        self.stop()
        with contextlib.suppress(OSError):
            self._dir.cleanup()


def peak_rss_mib(pid: int) -> float:
    """VmHWM: the most resident memory the process ever had."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc")
