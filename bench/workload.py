"""The bodies a benchmark size serves: a frozen mix of settled and unfinished ingestion jobs.

A moving world would make every repetition measure a slightly different exposition. So each job of
a ``SimulatedWorld`` is rendered once, at a moment chosen for it, and the simulator serves those
bodies verbatim (as encoded fixtures): four jobs in five just after their last record ended
(settled, so the exporter caches them), the rest halfway through their run (unfinished, fetched on
every scrape). Bodies are kept encoded only: a million records as dicts would take gigabytes.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from exporter.model import parse_job
from exporter.simulator import SimulatedWorld, SimulatorServer

# Every fifth job stays unfinished: "most jobs settled", as a long-running exporter sees them.
UNFINISHED_EVERY = 5
SEED = 11
# Two files in three are picked by a worker before the halfway mark of a job's run.
_HALFWAY = 0.5
# An unfinished job's second answer, for scrapes where every unfinished job moved since the last:
# the first of these shares of its run later at which some of its files moved on.
MOVED_BY = (0.02, 0.05, 0.1, 0.2)
# Jobs are planned this many at a time, so planning a million records never holds them all.
_PLAN_CHUNK_RECORDS = 50_000


@dataclass(frozen=True)
class Size:
    jobs: int
    files_per_job: int

    @property
    def label(self) -> str:
        return f"{self.jobs} x {self.files_per_job}"

    @property
    def records(self) -> int:
        return self.jobs * self.files_per_job


@dataclass(frozen=True)
class Workload:
    size: Size
    bodies: dict[str, bytes]  # job ID -> the encoded IngestionResponse
    unfinished: tuple[str, ...]
    moved: dict[str, bytes]  # unfinished job ID -> its answer a little later in its run

    @property
    def job_ids(self) -> list[str]:
        return list(self.bodies)

    @property
    def body_bytes(self) -> int:
        return sum(len(body) for body in self.bodies.values())


def build_workload(size: Size, started_at: float | None = None) -> Workload:
    started_at = time.time() if started_at is None else started_at
    bodies, unfinished, moved = {}, [], {}
    per_chunk = max(1, _PLAN_CHUNK_RECORDS // max(size.files_per_job, 1))
    index = 0
    for chunk, first in enumerate(range(0, size.jobs, per_chunk)):
        world = SimulatedWorld(jobs=min(per_chunk, size.jobs - first), files_per_job=size.files_per_job,
                               seed=SEED + chunk, started_at=started_at, staggered=False)
        for job_id in world.job_ids():
            created, finished = world.job_created_at(job_id), world.job_finished_at(job_id)
            stays_unfinished = index % UNFINISHED_EVERY == 0
            moment = created + _HALFWAY * (finished - created) if stays_unfinished else finished + 1.0
            body = json.dumps(world.job_response(job_id, moment), separators=(",", ":")).encode()
            # The steady-state request count is only meaningful if the exporter sees the same mix.
            if parse_job(json.loads(body)).is_settled == stays_unfinished:
                raise RuntimeError(f"workload job {job_id}: expected settled={not stays_unfinished}")
            bodies[job_id] = body
            if stays_unfinished:
                unfinished.append(job_id)
                moved[job_id] = _moved(world, job_id, moment, finished - created, body)
            index += 1
    return Workload(size, bodies, tuple(unfinished), moved)


def _moved(world: SimulatedWorld, job_id: str, moment: float, run: float, body: bytes) -> bytes:
    for share in MOVED_BY:
        later = json.dumps(world.job_response(job_id, moment + share * run), separators=(",", ":")).encode()
        if later != body and not parse_job(json.loads(later)).is_settled:
            return later
    raise RuntimeError(f"workload job {job_id}: no later answer that differs and is still unfinished")


def start_simulator(workload: Workload, api_key: str, latency: float = 0.0) -> SimulatorServer:
    """The simulator on a free loopback port, serving the workload's frozen bodies."""
    server = SimulatorServer(SimulatedWorld(jobs=0), api_key, fixtures=workload.bodies, latency=latency)
    server.start("127.0.0.1", 0)
    return server
