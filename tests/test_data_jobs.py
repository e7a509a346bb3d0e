"""Data jobs: configuration, paged list reads, one request per ingestion job per round, exact metrics."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry, Counter

from exporter.client import SeekrFlowClient
from exporter.config import ApiConfig, ConfigError, DataJobsConfig, DiscoveryConfig, MetricsConfig, ScrapeConfig, build_config
from exporter.datajob import parse_data_job
from exporter.datajobmetrics import build_data_job_families
from exporter.metrics import build_job_families
from exporter.model import JobSnapshot
from exporter.scrape import JobPoller
from exporter.selfmetrics import build_exporter_families
from exporter.simulator import SimulatedWorld, SimulatorServer
from exporter.simulator.datajobs import SimulatedDataJobs
from hostile_api import HostileAPI, http
from metric_samples import samples_of, series, value

KEY = "sk-test-data-jobs-91ac"
T0 = 1768487400.0  # 2026-01-15T14:30:00Z
LIST = "/v1/flow/data-jobs"
DETAIL = "/v1/flow/data-jobs/{id}"
JOB = "/v1/flow/alignment/ingestion/{id}"
INGESTION_LIST = "/v1/flow/alignment/ingestion"


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- configuration -------------------------------------------------------------------------------


def config(raw: dict):
    return build_config(raw, {"SEEKR_API_KEY": "sk-test-key"})


def test_data_jobs_are_off_by_default_and_configured_ids_are_watched_without_the_list():
    assert config({"jobs": ["ij-1"]}).data_jobs == DataJobsConfig(enabled=False, jobs=())
    assert config({"data_jobs": {"enabled": True}}).data_jobs == DataJobsConfig(True, ())
    only_ids = config({"data_jobs": {"jobs": ["dj-1", "dj-2"]}})
    assert (only_ids.jobs, only_ids.data_jobs) == ((), DataJobsConfig(False, ("dj-1", "dj-2")))


@pytest.mark.parametrize("raw, message", [
    ({"data_jobs": {"enabled": "yes"}}, "data_jobs.enabled: must be true or false, got 'yes'"),
    ({"data_jobs": {"jobs": "dj-1"}}, "data_jobs.jobs: must be a non-empty list of data job IDs, got 'dj-1'"),
    ({"data_jobs": {"jobs": ["dj-1", "dj-1"]}}, "data_jobs.jobs[1]: duplicate job ID 'dj-1'"),
    ({"data_jobs": {"jobs": ["dj/1"]}}, "data_jobs.jobs[0]: 'dj/1' is not a valid job ID"),
    ({"data_jobs": {"interval": "5m"}}, "data_jobs.interval: unknown key (allowed: enabled, jobs)"),
    ({"data_jobs": {"enabled": False}}, "jobs: is required"),
])
def test_data_job_mistakes_name_the_key(raw, message):
    with pytest.raises(ConfigError) as caught:
        config(raw)
    assert str(caught.value).startswith(message)


# --- the client reads the list page by page --------------------------------------------------------


@pytest.mark.parametrize("count, pages", [(0, 1), (99, 1), (100, 2), (250, 3)])
def test_the_list_is_read_page_by_page_until_a_short_page(count, pages):
    world = SimulatedWorld(jobs=0, files_per_job=1, started_at=T0)
    data_jobs = SimulatedDataJobs(world, count)
    with SimulatorServer(world, KEY, data_jobs=data_jobs, clock=Clock(T0)) as simulator:
        client = SeekrFlowClient(ApiConfig(base_url=simulator.url, api_key=KEY),
                                 Counter("r", "r", ["endpoint", "code"], registry=CollectorRegistry()))
        listed = client.list_data_jobs(10.0)
        client.close()
        assert simulator.requests == {LIST: pages}
    assert listed.failure is None
    assert sorted(job.id for job in listed.jobs) == sorted(data_jobs.ids())


# --- the poller ----------------------------------------------------------------------------------


def poller_for(simulator, clock, wall, jobs=(), data_jobs=DataJobsConfig(enabled=True), discovery=None, **scrape):
    api = ApiConfig(base_url=simulator.url, api_key=KEY, request_timeout=5.0)
    client = SeekrFlowClient(api, Counter("r", "r", ["endpoint", "code"], registry=CollectorRegistry()))
    return JobPoller(jobs, client, ScrapeConfig(cache_ttl=0.0, **scrape), api,
                     discovery or DiscoveryConfig(interval=300.0, max_age=7 * 86400.0),
                     monotonic=clock, wall_clock=wall, data_jobs=data_jobs)


@pytest.fixture
def world():
    # Four ingestion jobs in two data jobs, mid-run at T0 + 60.
    return SimulatedWorld(jobs=4, files_per_job=5, seed=3, started_at=T0, staggered=False)


def test_each_ingestion_job_is_read_once_per_round_through_its_data_job(world):
    data_jobs = SimulatedDataJobs(world, 2)
    sim_clock, clock, wall = Clock(T0 + 60), Clock(1000.0), Clock(T0 + 60)
    configured = world.job_ids()[0]  # also configured directly, and listed by ingestion discovery
    with SimulatorServer(world, KEY, data_jobs=data_jobs, clock=sim_clock) as simulator:
        poller = poller_for(simulator, clock, wall, jobs=[configured],
                            discovery=DiscoveryConfig(enabled=True, interval=300.0, max_age=7 * 86400.0))
        try:
            first = poller.scrape(clock() + 30)
            assert [s.job_id for s in first.data_jobs] == sorted(data_jobs.ids())
            assert all(s.fresh for s in first.data_jobs)
            assert {s.job_id for s in first.snapshots} == set(world.job_ids())
            assert all(s.fresh for s in first.snapshots)
            # Round one: both lists, both data jobs; the configured job once on its own (which
            # data job holds it was not known yet).
            assert simulator.requests == {LIST: 1, INGESTION_LIST: 1, DETAIL: 2, JOB: 1}
            for _ in range(3):
                clock.now += 10
                sim_clock.now += 10
                poller.scrape(clock() + 30)
            # Later rounds: the data jobs' answers are their ingestion jobs' data.
            assert simulator.requests == {LIST: 1, INGESTION_LIST: 1, DETAIL: 8, JOB: 1}
        finally:
            poller.close()


def test_a_failing_data_job_leaves_its_ingestion_jobs_to_their_own_fetches(world):
    data_jobs = SimulatedDataJobs(world, 2)
    failing = data_jobs.ids()[0]
    sim_clock, clock, wall = Clock(T0 + 60), Clock(1000.0), Clock(T0 + 60)
    with SimulatorServer(world, KEY, data_jobs=data_jobs, clock=sim_clock) as simulator:
        poller = poller_for(simulator, clock, wall, data_jobs=DataJobsConfig(jobs=(failing,)))
        try:
            poller.scrape(clock() + 30)
            assert simulator.requests == {DETAIL: 1}
            simulator._faults[failing] = ("http_500", 0.0)
            clock.now += 10
            second = poller.scrape(clock() + 30)
            (snapshot,) = second.data_jobs
            assert (snapshot.fresh, snapshot.error) == (False, "http_500")
            clock.now += 10
            third = poller.scrape(clock() + 30)
            # While it fails, its unfinished ingestion jobs are fetched on their own (a settled one
            # only every finished_job_refresh), and all stay fresh.
            nested = set(data_jobs.ingestion_job_ids(failing))
            unsettled = {s.job_id for s in second.snapshots if not s.job.is_settled}
            assert unsettled and unsettled <= nested
            assert simulator.job_requests == {failing: 3, **{j: 1 for j in unsettled}}
            assert {s.job_id for s in third.snapshots if s.fresh} == nested
        finally:
            poller.close()


def test_nested_records_give_exactly_the_metrics_of_a_directly_fetched_job(world):
    data_jobs = SimulatedDataJobs(world, 2)
    settings = MetricsConfig()
    for moment in (T0 + 5, T0 + 60, T0 + 3600):
        sim_clock, wall = Clock(moment), Clock(moment)
        with SimulatorServer(world, KEY, data_jobs=data_jobs, clock=sim_clock) as simulator:
            through_data_jobs = poller_for(simulator, Clock(1000.0), wall)
            direct = poller_for(simulator, Clock(1000.0), wall, jobs=world.job_ids(), data_jobs=None)
            try:
                nested = through_data_jobs.scrape(1030.0)
                fetched = direct.scrape(1030.0)
            finally:
                through_data_jobs.close()
                direct.close()
        assert sorted(s.job_id for s in nested.snapshots) == sorted(world.job_ids())
        by_id = {s.job_id: s for s in nested.snapshots}
        ordered = [by_id[j] for j in world.job_ids()]
        assert samples_of(build_job_families(ordered, moment, settings)) \
            == samples_of(build_job_families(fetched.snapshots, moment, settings))


def test_listed_data_jobs_are_watched_while_unfinished_or_within_max_age():
    world = SimulatedWorld(jobs=2, files_per_job=2, seed=4, failure_rate=0.0, deleted_rate=0.0, started_at=T0,
                           staggered=False, speed=50)
    data_jobs = SimulatedDataJobs(world, 2)  # the first is started and completes; the second stays ready
    started, ready = data_jobs.ids()
    end = T0 + 3600
    assert (data_jobs.status_at(started, end), data_jobs.status_at(ready, end)) == ("completed", "ready_to_start")
    sim_clock, clock, wall = Clock(end), Clock(1000.0), Clock(end)
    with SimulatorServer(world, KEY, data_jobs=data_jobs, clock=sim_clock) as simulator:
        poller = poller_for(simulator, clock, wall, finished_job_refresh=600.0)
        try:
            assert sorted(s.job_id for s in poller.scrape(clock() + 30).data_jobs) == sorted([started, ready])
            clock.now += 100
            poller.scrape(clock() + 30)
            # The completed one is settled: not read again within finished_job_refresh.
            assert simulator.job_requests == {started: 1, ready: 2}
            wall.now = end + 8 * 86400
            sim_clock.now = wall.now
            clock.now += 300
            result = poller.scrape(clock() + 30)
            assert [s.job_id for s in result.data_jobs] == [ready]
            assert result.data_job_discovery.ok and result.data_job_discovery.job_count == 1
            # The ingestion jobs of the completed data job left with it.
            assert {s.job_id for s in result.snapshots} == set(data_jobs.ingestion_job_ids(ready))
        finally:
            poller.close()


# --- data-job metrics ----------------------------------------------------------------------------


def test_data_job_families_have_exact_values():
    body = {
        "id": "dj-1", "user_id": "u", "name": "support docs", "job_type": "principle_files",
        "alignment_job_id": None, "created_at": "2026-01-15T14:30:00Z", "updated_at": "2026-01-15T14:35:00.5Z",
        "status": "needs_review", "extra": {"ignored": True},
        "ingestion_jobs": [
            {"id": "ij-1", "status": "completed", "created_at": "2026-01-15T14:30:01Z",
             "updated_at": "2026-01-15T14:31:00Z", "file_ids": ["f-1", "f-2"], "records": []},
            {"id": "ij-2", "status": "running", "created_at": "2026-01-15T14:30:01Z",
             "updated_at": "2026-01-15T14:31:00Z"},
        ],
        "files": [{"file_id": "f-1", "status": "failed"}, {"file_id": "f-2", "status": "completed"},
                  {"file_id": "f-3", "status": "failed"}, {"file_id": "f-4"}, {"file_id": "f-5", "status": "zipping"}],
    }
    snapshots = [JobSnapshot("dj-1", parse_data_job(body), True, last_success=T0 + 400),
                 JobSnapshot("dj-gone", None, False, error="http_404")]
    got = samples_of(build_data_job_families(snapshots, MetricsConfig(record_status_limit=1)))
    statuses = {dict(k)["status"]: v for k, v in series(got, "seekrflow_data_job_status", data_job_id="dj-1").items()}
    assert statuses == {"file_processing": 0, "needs_review": 1, "ready_to_start": 0, "pending": 0, "queued": 0,
                        "running": 0, "cancelled": 0, "failed": 0, "completed": 0, "stopped": 0}
    assert series(got, "seekrflow_data_job_info") == {
        frozenset({("data_job_id", "dj-1"), ("name", "support docs"), ("job_type", "principle_files")}): 1.0}
    assert value(got, "seekrflow_data_job_created_timestamp_seconds", data_job_id="dj-1") == T0
    assert value(got, "seekrflow_data_job_updated_timestamp_seconds", data_job_id="dj-1") == T0 + 300.5
    files = {dict(k)["status"]: v for k, v in series(got, "seekrflow_data_job_files", data_job_id="dj-1").items()}
    # record_status_limit 1: "unknown" (no status) and "zipping" tie at 1; the first by name stays.
    assert files == {"queued": 0, "processing": 0, "completed": 1, "failed": 2, "unknown": 1, "other": 1}
    assert series(got, "seekrflow_ingestion_job_info") == {
        frozenset({("job_id", "ij-1"), ("data_job_id", "dj-1")}): 1.0,
        frozenset({("job_id", "ij-2"), ("data_job_id", "dj-1")}): 1.0}
    assert value(got, "seekrflow_data_job_scrape_success", data_job_id="dj-1") == 1
    assert value(got, "seekrflow_data_job_last_success_timestamp_seconds", data_job_id="dj-1") == T0 + 400
    assert value(got, "seekrflow_data_job_scrape_success", data_job_id="dj-gone") == 0
    assert value(got, "seekrflow_data_job_scrape_error_info", data_job_id="dj-gone", reason="http_404") == 1
    assert series(got, "seekrflow_data_job_status", data_job_id="dj-gone") == {}


def test_an_unknown_data_job_status_gets_its_own_series_and_long_names_are_cut():
    body = {"id": "dj-1", "name": "n" * 300, "job_type": "new_kind", "created_at": "2026-01-15T14:30:00Z",
            "updated_at": "2026-01-15T14:30:00Z", "status": "archiving"}
    got = samples_of(build_data_job_families([JobSnapshot("dj-1", parse_data_job(body), True)],
                                             MetricsConfig(error_text_limit=10)))
    assert value(got, "seekrflow_data_job_status", data_job_id="dj-1", status="archiving") == 1
    assert series(got, "seekrflow_data_job_info") == {
        frozenset({("data_job_id", "dj-1"), ("name", "nnnnnnnnn…"), ("job_type", "new_kind")}): 1.0}


@pytest.mark.parametrize("broken, reason", [
    ({"ingestion_jobs": {"id": "ij-1"}}, "ingestion_jobs: expected a list"),
    ({"ingestion_jobs": [{"id": "ij-1", "status": "running"}]}, "ingestion_jobs[0].created_at: expected an RFC 3339"),
    ({"ingestion_jobs": [{"id": "ij-1", "status": "running", "created_at": "2026-01-15T14:30:00Z",
                          "records": [{"record_id": 1, "status": "queued"}]}]},
     "ingestion_jobs[0].records[0].record_id: expected a string"),
    ({"files": [{"file_id": "f", "status": 3}]}, "files[0].status: expected a string"),
    ({"updated_at": None}, "updated_at: expected an RFC 3339"),
])
def test_a_broken_data_job_names_the_field(broken, reason):
    from exporter.model import InvalidResponse
    body = {"id": "dj-1", "name": "n", "job_type": "t", "created_at": "2026-01-15T14:30:00Z",
            "updated_at": "2026-01-15T14:30:00Z", "status": "running", **broken}
    with pytest.raises(InvalidResponse) as caught:
        parse_data_job(body)
    assert str(caught.value).startswith(reason)


def test_a_reload_keeps_the_data_jobs_and_their_ingestion_jobs(world):
    data_jobs = SimulatedDataJobs(world, 2)
    sim_clock, clock, wall = Clock(T0 + 86400), Clock(1000.0), Clock(T0 + 86400)
    with SimulatorServer(world, KEY, data_jobs=data_jobs, clock=sim_clock) as simulator:
        old = poller_for(simulator, clock, wall, finished_job_refresh=600.0)
        first = old.scrape(clock() + 30)
        new = poller_for(simulator, clock, wall, finished_job_refresh=600.0)
        new.take_over(old)
        old.close()
        try:
            clock.now += 10
            second = new.scrape(clock() + 30)
        finally:
            new.close()
        # A day later: the completed data job is settled and not read again, nor the list; the one
        # that waits in ready_to_start (never started) is read every round.
        started, ready = data_jobs.ids()
        assert (data_jobs.status_at(started, sim_clock()), data_jobs.status_at(ready, sim_clock())) == (
            "completed", "ready_to_start")
        assert simulator.requests == {LIST: 1, DETAIL: 3}
        assert simulator.job_requests == {started: 1, ready: 2}
    assert [(s.job_id, s.fresh) for s in second.data_jobs] == [(s.job_id, s.fresh) for s in first.data_jobs]
    assert {s.job_id for s in second.snapshots} == set(world.job_ids())


def test_nested_ingestion_jobs_with_ids_that_could_not_be_configured_are_left_out():
    body = {"id": "dj-1", "name": "n", "job_type": "t", "created_at": "2026-01-15T14:30:00Z",
            "updated_at": "2026-01-15T14:30:00Z", "status": "file_processing",
            "ingestion_jobs": [{"id": job_id, "status": "running", "created_at": "2026-01-15T14:30:00Z",
                                "updated_at": "2026-01-15T14:30:00Z", "records": []}
                               for job_id in ("ij-ok", "ij/../../x", "x" * 300, "ij-2\n")]}
    data_job = parse_data_job(body)
    assert [job.id for job in data_job.watchable_ingestion_jobs] == ["ij-ok"]
    got = samples_of(build_data_job_families([JobSnapshot("dj-1", data_job, True)], MetricsConfig()))
    assert series(got, "seekrflow_ingestion_job_info") == {
        frozenset({("job_id", "ij-ok"), ("data_job_id", "dj-1")}): 1.0}


def test_listed_data_jobs_beyond_max_jobs_are_left_out_newest_kept_and_logged_once():
    world = SimulatedWorld(jobs=4, files_per_job=2, seed=3, started_at=T0)  # staggered creation
    data_jobs = SimulatedDataJobs(world, 4)  # one ingestion job each
    now = T0 + 3600
    by_creation = sorted(data_jobs.summaries(now), key=lambda item: item["created_at"], reverse=True)
    assert len({item["created_at"] for item in by_creation}) == 4  # the newest two are well defined
    newest_two = sorted(item["id"] for item in by_creation[:2])
    sim_clock, clock, wall = Clock(now), Clock(1000.0), Clock(now)
    with SimulatorServer(world, KEY, data_jobs=data_jobs, clock=sim_clock) as simulator:
        poller = poller_for(simulator, clock, wall,
                            discovery=DiscoveryConfig(interval=10.0, max_age=7 * 86400.0, max_jobs=2))
        records: list[logging.LogRecord] = []
        handler = logging.Handler(logging.INFO)
        handler.emit = records.append  # type: ignore[method-assign]
        logging.getLogger("seekrflow_exporter").addHandler(handler)
        try:
            first = poller.scrape(clock() + 30)
            clock.now += 10
            second = poller.scrape(clock() + 30)
            assert simulator.requests[LIST] == 2
        finally:
            logging.getLogger("seekrflow_exporter").removeHandler(handler)
            poller.close()
    for result in (first, second):
        assert [s.job_id for s in result.data_jobs] == newest_two
        assert {s.job_id for s in result.snapshots} == {
            j for d in newest_two for j in data_jobs.ingestion_job_ids(d)}
        assert (result.data_job_discovery.ok, result.data_job_discovery.job_count,
                result.data_job_discovery.over_limit) == (True, 2, 2)
    got = samples_of(build_exporter_families(True, 0.5, 9.5, data_job_discovery=second.data_job_discovery))
    assert value(got, "seekrflow_exporter_discovered_data_jobs") == 2
    assert value(got, "seekrflow_exporter_data_job_discovery_jobs_over_limit") == 2
    reached = [r for r in records if r.getMessage() == "discovery.max_jobs reached, watching only the newest jobs"]
    assert [r.fields for r in reached] == [{"list": "data job list", "max_jobs": 2, "left_out": 2}]


@pytest.mark.slow
def test_the_whole_data_job_list_read_gets_discovery_timeout_not_api_timeout():
    # An empty page dripped over about 1.2 s: longer than api.timeout (0.3 s), well within
    # discovery.timeout (60 s).
    page = b'{"data": []}'
    dripped = lambda exchange: exchange.drip(http(200, page, {"Content-Type": "application/json"}), 0.015)  # noqa: E731
    with HostileAPI({"data-jobs?limit=100&offset=0": dripped}) as api:
        settings = ApiConfig(base_url=api.url, api_key=KEY, request_timeout=0.3)
        client = SeekrFlowClient(settings, Counter("r", "r", ["endpoint", "code"], registry=CollectorRegistry()))
        clock = Clock(1000.0)
        poller = JobPoller((), client, ScrapeConfig(cache_ttl=0.0), settings,
                           DiscoveryConfig(interval=300.0, max_age=7 * 86400.0, timeout=60.0),
                           monotonic=clock, wall_clock=Clock(T0), data_jobs=DataJobsConfig(enabled=True))
        try:
            result = poller.scrape(clock() + 60)
        finally:
            poller.close()
    assert result.data_job_discovery is not None
    assert (result.data_job_discovery.ok, result.data_job_discovery.job_count) == (True, 0)
