"""Render once, join on every scrape: the joined exposition is exactly what prometheus_client writes.

For generated worlds (settled jobs kept as rendered pieces, unfinished jobs, failing and stale jobs,
label values with quotes, backslashes, newlines and non-ASCII text), in both formats, plain and
gzipped, the body equals the library's encoding of ``build_job_families`` over the same snapshots,
byte for byte, and both parse to the same series with the library's parsers.
"""

import gzip
import subprocess
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter.cardinality import PER_FILE_POLICIES
from exporter.config import MetricsConfig
from exporter.exposition import MIN_KEPT_CHUNK, OPENMETRICS, TEXT, Exposition, Renderer
from exporter.gzipstream import Chunk, deflate, inflate
from exporter.metrics import FamiliesCollector, build_job_families
from exporter.model import JobSnapshot, RenderedJob, parse_job
from exporter.selfmetrics import build_exporter_families

T0 = 1768487400.0
STAMP = "2026-01-15T14:{:02d}:{:02d}.{:06d}Z"

texts = st.text(alphabet=st.sampled_from('ab"\\\n é✓\u2028{}=,'), max_size=12)
moments = st.tuples(st.integers(0, 59), st.integers(0, 59), st.integers(0, 999_999)).map(lambda t: STAMP.format(*t))


@st.composite
def records(draw, index):
    status = draw(st.sampled_from(["queued", "processing", "completed", "failed", "cancelled", "odd"]))
    created = draw(moments)
    started = draw(st.none() | moments) if status != "queued" else None
    return {
        "record_id": f"r{index}" if draw(st.integers(0, 9)) else "r0",  # the odd duplicate ID
        "filename": draw(texts), "status": status, "created_at": created,
        "method": draw(st.none() | texts), "worker_id": draw(st.none() | texts),
        "queue_position": draw(st.none() | st.integers(0, 50)) if status == "queued" else None,
        "error_message": draw(st.none() | texts) if status == "failed" else None,
        "suggested_fix": draw(st.none() | texts),
        "deleted": draw(st.booleans()) if not draw(st.integers(0, 5)) else False,
        "processing_at": started,
        "completed_at": draw(moments) if status == "completed" else None,
        "failed_at": draw(moments) if status == "failed" else None,
    }


@st.composite
def jobs(draw, job_id):
    count = draw(st.integers(0, 6))
    # The answer's own ID may differ from the one asked for; the series carry the one asked for.
    body = {"id": draw(st.sampled_from([job_id, "ij-other"])),
            "status": draw(st.sampled_from(["queued", "running", "completed", "failed", "paused"])),
            "created_at": draw(moments), "output_files": ["x"] * draw(st.integers(0, 3)),
            "file_records": [draw(records(i)) for i in range(count)]}
    return parse_job(body)


@st.composite
def worlds(draw):
    names = st.sampled_from(["seekrflow_ingestion_file_.*", "seekrflow_ingestion_job_status",
                             "seekrflow_ingestion_job_file_queue_wait_seconds", ".*scrape.*", "seekrflow_.*_info"])
    allow = tuple(draw(st.lists(names, max_size=2)))
    metrics = MetricsConfig(per_file=draw(st.sampled_from(PER_FILE_POLICIES)),
                            per_file_window=draw(st.sampled_from([60.0, 3600.0, 1e9])),
                            per_file_limit=draw(st.integers(1, 5)),
                            record_status_limit=draw(st.integers(0, 2)), error_text_limit=draw(st.integers(2, 8)),
                            processing_duration_buckets=(1.0, 60.0, 1e6), queue_wait_buckets=(0.5, 300.0),
                            allow=allow, deny=() if allow else tuple(draw(st.lists(names, max_size=2))))
    snapshots = []
    for n in range(draw(st.integers(0, 5))):
        job_id = f'ij-{n}"\\' if n == 3 else f"ij-{n}"
        job = draw(st.none() | jobs(job_id))
        fresh = job is not None and draw(st.booleans())
        error = None if fresh else draw(st.sampled_from([None, "timeout", "http_503"]))
        snapshots.append(JobSnapshot(job_id, job, fresh, error, draw(st.none() | st.just(T0 + n))))
    return metrics, snapshots


def kept(renderer, snapshots):
    """The snapshots as the poller holds them: jobs rendered once, their records dropped. Settled
    jobs as when they ended; unfinished ones when their answer came (``T0``), filled in by a later
    scrape; every other unfinished job as a parsed answer, rendered by the scrape itself (as
    without a keeper)."""
    held = []
    for n, s in enumerate(snapshots):
        if s.job is not None and s.job.is_settled:
            s = replace(s, job=renderer.render_kept(s.job_id, s.job))
        elif s.job is not None and n % 2 == 0:
            s = replace(s, job=renderer.render_kept(s.job_id, s.job, T0, digest=b"d"))
        held.append(s)
    return held


def tail():
    return build_exporter_families(True, 0.25, 9.5)


def library(snapshots, now, metrics, fmt):
    families = build_job_families(snapshots, now, metrics) + tail()
    encode = generate_openmetrics if fmt == OPENMETRICS else generate_latest
    return encode(FamiliesCollector(families))


def series(text, fmt):
    parse = parse_openmetrics if fmt == OPENMETRICS else parse_text
    return sorted((s.name, sorted(s.labels.items()), s.value) for family in parse(text.decode()) for s in family.samples)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds(), st.floats(0, 7200))
def test_joined_pieces_are_exactly_what_prometheus_client_writes(world, later):
    metrics, snapshots = world
    renderer = Renderer(metrics)
    held = kept(renderer, snapshots)
    now = T0 + later  # the settled pieces were rendered earlier; nothing in them may depend on it
    for fmt in (TEXT, OPENMETRICS):
        expected = library(snapshots, now, metrics, fmt)
        body = b"".join(renderer.body(renderer.render_round(held, now), fmt, False, tail()))
        assert body == expected
        assert gzip.decompress(b"".join(renderer.body(renderer.render_round(held, now), fmt, True, tail()))) == expected
        assert series(body, fmt) == series(expected, fmt)


def test_settled_jobs_keep_no_records_and_every_family_stays_under_one_header():
    metrics = MetricsConfig()
    settled = parse_job({"id": "ij-a", "status": "completed", "created_at": STAMP.format(0, 0, 0), "output_files": [],
                         "file_records": [{"record_id": f"r{i}", "filename": "a.pdf", "status": "completed",
                                           "created_at": STAMP.format(0, 0, 0), "processing_at": STAMP.format(0, 1, 0),
                                           "completed_at": STAMP.format(1, i, 0)} for i in range(30)]})
    running = replace(settled, id="ij-b", status="running")
    renderer = Renderer(metrics)
    rendered = renderer.render_kept("ij-a", settled)
    assert isinstance(rendered, RenderedJob) and not hasattr(rendered, "records")
    # Its long pieces are held deflated only; a plain answer inflates them as it is sent.
    kept_pieces = [piece for fmt in (TEXT, OPENMETRICS) for piece in rendered.pieces.lines[fmt]]
    assert any(isinstance(piece, Chunk) for piece in kept_pieces)
    assert all(isinstance(piece, Chunk) or len(piece) < MIN_KEPT_CHUNK for piece in kept_pieces)
    snapshots = [JobSnapshot("ij-a", rendered, True), JobSnapshot("ij-b", running, True)]
    text = b"".join(renderer.body(renderer.render_round(snapshots, T0), TEXT, False, tail())).decode()
    helps = [line.split()[2] for line in text.splitlines() if line.startswith("# HELP")]
    assert len(helps) == len(set(helps))
    names = [line.split("{")[0].split(" ")[0] for line in text.splitlines() if not line.startswith("#")]
    # Contiguous: once a name gives way to another, it never comes back.
    runs = [name for i, name in enumerate(names) if i == 0 or names[i - 1] != name]
    assert len(runs) == len(set(runs))
    assert 'seekrflow_ingestion_file_info{filename="a.pdf",job_id="ij-a"' in text
    assert 'seekrflow_ingestion_file_info{filename="a.pdf",job_id="ij-b"' in text


def test_promtool_finds_nothing_to_lint_in_a_joined_exposition(tmp_path):
    metrics = MetricsConfig()
    renderer = Renderer(metrics)
    world = [JobSnapshot(f"ij-{n}", parse_job({
        "id": f"ij-{n}", "status": "completed" if n % 2 else "running", "created_at": STAMP.format(0, 0, 0),
        "output_files": [], "file_records": [{"record_id": f"r{i}", "filename": 'a "b".pdf', "status": "failed",
                                              "created_at": STAMP.format(0, 0, 0), "processing_at": STAMP.format(0, 1, 0),
                                              "failed_at": STAMP.format(1, i, 0), "error_message": "bad\\file\n"}
                                             for i in range(5)]}), True) for n in range(4)]
    body = b"".join(renderer.body(renderer.render_round(kept(renderer, world), T0), TEXT, False, tail()))
    done = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_pieces_rendered_for_other_settings_are_refused():
    job = parse_job({"id": "ij-a", "status": "failed", "created_at": STAMP.format(0, 0, 0), "output_files": [],
                     "file_records": []})
    rendered = Renderer(MetricsConfig()).render_kept("ij-a", job)
    with pytest.raises(ValueError):
        Renderer(MetricsConfig(per_file="none")).render_round([JobSnapshot("ij-a", rendered, True)], T0)


def test_a_kept_job_loses_its_per_file_series_when_the_recent_window_passes():
    metrics = MetricsConfig(per_file="recent", per_file_window=600.0)
    job = parse_job({"id": "ij-a", "status": "failed", "created_at": STAMP.format(0, 0, 0), "output_files": [],
                     "file_records": [{"record_id": "r1", "filename": "a.pdf", "status": "failed",
                                       "created_at": STAMP.format(0, 0, 0), "processing_at": STAMP.format(0, 1, 0),
                                       "failed_at": STAMP.format(0, 2, 0), "error_message": "bad scan"}]})
    ended = job.ended_at
    renderer = Renderer(metrics)
    for kept_at in (ended + 1, None):
        held = [JobSnapshot("ij-a", renderer.render_kept("ij-a", job, kept_at), True)]
        for now, has_files in ((ended + 600, True), (ended + 601, False)):
            for fmt in (TEXT, OPENMETRICS):
                body = b"".join(renderer.body(renderer.render_round(held, now), fmt, False, tail()))
                assert body == library([JobSnapshot("ij-a", job, True)], now, metrics, fmt)
                assert (b"seekrflow_ingestion_file_error_info{" in body) is has_files
    # Kept after the window: its per-file text is not held at all.
    late = renderer.render_kept("ij-a", job, ended + 601)
    kept_text = b"".join(inflate(piece) if isinstance(piece, Chunk) else piece for piece in late.pieces.lines[TEXT])
    assert b"seekrflow_ingestion_job_files{" in kept_text and b"bad scan" not in kept_text
    # Kept within the window and read again unchanged after it: its per-file text goes then.
    early = renderer.render_kept("ij-a", job, ended + 1)
    assert renderer.trimmed(early, ended + 600) is early
    trimmed = renderer.trimmed(early, ended + 601)
    kept_text = b"".join(inflate(piece) if isinstance(piece, Chunk) else piece for piece in trimmed.pieces.lines[TEXT])
    assert b"seekrflow_ingestion_job_files{" in kept_text and b"bad scan" not in kept_text
    assert (trimmed.digest, trimmed.ended_at) == (early.digest, early.ended_at)


def test_a_plain_answer_inflates_its_kept_pieces_into_few_large_writes():
    kept = deflate(b"seekrflow_ingestion_file_info 1.0\n" * 150)
    body = Exposition([b"# HELP x y\n", kept] * 500 + [b"# EOF\n"])
    writes = list(body)
    sent = b"".join(writes)
    assert sent == (b"# HELP x y\n" + b"seekrflow_ingestion_file_info 1.0\n" * 150) * 500 + b"# EOF\n"
    assert body.size == len(sent)
    assert all(len(write) >= Exposition.WRITE_SIZE for write in writes[:-1])
    assert len(writes) == len(sent) // Exposition.WRITE_SIZE + 1
