"""Sharding: each job belongs to exactly one shard, and three shards scraped by a real Prometheus
add up to exactly what one unsharded exporter gives."""

import contextlib
import subprocess
import sys
import time
from pathlib import Path

import pytest

from exporter.discovery import ListKeeper
from exporter.model import parse_job
from exporter.sharding import Shard, fnv1a_64, ordinal_of
from exporter.simulator import SimulatedWorld, SimulatorServer
from exporter.simulator.datajobs import SimulatedDataJobs
from harness import ROOT, ExporterProcess
from metric_samples import parse_exposition, series, value
from promstack import PrometheusServer

KEY = "sk-test-shards-77e0"
RULES = sorted((Path(ROOT) / "prometheus" / "rules").glob("*.rules.yml"))


def test_fnv1a_64_is_the_published_function():
    assert fnv1a_64(b"") == 0xCBF29CE484222325
    assert fnv1a_64(b"a") == 0xAF63DC4C8601EC8C
    assert fnv1a_64(b"foobar") == 0x85944171F73967E8


def test_every_job_belongs_to_exactly_one_shard_and_the_split_is_even():
    ids = [f"ij-{n:05d}-{'x' * (n % 7)}" for n in range(3000)]
    shards = [Shard(i, 3) for i in range(3)]
    owners = [[s.index for s in shards if s.owns(job_id)] for job_id in ids]
    assert all(len(found) == 1 for found in owners)
    sizes = [sum(1 for found in owners if found == [i]) for i in range(3)]
    assert min(sizes) > 900  # 1000 each on average
    assert all(Shard(0, 1).owns(job_id) for job_id in ids)


@pytest.mark.parametrize("name, ordinal", [("seekrflow-exporter-0", 0), ("seekrflow-exporter-12", 12),
                                           ("a-b-3\n", 3)])
def test_the_ordinal_ends_the_pod_name(name, ordinal):
    assert ordinal_of(name) == ordinal


@pytest.mark.parametrize("args, env, error", [
    (["--shard", "3", "--total-shards", "3"], {}, "--shard must be between 0 and --total-shards - 1 (2), got 3"),
    (["--total-shards", "0"], {}, "--total-shards must be between 1 and 1000, got 0"),
    (["--shard-from-pod-name", "--total-shards", "2"], {"POD_NAME": "exporter"},
     "cannot take a shard from pod name 'exporter': it must end in -<ordinal>"),
    (["--shard-from-pod-name", "--shard", "1", "--total-shards", "2"], {}, "--shard and --shard-from-pod-name exclude"),
])
def test_a_bad_shard_flag_stops_startup_with_one_line(tmp_path, args, env, error):
    config = tmp_path / "config.yaml"
    config.write_text("jobs: [ij-1]\n")
    done = subprocess.run([sys.executable, "-m", "exporter", "--config.file", str(config), *args],
                          cwd=ROOT, env={"SEEKR_API_KEY": "sk-test-key", "PATH": "/usr/bin:/bin", **env},
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and error in lines[0], done.stderr


def frozen_world(jobs: int, now: float, data_jobs: int = 0) -> tuple[dict[str, dict], dict[str, dict]]:
    """Job and data-job bodies frozen at one moment: every exporter sees exactly the same numbers."""
    world = SimulatedWorld(jobs=jobs, files_per_job=12, seed=21, failure_rate=0.25, started_at=now - 120)
    grouped = SimulatedDataJobs(world, data_jobs)
    return ({job_id: world.job_response(job_id, now) for job_id in world.job_ids()},
            {data_job_id: grouped.detail(data_job_id, now) for data_job_id in grouped.ids()})


def prometheus_for(stack, *exporters):
    scrape = {"job_name": "seekrflow", "scrape_interval": "1s", "scrape_timeout": "1s",
              "static_configs": [{"targets": [e.url.removeprefix("http://") for e in exporters]}]}
    prometheus = stack.enter_context(PrometheusServer(scrape_configs=[scrape], rule_files=RULES))
    prometheus.wait_for('up{job="seekrflow"} == 1', lambda rows: len(rows) == len(exporters))
    return prometheus


def recorded(prometheus, names):
    """Every recording rule's series, by its labels without the scrape target's."""
    out = {}
    for name in names:
        for row in prometheus.query(name):
            labels = tuple(sorted((k, v) for k, v in row["metric"].items() if k not in ("instance",)))
            out[labels] = round(float(row["value"][1]), 9)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("data_jobs", [0, 4], ids=["ingestion-jobs", "with-data-jobs"])
def test_three_shards_add_up_to_exactly_one_unsharded_exporter(data_jobs):
    # With data jobs, every ingestion job is nested in one of them and also in the job list.
    bodies, data_bodies = frozen_world(15, time.time(), data_jobs)
    config = {"discovery": {"enabled": True}, "jobs": [], "data_jobs": {"enabled": bool(data_jobs)}}
    with contextlib.ExitStack() as stack:
        api = stack.enter_context(SimulatorServer(SimulatedWorld(jobs=0), KEY, fixtures=bodies,
                                                  data_job_fixtures=data_bodies))
        config["api"] = {"base_url": api.url}
        single = stack.enter_context(ExporterProcess(config, KEY))
        shards = [stack.enter_context(ExporterProcess(config, KEY, extra_args=["--shard", str(i), "--total-shards", "3"]))
                  for i in range(2)]
        # The third takes its shard from its pod name, as in a StatefulSet.
        shards.append(stack.enter_context(ExporterProcess(
            config, KEY, extra_args=["--shard-from-pod-name", "--total-shards", "3"],
            env={"POD_NAME": "seekrflow-exporter-2"})))

        served, served_data_jobs, links = [], [], []
        for index, exporter in enumerate(shards):
            got = parse_exposition(exporter.scrape().text)
            assert value(got, "seekrflow_exporter_shard_ordinal") == index
            assert value(got, "seekrflow_exporter_total_shards") == 3
            served.append({dict(k)["job_id"] for k in series(got, "seekrflow_ingestion_job_scrape_success")})
            served_data_jobs.append({dict(k)["data_job_id"] for k in series(got, "seekrflow_data_job_info")})
            links.extend(series(got, "seekrflow_ingestion_job_info"))
        everything = parse_exposition(single.scrape().text)
        assert value(everything, "seekrflow_exporter_total_shards") == 1
        all_jobs = {dict(k)["job_id"] for k in series(everything, "seekrflow_ingestion_job_scrape_success")}
        assert all_jobs == set(bodies)
        # Each ingestion job on exactly one shard, whether nested in a data job or not.
        assert sum(len(jobs) for jobs in served) == len(all_jobs) and set().union(*served) == all_jobs
        assert all(served)  # 15 jobs: every shard has some
        # Each data job, with its links to its ingestion jobs, on exactly one shard.
        assert sum(len(ids) for ids in served_data_jobs) == len(data_bodies)
        assert set().union(*served_data_jobs) == set(data_bodies)
        assert sorted(map(sorted, links)) == sorted(map(sorted, series(everything, "seekrflow_ingestion_job_info")))
        assert len(links) == (len(bodies) if data_jobs else 0)

        one = prometheus_for(stack, single)
        three = prometheus_for(stack, *shards)
        names = sorted({line.split("record:")[1].strip() for path in RULES for line in path.read_text().splitlines()
                        if line.strip().startswith("- record:")})
        # The rules evaluate every second; the rates need two scrapes. Wait until both have them all.
        for prometheus in (one, three):
            prometheus.wait_for("job_id:seekrflow_ingestion_job_files_finished:per_minute5m",
                                lambda rows: len(rows) == len(all_jobs))
            prometheus.wait_for(":seekrflow_ingestion_job_files_finished:per_minute5m")
        assert recorded(three, names) == recorded(one, names)
        totals = {"sum(seekrflow_ingestion_job_files)", "count(seekrflow_ingestion_job_status == 1)",
                  "sum(seekrflow_ingestion_job_file_processing_duration_seconds_gcount)",
                  "count(seekrflow_ingestion_job_info) or vector(0)", "count(seekrflow_data_job_status == 1) or vector(0)"}
        for expr in totals:
            assert three.query(expr)[0]["value"][1] == one.query(expr)[0]["value"][1], expr


def test_a_shard_keeps_only_its_own_listed_jobs_and_max_jobs_counts_those():
    shard = Shard(1, 3)
    jobs = [parse_job({"id": f"ij-{n:04d}", "status": "running", "created_at": f"2026-01-15T14:{n // 60:02d}:{n % 60:02d}Z",
                       "output_files": [], "file_records": []}) for n in range(300)]
    keeper = ListKeeper(now=1768487400.0 + 3600, max_age=86400.0, max_jobs=20, owns=shard.owns)
    for job in jobs:
        keeper.add(job)
    keeper.add_invalid("ij-broken-9", "no id", None)
    kept = keeper.result()
    own = [job for job in jobs if shard.owns(job.id)]
    # The newest 20 of this shard's own jobs, none of another shard's.
    assert {job.id for job in kept.jobs} == {job.id for job in sorted(own, key=lambda j: j.created_at)[-20:]}
    assert kept.left_out == len(own) + int(shard.owns("ij-broken-9")) - 20


def test_sharded_data_jobs_without_discovery_stop_startup_with_one_line(tmp_path):
    # A shard finds its ingestion jobs nested in another shard's data job only in the job list.
    config = tmp_path / "config.yaml"
    config.write_text("data_jobs:\n  jobs: [dj-1]\n")
    done = subprocess.run([sys.executable, "-m", "exporter", "--config.file", str(config), "--shard", "1",
                           "--total-shards", "2"],
                          cwd=ROOT, env={"SEEKR_API_KEY": "sk-test-key", "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "discovery.enabled: must be true when data jobs are watched" in lines[0], done.stderr


def test_the_sharded_data_jobs_rule_holds_for_each_config_alone():
    from exporter.config import Config, ConfigError, DataJobsConfig, DiscoveryConfig
    from exporter.sharding import check_sharded_config

    without_discovery = Config(jobs=(), data_jobs=DataJobsConfig(enabled=True))
    with_discovery = Config(jobs=(), data_jobs=DataJobsConfig(enabled=True), discovery=DiscoveryConfig(enabled=True))
    assert check_sharded_config(without_discovery, Shard(0, 1)) is without_discovery
    assert check_sharded_config(with_discovery, Shard(1, 3)) is with_discovery
    assert check_sharded_config(Config(jobs=("ij-1",)), Shard(1, 3)).jobs == ("ij-1",)
    with pytest.raises(ConfigError) as refused:
        check_sharded_config(without_discovery, Shard(1, 3))
    assert refused.value.path == "discovery.enabled"
