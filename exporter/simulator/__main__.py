"""Run the SeekrFlow API simulator: ``python -m exporter.simulator`` or ``seekrflow-simulator``.

Prints the base URL, then one job ID per line, then one data job ID per line, on stdout (a script
can build a config from it).
The API key comes from SEEKR_API_KEY, never from the command line; when it is not set, one is
generated and shown once on stderr. Ctrl-C or SIGTERM stops it cleanly (exit 0).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sys
import threading
import time

from ..address import parse_listen_address
from .datajobs import SimulatedDataJobs
from .server import SimulatorServer, parse_fault
from .world import SimulatedWorld

PROG = "seekrflow-simulator"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        host, port = _listen_address(args.listen_address)
        faults = dict(_fault(spec) for spec in args.fault)
        fixtures = dict(_fixture(path) for path in args.fixture)
        world = SimulatedWorld(
            jobs=args.jobs, files_per_job=args.files_per_job, seed=args.seed, speed=args.speed,
            failure_rate=args.failure_rate, deleted_rate=args.deleted_rate,
            started_at=time.time(), workers=args.workers, fail_records=args.fail_records,
            stalled_jobs=args.stall_job, staggered=not args.no_stagger,
        )
        data_jobs = SimulatedDataJobs(world, args.data_jobs, seed=args.seed)
    except ValueError as error:
        parser.error(str(error))

    api_key = os.environ.get("SEEKR_API_KEY")
    if not api_key:
        api_key = secrets.token_urlsafe(24)
        print(f"{PROG}: SEEKR_API_KEY is not set; generated API key: {api_key}", file=sys.stderr)

    server = SimulatorServer(
        world, api_key, latency=args.latency, faults=faults, fixtures=fixtures, data_jobs=data_jobs,
        access_log=args.access_log,
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        url = server.start(host, port)
    except OSError as error:
        print(f"{PROG}: cannot listen on {args.listen_address}: {error.strerror or error}",
              file=sys.stderr)
        return 1
    try:
        job_ids = world.job_ids() + [job_id for job_id in fixtures if job_id not in world.job_ids()]
        print(url, *job_ids, *data_jobs.ids(), sep="\n", flush=True)
        stop.wait()
    finally:
        server.stop()
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Serve simulated SeekrFlow ingestion jobs that progress over time.",
    )
    add = parser.add_argument
    add("--listen-address", default="127.0.0.1:8080", metavar="HOST:PORT",
        help="address to listen on; port 0 picks a free one (default %(default)s)")
    add("--jobs", type=int, default=5, help="number of ingestion jobs (default %(default)s)")
    add("--files-per-job", type=int, default=12, help="file records per job (default %(default)s)")
    add("--data-jobs", type=int, default=0, metavar="N",
        help="data jobs grouping the ingestion jobs round-robin (default %(default)s)")
    add("--speed", type=float, default=1.0,
        help="simulated seconds per real second (default %(default)s)")
    add("--seed", type=int, default=1, help="seed of the generated world (default %(default)s)")
    add("--latency", type=float, default=0.0, metavar="SECONDS",
        help="delay added to every answer (default %(default)s)")
    add("--failure-rate", type=float, default=0.1,
        help="chance that a file fails (default %(default)s)")
    add("--deleted-rate", type=float, default=0.05,
        help="chance that a file record is soft-deleted (default %(default)s)")
    add("--workers", type=int, default=3, help="workers per job (default %(default)s)")
    add("--fail-records", type=int, default=0, metavar="N",
        help="the first N files picked in each job fail (default %(default)s)")
    add("--stall-job", type=int, action="append", default=[], metavar="INDEX",
        help="the queue of the job with this index (0-based) never moves; repeatable")
    add("--no-stagger", action="store_true",
        help="create every job at start-up instead of spreading them over their run times")
    add("--fault", action="append", default=[], metavar="JOB_ID=KIND",
        help="serve a fault for a job: http_500, http_503, http_403, http_429 (with Retry-After), bad_json, bad_schema, "
             "slow:<seconds>; repeatable")
    add("--fixture", action="append", default=[], metavar="PATH",
        help="serve this JSON body verbatim for the job named by its id; repeatable")
    add("--access-log", action="store_true", help="log every request on stderr")
    return parser


def _listen_address(value: str) -> tuple[str, int]:
    try:
        host, port = parse_listen_address(value)
    except ValueError:
        host, port = "", 0
    if not host:  # a fake API with a known key is served on a named interface only
        raise ValueError(f"--listen-address {value!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host, port


def _fault(spec: str) -> tuple[str, str]:
    job_id, sep, kind = spec.rpartition("=")
    if not sep or not job_id:
        raise ValueError(f"--fault {spec!r}: expected JOB_ID=KIND, e.g. ij-x=http_500")
    try:
        parse_fault(kind)
    except ValueError as error:
        raise ValueError(f"--fault {spec!r}: {error}") from None
    return job_id, kind


def _fixture(path: str) -> tuple[str, dict]:
    try:
        with open(path, encoding="utf-8") as file:
            body = json.load(file)
    except (OSError, ValueError) as error:
        raise ValueError(f"--fixture {path}: {error}") from None
    if not isinstance(body, dict) or not isinstance(body.get("id"), str) or not body["id"]:
        raise ValueError(f"--fixture {path}: expected a JSON object with a string \"id\"")
    return body["id"], body


if __name__ == "__main__":
    sys.exit(main())
