"""Overload protection of the scorer: how long requests now wait for the event loop decides
whether each one is ranked in full, answered cheaply from trending items (degraded), or
refused with 503 and Retry-After (shed).

The wait is measured, not guessed: a timer that should fire every ``PROBE_SECONDS`` fires
late by exactly the time the callbacks queued ahead of it took, which is what a request
arriving now would wait before its handler runs. Ranking is most of a request's cost and a
degraded answer almost none, so under a load the scorer cannot rank, the queue stops
growing: admitted requests keep their latency, the excess still gets an answer, and only
when even that cannot keep up (the median of the last three probes is over the limit) are
requests refused. A client that sends a deadline
(``X-Tailor-Deadline-Ms``) is refused at once when the wait alone would exceed it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from dataclasses import dataclass
from typing import Literal

from prometheus_client import Counter, Gauge

QUEUE_WAIT = Gauge(
    "tailor_scorer_queue_wait_seconds",
    "How long a request arriving now waits for the event loop (the admission signal)",
)
DEGRADED = Counter(
    "tailor_scorer_degraded", "Requests answered from trending items because of the load"
)
SHED = Counter("tailor_scorer_shed", "Requests refused with 503 because of the load")

DEADLINE_HEADER = "X-Tailor-Deadline-Ms"
DEADLINE_HEADER_KEY = DEADLINE_HEADER.lower()  # as the server hands headers over
PROBE_SECONDS = 0.002

Verdict = Literal["rank", "degrade", "shed"]


@dataclass(frozen=True)
class Limits:
    """Queue waits (ms) at which answers degrade, and at which requests are refused."""

    degrade_after_ms: float = 3.0
    shed_after_ms: float = 50.0


def verdict(
    wait_ms: float, sustained_ms: float, limits: Limits, deadline_ms: float | None = None
) -> Verdict:
    """What to do with a request arriving now (pure). ``wait_ms``: the latest wait;
    ``sustained_ms``: the median of the last few. Overload is a queue that stays: one
    stall (the process descheduled, a long collection) is over by the time it is seen, and
    neither degrades nor refuses anyone. A client's deadline is held against the latest
    wait."""
    if deadline_ms is not None and wait_ms >= deadline_ms:
        return "shed"
    if sustained_ms >= limits.shed_after_ms:
        return "shed"
    if sustained_ms >= limits.degrade_after_ms:
        return "degrade"
    return "rank"


class QueueWait:
    """The event loop's current lateness, kept up to date by a probe task that runs only
    while requests come in (an idle scorer must not burn CPU: its HPA scales on CPU)."""

    # The probe stops after this long without a request.
    IDLE_SECONDS = 0.5

    # The sustained wait is the median of this many probes.
    SUSTAINED_PROBES = 3

    def __init__(self) -> None:
        self.ms = 0.0
        self.sustained_ms = 0.0
        self._recent: collections.deque[float] = collections.deque(maxlen=self.SUSTAINED_PROBES)
        self._last_request = 0.0
        self._task: asyncio.Task[None] | None = None

    def note_request(self) -> None:
        """A request arrived: keep (or start) probing."""
        loop = asyncio.get_running_loop()
        self._last_request = loop.time()
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._probe())

    def start(self) -> None:
        """Probe now, whether or not requests come in (for a caller that needs a value)."""
        self.note_request()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _probe(self) -> None:
        loop = asyncio.get_running_loop()
        while loop.time() - self._last_request < self.IDLE_SECONDS:
            due = loop.time() + PROBE_SECONDS
            await asyncio.sleep(PROBE_SECONDS)
            self.ms = max(0.0, (loop.time() - due) * 1000.0)
            self._recent.append(self.ms)
            full = len(self._recent) == self._recent.maxlen
            # The median of the last three: one late probe (a stall) does not move it.
            self.sustained_ms = sorted(self._recent)[len(self._recent) // 2] if full else 0.0
            QUEUE_WAIT.set(self.ms / 1000.0)
        self.ms = self.sustained_ms = 0.0
        self._recent.clear()
        QUEUE_WAIT.set(0.0)
