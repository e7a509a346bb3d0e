"""The fault suite, API side: redirects, drips, bombs and stale connections from a hostile fake API.

Each case asserts the exact outcome of the fetch and what reached the fake (or another host), and,
where memory is the point, a bound on the exporter process's peak RSS read from /proc.
"""

import json
import threading
import time

import pytest
from prometheus_client import CollectorRegistry, Counter

from exporter import transport
from exporter.client import SeekrFlowClient
from exporter.config import ApiConfig
from harness import ExporterProcess, peak_rss_mib
from hostile_api import GOOD_BODY, Exchange, HostileAPI, answer, good, gzip_bomb, http, redirect
from metric_samples import parse_exposition, series, value

KEY = "sk-test-fault-api-9c1d"
TEAM = "team-fault-7"
PATH = "/v1/flow/alignment/ingestion/"
MiB = 1 << 20


def client_for(url: str, timeout: float = 5.0) -> tuple[SeekrFlowClient, Counter]:
    counter = Counter("requests", "r", ["endpoint", "code"], registry=CollectorRegistry())
    api = ApiConfig(base_url=url, api_key=KEY, team_id=TEAM, request_timeout=timeout)
    return SeekrFlowClient(api, counter), counter


def fetch(url: str, job_id: str, timeout: float = 5.0):
    client, counter = client_for(url, timeout)
    try:
        return client.fetch_job(job_id, timeout), counter
    finally:
        client.close()


def codes(counter: Counter) -> dict[str, float]:
    return {s.labels["code"]: s.value for s in counter.collect()[0].samples if s.name.endswith("_total")}


# --- redirects -------------------------------------------------------------------------------


def test_a_redirect_within_the_origin_is_followed_with_our_headers():
    with HostileAPI({"ij-moved": redirect(PATH + "ij-there"),
                     "ij-absolute": lambda ex: redirect(f"{ex.server.url}{PATH}ij-there", 307)(ex),
                     "ij-there": good()}) as api:
        moved, counter = fetch(api.url, "ij-moved")
        absolute, _ = fetch(api.url, "ij-absolute")
        asked = [r.path.rsplit("/", 1)[-1] for r in api.requests]
        headers = [r.headers for r in api.requests]
    assert moved.reason is None and moved.job is not None and moved.job.id == "ij-done"
    assert absolute.reason is None and absolute.job.id == "ij-done"
    assert asked == ["ij-moved", "ij-there", "ij-absolute", "ij-there"]
    assert all(h["authorization"] == KEY and h["x-team-id"] == TEAM for h in headers)
    assert codes(counter) == {"200": 1.0}


@pytest.mark.parametrize("where", ["other_port", "other_scheme", "other_host"])
def test_a_redirect_to_another_origin_fails_the_job_and_sends_nothing_there(where):
    with HostileAPI({"ij-x": good()}) as elsewhere:
        target = {"other_port": f"{elsewhere.url}{PATH}ij-x",
                  "other_scheme": f"https://127.0.0.1:{elsewhere.port}{PATH}ij-x",
                  "other_host": f"http://localhost:{elsewhere.port}{PATH}ij-x"}[where]
        with HostileAPI({"ij-away": redirect(target, 301)}) as api:
            result, counter = fetch(api.url, "ij-away")
        reached_elsewhere = list(elsewhere.requests)
    assert (result.job, result.reason, result.http_status) == (None, "redirect", 301)
    assert result.detail == "HTTP 301 to another origin, not followed"
    assert reached_elsewhere == []
    assert codes(counter) == {"301": 1.0}


def test_a_redirect_loop_costs_four_requests_and_fails_the_job():
    with HostileAPI({"ij-loop": redirect(PATH + "ij-loop", 308)}) as api:
        result, _ = fetch(api.url, "ij-loop")
        asked = len(api.requests_for("ij-loop"))
    assert (result.reason, result.detail) == ("redirect", "more than 3 redirects")
    assert asked == 4


def test_an_unusable_location_fails_the_job():
    with HostileAPI({"ij-badloc": redirect("http://[::1/x")}) as api:
        result, _ = fetch(api.url, "ij-badloc")
    assert (result.reason, result.detail) == ("redirect", "HTTP 302 with an unusable Location")


@pytest.mark.slow
def test_a_gzip_bomb_behind_a_302_is_never_read():
    bomb = gzip_bomb(1024)  # 1 MB on the wire, 1 GiB inflated
    behaviours = {"ij-bomb": redirect(PATH + "ij-done", body=bomb, headers={"Content-Encoding": "gzip"}),
                  "ij-done": good()}
    with HostileAPI(behaviours) as api:
        config = {"api": {"base_url": api.url, "timeout": "10s"}, "jobs": ["ij-bomb"]}
        with ExporterProcess(config, KEY) as exporter:
            got = parse_exposition(exporter.scrape().text)
            peak = peak_rss_mib(exporter.proc.pid)
    assert value(got, "seekrflow_ingestion_job_scrape_success", job_id="ij-bomb") == 1
    assert value(got, "seekrflow_ingestion_job_duration_seconds", job_id="ij-bomb") == 200
    assert peak < 100, f"peak RSS {peak:.0f} MiB"


@pytest.mark.slow
def test_a_gzip_bomb_answer_stops_at_the_body_cap():
    bomb = gzip_bomb(1024)
    with HostileAPI({"ij-bomb": answer(200, bomb, {"Content-Encoding": "gzip"}),
                     "ij-ok": good()}) as api:
        config = {"api": {"base_url": api.url, "timeout": "20s"}, "jobs": ["ij-bomb", "ij-ok"]}
        with ExporterProcess(config, KEY) as exporter:
            got = parse_exposition(exporter.scrape().text)
            peak = peak_rss_mib(exporter.proc.pid)
    errors = {dict(k)["job_id"]: dict(k)["reason"] for k in series(got, "seekrflow_ingestion_job_scrape_error_info")}
    assert errors == {"ij-bomb": "body_too_large"}
    assert value(got, "seekrflow_ingestion_job_scrape_success", job_id="ij-ok") == 1
    # The 64 MiB cap, its copy while the buffer grows, and the interpreter: never the gigabyte.
    assert peak < 64 * 3 + 60, f"peak RSS {peak:.0f} MiB"


def test_a_compressed_answer_is_read_and_a_broken_one_fails_alone():
    import gzip
    with HostileAPI({"ij-gz": answer(200, gzip.compress(GOOD_BODY), {"Content-Encoding": "gzip"}),
                     "ij-cut": answer(200, gzip.compress(GOOD_BODY)[:-30], {"Content-Encoding": "gzip"}),
                     "ij-br": answer(200, b"xx", {"Content-Encoding": "br"})}) as api:
        gz, _ = fetch(api.url, "ij-gz")
        cut, _ = fetch(api.url, "ij-cut")
        br, counter = fetch(api.url, "ij-br")
        accepted = api.requests[0].headers["accept-encoding"]
    assert gz.job is not None and gz.job.id == "ij-done"
    assert (cut.reason, cut.detail) == ("bad_encoding", "HTTP 200 with a truncated compressed body")
    assert (br.reason, br.detail) == ("bad_encoding", "HTTP 200 with Content-Encoding 'br', not asked for")
    assert accepted == "gzip"
    assert codes(counter) == {"invalid_response": 1.0}


# --- drips: api.timeout bounds the whole request -------------------------------------------------

DRIP_EVERY = 0.1  # seconds between bytes: the whole answer would take over a minute and a half


def drip_headers(ex: Exchange) -> None:
    ex.drip(http(200, GOOD_BODY, {"X-Pad": "p" * 1500}), DRIP_EVERY)


def drip_body(ex: Exchange) -> None:
    ex.send(http(200, b"", {"Content-Length": str(len(GOOD_BODY))}))
    ex.drip(GOOD_BODY, DRIP_EVERY)


def drip_chunks(ex: Exchange) -> None:
    ex.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    for byte in GOOD_BODY:
        if not ex.send(b"1\r\n" + bytes([byte]) + b"\r\n"):
            break
        time.sleep(DRIP_EVERY)
    ex.keep_alive = False


@pytest.mark.parametrize("behaviour,detail", [
    (drip_headers, "no answer within 1.5s"),
    (drip_body, "body not received within 1.5s"),
    (drip_chunks, "body not received within 1.5s"),
], ids=["headers", "body", "chunks"])
@pytest.mark.slow
def test_a_drip_is_cut_off_at_the_api_timeout(behaviour, detail):
    assert len(GOOD_BODY) * DRIP_EVERY > 60
    with HostileAPI({"ij-drip": behaviour}) as api:
        started = time.monotonic()
        result, counter = fetch(api.url, "ij-drip", timeout=1.5)
        took = time.monotonic() - started
    assert (result.reason, result.detail) == ("timeout", detail)
    assert codes(counter) == {"timeout": 1.0}
    # 1.5 s allowed; the drip would go on for a minute. The margin is for a busy machine.
    assert took < 15, took


@pytest.mark.slow
def test_the_deadline_spans_redirect_hops():
    """Each hop answers well inside the timeout; two together exceed it by as much."""
    def slow_redirect(ex: Exchange) -> None:
        time.sleep(3.0)
        redirect(PATH + "ij-slow")(ex)
    with HostileAPI({"ij-slow": slow_redirect}) as api:
        result, _ = fetch(api.url, "ij-slow", timeout=4.5)
        asked = len(api.requests_for("ij-slow"))
    assert (result.reason, result.detail) == ("timeout", "no answer within 4.5s")
    # One deadline for all hops ends the fetch in the second; a deadline per hop would have let
    # all 4 hops the redirect limit allows go out (12 s), each 1.5 s inside its own.
    assert asked <= 2


# --- stale kept-alive connections ---------------------------------------------------------------


def close_kept_alive(ex: Exchange) -> None:
    """Answers the first request of a connection; closes on the next without a word."""
    if ex.request.number_on_connection == 1:
        good()(ex)
    else:
        ex.keep_alive = False


def test_a_kept_alive_connection_closed_by_the_server_is_retried_once():
    with HostileAPI({"ij-stale": close_kept_alive}) as api:
        client, counter = client_for(api.url)
        try:
            first = client.fetch_job("ij-stale", 5.0)
            second = client.fetch_job("ij-stale", 5.0)
        finally:
            client.close()
        seen = [(r.connection, r.number_on_connection) for r in api.requests]
    assert first.reason is None and second.reason is None
    assert seen == [(1, 1), (1, 2), (2, 1)]
    assert codes(counter) == {"200": 2.0}


def test_a_fresh_connection_closed_without_an_answer_is_not_retried():
    def hang_up(ex: Exchange) -> None:
        ex.keep_alive = False
    with HostileAPI({"ij-gone": hang_up}) as api:
        result, counter = fetch(api.url, "ij-gone")
        asked = len(api.requests)
    assert (result.reason, result.detail) == ("connection_error", "cannot reach the API (ConnectionError)")
    assert asked == 1
    assert codes(counter) == {"connection_error": 1.0}


# --- oversized labels ---------------------------------------------------------------------------


@pytest.mark.slow
def test_oversized_record_ids_are_cut_and_the_exposition_stays_small():
    job = json.loads(GOOD_BODY)
    template = job["file_records"][0]
    job["file_records"] = [dict(template, record_id=f"{i:03d}" + "r" * 100_000) for i in range(500)]
    body = json.dumps(job).encode()
    assert len(body) > 45 * MiB
    with HostileAPI({"ij-big": answer(200, body)}) as api:
        config = {"api": {"base_url": api.url, "timeout": "20s"}, "jobs": ["ij-big"],
                  "metrics": {"error_text_limit": 200}}
        with ExporterProcess(config, KEY) as exporter:
            text = exporter.scrape().text
    got = parse_exposition(text)
    ids = {dict(k)["record_id"] for k in series(got, "seekrflow_ingestion_file_info", job_id="ij-big")}
    assert ids == {f"{i:03d}" + "r" * 196 + "…" for i in range(500)}
    assert len(text.encode()) < 500_000


# --- a hung job does not hold every scrape to its deadline -------------------------------------


@pytest.mark.slow
def test_a_hung_request_fails_only_its_job_and_is_not_sent_again():
    """Through the process; that the scrape answers long before its budget, once only the hung
    request is left, is pinned on the poller's own clock in test_scrape.py."""
    release = threading.Event()

    def hung(ex: Exchange) -> None:
        release.wait(timeout=120)
        good()(ex)

    behaviours = {"ij-hung": hung, **{f"ij-{n}": good() for n in range(3)}}
    try:
        with HostileAPI(behaviours) as api:
            config = {"api": {"base_url": api.url, "timeout": "60s"}, "jobs": list(behaviours),
                      "scrape": {"timeout": "60s", "cache_ttl": "0s"}}
            with ExporterProcess(config, KEY) as exporter:
                header = {"X-Prometheus-Scrape-Timeout-Seconds": "20"}
                first = parse_exposition(exporter.scrape(header).text)
                second = parse_exposition(exporter.scrape(header).text)
                asked = len(api.requests_for("ij-hung"))
    finally:
        release.set()
    for got in (first, second):
        assert value(got, "seekrflow_exporter_scrape_timeout_seconds") == 19.5
        assert value(got, "seekrflow_ingestion_job_scrape_error_info", job_id="ij-hung", reason="timeout") == 1
        assert all(value(got, "seekrflow_ingestion_job_scrape_success", job_id=f"ij-{n}") == 1 for n in range(3))
    assert asked == 1  # the second scrape waited for the same request, it did not send another


# --- name resolution -------------------------------------------------------------------------


class Resolver:
    """Stands in for the system resolver (a hung DNS server cannot be run here): ``names`` resolve
    to loopback, any other name hangs until ``release``."""

    def __init__(self, names=()):
        self.names = set(names)
        self.asked = []
        self._released = threading.Event()

    def __call__(self, host, port, family=0, kind=0, *rest):
        self.asked.append(host)
        if host in self.names:
            return transport.socket.getaddrinfo("127.0.0.1", port, family, kind)
        self._released.wait(timeout=60)
        raise transport.socket.gaierror(-2, "Name or service not known")

    def release(self):
        self._released.set()


def test_a_name_that_does_not_resolve_in_time_fails_the_job_with_timeout(monkeypatch):
    resolver = Resolver()
    monkeypatch.setattr(transport, "_getaddrinfo", resolver)
    try:
        result, counter = fetch("http://api.seekrflow.invalid:80", "ij-running", timeout=0.5)
    finally:
        resolver.release()
    assert resolver.asked == ["api.seekrflow.invalid"]
    assert (result.reason, result.detail) == ("timeout", "no answer within 0.5s")
    assert codes(counter) == {"timeout": 1.0}


def test_a_name_is_resolved_off_the_request_thread_and_connected_to(monkeypatch):
    with HostileAPI({"ij-there": good()}) as api:
        port = api.url.rsplit(":", 1)[1]
        resolver = Resolver({"api.seekrflow.test"})
        monkeypatch.setattr(transport, "_getaddrinfo", resolver)
        try:
            result, counter = fetch(f"http://api.seekrflow.test:{port}", "ij-there")
        finally:
            resolver.release()
        assert api.requests[0].headers["host"] == f"api.seekrflow.test:{port}"
    assert resolver.asked == ["api.seekrflow.test"]
    assert result.reason is None and result.job is not None
    assert codes(counter) == {"200": 1.0}


@pytest.mark.slow
def test_the_deadline_holds_through_an_http_proxy(monkeypatch):
    # The proxy is the dripping server itself: the client never resolves the API's name, the
    # proxy would. Its answer drips as the API's would.
    with HostileAPI({"ij-drip": drip_body}) as proxy:
        for name in ("HTTP_PROXY", "http_proxy"):
            monkeypatch.setenv(name, proxy.url)
        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        result, counter = fetch("http://api.seekrflow.invalid", "ij-drip", timeout=1.5)
        asked = [r.path for r in proxy.requests]
    assert asked == ["http://api.seekrflow.invalid" + PATH + "ij-drip"]
    assert (result.reason, result.detail) == ("timeout", "body not received within 1.5s")
    assert codes(counter) == {"timeout": 1.0}
