"""JobPoller against the simulator over HTTP, with the poller's clock in the test's hands."""

import json
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter

from exporter.client import SeekrFlowClient
from exporter.config import ApiConfig, DiscoveryConfig, ScrapeConfig
from exporter.results import DiscoveryStatus
from exporter.scrape import JobPoller
from exporter.simulator import SimulatedWorld, SimulatorServer
from harness import wait_until
from paced import PacedClock, PacedSimulator

KEY = "sk-test-poller-81b2"
FIXTURES = Path(__file__).parent / "fixtures"
# Deadlines in real time: far beyond what any answer of the simulator takes on a busy machine (the
# rounds end as soon as every answer is in, so a generous budget costs nothing).
BUDGET = 30.0


class Clock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def fixture_bodies():
    bodies = {}
    for name in ("job_running.json", "job_completed.json"):
        body = json.loads((FIXTURES / name).read_text())
        bodies[body["id"]] = body
    bodies["ij-slow"] = dict(bodies["ij-running"], id="ij-slow")
    return bodies


@pytest.fixture
def simulator():
    server = SimulatorServer(SimulatedWorld(jobs=0, files_per_job=1), KEY, fixtures=fixture_bodies(),
                             faults={"ij-slow": "slow:1"})
    server.start("127.0.0.1", 0)
    yield server
    server.stop()


def paced_simulator(answer_after, workers):
    """Every answer ``answer_after`` seconds after its request, on the clock of the poller (see paced.py)."""
    server = PacedSimulator(SimulatedWorld(jobs=0, files_per_job=1), KEY, fixtures=fixture_bodies(),
                            clock=PacedClock(), answer_after=answer_after, workers=workers)
    server.start("127.0.0.1", 0)
    return server


def poller_for(simulator, jobs, clock=time.monotonic, concurrency=4, wait_until=None, **scrape):
    api = ApiConfig(base_url=simulator.url, api_key=KEY, max_concurrency=concurrency, request_timeout=BUDGET)
    counter = Counter("requests", "r", ["endpoint", "code"], registry=CollectorRegistry())
    return JobPoller(jobs, SeekrFlowClient(api, counter), ScrapeConfig(**scrape), api, monotonic=clock,
                     wait_until=wait_until)


def paced_poller_for(simulator, jobs, **scrape):
    return poller_for(simulator, jobs, simulator.clock, simulator.workers, simulator.wait_until, **scrape)


def scrape(poller, clock=None, budget=BUDGET):
    return {s.job_id: s for s in poller.scrape((clock() if clock else time.monotonic()) + budget).snapshots}


def test_cache_ttl_shares_one_round_of_requests(simulator):
    clock = Clock()
    poller = poller_for(simulator, ["ij-running"], clock, cache_ttl=5.0)
    try:
        scrape(poller, clock)
        clock.now += 4.9
        scrape(poller, clock)
        assert simulator.job_requests["ij-running"] == 1
        clock.now += 0.1
        scrape(poller, clock)
        assert simulator.job_requests["ij-running"] == 2
    finally:
        poller.close()


def test_settled_job_is_read_again_after_finished_job_refresh(simulator):
    clock = Clock()
    poller = poller_for(simulator, ["ij-done", "ij-running"], clock, cache_ttl=0.0, finished_job_refresh=600.0)
    try:
        for _ in range(3):
            snapshots = scrape(poller, clock)
            assert snapshots["ij-done"].fresh
            clock.now += 299
        assert simulator.job_requests == {"ij-done": 1, "ij-running": 3}
        clock.now += 4  # 601 s after the first read
        scrape(poller, clock)
        assert simulator.job_requests == {"ij-done": 2, "ij-running": 4}
    finally:
        poller.close()


def test_stale_data_stands_in_for_serve_stale_for_then_goes(simulator):
    clock = Clock()
    poller = poller_for(simulator, ["ij-running"], clock, cache_ttl=0.0, serve_stale_for=300.0)
    try:
        assert scrape(poller, clock)["ij-running"].fresh
        simulator.stop()
        clock.now += 300
        stale = scrape(poller, clock)["ij-running"]
        assert (stale.fresh, stale.error, stale.job is not None) == (False, "connection_error", True)
        clock.now += 1
        gone = scrape(poller, clock)["ij-running"]
        assert (gone.fresh, gone.error, gone.job) == (False, "connection_error", None)
        assert poller.scrape(clock() + BUDGET).api_up is False
    finally:
        poller.close()


def test_an_answer_after_the_deadline_is_used_by_the_next_scrape():
    simulator = paced_simulator(answer_after=1.0, workers=4)
    clock = simulator.clock
    poller = paced_poller_for(simulator, ["ij-slow"], cache_ttl=0.0)
    try:
        first = scrape(poller, clock, budget=0.2)["ij-slow"]
        assert (first.error, first.job) == ("timeout", None)
        # Every answer takes 1 s and every scrape waits 0.2 s: data can only come from an answer
        # that arrived after its scrape had given up.
        later = wait_until(lambda: scrape(poller, clock, budget=0.2)["ij-slow"].job, what="a late answer")
        assert later.status == "running" and len(later.records) == 8
        # From then on every round sends a request that misses its deadline, yet the job is not
        # failing: it has data, one round old, and its request is on the way.
        for _ in range(3):
            result = poller.scrape(clock() + 0.2)
            (snapshot,) = result.snapshots
            assert (snapshot.fresh, snapshot.error, result.api_up) == (True, None, True)
    finally:
        poller.close()
        simulator.stop()


def test_a_round_answers_early_when_only_a_hung_request_is_left():
    simulator = PacedSimulator(SimulatedWorld(jobs=0, files_per_job=1), KEY, fixtures=fixture_bodies(),
                               clock=PacedClock(), answer_after=0.5, workers=4, hung=frozenset({"ij-slow"}))
    simulator.start("127.0.0.1", 0)
    clock = simulator.clock
    poller = paced_poller_for(simulator, ["ij-running", "ij-done", "ij-slow"], cache_ttl=0.0)
    try:
        started = clock()
        result = poller.scrape(started + 20.0)
        ended = clock()
    finally:
        simulator.stop()  # lets the hung request go, so the pool can close
        poller.close()
    snapshots = {s.job_id: s for s in result.snapshots}
    assert (snapshots["ij-slow"].error, snapshots["ij-slow"].job) == ("timeout", None)
    assert snapshots["ij-running"].fresh and snapshots["ij-done"].fresh
    # Given up on once it has run max(4 x 0.5 s, a quarter of the 20 s budget, 1 s) = 5 s (seen at
    # the next 0.1 s look), on the poller's clock: the deadline 20 s away is never reached.
    assert 5.0 < ended - started <= 5.2, ended - started


def test_an_oversubscribed_pool_serves_every_job_in_turn():
    simulator = paced_simulator(answer_after=0.25, workers=1)
    jobs = ["ij-running", "ij-done", "ij-a", "ij-b"]
    # ij-a and ij-b are unknown (404): answered, but never fresh. The two real jobs must each get
    # fresh data although one worker cannot fetch all four within one scrape's budget.
    poller = paced_poller_for(simulator, jobs, cache_ttl=0.0, finished_job_refresh=0.0)
    try:
        seen_fresh = set()
        for _ in range(12):
            snapshots = scrape(poller, simulator.clock, budget=0.4)
            seen_fresh |= {job_id for job_id, snap in snapshots.items() if snap.fresh}
            if seen_fresh == {"ij-running", "ij-done"}:
                break
        assert seen_fresh == {"ij-running", "ij-done"}
        assert {"ij-a", "ij-b"} <= set(simulator.job_requests)
    finally:
        poller.close()
        simulator.stop()


def test_jobs_that_never_get_data_take_their_turn_and_starve_no_one():
    simulator = paced_simulator(answer_after=0.25, workers=1)
    jobs = ["ij-running", "ij-done", "ij-a", "ij-b"]
    # One answer per round. ij-a and ij-b are unknown (404): they are answered but never hold data,
    # and must neither take every turn nor keep the two real jobs from being asked again.
    poller = paced_poller_for(simulator, jobs, cache_ttl=0.0, finished_job_refresh=0.0)
    try:
        for _ in range(8):
            scrape(poller, simulator.clock, budget=0.4)
        asked = [simulator.job_requests[job_id] for job_id in jobs]
        # Turns go round: every job is asked about as often as any other.
        assert min(asked) >= 3 and max(asked) - min(asked) <= 1, dict(zip(jobs, asked))
    finally:
        poller.close()
        simulator.stop()


def discovery_simulator(extra_fixtures=None):
    """Two fixture jobs from January (one running, one long finished) and three young simulated jobs."""
    bodies = {}
    for name in ("job_running.json", "job_completed.json"):
        body = json.loads((FIXTURES / name).read_text())
        bodies[body["id"]] = body
    bodies.update(extra_fixtures or {})
    world = SimulatedWorld(jobs=3, files_per_job=4, seed=2, started_at=time.time(), staggered=False)
    server = SimulatorServer(world, KEY, fixtures=bodies)
    server.start("127.0.0.1", 0)
    return server


def discovering_poller(simulator, clock, jobs=(), **scrape):
    api = ApiConfig(base_url=simulator.url, api_key=KEY, request_timeout=BUDGET)
    counter = Counter("requests", "r", ["endpoint", "code"], registry=CollectorRegistry())
    return JobPoller(jobs, SeekrFlowClient(api, counter), ScrapeConfig(**scrape), api,
                     DiscoveryConfig(enabled=True, interval=300.0, max_age=7 * 86400.0), monotonic=clock)


def test_discovery_watches_unfinished_and_recent_jobs_from_one_list_read():
    simulator = discovery_simulator()
    clock = Clock()
    poller = discovering_poller(simulator, clock, cache_ttl=0.0)
    try:
        result = poller.scrape(clock() + BUDGET)
        world_ids = set(simulator.world.job_ids())
        # ij-done finished in January: older than max_age, so left out; ij-running is unfinished.
        assert {s.job_id for s in result.snapshots} == world_ids | {"ij-running"}
        assert all(s.fresh for s in result.snapshots)
        assert result.discovery == DiscoveryStatus(True, 4)
        assert simulator.requests == {"/v1/flow/alignment/ingestion": 1}

        # Within the interval the list is not read again; the unfinished jobs are read one by one.
        clock.now += 10
        poller.scrape(clock() + BUDGET)
        assert simulator.requests["/v1/flow/alignment/ingestion"] == 1
        assert simulator.job_requests["ij-running"] == 1

        clock.now += 300
        poller.scrape(clock() + BUDGET)
        assert simulator.requests["/v1/flow/alignment/ingestion"] == 2
    finally:
        poller.close()
        simulator.stop()


def test_a_broken_listed_job_fails_alone_and_a_failed_list_keeps_what_was_found():
    broken = json.loads((FIXTURES / "job_unknown_status.json").read_text())
    broken.update(id="ij-broken", status="running", created_at="not a time")
    simulator = discovery_simulator({"ij-broken": broken})
    clock = Clock()
    poller = discovering_poller(simulator, clock, jobs=["ij-done"], cache_ttl=0.0)
    try:
        snapshots = {s.job_id: s for s in poller.scrape(clock() + BUDGET).snapshots}
        assert snapshots["ij-broken"].error == "invalid_schema"
        assert snapshots["ij-running"].fresh and snapshots["ij-done"].fresh  # configured jobs always stay
        simulator.stop()
        clock.now += 301
        result = poller.scrape(clock() + BUDGET)
        assert result.discovery.ok is False
        assert {s.job_id for s in result.snapshots} == set(snapshots)
        assert result.api_up is False
    finally:
        poller.close()


def test_a_settled_job_leaves_when_it_passes_max_age():
    simulator = discovery_simulator()
    clock, wall = Clock(), Clock()
    wall.now = 1768487400.0 + 86400  # a day after ij-done was created
    api = ApiConfig(base_url=simulator.url, api_key=KEY, request_timeout=BUDGET)
    counter = Counter("requests", "r", ["endpoint", "code"], registry=CollectorRegistry())
    poller = JobPoller((), SeekrFlowClient(api, counter), ScrapeConfig(cache_ttl=0.0), api,
                       DiscoveryConfig(enabled=True, interval=60.0, max_age=7 * 86400.0), monotonic=clock,
                       wall_clock=wall)
    try:
        assert "ij-done" in {s.job_id for s in poller.scrape(clock() + BUDGET).snapshots}
        wall.now += 7 * 86400
        clock.now += 60
        result = poller.scrape(clock() + BUDGET)
        assert "ij-done" not in {s.job_id for s in result.snapshots}
        assert "ij-running" in {s.job_id for s in result.snapshots}  # unfinished: kept whatever its age
        assert result.discovery == DiscoveryStatus(True, 4)
    finally:
        poller.close()
        simulator.stop()


def test_a_failing_job_list_is_asked_again_with_back_off():
    simulator = discovery_simulator()
    clock = Clock()
    api = ApiConfig(base_url=simulator.url, api_key="sk-refused-key", request_timeout=BUDGET)
    counter = Counter("requests", "r", ["endpoint", "code"], registry=CollectorRegistry())
    poller = JobPoller((), SeekrFlowClient(api, counter), ScrapeConfig(cache_ttl=0.0), api,
                       DiscoveryConfig(enabled=True, interval=300.0), monotonic=clock)
    lists = []
    try:
        for _ in range(8):  # a scrape every 5 s
            result = poller.scrape(clock() + BUDGET)
            lists.append(simulator.requests["/v1/flow/alignment/ingestion"])
            clock.now += 5
        # Read at 0 s, then 10 s after the first failure, then 20 s after the second.
        assert lists == [1, 1, 2, 2, 2, 2, 3, 3]
        assert result.discovery == DiscoveryStatus(False, 0)
        assert result.api_up is False
    finally:
        poller.close()
        simulator.stop()


@pytest.mark.slow
def test_a_reload_during_a_slow_scrape_keeps_what_was_known(simulator):
    old = poller_for(simulator, ["ij-slow", "ij-done"], cache_ttl=0.0)
    new = poller_for(simulator, ["ij-slow", "ij-done"], cache_ttl=0.0)
    try:
        assert all(s.fresh for s in scrape(old).values())
        # A scrape on the old poller is waiting on the slow job when the reload comes.
        busy = threading.Thread(target=old.scrape, args=(time.monotonic() + BUDGET,))
        busy.start()
        wait_until(lambda: simulator.job_requests["ij-slow"] == 2, what="the old poller's second request")
        new.take_over(old)
        old.close()
        snapshots = scrape(new)
        busy.join()
        assert snapshots["ij-done"].fresh and snapshots["ij-slow"].job is not None
        assert simulator.job_requests["ij-done"] == 1  # settled: not read again after the reload
    finally:
        new.close()
        old.close()
