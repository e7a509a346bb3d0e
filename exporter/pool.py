"""A fixed set of daemon worker threads for API requests.

Unlike ThreadPoolExecutor, whose workers are joined at interpreter exit, a request still waiting on
a slow API cannot hold up the exporter's shutdown. Each task reports when it started, so that an
answer can be ordered against answers to requests sent earlier or later.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from typing import Callable


class TimedFuture(Future):
    """A future that knows when its task started and ended (monotonic): a request running far
    longer than the others answered in the same round is a straggler (scrape.py)."""

    started_at: float | None = None
    finished_at: float | None = None


class FetchPool:
    def __init__(self, workers: int, monotonic: Callable[[], float] = time.monotonic, name: str = "fetch"):
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._workers = workers
        self._monotonic = monotonic
        for number in range(workers):
            threading.Thread(target=self._work, name=f"{name}-{number}", daemon=True).start()

    def submit(self, fn: Callable, *args) -> TimedFuture:
        """A future of ``(started, fn(*args))``, ``started`` being the monotonic start time."""
        future = TimedFuture()
        self._tasks.put((fn, args, future))
        return future

    def shutdown(self) -> None:
        """Tasks already queued still run; the workers end after them."""
        for _ in range(self._workers):
            self._tasks.put(None)

    def _work(self) -> None:
        while (task := self._tasks.get()) is not None:
            fn, args, future = task
            if not future.set_running_or_notify_cancel():
                continue  # cancelled while it waited
            try:
                started = future.started_at = self._monotonic()
                result = fn(*args)
                future.finished_at = self._monotonic()
                future.set_result((started, result))
            except BaseException as err:  # noqa: BLE001 - handed to whoever waits on the future
                future.finished_at = self._monotonic()
                future.set_exception(err)
