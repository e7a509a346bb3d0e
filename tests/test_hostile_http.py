"""Broken HTTP from the API (not just broken JSON) fails only its job, and never the scrape."""

import socket
import socketserver
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter

from exporter.client import SeekrFlowClient
from exporter.config import ApiConfig
from harness import ExporterProcess
from metric_samples import parse_exposition, series, value

KEY = "sk-test-hostile-http-4d5e"
GOOD_BODY = (Path(__file__).parent / "fixtures" / "job_completed.json").read_bytes()


def http(status_line: bytes, headers: list[bytes], body: bytes) -> bytes:
    return status_line + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body


RAW_ANSWERS = {
    "ij-ok": http(b"HTTP/1.1 200 OK", [b"Content-Length: %d" % len(GOOD_BODY)], GOOD_BODY),
    "ij-retry-superscript": http(b"HTTP/1.1 429 Too Many Requests", [b"Retry-After: \xb2", b"Content-Length: 2"], b"{}"),
    "ij-retry-zoneless-date": http(b"HTTP/1.1 503 Busy", [b"Retry-After: Wed, 21 Oct 2015 07:28:00 -0000",
                                                          b"Content-Length: 2"], b"{}"),
    "ij-not-http": b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
    "ij-nothing": b"",
    "ij-short-body": http(b"HTTP/1.1 200 OK", [b"Content-Length: 5000"], GOOD_BODY[:40]),
    "ij-bad-chunks": http(b"HTTP/1.1 200 OK", [b"Transfer-Encoding: chunked"], b"zz\r\nnot a chunk\r\n"),
    "ij-bad-gzip": http(b"HTTP/1.1 200 OK", [b"Content-Encoding: gzip", b"Content-Length: 9"], b"not gzip!"),
    "ij-html": http(b"HTTP/1.1 200 OK", [b"Content-Type: text/html", b"Content-Length: 13"], b"<html></html>"),
    "ij-utf16": http(b"HTTP/1.1 200 OK", [b"Content-Length: %d" % len(GOOD_BODY.decode().encode("utf-16"))],
                     GOOD_BODY.decode().encode("utf-16")),
    "ij-status-999": http(b"HTTP/1.1 999 Odd", [b"Content-Length: 2"], b"{}"),
    "ij-latin1-detail": http(b"HTTP/1.1 404 Not Found", [b"Content-Length: 17"], b'{"detail":"\xe9\xe9"}xx'),
    "ij-huge-header": http(b"HTTP/1.1 200 OK", [b"X-Pad: " + b"a" * 70000, b"Content-Length: 2"], b"{}"),
}


class RawAPI(socketserver.ThreadingTCPServer):
    """Answers GET .../{id} with the raw bytes of ``answers[id]``, then closes the connection."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, answers: dict[str, bytes]):
        self.answers = answers
        super().__init__(("127.0.0.1", 0), _RawHandler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self.shutdown()
        self.server_close()


class _RawHandler(socketserver.StreamRequestHandler):
    def handle(self):
        request_line = self.rfile.readline(65537).decode("latin-1")
        while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
            pass
        job_id = request_line.split(" ")[1].rsplit("/", 1)[-1] if " " in request_line else ""
        try:
            self.wfile.write(self.server.answers.get(job_id, http(b"HTTP/1.1 404 Not Found", [b"Content-Length: 2"], b"{}")))
            self.wfile.flush()
        except OSError:
            pass
        self.connection.shutdown(socket.SHUT_RDWR)


@pytest.mark.slow
def test_broken_http_fails_each_job_alone_and_the_scrape_answers():
    with RawAPI(RAW_ANSWERS) as api:
        config = {"api": {"base_url": api.url, "timeout": "3s"}, "jobs": list(RAW_ANSWERS)}
        with ExporterProcess(config, KEY) as exporter:
            first = exporter.scrape()
            second = exporter.scrape()
    for response in (first, second):
        assert response.status_code == 200
        got = parse_exposition(response.text)
        success = {dict(k)["job_id"]: v for k, v in series(got, "seekrflow_ingestion_job_scrape_success").items()}
        # JSON in UTF-16 is not what the API sends, but it is unambiguous JSON: it is read.
        readable = {"ij-ok", "ij-utf16"}
        assert success == {job_id: (1.0 if job_id in readable else 0.0) for job_id in RAW_ANSWERS}
        assert value(got, "seekrflow_ingestion_job_duration_seconds", job_id="ij-ok") == 200
    reasons = {dict(k)["job_id"]: dict(k)["reason"]
               for k in series(parse_exposition(first.text), "seekrflow_ingestion_job_scrape_error_info")}
    assert reasons["ij-retry-superscript"] == "http_429"
    assert reasons["ij-retry-zoneless-date"] == "http_503"
    assert reasons["ij-html"] == "invalid_json"
    assert reasons["ij-status-999"] == "http_999"
    assert "internal_error" not in reasons.values()
    assert "Traceback" not in exporter.log


def client_for(url: str) -> SeekrFlowClient:
    counter = Counter("requests", "r", ["endpoint", "code"], registry=CollectorRegistry())
    return SeekrFlowClient(ApiConfig(base_url=url, api_key=KEY, request_timeout=2.0), counter)


header_lines = st.lists(
    st.binary(min_size=0, max_size=40).filter(lambda b: b"\r" not in b and b"\n" not in b), max_size=4)


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(status=st.one_of(st.integers(0, 1200).map(lambda n: b"HTTP/1.1 %d X" % n), st.binary(max_size=20)),
       headers=header_lines, body=st.binary(max_size=200))
def test_any_bytes_from_the_api_give_a_result_never_an_exception(status, headers, body):
    answers = {"ij-x": http(status.replace(b"\r", b"").replace(b"\n", b""), headers, body)}
    with RawAPI(answers) as api:
        client = client_for(api.url)
        try:
            result = client.fetch_job("ij-x", 2.0)
        finally:
            client.close()
    assert result.job_id == "ij-x"
    assert (result.job is None) == (result.reason is not None)
    assert result.reason != "internal_error", result.detail
