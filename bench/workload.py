"""The bodies a benchmark size serves: a frozen mix of settled and unfinished ingestion jobs.

A moving world would make every repetition measure a slightly different exposition. So each job of
a ``SimulatedWorld`` is rendered once, at a moment chosen for it, and the simulator serves those
bodies verbatim (as fixtures): most jobs just after their last record ended (settled, so the
exporter caches them), the rest halfway through their run (unfinished, fetched on every scrape).
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


@dataclass(frozen=True)
class Size:
    jobs: int
    files_per_job: int

    @property
    def label(self) -> str:
        return f"{self.jobs} x {self.files_per_job}"


@dataclass(frozen=True)
class Workload:
    size: Size
    bodies: dict[str, dict]
    unfinished: tuple[str, ...]

    @property
    def job_ids(self) -> list[str]:
        return list(self.bodies)

    @property
    def records(self) -> int:
        return sum(len(body["file_records"]) for body in self.bodies.values())


def build_workload(size: Size, started_at: float | None = None) -> Workload:
    started_at = time.time() if started_at is None else started_at
    world = SimulatedWorld(jobs=size.jobs, files_per_job=size.files_per_job, seed=SEED,
                           started_at=started_at, staggered=False)
    bodies, unfinished = {}, []
    for index, job_id in enumerate(world.job_ids()):
        created = world.job_created_at(job_id)
        finished = world.job_finished_at(job_id)
        if index % UNFINISHED_EVERY == 0:
            body = world.job_response(job_id, created + _HALFWAY * (finished - created))
            unfinished.append(job_id)
        else:
            body = world.job_response(job_id, finished + 1.0)
        bodies[job_id] = body
    _check_mix(bodies, set(unfinished))
    return Workload(size, bodies, tuple(unfinished))


def _check_mix(bodies: dict[str, dict], unfinished: set[str]) -> None:
    # The steady-state request count is only meaningful if the exporter sees the same mix.
    for job_id, body in bodies.items():
        settled = parse_job(json.loads(json.dumps(body))).is_settled
        if settled == (job_id in unfinished):
            raise RuntimeError(f"workload job {job_id}: expected settled={job_id not in unfinished}")


def start_simulator(workload: Workload, api_key: str) -> SimulatorServer:
    """The simulator on a free loopback port, serving the workload's frozen bodies."""
    world = SimulatedWorld(jobs=0)
    server = SimulatorServer(world, api_key, fixtures=workload.bodies)
    server.start("127.0.0.1", 0)
    return server
