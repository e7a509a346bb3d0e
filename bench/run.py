"""Benchmark: the exporter's scrape cost as ratios against floors measured in the same run.

    .venv/bin/python bench/run.py [--quick] [--json PATH]

For each size (jobs x files per job) it starts the simulator in this process on 127.0.0.1, serving a
frozen mix of settled and unfinished jobs, and measures:

- fetch floor: a plain requests client (own process, same concurrency) reading every job body;
- exposition floor: prometheus_client's text encoder over exactly the samples the exporter served;
- the exporter as a subprocess: a cold scrape (nothing cached), a warm scrape (settled jobs cached)
  and N concurrent scrapes sharing one round of requests;
- API requests per scrape, from the simulator's own counter, checked against what they must be;
- the pure step (parse, build_job_families, encode) on the same bodies, per 100k samples.

Times are medians over the repetitions. docs/performance.md explains every number.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import sys
import threading
import time
from dataclasses import asdict
from statistics import median

from exporter_process import ExporterProcess, loopback_session
from floors import ExpositionFloor, FetchFloorClient, count_samples
from pure_step import measure_pure_step
from workload import Size, Workload, build_workload, start_simulator

SIZES = (Size(10, 50), Size(50, 200), Size(20, 2000))
QUICK_SIZES = (Size(4, 20), Size(10, 100))
REPETITIONS, QUICK_REPETITIONS = 7, 3
API_CONCURRENCY = 8  # the exporter's default api.max_concurrency; the fetch floor uses the same
CONCURRENT_SCRAPES = 4
SHARED_ROUND_TTL = 1.0  # scrape.cache_ttl while measuring concurrent scrapes
JOB_PATH = "/v1/flow/alignment/ingestion/"


class Budget:
    """The whole run's time limit: checked between steps, so a stuck size ends the run."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def check(self, step: str) -> None:
        if time.monotonic() > self._end:
            raise TimeoutError(f"benchmark exceeded its {self.seconds:.0f}s budget before {step}")


def exporter_config(base_url: str, cache_ttl: str, finished_job_refresh: str) -> dict:
    return {
        "api": {"base_url": base_url, "endpoint": "alignment", "max_concurrency": API_CONCURRENCY},
        "scrape": {"timeout": "30s", "cache_ttl": cache_ttl, "finished_job_refresh": finished_job_refresh},
        "jobs": [],  # filled by the caller
    }


def api_requests(simulator) -> int:
    return sum(simulator.requests.values())


def timed_scrape(exporter: ExporterProcess, simulator, session) -> tuple[float, int, bytes]:
    """(seconds, API requests it caused, exposition) of one scrape."""
    before = api_requests(simulator)
    started = time.perf_counter()
    body = exporter.scrape(session)
    return time.perf_counter() - started, api_requests(simulator) - before, body


def scrape_together(exporter: ExporterProcess, simulator, sessions) -> tuple[float, int]:
    """(seconds until every one of the simultaneous scrapes answered, API requests they caused)."""
    gate = threading.Barrier(len(sessions) + 1)
    errors: list[BaseException] = []

    def scrape(session):
        try:
            gate.wait(timeout=30)
            exporter.scrape(session)
        except BaseException as err:  # noqa: BLE001 - reported by the calling thread
            errors.append(err)

    threads = [threading.Thread(target=scrape, args=(s,), daemon=True) for s in sessions]
    for thread in threads:
        thread.start()
    before = api_requests(simulator)
    gate.wait(timeout=30)
    started = time.perf_counter()
    for thread in threads:
        thread.join(timeout=120)
    seconds = time.perf_counter() - started
    if errors or any(t.is_alive() for t in threads):
        raise RuntimeError(f"concurrent scrape failed: {errors[:1] or 'no answer'}")
    return seconds, api_requests(simulator) - before


def measure_size(workload: Workload, repetitions: int, budget: Budget) -> dict:
    """Every number of one size. Each repetition takes each floor and each kind of scrape once, in
    turn, so a burst of other work on the machine hits the floors and the exporter alike."""
    size = workload.size
    key = secrets.token_urlsafe(24)
    raw = {name: [] for name in ("fetch_floor", "fetch_floor_unfinished", "exposition_floor",
                                 "cold", "warm", "concurrent")}
    requests_made = {"cold": [], "warm": [], "concurrent": []}
    with contextlib.ExitStack() as stack:
        simulator = start_simulator(workload, key)
        stack.callback(simulator.stop)
        urls = [simulator.url + JOB_PATH + job_id for job_id in workload.job_ids]
        unfinished_urls = [simulator.url + JOB_PATH + job_id for job_id in workload.unfinished]
        budget.check(f"{size.label}: start")
        fetch = stack.enter_context(FetchFloorClient({"all": urls, "unfinished": unfinished_urls}, key, API_CONCURRENCY))

        def exporter(cache_ttl: str, finished_job_refresh: str) -> ExporterProcess:
            config = exporter_config(simulator.url, cache_ttl, finished_job_refresh)
            config["jobs"] = workload.job_ids
            return stack.enter_context(ExporterProcess(config, key))

        # Cold: nothing reused between scrapes, every job fetched, parsed, built and encoded each time.
        cold = exporter("0s", "0s")
        # Warm: settled jobs fetched once, then cached; only the unfinished jobs are read again.
        warm = exporter("0s", "10m")
        # Concurrent: every job due on each round, and the round shared by the scrapes arriving together.
        shared = exporter(f"{int(SHARED_ROUND_TTL * 1000)}ms", "0s")
        session = stack.enter_context(loopback_session())
        sessions = [stack.enter_context(loopback_session()) for _ in range(CONCURRENT_SCRAPES)]

        # Warm-ups: imports, connection pools; the warm exporter's first scrape fills its cache.
        _, cold_first, exposition = timed_scrape(cold, simulator, session)
        _, warm_first, _ = timed_scrape(warm, simulator, session)
        scrape_together(shared, simulator, sessions)
        shared_round_at = time.monotonic()
        expo_floor = ExpositionFloor(exposition.decode())

        for repetition in range(repetitions):
            budget.check(f"{size.label}: repetition {repetition + 1}")
            raw["fetch_floor"].append(fetch.round("all"))
            raw["fetch_floor_unfinished"].append(fetch.round("unfinished"))
            raw["exposition_floor"].append(expo_floor.encode())
            seconds, made, _ = timed_scrape(cold, simulator, session)
            raw["cold"].append(seconds)
            requests_made["cold"].append(made)
            seconds, made, warm_exposition = timed_scrape(warm, simulator, session)
            raw["warm"].append(seconds)
            requests_made["warm"].append(made)
            # Let the shared round expire, so each repetition fetches anew.
            time.sleep(max(0.0, shared_round_at + SHARED_ROUND_TTL + 0.05 - time.monotonic()))
            seconds, made = scrape_together(shared, simulator, sessions)
            shared_round_at = time.monotonic()
            raw["concurrent"].append(seconds)
            requests_made["concurrent"].append(made)

    budget.check(f"{size.label}: pure step")
    pure = measure_pure_step(workload.bodies, time.time(), repetitions)

    n = CONCURRENT_SCRAPES
    floors = {
        "cold": [f + e for f, e in zip(raw["fetch_floor"], raw["exposition_floor"])],
        "warm": [f + e for f, e in zip(raw["fetch_floor_unfinished"], raw["exposition_floor"])],
        "concurrent": [f + n * e for f, e in zip(raw["fetch_floor"], raw["exposition_floor"])],
    }
    expected = {"cold": len(urls), "warm": len(unfinished_urls), "concurrent": len(urls), "first warm": len(urls)}
    observed = {"cold": sorted(set(requests_made["cold"] + [cold_first])),
                "warm": sorted(set(requests_made["warm"])),
                "concurrent": sorted(set(requests_made["concurrent"])),
                "first warm": [warm_first]}
    return {
        "size": asdict(size),
        "label": size.label,
        "records": workload.records,
        "unfinished_jobs": len(unfinished_urls),
        "samples": expo_floor.samples,
        "warm_samples": count_samples(warm_exposition.decode()),
        "exposition_bytes": len(exposition),
        "seconds": {name: median(values) for name, values in raw.items()},
        # The median of the per-repetition ratios: each divides by floors taken moments before.
        "ratios": {kind: median(t / f for t, f in zip(raw[kind], floors[kind])) for kind in floors},
        "api_requests": {"expected": expected, "observed": observed,
                         "ok": all(observed[k] == [expected[k]] for k in expected)},
        "pure_step": {**asdict(pure),
                      "parse_us_per_record": pure.parse / pure.records * 1e6,
                      "build_s_per_100k_samples": pure.per_100k_samples(pure.build),
                      "encode_s_per_100k_samples": pure.per_100k_samples(pure.encode),
                      "openmetrics_gzip_s_per_100k_samples": pure.per_100k_samples(pure.openmetrics_gzip)},
        "raw_seconds": raw,
        "api_requests_per_scrape": requests_made,
    }


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def render_tables(results: list[dict], repetitions: int) -> str:
    n = CONCURRENT_SCRAPES
    lines = [f"Scrape times, medians of {repetitions} (ms); ratio = exporter / (fetch floor + exposition floor),",
             "the median of the per-repetition ratios", ""]
    head = (f"{'size':>10} {'records':>7} {'samples':>7} | {'fetch':>7} {'expo':>7} | {'cold':>7} {'ratio':>5} | "
            f"{'fetch*':>7} {'warm':>7} {'ratio':>5} | {f'{n} concur':>8} {'ratio':>5}")
    lines += [head, "-" * len(head)]
    for r in results:
        s, q = r["seconds"], r["ratios"]
        lines.append(
            f"{r['label']:>10} {r['records']:>7} {r['samples']:>7} | {_ms(s['fetch_floor']):>7} "
            f"{_ms(s['exposition_floor']):>7} | {_ms(s['cold']):>7} {q['cold']:>5.2f} | "
            f"{_ms(s['fetch_floor_unfinished']):>7} {_ms(s['warm']):>7} {q['warm']:>5.2f} | "
            f"{_ms(s['concurrent']):>8} {q['concurrent']:>5.2f}")
    lines += ["", f"fetch* = fetch floor over the unfinished jobs only (what a warm scrape must read); "
                  f"the {n}-concurrent ratio divides by fetch + {n} x expo.", ""]

    lines += ["API requests per scrape (simulator counter): observed / expected", ""]
    head = f"{'size':>10} {'unfinished':>10} | {'cold':>9} | {'warm':>9} | {f'{n} concur':>9} | check"
    lines += [head, "-" * len(head)]
    for r in results:
        o, e = r["api_requests"]["observed"], r["api_requests"]["expected"]

        def cell(k):  # called in this iteration only
            return f"{','.join(map(str, o[k]))}/{e[k]}"  # noqa: B023

        lines.append(f"{r['label']:>10} {r['unfinished_jobs']:>10} | {cell('cold'):>9} | {cell('warm'):>9} | "
                     f"{cell('concurrent'):>9} | {'ok' if r['api_requests']['ok'] else 'MISMATCH'}")

    lines += ["", "Pure step on the same bodies, no network (medians)", ""]
    head = (f"{'size':>10} {'samples':>7} | {'parse ms':>8} {'us/rec':>6} | {'build ms':>8} {'encode ms':>9} "
            f"{'om+gz ms':>8} | {'s per 100k samples: build':>25} {'encode':>6} {'om+gz':>6}")
    lines += [head, "-" * len(head)]
    for r in results:
        p = r["pure_step"]
        lines.append(
            f"{r['label']:>10} {p['samples']:>7} | {_ms(p['parse']):>8} {p['parse_us_per_record']:>6.1f} | "
            f"{_ms(p['build']):>8} {_ms(p['encode']):>9} {_ms(p['openmetrics_gzip']):>8} | "
            f"{p['build_s_per_100k_samples']:>25.3f} {p['encode_s_per_100k_samples']:>6.3f} "
            f"{p['openmetrics_gzip_s_per_100k_samples']:>6.3f}")
    lines += ["", "om+gz = the same families as OpenMetrics gzipped at level 1 (what Prometheus asks for)."]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark the exporter against same-run floors.")
    parser.add_argument("--quick", action="store_true", help="small sizes, 3 repetitions (well under 30 s)")
    parser.add_argument("--json", metavar="PATH", help="also write every number to this JSON file")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="stop with an error past this run time (default 60 with --quick, else 900)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK_SIZES if args.quick else SIZES
    repetitions = QUICK_REPETITIONS if args.quick else REPETITIONS
    budget = Budget(args.max_seconds or (60.0 if args.quick else 900.0))
    started = time.monotonic()
    results = []
    for size in sizes:
        print(f"measuring {size.label} ...", file=sys.stderr, flush=True)
        results.append(measure_size(build_workload(size), repetitions, budget))
    print(render_tables(results, repetitions))
    elapsed = time.monotonic() - started
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n{os.cpu_count()} CPUs, Python {platform.python_version()}, run took {elapsed:.1f}s, "
          f"load average at the end {load} (other work on the machine inflates the floors too)")
    if args.json:
        meta = {"python": platform.python_version(), "cpus": os.cpu_count(), "repetitions": repetitions,
                "api_concurrency": API_CONCURRENCY, "concurrent_scrapes": CONCURRENT_SCRAPES,
                "elapsed_seconds": elapsed, "quick": args.quick, "load_average_at_end": os.getloadavg()}
        with open(args.json, "w") as handle:
            json.dump({"meta": meta, "sizes": results}, handle, indent=2)
    return 0 if all(r["api_requests"]["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
