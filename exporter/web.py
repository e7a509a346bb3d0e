"""HTTP front: /metrics runs a scrape within Prometheus's deadline; /, /-/healthy and /-/ready."""

from __future__ import annotations

import html
import logging
from typing import Callable, Iterator, Protocol

from prometheus_client.exposition import choose_encoder

from . import __version__
from .exposition import OPENMETRICS, TEXT, Exposition

log = logging.getLogger("seekrflow_exporter.web")


class Collector(Protocol):
    """Turns one scrape into an exposition body (collector.py)."""

    def body(self, timeout_header: str | None, fmt: str, gzipped: bool) -> Exposition: ...

    @property
    def job_count(self) -> int: ...


class Reloadable(Protocol):
    """The running configuration (runtime.py): its collector, swapped on ``reload()``."""

    @property
    def collector(self) -> Collector: ...

    def reload(self) -> str | None:
        """None when the new configuration is in place, else the one-line reason it is not."""
        ...


def make_app(runtime: Reloadable, lifecycle: bool = False, telemetry_path: str = "/metrics") -> Callable:
    """``runtime`` gives the current ``collector`` and can ``reload()``; ``lifecycle``
    opens POST /-/reload, which, as in Prometheus, is off unless asked for: anyone who reaches the
    port could otherwise make the exporter re-read its file and refetch every job. The metrics are
    served at ``telemetry_path`` (--web.telemetry-path), and only there."""
    read_only = {telemetry_path: "", **_READ_ONLY}

    def app(environ, start_response):
        try:
            return route(environ, start_response)
        except Exception:  # noqa: BLE001 - a bug must cost one answer and one log line, not more
            log.error("internal error", exc_info=True, extra={"fields": {"path": environ.get("PATH_INFO")}})
            return _text(start_response, "500 Internal Server Error", "Internal error, see the exporter's log\n")

    def route(environ, start_response):
        path = environ.get("PATH_INFO", "/")
        method = environ.get("REQUEST_METHOD", "GET")
        if path in read_only and method not in ("GET", "HEAD"):
            return _text(start_response, "405 Method Not Allowed", "Only GET or HEAD requests allowed\n",
                         extra=[("Allow", "GET, HEAD")])
        if path in read_only and method == "HEAD":
            # The headers a GET would get, no body, and for the metrics no scrape: a HEAD costs nothing.
            content_type = choose_encoder(environ.get("HTTP_ACCEPT", ""))[1] if path == telemetry_path else read_only[path]
            start_response("200 OK", [("Content-Type", content_type)])
            return _no_body()
        if path == telemetry_path:
            return _metrics(runtime.collector, environ, start_response)
        if path == "/-/healthy":
            return _text(start_response, "200 OK", "Healthy\n")
        if path == "/-/ready":
            return _text(start_response, "200 OK", "Ready\n")
        if path == "/-/reload":
            if not lifecycle:
                return _text(start_response, "403 Forbidden", "Lifecycle API is not enabled.\n")
            return _reload(runtime, environ, start_response)
        if path == "/":
            return _text(start_response, "200 OK", _landing_page(runtime.collector.job_count, telemetry_path),
                         "text/html; charset=utf-8")
        return _text(start_response, "404 Not Found", "Not found\n")

    return app


# The read-only pages besides the metrics, and their content type: GET and HEAD only.
_READ_ONLY = {"/-/healthy": "text/plain; charset=utf-8", "/-/ready": "text/plain; charset=utf-8",
              "/": "text/html; charset=utf-8"}
# The paths of the pages that are not the metrics: --web.telemetry-path may be none of them.
OTHER_PAGES = ("/", "/-/healthy", "/-/ready", "/-/reload")


def _no_body():
    # A generator, not a list: wsgiref would take an empty list for a body of 0 bytes and say
    # Content-Length: 0, which a HEAD must not claim for a page that has a body.
    yield b""


def _reload(runtime: Reloadable, environ, start_response):
    if environ.get("REQUEST_METHOD") not in ("POST", "PUT"):
        return _text(start_response, "405 Method Not Allowed", "Only POST or PUT requests allowed\n",
                     extra=[("Allow", "POST, PUT")])
    error = runtime.reload()
    if error is not None:
        return _text(start_response, "500 Internal Server Error", f"failed to reload config: {error}\n")
    return _text(start_response, "200 OK", "Reloaded\n")


def _metrics(collector: Collector, environ, start_response):
    # prometheus_client negotiates the format (and its exact Content-Type); we only write it.
    _, content_type = choose_encoder(environ.get("HTTP_ACCEPT", ""))
    fmt = OPENMETRICS if content_type.startswith("application/openmetrics-text") else TEXT
    gzipped = gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING", ""))
    body = collector.body(environ.get("HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS"), fmt, gzipped)
    headers = [("Content-Type", content_type)]
    if gzipped:
        headers.append(("Content-Encoding", "gzip"))
    headers.append(("Content-Length", str(body.size)))
    start_response("200 OK", headers)
    return _sent(body, environ.get("PATH_INFO"))


def _sent(body: Exposition, path: str | None) -> Iterator[bytes]:
    """The body as it is written: a failure then (inflating a kept piece) can only cut the answer
    short, but it is logged like any other internal error."""
    try:
        yield from body
    except Exception:
        log.error("internal error while sending the answer", exc_info=True, extra={"fields": {"path": path}})
        raise


def gzip_accepted(accept_encoding: str) -> bool:
    """Whether ``Accept-Encoding`` allows gzip: listed (or ``*`` when gzip is not) with q above 0.

    prometheus_client's own check ignores q-values, so ``gzip;q=0`` (no gzip, please) would get gzip.
    """
    wildcard = None
    for item in accept_encoding.split(","):
        coding, *params = (part.strip() for part in item.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0  # a q-value that cannot be read accepts nothing
        if coding.lower() == "gzip":
            return quality > 0
        if coding == "*":
            wildcard = quality > 0
    return bool(wildcard)


def _text(start_response, status: str, text: str, content_type: str = "text/plain; charset=utf-8",
          extra: list[tuple[str, str]] | None = None):
    body = text.encode()
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))] + (extra or []))
    return [body]


def _landing_page(job_count: int, telemetry_path: str) -> str:
    version = html.escape(__version__)
    metrics = html.escape(telemetry_path, quote=True)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>SeekrFlow Exporter</title></head>
<body>
<h1>SeekrFlow Exporter</h1>
<p>Version {version}. Exporting {job_count} ingestion job{'s' if job_count != 1 else ''}.</p>
<ul>
<li><a href="{metrics}">Metrics</a></li>
<li><a href="/-/healthy">Health</a></li>
<li><a href="/-/ready">Readiness</a></li>
</ul>
</body></html>
"""
