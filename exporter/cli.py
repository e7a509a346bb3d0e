"""Command line: flags in the Prometheus exporter style, start-up, and the --demo mode."""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import sys
import threading
import time
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

from . import __version__
from .address import parse_listen_address
from .config import ApiConfig, Config, ConfigError, DataJobsConfig, load_config
from .durations import parse_duration
from .log import FORMATS, LEVELS, log_uncaught_exceptions, redact, setup_logging
from .runtime import Runtime
from .selfmetrics import SelfMetrics
from .server import READ_TIMEOUT, ExporterServer
from .sharding import Shard, check_sharded_config, ordinal_of
from .web import OTHER_PAGES, make_app
from .webconfig import WebConfigError, WebConfigSource, protect

log = logging.getLogger("seekrflow_exporter")

DEFAULT_PORT = 9878
DEFAULT_TELEMETRY_PATH = "/metrics"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="seekrflow-exporter",
        description="Prometheus exporter for SeekrFlow file-conversion (ingestion) jobs. "
                    "The API key comes from api.api_key_file or the SEEKR_API_KEY environment variable.",
    )
    parser.add_argument("--config.file", dest="config_file", default="config.yaml", metavar="PATH",
                        help="configuration file (default: %(default)s)")
    parser.add_argument("--web.listen-address", dest="listen_addresses", action="append", default=None,
                        metavar="HOST:PORT",
                        help=f"address to serve metrics on; repeat it to listen on several "
                             f"(default: :{DEFAULT_PORT}; 127.0.0.1:{DEFAULT_PORT} with --demo)")
    parser.add_argument("--web.telemetry-path", dest="telemetry_path", default=DEFAULT_TELEMETRY_PATH,
                        metavar="PATH", help="path under which to expose metrics (default: %(default)s)")
    parser.add_argument("--web.disable-exporter-metrics", dest="disable_exporter_metrics", action="store_true",
                        help="leave out the exporter process's own process_* series (CPU, memory, file "
                             "descriptors); the seekrflow_* series stay")
    parser.add_argument("--web.config.file", dest="web_config_file", default=None, metavar="PATH",
                        help="TLS, basic auth and headers, in the Prometheus exporter-toolkit format; "
                             "read again for every connection")
    parser.add_argument("--web.read-timeout", dest="read_timeout", default=f"{READ_TIMEOUT:.0f}s", metavar="DURATION",
                        help="time each connection has to send its request head (and finish its TLS "
                             "handshake) before it is closed, as a Prometheus duration (default: %(default)s)")
    parser.add_argument("--log.level", dest="log_level", default="info", choices=list(LEVELS),
                        help="log level (default: %(default)s)")
    parser.add_argument("--log.format", dest="log_format", default="logfmt", choices=list(FORMATS),
                        help="log format on stderr: logfmt or one JSON object a line (default: %(default)s)")
    parser.add_argument("--web.enable-lifecycle", dest="enable_lifecycle", action="store_true",
                        help="allow POST /-/reload to re-read the configuration file (SIGHUP always does)")
    parser.add_argument("--config.check", dest="config_check", action="store_true",
                        help="validate the configuration file, print the verdict and exit 0 (valid) or 1")
    parser.add_argument("--demo", action="store_true",
                        help="run the built-in SeekrFlow API simulator and export its jobs; no key or config needed")
    parser.add_argument("--shard", dest="shard", type=int, default=None, metavar="N",
                        help="serve only the jobs of shard N (0 to --total-shards - 1); default 0")
    parser.add_argument("--total-shards", dest="total_shards", type=int, default=1, metavar="M",
                        help="split the jobs into M shards by a hash of their ID, one exporter each (default: 1)")
    parser.add_argument("--shard-from-pod-name", dest="shard_from_pod_name", action="store_true",
                        help="take the shard from the ordinal ending the pod name (POD_NAME, else HOSTNAME), "
                             "as a StatefulSet names its pods: seekrflow-exporter-2 serves shard 2")
    parser.add_argument("--version", action="version", version=f"seekrflow-exporter {__version__}")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    log_uncaught_exceptions()
    if args.config_check:
        return _check_config(args.config_file)
    listens = args.listen_addresses or [f"127.0.0.1:{DEFAULT_PORT}" if args.demo else f":{DEFAULT_PORT}"]
    addresses = []
    for listen in listens:
        try:
            addresses.append((listen, parse_listen_address(listen)))
        except ValueError as err:
            log.error("invalid flag", extra={"fields": {"err": f"--web.listen-address {err}"}})
            return 1
    problem = telemetry_path_problem(args.telemetry_path)
    if problem:
        log.error("invalid flag", extra={"fields": {"err": f"--web.telemetry-path {problem}"}})
        return 1
    try:
        read_timeout = read_timeout_of(args.read_timeout)
    except ValueError as err:
        log.error("invalid flag", extra={"fields": {"err": f"--web.read-timeout {err}"}})
        return 1
    try:
        shard = _shard(args)
    except ValueError as err:
        log.error("invalid flag", extra={"fields": {"err": str(err)}})
        return 1
    web_config = None
    if args.web_config_file:
        try:
            web_config = WebConfigSource(args.web_config_file)
        except WebConfigError as err:
            log.error("invalid web configuration", extra={"fields": {"file": args.web_config_file, "err": str(err)}})
            return 1
    simulator = None
    if args.demo:
        simulator, config = _start_demo()
    else:
        try:
            config = check_sharded_config(_load_keeping_the_key_secret(args.config_file), shard)
        except ConfigError as err:
            log.error("invalid configuration", extra={"fields": {"file": args.config_file, "err": str(err)}})
            return 1
    load = None if args.demo else (lambda: check_sharded_config(_load_keeping_the_key_secret(args.config_file), shard))
    try:
        return _run(config, load, addresses, demo=simulator is not None, lifecycle=args.enable_lifecycle,
                    web_config=web_config, telemetry_path=args.telemetry_path,
                    exporter_metrics=not args.disable_exporter_metrics, shard=shard,
                    read_timeout=read_timeout)
    finally:
        if simulator is not None:
            simulator.stop()


def _load_keeping_the_key_secret(path: str) -> Config:
    """The configuration, its API key registered with the log so that no line can carry it (an
    error message or a traceback that quotes a header, say)."""
    config = load_config(path)
    redact(config.api.api_key)
    return config


def _shard(args: argparse.Namespace) -> Shard:
    if args.shard_from_pod_name:
        if args.shard is not None:
            raise ValueError("--shard and --shard-from-pod-name exclude each other")
        pod_name = os.environ.get("POD_NAME") or os.environ.get("HOSTNAME") or ""
        return Shard(ordinal_of(pod_name), args.total_shards)
    return Shard(args.shard or 0, args.total_shards)


def _check_config(path: str) -> int:
    try:
        config = load_config(path)
    except ConfigError as err:
        print(f"{path}: {err}", file=sys.stderr)
        return 1
    print(f"{path}: valid, {len(config.jobs)} job(s), endpoint {config.api.path_template}")
    return 0


def _start_demo():
    # Imported here: the simulator is a feature of the demo, not a dependency of real use.
    from .simulator import SimulatedWorld, SimulatorServer
    from .simulator.datajobs import SimulatedDataJobs

    key = secrets.token_urlsafe(24)
    world = SimulatedWorld(jobs=6, files_per_job=15, seed=7, speed=1.0, started_at=time.time())
    simulator = SimulatorServer(world, api_key=key, data_jobs=SimulatedDataJobs(world, 3, seed=7))
    redact(key)
    base_url = simulator.start("127.0.0.1", 0)
    config = Config(jobs=tuple(world.job_ids()), api=ApiConfig(base_url=base_url, api_key=key),
                    data_jobs=DataJobsConfig(enabled=True))
    print(f"SeekrFlow API simulator: {base_url} ({len(config.jobs)} jobs)", flush=True)
    return simulator, config


def read_timeout_of(text: str) -> float:
    """Seconds in a --web.read-timeout; ``ValueError`` unless a Prometheus duration above 0."""
    seconds = parse_duration(text)
    if seconds <= 0:
        # 0 would close every connection before its first byte, not turn the limit off.
        raise ValueError(f"{text!r} must be longer than 0s")
    return seconds


def telemetry_path_problem(path: str) -> str | None:
    """Why ``path`` cannot serve the metrics, or None: an absolute path of its own."""
    if not path.startswith("/") or any(char.isspace() or not char.isprintable() for char in path) or "?" in path:
        return f"{path!r}: must be an absolute path like /metrics, without spaces or a query"
    if path in OTHER_PAGES:
        return f"{path!r}: is the path of another page ({', '.join(OTHER_PAGES)})"
    return None


def _run(config: Config, load, addresses: list[tuple[str, tuple[str, int]]], demo: bool, lifecycle: bool,
         web_config: WebConfigSource | None = None, telemetry_path: str = DEFAULT_TELEMETRY_PATH,
         exporter_metrics: bool = True, shard: Shard = Shard(), read_timeout: float = READ_TIMEOUT) -> int:
    """``addresses`` holds each --web.listen-address as given (for messages) and the (host, port)
    parsed from it; one server listens on each, all serving the same pages."""
    self_metrics = SelfMetrics(process_metrics=exporter_metrics, shard=shard)
    runtime = Runtime(config, self_metrics, load, shard)
    if shard.sharded:
        log.info("serving one shard of the jobs", extra={"fields": {"shard": shard.index, "total_shards": shard.total}})
    app = make_app(runtime, lifecycle, telemetry_path)
    tls = None
    if web_config is not None:
        app = protect(app, web_config)
        tls = web_config.tls_context if web_config.tls_enabled else None
    servers: list[ExporterServer] = []
    for listen, address in addresses:
        try:
            servers.append(ExporterServer(*address, app, self_metrics.connections_shed, tls=tls,
                                          read_timeout=read_timeout))
        except OSError as err:
            log.error("cannot listen", extra={"fields": {"address": listen, "err": err.strerror}})
            for server in servers:
                server.server_close()
            runtime.close()
            return 1

    reloader = _Reloader(runtime, demo)
    # Signal handlers only note what was asked; the work happens outside them.
    wake, stop, reload = threading.Event(), threading.Event(), threading.Event()
    signal.signal(signal.SIGTERM, _setting(stop, wake))
    signal.signal(signal.SIGINT, _setting(stop, wake))
    signal.signal(signal.SIGHUP, _setting(reload, wake))
    for number, server in enumerate(servers):
        threading.Thread(target=server.serve_forever, name=f"http-{number}", daemon=True).start()
        host, port = str(server.server_address[0]), server.server_address[1]
        log.info("listening", extra={"fields": {
            "address": f"[{host}]:{port}" if ":" in host else f"{host}:{port}", "tls": tls is not None,
            "telemetry_path": telemetry_path, "jobs": len(config.jobs), "base_url": _shown_url(config.api.base_url),
            "endpoint": config.api.path_template, "version": __version__}})
    if demo:
        host, port = str(servers[0].server_address[0]), servers[0].server_address[1]
        shown_host = "127.0.0.1" if host in ("", "0.0.0.0") else host
        print(f"Exporter metrics: http://{shown_host}:{port}{telemetry_path}  (Ctrl-C to stop)", flush=True)
    while not stop.is_set():
        # A signal that lands on another thread only flags the main thread; a wait with no
        # timeout could sleep through it, so look again every half second.
        wake.wait(timeout=0.5)
        wake.clear()
        if reload.is_set() and not stop.is_set():
            reload.clear()
            reloader.request()
    log.info("shutting down")
    for server in servers:
        server.shutdown()
        server.server_close()
    runtime.close()
    return 0


class _Reloader:
    """SIGHUP reloads in a thread of their own, one at a time: a configuration file that blocks
    (a hung network mount) never keeps the main thread from SIGTERM. Signals that come during a
    reload are folded into one more reload after it."""

    def __init__(self, runtime: Runtime, demo: bool):
        self._runtime = runtime
        self._demo = demo
        self._lock = threading.Lock()
        self._running = False
        self._pending = False

    def request(self) -> None:
        with self._lock:
            if self._running:
                self._pending = True
                return
            self._running = True
        threading.Thread(target=self._run, name="reload", daemon=True).start()

    def _run(self) -> None:
        again = True
        while again:
            finished = False
            try:
                self._reload_once()
                finished = True
            finally:
                # Whatever happened, the next SIGHUP must start a reload again: a reload that
                # ended by an exception drops the ones asked meanwhile rather than looping on it.
                with self._lock:
                    again = finished and self._pending
                    self._pending = False
                    self._running = again

    def _reload_once(self) -> None:
        try:
            refused = self._runtime.reload()
        except Exception:  # noqa: BLE001 - a bug in building the new poller must not end reloads
            log.error("reload failed, keeping the running configuration", exc_info=True)
            return
        if refused and self._demo:
            log.info("SIGHUP ignored", extra={"fields": {"reason": refused}})


def _shown_url(url: str) -> str:
    """The API root as requests go to it (a trailing /vN already stripped), without any user:password."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="<redacted>@" + parts.netloc.rpartition("@")[2]))


def _setting(*events: threading.Event) -> Callable[[int, Any], None]:
    """A signal handler that only sets ``events``."""
    def handler(signum: int, frame: Any) -> None:
        for event in events:
            event.set()
    return handler


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
