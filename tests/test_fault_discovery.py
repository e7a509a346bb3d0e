"""The fault suite, discovery: a job list far longer than anyone should watch is capped at
discovery.max_jobs, the newest kept, the rest counted and logged once."""

import json
from datetime import datetime, timedelta, timezone

import pytest

from exporter.discovery import newest
from exporter.model import parse_job
from harness import ExporterProcess, peak_rss_mib
from hostile_api import HostileAPI, answer, good
from metric_samples import parse_exposition, series, value

KEY = "sk-test-fault-discovery-0e4a"


def listed_job(number: int, now: datetime) -> dict:
    """A finished job with no records, created ``number`` seconds ago: settled, so never fetched alone."""
    created = (now - timedelta(seconds=number)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"id": f"ij-{number:05d}", "created_at": created, "status": "completed", "output_files": [],
            "file_records": []}


def job_list(count: int) -> bytes:
    now = datetime.now(timezone.utc)
    return json.dumps({"object": "list", "data": [listed_job(n, now) for n in range(count)]}).encode()


def test_newest_keeps_the_most_recent_and_counts_the_rest():
    now = datetime(2026, 1, 15, tzinfo=timezone.utc)
    jobs = [parse_job(listed_job(n, now)) for n in range(5)]
    kept, invalid, over = newest(jobs, {"ij-broken": "bad", "ij-old": "bad"},
                                 {"ij-broken": None, "ij-old": now.timestamp() - 3600 * 24}, 4)
    assert [j.id for j in kept] == ["ij-00000", "ij-00001", "ij-00002", "ij-00003"]
    assert (invalid, over) == ({}, 3)
    kept, invalid, over = newest(jobs[:2], {"ij-broken": "bad"}, {"ij-broken": None}, 4)
    assert (len(kept), invalid, over) == (2, {"ij-broken": "bad"}, 0)


@pytest.mark.slow
def test_discovery_watches_at_most_max_jobs_the_newest_and_logs_once():
    with HostileAPI({"ingestion": answer(200, job_list(30)), "ij-conf": good()}) as api:
        config = {"api": {"base_url": api.url}, "jobs": ["ij-conf"],
                  "discovery": {"enabled": True, "interval": "0s", "max_jobs": 10}, "scrape": {"cache_ttl": "0s"}}
        with ExporterProcess(config, KEY) as exporter:
            exporter.scrape()
            got = parse_exposition(exporter.scrape().text)
        list_reads = len(api.requests_for("ingestion"))
    watched = {dict(k)["job_id"] for k in series(got, "seekrflow_ingestion_job_scrape_success")}
    assert watched == {"ij-conf"} | {f"ij-{n:05d}" for n in range(10)}
    assert value(got, "seekrflow_exporter_discovered_jobs") == 10
    assert value(got, "seekrflow_exporter_discovery_jobs_over_limit") == 20
    assert list_reads >= 2
    assert exporter.log.count("discovery.max_jobs reached") == 1


@pytest.mark.slow
def test_twenty_thousand_listed_jobs_cost_a_thousand():
    with HostileAPI({"ingestion": answer(200, job_list(20_000))}) as api:
        config = {"api": {"base_url": api.url, "timeout": "30s"},
                  "discovery": {"enabled": True}, "scrape": {"timeout": "30s"}}
        with ExporterProcess(config, KEY) as exporter:
            text = exporter.scrape(headers={"X-Prometheus-Scrape-Timeout-Seconds": "30"}).text
            peak = peak_rss_mib(exporter.proc.pid)
    got = parse_exposition(text)
    assert value(got, "seekrflow_exporter_discovered_jobs") == 1000
    assert value(got, "seekrflow_exporter_discovery_jobs_over_limit") == 19_000
    assert len(series(got, "seekrflow_ingestion_job_scrape_success")) == 1000
    assert peak < 250, f"peak RSS {peak:.0f} MiB"
