"""Waiting for a round's answers, and when to stop waiting for stragglers.

A round answers before the deadline when only stragglers are left: requests that have run more
than ``STRAGGLER_FACTOR`` (4) times as long as the slowest answer of the same round (or of the
latest round that had answers), and at least a quarter of the round's budget (at least 1 s), so a
job that is merely slow is not taken for a hung one. Their jobs keep their last data (or show
``reason="timeout"`` if they have none); their answers, when they come, serve a later round. With
no answer to judge by, or a request still waiting for a worker, the round waits on: nothing says
they are hung.
"""

from __future__ import annotations

from concurrent.futures import Future, wait
from typing import AbstractSet, Callable, Collection

from .pool import TimedFuture

# A request is a straggler once it has run this many times longer than the slowest answer of its
# round, and at least STRAGGLER_MIN_SECONDS; a round with only stragglers left answers at once.
STRAGGLER_FACTOR = 4.0
STRAGGLER_MIN_SECONDS = 1.0
# ... and at least this share of the round's budget: a slow job is not taken for a hung one.
STRAGGLER_BUDGET_SHARE = 0.25
STRAGGLER_CHECK_EVERY = 0.1

# ``wait_until(futures, deadline)``: the futures done by ``deadline`` (a ``monotonic`` time), returned
# once all are done or the deadline has come.
WaitUntil = Callable[[Collection[Future], float], AbstractSet[Future]]


def _slowest_answer(done: AbstractSet[Future]) -> float | None:
    """How long the slowest of these answered requests took; None if none has timing."""
    taken = [f.finished_at - f.started_at for f in done
             if isinstance(f, TimedFuture) and f.started_at is not None and f.finished_at is not None]
    return max(taken, default=None)


def _only_stragglers(pending: AbstractSet[Future], slowest: float | None, now: float, floor: float) -> bool:
    """Whether every request still pending has started and run far past ``slowest`` (the slowest
    answer of this round, or of the last round that had answers). Without any answer to judge by,
    or with a request still waiting for a worker (it may yet answer quickly), the round waits on."""
    if slowest is None:
        return False
    limit = max(STRAGGLER_FACTOR * slowest, floor)
    return all(isinstance(f, TimedFuture) and f.started_at is not None and now - f.started_at > limit
               for f in pending)


class AnswerWait:
    """A poller's waiting for answers; it remembers the slowest answer of the latest round that had
    answers, which is what "slow" means for the next round."""

    def __init__(self, monotonic: Callable[[], float], wait_until: WaitUntil | None = None):
        """``wait_until`` goes with ``monotonic``: a clock that is not real time brings one that lets
        a deadline come when that clock says (by default, real time on ``monotonic``)."""
        self._monotonic = monotonic
        self.until: WaitUntil = wait_until or self._in_real_time
        self._slowest_answer: float | None = None

    def answers(self, futures: Collection[Future], deadline: float, budget: float) -> AbstractSet[Future]:
        """The futures done by ``deadline``; sooner once only stragglers are left (module docstring)."""
        floor = max(STRAGGLER_MIN_SECONDS, STRAGGLER_BUDGET_SHARE * budget)
        pending: set[Future] = set(futures)
        done: set[Future] = set()
        while pending:
            now = self._monotonic()
            if now >= deadline:
                break
            newly = self.until(pending, min(deadline, now + STRAGGLER_CHECK_EVERY))
            done |= newly
            pending -= newly
            slowest = _slowest_answer(done)
            if slowest is not None:
                self._slowest_answer = slowest
            if pending and _only_stragglers(pending, self._slowest_answer, self._monotonic(), floor):
                break
        return done

    def _in_real_time(self, futures: Collection[Future], deadline: float) -> AbstractSet[Future]:
        return wait(futures, timeout=max(deadline - self._monotonic(), 0.0)).done
