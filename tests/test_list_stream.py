"""Discovery that scales with the organisation: the job list is read as a stream, one job at a time,
and only what may be watched (discovery.max_jobs of the newest) is kept of it."""

import json
import logging
import subprocess
import sys
import textwrap
import time
import zlib
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter

from exporter.client import SeekrFlowClient
from exporter.config import ApiConfig, DiscoveryConfig
from exporter.discovery import ListKeeper, newest, watched_jobs
from exporter.joblist import JobList
from exporter.jsonstream import ItemTooLarge, ListItems
from exporter.model import InvalidResponse, parse_job
from exporter.results import ListResult
from exporter.selfmetrics import build_exporter_families
from harness import ROOT
from hostile_api import Exchange, HostileAPI
from metric_samples import samples_of, value

KEY = "sk-test-list-stream-4b1d"
NOW = datetime(2026, 1, 15, 12, tzinfo=timezone.utc)


def read_items(body: bytes, cuts: list[int], max_item: int = 10 ** 6) -> list:
    items = ListItems(max_item)
    found, start = [], 0
    for cut in sorted(cuts) + [len(body)]:
        found += items.feed(body[start:cut])
        start = cut
    return found + list(items.close())


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10 ** 20, 10 ** 20) | st.floats(allow_nan=False)
    | st.text(alphabet=st.sampled_from('ab"\\\n é✓\u2028{}[],:\ud7ff'), max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(st.lists(json_values, max_size=6), st.dictionaries(st.sampled_from(["object", "x", "has_more"]), json_values),
       st.data())
@pytest.mark.slow
def test_items_read_in_any_pieces_are_those_json_loads_reads(data, others, draw):
    body = json.dumps({**others, "data": data}, ensure_ascii=draw.draw(st.booleans()),
                      indent=draw.draw(st.sampled_from([None, 1, "\t"])),
                      separators=draw.draw(st.sampled_from([None, (",", ":"), (" , ", " : ")]))).encode()
    cuts = draw.draw(st.lists(st.integers(0, len(body)), max_size=8))
    assert read_items(body, cuts) == json.loads(body)["data"]


@pytest.mark.parametrize("body, error", [
    (b'{"data": [1, 2', json.JSONDecodeError),
    (b'{"data": [1 2]}', json.JSONDecodeError),
    (b'{"data": [1]} {}', json.JSONDecodeError),
    (b'{"data": [{"a": 1}, {"b": }]}', json.JSONDecodeError),
    (b'\xff{"data": []}', json.JSONDecodeError),
    (b'', json.JSONDecodeError),
    (b'[1, 2]', InvalidResponse),
    (b'{"data": {"id": "ij-1"}}', InvalidResponse),
    (b'{"data": "ij-1"}', InvalidResponse),
])
def test_what_json_loads_refuses_or_another_shape_is_refused(body, error):
    for cuts in ([], list(range(len(body)))):
        with pytest.raises(error):
            read_items(body, cuts)


def test_empty_null_and_missing_data_are_empty_lists_and_a_bom_is_skipped():
    assert read_items(b'{"object": "list", "data": null}', [3]) == []
    assert read_items(b'{"object": "list"}', [1]) == []
    assert read_items(b'{}', []) == []
    assert read_items('\ufeff{"data": [1]}'.encode(), [1, 2]) == [1]


def test_an_item_longer_than_the_cap_is_refused_without_waiting_for_its_end():
    items = ListItems(max_item=1000)
    list(items.feed(b'{"data": [{"id": "ij-1"}, {"filler": "'))
    with pytest.raises(ItemTooLarge):
        for _ in range(100):
            list(items.feed(b"x" * 100))


def settled(number: int, age: timedelta, records: int = 1, now: datetime = NOW) -> dict:
    """A completed job created ``number`` seconds before its end, which was ``age`` before ``now``."""
    end = now - age
    stamp = lambda moment: moment.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    return {"id": f"ij-{number:05d}", "status": "completed", "created_at": stamp(end - timedelta(seconds=number)),
            "output_files": [], "file_records": [
                {"record_id": f"r{number}-{i}", "filename": f"f{i}.pdf", "status": "completed",
                 "created_at": stamp(end - timedelta(seconds=number)), "processing_at": stamp(end),
                 "completed_at": stamp(end)} for i in range(records)]}


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 400), st.sampled_from([0, 1, 30]), st.sampled_from(["ok", "norec", "bad"])),
                max_size=25, unique_by=lambda t: t[0]),
       st.integers(1, 8))
def test_keeping_while_streaming_chooses_exactly_what_the_whole_list_would(listed, max_jobs):
    """ListKeeper plus the later choice give what watched_jobs and newest give over the whole list."""
    items = []
    for number, age_days, kind in listed:
        item = settled(number, timedelta(days=age_days))
        if kind == "norec":
            del item["file_records"]
        if kind == "bad":
            item["status"] = 7
        items.append(item)
    now, max_age = NOW.timestamp(), 7 * 86400.0

    def parsed(keep):
        for item in items:
            try:
                keep.add(parse_job(item))
            except InvalidResponse:
                keep.add_invalid(item["id"], "bad", parse_job({**item, "status": "x"}).created_at)
        return keep.result()

    def choose(result: ListResult):
        jobs, invalid = watched_jobs(result, now, max_age)
        created = {job_id: created_at for job_id, (_, created_at) in result.invalid.items()}
        jobs, invalid, over = newest(jobs, invalid, created, max_jobs)
        return sorted(j.id for j in jobs), sorted(invalid), over + result.left_out

    assert choose(parsed(ListKeeper(now, max_age, max_jobs))) == choose(parsed(ListKeeper()))


def client_for(url: str, **caps) -> SeekrFlowClient:
    counter = Counter("requests", "r", ["endpoint", "code"], registry=CollectorRegistry())
    return SeekrFlowClient(ApiConfig(base_url=url, api_key=KEY), counter, **caps)


def chunked(exchange: Exchange, pieces, gzipped: bool) -> None:
    """A 200 answer whose body is written piece by piece as ``pieces`` makes it, chunked."""
    head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
    exchange.send((head + ("Content-Encoding: gzip\r\n" if gzipped else "") + "\r\n").encode())
    packer = zlib.compressobj(1, zlib.DEFLATED, 31) if gzipped else None
    for piece in pieces:
        data = packer.compress(piece) if packer else piece
        if data and not exchange.send(b"%x\r\n%s\r\n" % (len(data), data)):
            return
    tail = packer.flush() if packer else b""
    exchange.send((b"%x\r\n%s\r\n" % (len(tail), tail) if tail else b"") + b"0\r\n\r\n")


def list_pieces(items):
    yield b'{"object": "list", "data": ['
    for index, item in enumerate(items):
        yield (b", " if index else b"") + json.dumps(item).encode()
    yield b"]}"


@pytest.mark.parametrize("gzipped", [False, True])
def test_the_client_reads_a_streamed_list_and_keeps_the_newest(gzipped):
    now = time.time()  # the real clock's, as the client's keeper judges the jobs by it
    items = [settled(n, timedelta(hours=1), records=3, now=datetime.fromtimestamp(now, timezone.utc))
             for n in range(50)]
    items.insert(10, {"id": "ij-broken", "status": "completed"})
    with HostileAPI({"ingestion": lambda ex: chunked(ex, list_pieces(items), gzipped)}) as api:
        client = client_for(api.url)
        result = client.list_jobs(10.0, ListKeeper(now, 7 * 86400.0, 5))
        everything = client.list_jobs(10.0)
        client.close()
    assert result.failure is None
    # The newest five by creation: ij-00000 is the newest; the broken one has no creation, so is oldest.
    assert sorted(job.id for job in result.jobs) == [f"ij-{n:05d}" for n in range(5)]
    assert (result.invalid, result.left_out) == ({}, 46)
    assert len(everything.jobs) == 50 and set(everything.invalid) == {"ij-broken"}
    assert [len(job.records) for job in result.jobs] == [3] * 5


@pytest.mark.parametrize("body, reason", [
    (b'{"data": [{"id": "ij-1"}, ', "invalid_json"),
    (b'{"data": {"id": "ij-1"}}', "invalid_schema"),
])
def test_a_broken_streamed_list_fails_the_read_with_its_reason(body, reason):
    with HostileAPI({"ingestion": lambda ex: chunked(ex, [body], False)}) as api:
        client = client_for(api.url)
        result = client.list_jobs(10.0)
        client.close()
    assert result.failure is not None and result.failure.reason == reason


@pytest.mark.parametrize("gzipped", [False, True])
def test_a_list_over_the_whole_cap_fails_the_read_and_says_so(gzipped, caplog):
    items = [settled(n, timedelta(hours=1), records=3) for n in range(50)]
    with HostileAPI({"ingestion": lambda ex: chunked(ex, list_pieces(items), gzipped)}) as api:
        client = client_for(api.url, max_list_bytes=20_000)
        result = client.list_jobs(10.0)
        client.close()
    assert result.failure is not None
    assert (result.failure.reason, result.failure.detail) == ("body_too_large", "HTTP 200 with a body over 20000 bytes")
    job_list = JobList(DiscoveryConfig(enabled=True))
    with caplog.at_level(logging.WARNING, logger="seekrflow_exporter.scrape"):
        assert job_list.accept(result, 0.0, NOW.timestamp(), {}) is None
    assert [(r.getMessage(), r.fields["reason"]) for r in caplog.records] == [("job list failed", "body_too_large")]
    got = samples_of(build_exporter_families(True, 0.1, 1.0, job_list.status))
    assert value(got, "seekrflow_exporter_discovery_success") == 0


@pytest.mark.slow
def test_the_deadline_still_bounds_a_list_that_never_ends():
    def endless(exchange: Exchange):
        def pieces():
            yield b'{"data": ['
            while True:
                yield json.dumps(settled(1, timedelta(0))).encode() + b", "
                time.sleep(0.01)
        chunked(exchange, pieces(), False)

    with HostileAPI({"ingestion": endless}) as api:
        client = client_for(api.url)
        started = time.monotonic()
        result = client.list_jobs(1.0)
        took = time.monotonic() - started
        client.close()
    assert result.failure is not None and result.failure.reason == "timeout"
    assert took < 20  # ended by the deadline, not by the server


READER = textwrap.dedent("""
    import json, sys, time
    from prometheus_client import CollectorRegistry, Counter
    from exporter.client import SeekrFlowClient
    from exporter.config import ApiConfig, DiscoveryConfig
    from exporter.discovery import ListKeeper

    def status(field):
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    counter = Counter("requests", "r", ["endpoint", "code"], registry=CollectorRegistry())
    client = SeekrFlowClient(ApiConfig(base_url=sys.argv[1], api_key=sys.argv[2], request_timeout=600), counter)
    before = status("VmRSS")
    started = time.monotonic()
    result = client.list_jobs(600.0, ListKeeper(time.time(), 7 * 86400.0, 1000))
    print(json.dumps({"seconds": time.monotonic() - started, "before": before, "peak": status("VmHWM"),
                      "failure": result.failure and result.failure.detail,
                      "jobs": len(result.jobs), "records": sum(len(j.records) for j in result.jobs),
                      "left_out": result.left_out}))
""")


@pytest.mark.slow
def test_a_list_of_twenty_thousand_jobs_of_twenty_files_is_read_in_under_100_mb():
    """The list (about 150 MB of JSON, gzipped on the wire) is made as it is sent; the reader runs in
    a process of its own, whose resident memory before and at its peak come from /proc."""
    now = datetime.now(timezone.utc)

    def job(n: int) -> dict:
        end = now - timedelta(minutes=1 + n % 600)
        created = end - timedelta(hours=1)
        stamp = lambda moment: moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # noqa: E731
        return {"id": f"ij-{n:05d}-4a6f-9c1e-{n:012d}", "status": "completed", "created_at": stamp(created),
                "output_files": [f"out-{n}-{i}.md" for i in range(20)],
                "file_records": [{"record_id": f"ijf-{n:05d}-{i:02d}-7d2c-4e1b", "filename": f"report-{n}-{i}.pdf",
                                  "status": "failed" if i == 7 else "completed", "method": "docling",
                                  "worker_id": f"worker-{i % 8}", "queue_position": None, "deleted": False,
                                  "error_message": "could not read page 3" if i == 7 else None,
                                  "suggested_fix": "upload a text PDF" if i == 7 else None,
                                  "created_at": stamp(created), "processing_at": stamp(created + timedelta(minutes=5)),
                                  "completed_at": None if i == 7 else stamp(end),
                                  "failed_at": stamp(end) if i == 7 else None} for i in range(20)]}

    sent = {"bytes": 0}

    def counted(pieces):
        for piece in pieces:
            sent["bytes"] += len(piece)
            yield piece

    with HostileAPI({"ingestion": lambda ex: chunked(ex, counted(list_pieces(job(n) for n in range(20_000))),
                                                     True)}) as api:
        reader = subprocess.run([sys.executable, "-c", READER, api.url, KEY], cwd=ROOT, capture_output=True,
                                text=True, timeout=900)
    assert reader.returncode == 0, reader.stderr
    got = json.loads(reader.stdout)
    assert got["failure"] is None
    assert (got["jobs"], got["records"], got["left_out"]) == (1000, 20_000, 19_000)
    assert sent["bytes"] > 100 * 1024 * 1024  # the list is longer than the memory it may take
    growth = got["peak"] - got["before"]
    print(f"list of {sent['bytes'] / 2 ** 20:.0f} MiB: RSS {got['before']:.0f} MiB before, "
          f"peak {got['peak']:.0f} MiB, growth {growth:.0f} MiB, read in {got['seconds']:.1f} s")
    assert growth < 100, f"RSS grew by {growth:.0f} MiB"
