"""Benchmark: the exporter's scrape cost as ratios against floors measured in the same run.

    .venv/bin/python bench/run.py [--quick | --large] [--json PATH]

For each size (jobs x files per job) it starts the simulator in this process on 127.0.0.1, serving a
frozen mix of settled and unfinished jobs, and measures:

- fetch floor: a plain requests client (own process, same concurrency) reading every job body;
- exposition floor: prometheus_client's text encoder over exactly the samples the exporter served;
- the exporter as a subprocess: cold scrapes (nothing cached) and warm scrapes (settled jobs
  cached), each both as plain text and as Prometheus asks (OpenMetrics, gzip); 20 scrapes sent at
  the same moment; warm scrapes with per-file series off; the first scrape of a fresh exporter with
  a real ``X-Prometheus-Scrape-Timeout-Seconds: 10``; resident memory, warm and peak;
- the naive baseline: a prometheus_client custom collector that GETs every job in turn;
- API requests per scrape, from the simulator's own counter, checked against what they must be;
- the pure step (parse, build_job_families, encode) on the same bodies, per 100k samples;
- a latency-bound cold scrape against the network floor, with the simulator answering slowly.

Times are medians over the repetitions. docs/performance.md explains every number.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from statistics import median

from exporter_process import PROMETHEUS_FORMAT, ExporterProcess, child_environment, free_port, get_raw, loopback_session
from floors import ExpositionFloor, FetchFloorClient, count_samples
from pure_step import measure_pure_step
from scrapers import decoded, scrape_together, timed_scrape
from workload import Size, Workload, build_workload, start_simulator

SIZES = (Size(500, 200),)  # 100k records
LARGE_SIZES = (Size(500, 200), Size(1000, 1000))  # and 1M records
QUICK_SIZES = (Size(4, 20), Size(10, 100))
REPETITIONS, LARGE_REPETITIONS, QUICK_REPETITIONS = 5, 3, 3
# Above this many records the pure step (which holds every parsed record in this process) is skipped.
PURE_STEP_MAX_RECORDS = 200_000
API_CONCURRENCY = 8  # the exporter's default api.max_concurrency; the fetch floor uses the same
CONCURRENT_SCRAPES, QUICK_CONCURRENT_SCRAPES = 20, 4
SHARED_ROUND_TTL = 1.0  # scrape.cache_ttl of the exporter that takes simultaneous scrapes
PROMETHEUS_TIMEOUT = "10"  # the X-Prometheus-Scrape-Timeout-Seconds of the first scrape
# scrape.finished_job_refresh of the warm exporters: longer than a run (a 1M run takes over 20
# minutes), so that every warm scrape measures the steady state between two refreshes.
STEADY_REFRESH = "24h"
LATENCY_SIZE, LATENCY = Size(64, 20), 0.1  # the latency-bound workload: 64 jobs, 100 ms per answer
JOB_PATH = "/v1/flow/alignment/ingestion/"
_FRESH_JOB = re.compile(r"^seekrflow_ingestion_job_scrape_success\{[^}]*\} 1(\.0)?$", re.MULTILINE)


class Budget:
    """The whole run's time limit: checked between steps, so a stuck size ends the run."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def check(self, step: str) -> None:
        if time.monotonic() > self._end:
            raise TimeoutError(f"benchmark exceeded its {self.seconds:.0f}s budget before {step}")


def exporter_config(base_url: str, job_ids: list[str], **scrape) -> dict:
    config = {"api": {"base_url": base_url, "endpoint": "alignment", "max_concurrency": API_CONCURRENCY},
              "jobs": job_ids}
    if scrape:
        # Long enough for a complete cold round at 1M records on a busy machine: these exporters
        # measure the cost of whole scrapes; the first-scrape measurement tests the deadline.
        config["scrape"] = {"timeout": "300s", **scrape}
    return config


class NaiveBaseline:
    """``naive_exporter.py`` as a process: every scrape GETs every job, one after the other."""

    def __init__(self, base_url: str, job_ids: list[str], api_key: str):
        self._dir = tempfile.TemporaryDirectory(prefix="seekrflow-naive-")
        jobs = Path(self._dir.name) / "jobs.txt"
        jobs.write_text("\n".join(job_ids))
        env = child_environment(api_key)
        env["BENCH_API_KEY"] = env.pop("SEEKR_API_KEY")
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/metrics"
        self._proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("naive_exporter.py")),
                                       str(port), base_url, str(jobs)], env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        if self._proc.stdout.readline().strip() != "ready":
            self.close()
            raise RuntimeError("naive baseline did not start")

    def scrape(self, session) -> float:
        started = time.perf_counter()
        get_raw(session, self.url, {"Accept-Encoding": "identity"}, timeout=600)
        return time.perf_counter() - started

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc.stdout.close()
        self._dir.cleanup()


def fresh_scrape(simulator, job_ids: list[str], key: str, session,
                 headers: dict | None = None) -> tuple[float, int, bytes, tuple[int, int]]:
    """A cold scrape: the first of an exporter started for it (the start is not timed), with nothing
    kept from earlier answers, so every job is fetched, parsed, rendered and encoded.
    (seconds, API requests, body, memory after it)"""
    with ExporterProcess(exporter_config(simulator.url, job_ids, cache_ttl="0s"), key) as fresh:
        return (*timed_scrape(fresh, simulator, session, headers), fresh.memory())


def first_scrape(workload: Workload, simulator, key: str) -> dict:
    """A fresh exporter with default settings, scraped once as Prometheus would with a 10 s timeout."""
    config = exporter_config(simulator.url, workload.job_ids)
    with ExporterProcess(config, key) as exporter, loopback_session() as session:
        headers = {**PROMETHEUS_FORMAT, "X-Prometheus-Scrape-Timeout-Seconds": PROMETHEUS_TIMEOUT}
        seconds, made, body = timed_scrape(exporter, simulator, session, headers)
        _, peak = exporter.memory()
    text = decoded(body)
    return {"seconds": seconds, "api_requests": made, "jobs_with_data": len(_FRESH_JOB.findall(text)),
            "jobs": len(workload.job_ids), "peak_rss": peak, "within_timeout": seconds < float(PROMETHEUS_TIMEOUT)}


def measure_size(workload: Workload, repetitions: int, concurrent: int, budget: Budget) -> dict:
    """Every number of one size. Each repetition takes each floor and each kind of scrape once, in
    turn, so a burst of other work on the machine hits the floors and the exporter alike."""
    size = workload.size
    key = secrets.token_urlsafe(24)
    kinds = ("fetch_floor", "fetch_floor_unfinished", "exposition_floor", "exposition_floor_no_files",
             "cold", "cold_prometheus", "warm", "warm_prometheus", "warm_moving", "warm_no_files", "shared_one",
             "shared_together", "naive")
    raw: dict[str, list[float]] = {name: [] for name in kinds}
    requests_made: dict[str, list[int]] = {"cold": [], "warm": [], "together": []}
    with contextlib.ExitStack() as stack:
        simulator = start_simulator(workload, key)
        stack.callback(simulator.stop)
        urls = [simulator.url + JOB_PATH + job_id for job_id in workload.job_ids]
        unfinished_urls = [simulator.url + JOB_PATH + job_id for job_id in workload.unfinished]
        budget.check(f"{size.label}: first scrape")
        first = first_scrape(workload, simulator, key)
        fetch = stack.enter_context(FetchFloorClient({"all": urls, "unfinished": unfinished_urls}, key, API_CONCURRENCY))

        def exporter(**settings) -> ExporterProcess:
            metrics = settings.pop("metrics", None)
            config = exporter_config(simulator.url, workload.job_ids, **settings)
            if metrics:
                config["metrics"] = metrics
            return stack.enter_context(ExporterProcess(config, key))

        def cold_scrape(headers: dict | None = None) -> tuple[float, int, bytes, tuple[int, int]]:
            return fresh_scrape(simulator, workload.job_ids, key, session, headers)

        # Warm: settled jobs fetched once, then cached; only the unfinished jobs are read again.
        warm = exporter(cache_ttl="0s", finished_job_refresh=STEADY_REFRESH)
        no_files = exporter(cache_ttl="0s", finished_job_refresh=STEADY_REFRESH, metrics={"per_file": False})
        # Shared: warm, and scrapes arriving together share one round.
        shared = exporter(cache_ttl=f"{int(SHARED_ROUND_TTL * 1000)}ms", finished_job_refresh=STEADY_REFRESH)
        session = stack.enter_context(loopback_session())
        sessions = [stack.enter_context(loopback_session()) for _ in range(concurrent)]
        naive = NaiveBaseline(simulator.url, workload.job_ids, key)
        stack.callback(naive.close)

        # Warm-ups: imports, connection pools; the warm exporters' first scrapes fill their caches.
        budget.check(f"{size.label}: warm-up")
        _, cold_first, exposition, _ = cold_scrape()
        _, warm_first, _ = timed_scrape(warm, simulator, session)
        _, _, no_files_exposition = timed_scrape(no_files, simulator, session)
        timed_scrape(shared, simulator, session, PROMETHEUS_FORMAT)
        shared_round_at = time.monotonic()
        expo_floor = ExpositionFloor(exposition.decode())
        no_files_floor = ExpositionFloor(no_files_exposition.decode())

        def after_shared_round() -> None:
            time.sleep(max(0.0, shared_round_at + SHARED_ROUND_TTL + 0.05 - time.monotonic()))

        for repetition in range(repetitions):
            budget.check(f"{size.label}: repetition {repetition + 1}")
            raw["fetch_floor"].append(fetch.round("all"))
            raw["fetch_floor_unfinished"].append(fetch.round("unfinished"))
            raw["exposition_floor"].append(expo_floor.encode())
            raw["exposition_floor_no_files"].append(no_files_floor.encode())
            seconds, made, _, cold_memory = cold_scrape()
            raw["cold"].append(seconds)
            requests_made["cold"].append(made)
            raw["cold_prometheus"].append(cold_scrape(PROMETHEUS_FORMAT)[0])
            seconds, made, warm_exposition = timed_scrape(warm, simulator, session)
            raw["warm"].append(seconds)
            requests_made["warm"].append(made)
            seconds, made, warm_prometheus = timed_scrape(warm, simulator, session, PROMETHEUS_FORMAT)
            raw["warm_prometheus"].append(seconds)
            requests_made["warm"].append(made)
            # Every unfinished job answers differently from the last scrape: each is parsed and
            # rendered again. The next scrape, back on the usual answers, is not measured.
            simulator.serve_fixtures(workload.moved)
            seconds, made, moving_exposition = timed_scrape(warm, simulator, session)
            raw["warm_moving"].append(seconds)
            requests_made["warm"].append(made)
            simulator.serve_fixtures({job_id: workload.bodies[job_id] for job_id in workload.unfinished})
            requests_made["warm"].append(timed_scrape(warm, simulator, session)[1])
            raw["warm_no_files"].append(timed_scrape(no_files, simulator, session)[0])
            # One scrape, then all at once, each on a new round of the same warm exporter.
            after_shared_round()
            raw["shared_one"].append(timed_scrape(shared, simulator, session, PROMETHEUS_FORMAT)[0])
            shared_round_at = time.monotonic()
            after_shared_round()
            seconds, made, together = scrape_together(shared, simulator, sessions, PROMETHEUS_FORMAT)
            shared_round_at = time.monotonic()
            raw["shared_together"].append(seconds)
            requests_made["together"].append(made)
            if repetition < 3:
                raw["naive"].append(naive.scrape(session))
        memory = {"warm": warm.memory(), "cold": cold_memory, "no_files": no_files.memory(),
                  "shared": shared.memory()}
        bodies_agree = len({decoded(b) for b in together}) == 1

    pure = None
    if workload.size.records <= PURE_STEP_MAX_RECORDS:
        budget.check(f"{size.label}: pure step")
        pure = measure_pure_step(workload.bodies, time.time(), repetitions)

    text_floor = raw["exposition_floor"]
    floors = {
        "cold": [f + e for f, e in zip(raw["fetch_floor"], text_floor)],
        "cold_prometheus": [f + e for f, e in zip(raw["fetch_floor"], text_floor)],
        "warm": text_floor,
        "warm_prometheus": text_floor,
        "warm_moving": text_floor,
        "warm_no_files": raw["exposition_floor_no_files"],
        "shared_together": raw["shared_one"],
    }
    expected = {"cold": len(urls), "warm": len(unfinished_urls), "together": len(unfinished_urls),
                "first warm": len(urls)}
    observed = {"cold": sorted(set(requests_made["cold"] + [cold_first])),
                "warm": sorted(set(requests_made["warm"])),
                "together": sorted(set(requests_made["together"])),
                "first warm": [warm_first]}
    result = {
        "size": asdict(size),
        "label": size.label,
        "records": size.records,
        "body_bytes": workload.body_bytes,
        "unfinished_jobs": len(unfinished_urls),
        "samples": expo_floor.samples,
        "samples_no_files": no_files_floor.samples,
        "warm_samples": count_samples(warm_exposition.decode()),
        "warm_prometheus_samples": count_samples(decoded(warm_prometheus)),
        # The moving scrape served the unfinished jobs' later answers: files had moved on.
        "moving_exposition_differs": _file_counts(moving_exposition) != _file_counts(warm_exposition),
        "exposition_bytes": len(exposition),
        "concurrent_scrapes": concurrent,
        "concurrent_bodies_agree": bodies_agree,
        "seconds": {name: median(values) for name, values in raw.items() if values},
        # The median of the per-repetition ratios: each divides by floors taken moments before.
        "ratios": {kind: median(t / f for t, f in zip(raw[kind], floors[kind])) for kind in floors},
        "naive_vs_warm_prometheus": median(raw["naive"]) / median(raw["warm_prometheus"]),
        "first_scrape": first,
        "memory_bytes": {name: {"current": now, "peak": peak} for name, (now, peak) in memory.items()},
        "api_requests": {"expected": expected, "observed": observed,
                         "ok": all(observed[k] == [expected[k]] for k in expected)},
        "raw_seconds": raw,
        "api_requests_per_scrape": requests_made,
    }
    if pure is not None:
        result["pure_step"] = {**asdict(pure),
                               "parse_us_per_record": pure.parse / pure.records * 1e6,
                               "build_s_per_100k_samples": pure.per_100k_samples(pure.build),
                               "encode_s_per_100k_samples": pure.per_100k_samples(pure.encode),
                               "openmetrics_gzip_s_per_100k_samples": pure.per_100k_samples(pure.openmetrics_gzip)}
    return result


def measure_latency_bound(repetitions: int, budget: Budget) -> dict:
    """Cold scrapes against a slow API: the exporter's concurrency against the network floor."""
    workload = build_workload(LATENCY_SIZE)
    key = secrets.token_urlsafe(24)
    raw: dict[str, list[float]] = {"fetch_floor": [], "cold": []}
    with contextlib.ExitStack() as stack:
        simulator = start_simulator(workload, key, latency=LATENCY)
        stack.callback(simulator.stop)
        urls = [simulator.url + JOB_PATH + job_id for job_id in workload.job_ids]
        fetch = stack.enter_context(FetchFloorClient({"all": urls}, key, API_CONCURRENCY))
        session = stack.enter_context(loopback_session())
        for repetition in range(repetitions):
            budget.check(f"latency-bound: repetition {repetition + 1}")
            raw["fetch_floor"].append(fetch.round("all"))
            raw["cold"].append(fresh_scrape(simulator, workload.job_ids, key, session)[0])
    return {"label": LATENCY_SIZE.label, "latency": LATENCY,
            "seconds": {k: median(v) for k, v in raw.items()},
            "ratio": median(c / f for c, f in zip(raw["cold"], raw["fetch_floor"])), "raw_seconds": raw}


def _file_counts(exposition: bytes) -> list[bytes]:
    """The files-per-status lines: they change when files move on, not with the time of the scrape."""
    return sorted(line for line in exposition.splitlines() if line.startswith(b"seekrflow_ingestion_job_files{"))


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}" if seconds >= 10 else f"{seconds * 1000:.1f}"


def _mb(size: int) -> str:
    return f"{size / 2**20:.0f}"


def render_tables(results: list[dict], latency: dict, repetitions: int) -> str:
    lines = [f"Scrape times, medians of {repetitions} (ms). text = text format, identity; prom = as Prometheus",
             "asks (OpenMetrics, gzip). Ratios: medians of per-repetition ratios against floors of the same",
             "repetition: cold / (fetch + expo), warm / expo, no-files warm / its own expo.", ""]
    head = (f"{'size':>11} {'records':>7} {'samples':>7} | {'fetch':>6} {'expo':>6} | {'cold':>6} {'ratio':>5} "
            f"{'prom':>6} {'ratio':>5} | {'fetch*':>6} {'warm':>6} {'ratio':>5} {'prom':>6} {'ratio':>5} "
            f"{'moving':>6} {'ratio':>5} | {'nofile':>6} {'ratio':>5}")
    lines += [head, "-" * len(head)]
    for r in results:
        s, q = r["seconds"], r["ratios"]
        lines.append(
            f"{r['label']:>11} {r['records']:>7} {r['samples']:>7} | {_ms(s['fetch_floor']):>6} "
            f"{_ms(s['exposition_floor']):>6} | {_ms(s['cold']):>6} {q['cold']:>5.2f} "
            f"{_ms(s['cold_prometheus']):>6} {q['cold_prometheus']:>5.2f} | {_ms(s['fetch_floor_unfinished']):>6} "
            f"{_ms(s['warm']):>6} {q['warm']:>5.2f} {_ms(s['warm_prometheus']):>6} {q['warm_prometheus']:>5.2f} "
            f"{_ms(s['warm_moving']):>6} {q['warm_moving']:>5.2f} | {_ms(s['warm_no_files']):>6} {q['warm_no_files']:>5.2f}")
    lines += ["", "fetch* = fetch floor over the unfinished jobs only (what a warm scrape must read); moving = a warm",
              "text scrape where every unfinished job's answer changed since the last scrape.", ""]

    lines += ["Simultaneous warm scrapes (prom), the first scrape of a fresh exporter, the naive baseline", ""]
    head = (f"{'size':>11} | {'one ms':>7} {'N':>3} {'all N ms':>8} {'ratio':>5} | {'first ms':>8} {'in 10s':>6} "
            f"{'jobs w/ data':>12} | {'naive ms':>8} {'x warm':>6}")
    lines += [head, "-" * len(head)]
    for r in results:
        s, f = r["seconds"], r["first_scrape"]
        lines.append(
            f"{r['label']:>11} | {_ms(s['shared_one']):>7} {r['concurrent_scrapes']:>3} {_ms(s['shared_together']):>8} "
            f"{r['ratios']['shared_together']:>5.2f} | {_ms(f['seconds']):>8} {'yes' if f['within_timeout'] else 'NO':>6} "
            f"{f['jobs_with_data']:>5} of {f['jobs']:<5} | {_ms(s['naive']):>8} {r['naive_vs_warm_prometheus']:>6.1f}")
    lines += ["", "ratio = all N answered / one scrape; x warm = naive scrape / the exporter's warm prom scrape.", ""]

    lines += ["Resident memory of the exporter processes (MB): now (after the run) / peak", ""]
    head = f"{'size':>11} | {'warm':>11} | {'cold':>11} | {'no files':>11} | {'first':>5}"
    lines += [head, "-" * len(head)]
    for r in results:
        m = r["memory_bytes"]

        def cell(name):  # called in this iteration only
            return f"{_mb(m[name]['current'])} / {_mb(m[name]['peak'])}"  # noqa: B023

        lines.append(f"{r['label']:>11} | {cell('warm'):>11} | {cell('cold'):>11} | {cell('no_files'):>11} | "
                     f"{_mb(r['first_scrape']['peak_rss']):>5}")
    lines += [""]

    lines += ["API requests per scrape (simulator counter): observed / expected", ""]
    head = f"{'size':>11} {'unfinished':>10} | {'cold':>9} | {'warm':>9} | {'together':>9} | check"
    lines += [head, "-" * len(head)]
    for r in results:
        o, e = r["api_requests"]["observed"], r["api_requests"]["expected"]

        def requests_cell(k):  # called in this iteration only
            return f"{','.join(map(str, o[k]))}/{e[k]}"  # noqa: B023

        lines.append(f"{r['label']:>11} {r['unfinished_jobs']:>10} | {requests_cell('cold'):>9} | "
                     f"{requests_cell('warm'):>9} | {requests_cell('together'):>9} | "
                     f"{'ok' if r['api_requests']['ok'] else 'MISMATCH'}")

    lines += ["", f"Latency-bound cold scrape ({latency['label']}, {latency['latency'] * 1000:.0f} ms per answer): "
                  f"{_ms(latency['seconds']['cold'])} ms against a network floor of "
                  f"{_ms(latency['seconds']['fetch_floor'])} ms, ratio {latency['ratio']:.2f}"]

    pure_rows = [r for r in results if "pure_step" in r]
    if pure_rows:
        lines += ["", "Pure step on the same bodies, no network (medians)", ""]
        head = (f"{'size':>11} {'samples':>7} | {'parse ms':>8} {'us/rec':>6} | {'build ms':>8} {'encode ms':>9} "
                f"{'om+gz ms':>8} | {'s per 100k samples: build':>25} {'encode':>6} {'om+gz':>6}")
        lines += [head, "-" * len(head)]
        for r in pure_rows:
            p = r["pure_step"]
            lines.append(
                f"{r['label']:>11} {p['samples']:>7} | {_ms(p['parse']):>8} {p['parse_us_per_record']:>6.1f} | "
                f"{_ms(p['build']):>8} {_ms(p['encode']):>9} {_ms(p['openmetrics_gzip']):>8} | "
                f"{p['build_s_per_100k_samples']:>25.3f} {p['encode_s_per_100k_samples']:>6.3f} "
                f"{p['openmetrics_gzip_s_per_100k_samples']:>6.3f}")
        lines += ["", "om+gz = the same families as OpenMetrics gzipped at level 1 (prometheus_client's encoders)."]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark the exporter against same-run floors.")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small sizes, 3 repetitions (well under a minute)")
    size.add_argument("--large", action="store_true", help="also the 1M-record size (1000 x 1000), 3 repetitions")
    parser.add_argument("--json", metavar="PATH", help="also write every number to this JSON file")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="stop with an error past this run time (default 120 with --quick, 1200, 3600 with --large)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK_SIZES if args.quick else LARGE_SIZES if args.large else SIZES
    repetitions = QUICK_REPETITIONS if args.quick else LARGE_REPETITIONS if args.large else REPETITIONS
    concurrent = QUICK_CONCURRENT_SCRAPES if args.quick else CONCURRENT_SCRAPES
    budget = Budget(args.max_seconds or (120.0 if args.quick else 3600.0 if args.large else 1200.0))
    started = time.monotonic()
    results = []
    for size in sizes:
        print(f"measuring {size.label} ...", file=sys.stderr, flush=True)
        results.append(measure_size(build_workload(size), repetitions, concurrent, budget))
    print("measuring the latency-bound scrape ...", file=sys.stderr, flush=True)
    latency = measure_latency_bound(repetitions, budget)
    print(render_tables(results, latency, repetitions))
    elapsed = time.monotonic() - started
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n{os.cpu_count()} CPUs, Python {platform.python_version()}, run took {elapsed:.1f}s, "
          f"load average at the end {load} (other work on the machine inflates the floors too)")
    if args.json:
        meta = {"python": platform.python_version(), "cpus": os.cpu_count(), "repetitions": repetitions,
                "api_concurrency": API_CONCURRENCY, "concurrent_scrapes": concurrent,
                "elapsed_seconds": elapsed, "quick": args.quick, "large": args.large,
                "load_average_at_end": os.getloadavg()}
        with open(args.json, "w") as handle:
            json.dump({"meta": meta, "sizes": results, "latency_bound": latency}, handle, indent=2)
    return 0 if all(r["api_requests"]["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
