"""The fault suite, reloads: what was known survives any number of reloads between scrapes, and a
storm of reloads never puts more than api.max_concurrency requests in flight."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from exporter.cli import _Reloader
from harness import ExporterProcess, peak_rss_mib, wait_until
from hostile_api import Exchange, HostileAPI, answer, good
from metric_samples import parse_exposition, value

KEY = "sk-test-fault-reload-6d2f"


def reload(exporter) -> None:
    response = requests.post(exporter.url + "/-/reload", timeout=60)
    assert (response.status_code, response.text) == (200, "Reloaded\n")


@pytest.mark.slow
def test_two_reloads_between_scrapes_keep_what_was_known():
    behaviours = {"ij-done": good(),  # completed, every record finished: settled
                  "ij-busy": answer(429, b"{}", {"Retry-After": "3600"})}
    with HostileAPI(behaviours) as api:
        config = {"api": {"base_url": api.url}, "jobs": ["ij-done", "ij-busy"], "scrape": {"cache_ttl": "0s"}}
        with ExporterProcess(config, KEY, extra_args=["--web.enable-lifecycle"]) as exporter:
            exporter.scrape()
            reload(exporter)
            reload(exporter)
            got = parse_exposition(exporter.scrape().text)
            reload(exporter)
            reload(exporter)
            reload(exporter)
            again = parse_exposition(exporter.scrape().text)
        asked = {job_id: len(api.requests_for(job_id)) for job_id in behaviours}
    # The settled job is not fetched again, and the job under Retry-After is not asked again.
    assert asked == {"ij-done": 1, "ij-busy": 1}
    for exposition in (got, again):
        assert value(exposition, "seekrflow_ingestion_job_scrape_success", job_id="ij-done") == 1
        assert value(exposition, "seekrflow_ingestion_job_scrape_error_info", job_id="ij-busy", reason="http_429") == 1


class InFlight:
    """A slow job behaviour that records how many requests the fake holds at once."""

    def __init__(self, delay: float):
        self.delay = delay
        self.now = 0
        self.most = 0
        self._lock = threading.Lock()

    def __call__(self, ex: Exchange) -> None:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            time.sleep(self.delay)
            good()(ex)
        finally:
            with self._lock:
                self.now -= 1


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads in /proc")


@pytest.mark.slow
def test_a_reload_storm_never_exceeds_max_concurrency_in_flight():
    slow = InFlight(delay=0.3)
    jobs = [f"ij-{n:02d}" for n in range(24)]
    with HostileAPI({job_id: slow for job_id in jobs}) as api:
        config = {"api": {"base_url": api.url, "max_concurrency": 4, "timeout": "20s"}, "jobs": jobs,
                  "scrape": {"timeout": "2s", "cache_ttl": "0s"}}
        with ExporterProcess(config, KEY, extra_args=["--web.enable-lifecycle"]) as exporter:
            exporter.scrape()
            stop = threading.Event()

            def scrape_all_along():
                while not stop.is_set():
                    exporter.scrape()

            scrapers = [threading.Thread(target=scrape_all_along) for _ in range(3)]
            for thread in scrapers:
                thread.start()
            with ThreadPoolExecutor(20) as pool:
                statuses = list(pool.map(
                    lambda _: requests.post(exporter.url + "/-/reload", timeout=120).status_code, range(200)))
            stop.set()
            for thread in scrapers:
                thread.join(timeout=60)
            threads = threads_of(exporter.proc.pid)
            peak = peak_rss_mib(exporter.proc.pid)
            wait_until(lambda: slow.now == 0, timeout=60, what="the requests in flight to end")
            per_job = max(len(api.requests_for(job_id)) for job_id in jobs)
            scrapes = len([r for r in api.requests])
            got = parse_exposition(exporter.scrape().text)
    assert statuses == [200] * 200
    assert slow.most <= 4, f"{slow.most} requests in flight at once"
    assert threads < 60, threads  # 284 when every reload left its workers running
    assert peak < 150, f"peak RSS {peak:.0f} MiB"
    assert value(got, "seekrflow_exporter_config_last_reload_successful") == 1
    # Every job got its share, none a flood: the requests are spread evenly over the jobs.
    assert per_job <= scrapes / len(jobs) + 4


def test_reloads_run_one_at_a_time_off_the_main_thread_and_fold_together():
    entered, release = threading.Event(), threading.Event()
    calls = []

    class BlockingRuntime:
        def reload(self):
            calls.append(threading.current_thread().name)
            entered.set()
            release.wait(timeout=60)
            return None

    reloader = _Reloader(BlockingRuntime(), demo=False)
    reloader.request()
    assert entered.wait(timeout=30)
    for _ in range(5):
        reloader.request()  # returns at once while the first reload hangs
    assert calls == ["reload"]
    release.set()
    wait_until(lambda: len(calls) == 2 and not reloader._running, what="the folded reload")
    assert calls == ["reload", "reload"]
