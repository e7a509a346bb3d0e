"""A real Prometheus and Alertmanager on 127.0.0.1 for tests, and a webhook that records deliveries.

Each server writes its config into its own temporary directory, starts the Debian binary
(``prometheus``, ``prometheus-alertmanager``) on a free loopback port, waits until ``/-/ready``
answers, and is always stopped again (use it as a context manager)::

    with PrometheusServer(
        scrape_configs=[scrape_config("seekrflow", exporter_url)],
        rule_files=[REPO / "prometheus/rules/seekrflow-recording.rules.yml"],
    ) as prometheus:
        prometheus.wait_for('up{job="seekrflow"} == 1')
        rows = prometheus.query("status:seekrflow_ingestion_job_files:sum")
        series = prometheus.query_range("seekrflow_up", start, end, step=1)

A missing binary is a test failure (the packages are part of the test set-up), never a skip.
Prometheus scrapes for the first time about 5.5 s after it starts, whatever the interval: wait
with ``wait_for``, never with a fixed sleep.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterable
from urllib.parse import urlsplit

import requests
import yaml

from harness import PORT_ATTEMPTS, free_port, port_was_taken, wait_until

STOP_TIMEOUT = 10.0


def find_binary(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed (Debian packages prometheus and prometheus-alertmanager)"
    return path


def scrape_config(job_name: str, *urls: str, interval: str = "1s", timeout: str = "1s") -> dict:
    """A static scrape job for targets given as base URLs (http://127.0.0.1:PORT)."""
    return {
        "job_name": job_name,
        "scrape_interval": interval,
        "scrape_timeout": timeout,
        "static_configs": [{"targets": [urlsplit(url).netloc for url in urls]}],
    }


class _ServerProcess:
    """A binary with a config file and a data directory under one temporary directory."""

    name = ""
    config_name = ""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._tmp = tempfile.TemporaryDirectory(prefix=f"{self.name}-test-")
        self.dir = Path(self._tmp.name)
        self.config_path = self.dir / self.config_name
        self._log_path = self.dir / "log.txt"
        self._log_file = None
        self.proc: subprocess.Popen | None = None

    def _config(self) -> dict:
        raise NotImplementedError

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def start(self):
        for attempt in range(PORT_ATTEMPTS):
            self.config_path.write_text(yaml.safe_dump(self._config(), sort_keys=False))
            self._log_file = open(self._log_path, "w")
            self.proc = subprocess.Popen(
                self._argv(), cwd=self.dir, stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT
            )
            try:
                wait_until(self._ready, timeout=20, what=f"{self.name} to be ready at {self.url}")
                return self
            except BaseException:
                self.stop()
                if attempt == PORT_ATTEMPTS - 1 or not port_was_taken(self.log()):
                    raise
                self.port = free_port()
                self.url = f"http://127.0.0.1:{self.port}"
        raise AssertionError("unreachable")

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
        return requests.get(self.url + "/-/ready", timeout=1).status_code == 200

    def log(self) -> str:
        """What the process wrote so far (stdout and stderr)."""
        return self._log_path.read_text() if self._log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
        with contextlib.suppress(OSError):
            self._tmp.cleanup()

    def _get_json(self, path: str, params: dict | None = None) -> dict | list:
        response = requests.get(self.url + path, params=params, timeout=10)
        assert response.status_code == 200, f"GET {path} {params}: {response.status_code} {response.text}"
        return response.json()


class PrometheusServer(_ServerProcess):
    """``prometheus`` with the given scrape jobs and rule files, optionally sending to Alertmanagers.

    ``storage_path`` lets a test start Prometheus on a data directory prepared beforehand (see
    ``backfill_openmetrics``); by default the data lives in the temporary directory.
    """

    name = "prometheus"
    config_name = "prometheus.yml"

    def __init__(
        self,
        *,
        scrape_configs: Iterable[dict] = (),
        rule_files: Iterable[Path | str] = (),
        alertmanager_urls: Iterable[str] = (),
        evaluation_interval: str = "1s",
        storage_path: Path | None = None,
        extra_args: Iterable[str] = (),
    ) -> None:
        super().__init__()
        self.scrape_configs = list(scrape_configs)
        self.rule_files = [str(Path(path).resolve()) for path in rule_files]
        self.alertmanager_urls = list(alertmanager_urls)
        self.evaluation_interval = evaluation_interval
        self.storage_path = storage_path or self.dir / "data"
        self.extra_args = list(extra_args)

    def _config(self) -> dict:
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": self.evaluation_interval},
            "rule_files": self.rule_files,
            "scrape_configs": self.scrape_configs,
        }
        if self.alertmanager_urls:
            targets = [urlsplit(url).netloc for url in self.alertmanager_urls]
            config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": targets}]}]}
        return config

    def _argv(self) -> list[str]:
        return [
            find_binary("prometheus"),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.storage_path}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            *self.extra_args,
        ]

    # --- HTTP API ------------------------------------------------------------------------------

    def _api(self, path: str, params: dict | None = None):
        body = self._get_json("/api/v1/" + path, params)
        assert body["status"] == "success", f"{path} {params}: {body}"
        return body["data"]

    def query(self, expr: str, time: float | None = None) -> list[dict]:
        """An instant query; the vector's rows as ``{"metric": {...}, "value": [ts, "v"]}``."""
        params = {"query": expr} if time is None else {"query": expr, "time": time}
        data = self._api("query", params)
        return data["result"] if data["resultType"] in ("vector", "matrix") else [{"metric": {}, "value": data["result"]}]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict]:
        """A range query; rows as ``{"metric": {...}, "values": [[ts, "v"], ...]}``."""
        return self._api("query_range", {"query": expr, "start": start, "end": end, "step": step})["result"]

    def values(self, expr: str, label: str) -> dict[str, float]:
        """An instant query as ``{value of label: sample value}``."""
        return {row["metric"].get(label, ""): float(row["value"][1]) for row in self.query(expr)}

    def wait_for(self, expr: str, check: Callable[[list[dict]], bool] = bool, timeout: float = 30.0) -> list[dict]:
        """Poll ``expr`` until ``check(rows)`` holds (by default: until it returns any row)."""
        def attempt():
            rows = self.query(expr)
            return (rows,) if check(rows) else None  # a 1-tuple, so that even [] can be the answer

        (rows,) = wait_until(attempt, timeout=timeout, interval=0.2, what=f"Prometheus query {expr!r}")
        return rows

    def alerts(self) -> list[dict]:
        """Pending and firing alerts: ``{"labels", "annotations", "state", "value", ...}``."""
        return self._api("alerts")["alerts"]

    def rule_groups(self) -> list[dict]:
        return self._api("rules")["groups"]

    def targets(self) -> list[dict]:
        return self._api("targets")["activeTargets"]


class AlertmanagerServer(_ServerProcess):
    """``prometheus-alertmanager`` with a config dict; clustering off (no port on other interfaces)."""

    name = "alertmanager"
    config_name = "alertmanager.yml"

    def __init__(self, config: dict) -> None:
        super().__init__()
        self.config = config

    def _config(self) -> dict:
        return self.config

    def _argv(self) -> list[str]:
        return [
            find_binary("prometheus-alertmanager"),
            f"--config.file={self.config_path}",
            f"--storage.path={self.dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
        ]

    def alerts(self) -> list[dict]:
        """Alerts Alertmanager holds (API v2): ``{"labels", "annotations", "status", ...}``."""
        return self._get_json("/api/v2/alerts")


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that records every JSON body POSTed to it, with its path."""

    def __init__(self) -> None:
        self._deliveries: list[tuple[str, dict]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - name fixed by the base class
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    receiver._deliveries.append((self.path, json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format, *args):  # noqa: A002 - quiet: tests read deliveries instead
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def deliveries(self) -> list[tuple[str, dict]]:
        """(path, Alertmanager webhook payload) in arrival order (a copy)."""
        with self._lock:
            return list(self._deliveries)

    def alerts(self) -> list[tuple[str, dict]]:
        """Every alert of every delivery, as (path, alert)."""
        return [(path, alert) for path, payload in self.deliveries for alert in payload["alerts"]]

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def backfill_openmetrics(openmetrics_text: str, storage_path: Path) -> None:
    """Write history into ``storage_path`` for a PrometheusServer started on it afterwards.

    The text is OpenMetrics with timestamps (ending in ``# EOF``); promtool turns it into blocks,
    so range queries over hours of data can be tested in seconds.
    """
    storage_path.mkdir(parents=True, exist_ok=True)
    source = storage_path / "backfill.om"
    source.write_text(openmetrics_text)
    try:
        result = subprocess.run(
            [find_binary("promtool"), "tsdb", "create-blocks-from", "openmetrics", str(source), str(storage_path)],
            capture_output=True, text=True, timeout=120,
        )
    finally:
        source.unlink()
    assert result.returncode == 0, f"promtool backfill failed:\n{result.stdout}\n{result.stderr}"
