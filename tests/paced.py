"""The simulator and a poller on one clock that only the test moves, so rounds do not race real time.

A ``PacedSimulator`` answers every request ``answer_after`` seconds of the test's clock after the
request arrived, and holds the answer until then. Its ``wait_until`` is the poller's wait for a
round (``JobPoller(..., monotonic=clock, wait_until=simulator.wait_until)``): it lets the held
answers go one at a time, in the order they fall due, while they fall due by the round's deadline,
moving the clock to each; then the deadline comes and the round ends with what was answered.

A job named in ``hung`` is never answered while the simulator runs.

So what a round gets depends only on ``answer_after``, the budget and the pool size, never on how
busy the machine is. Between two steps it waits, in real time, until the pool has started every
request it can and each of them has reached the simulator (at most 20 s, then the test fails).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Collection

from exporter.simulator import SimulatorServer
from harness import wait_until

SETTLE_TIMEOUT = 20.0


class PacedClock:
    """A monotonic clock that moves only when it is moved."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class _HeldAnswer:
    def __init__(self, due: float) -> None:
        self.due = due
        self.released = threading.Event()


class PacedSimulator(SimulatorServer):
    """The simulator on ``clock``, for a poller whose pool has ``workers`` workers."""

    def __init__(self, *args, clock: PacedClock, answer_after: float, workers: int,
                 hung: frozenset[str] = frozenset(), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.clock = clock
        self.answer_after = answer_after
        self.hung = hung  # job IDs whose requests are held until stop(): they never fall due
        self.workers = workers
        self._held: list[_HeldAnswer] = []
        self._held_lock = threading.Lock()
        self._open = threading.Event()  # set on stop(): nothing is held any more

    def answer(self, path: str, authorization: str | None, team_id: str | None = None) -> tuple[int, bytes]:
        answer = super().answer(path, authorization, team_id)  # counted as asked from now on
        hung = path.rstrip("/").rsplit("/", 1)[-1] in self.hung
        held = _HeldAnswer(float("inf") if hung else self.clock.now + self.answer_after)
        with self._held_lock:
            self._held.append(held)
        if not self._open.is_set():
            held.released.wait()
        return answer

    def stop(self) -> None:
        self._open.set()
        with self._held_lock:
            for held in self._held:
                held.released.set()
            self._held.clear()
        super().stop()

    def wait_until(self, futures: Collection[Future], deadline: float) -> set[Future]:
        futures = list(futures)
        while True:
            self._settle(futures)
            with self._held_lock:
                first = min(self._held, key=lambda held: held.due, default=None)
            if first is None or first.due > deadline:
                break
            # The clock moves before the answer goes, so a request it lets start arrives at this time.
            self.clock.now = max(self.clock.now, first.due)
            with self._held_lock:
                self._held.remove(first)
            first.released.set()
        self.clock.now = max(self.clock.now, deadline)
        return {future for future in futures if future.done()}

    def _settle(self, futures: list[Future]) -> None:
        """Wait until every worker that has a request to send has sent it, and it is held here."""
        def settled() -> bool:
            running = sum(future.running() for future in futures)
            unanswered = sum(not future.done() for future in futures)
            with self._held_lock:
                held = len(self._held)
            return running == min(self.workers, unanswered) and held == running

        wait_until(settled, timeout=SETTLE_TIMEOUT, interval=0.002, what="the pool's requests to reach the API")
