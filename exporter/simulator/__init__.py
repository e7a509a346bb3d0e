"""A SeekrFlow ingestion API simulator: jobs that move over time, served over HTTP.

Run it alone with ``python -m exporter.simulator`` (or ``seekrflow-simulator``), or in-process::

    world = SimulatedWorld(jobs=5, files_per_job=12, seed=1, started_at=time.time())
    with SimulatorServer(world, api_key="key") as simulator:
        print(simulator.url, world.job_ids())
"""

from .server import SimulatorServer
from .world import SimulatedWorld

__all__ = ["SimulatedWorld", "SimulatorServer"]
