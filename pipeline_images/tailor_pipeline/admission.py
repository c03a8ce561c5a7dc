"""Overload protection of the scorer: how long requests wait for the event loop decides
whether each one is ranked in full, answered cheaply from trending or popular items
(degraded), or refused with 503 and Retry-After (shed).

Two measurements, both of the time requests spend waiting, neither a guess:

- **This request's wait.** The loop learns which connections have data when its selector
  returns (``LoopSelector`` stamps that moment); a request handled 8 ms later has waited at
  least 8 ms, behind the requests handled first in the same round. A burst (hundreds of
  requests ready at once: a client's pool flushing, the scorer descheduled for a moment)
  shows here at once, so a request of a round of several that already waited
  ``degrade_after_ms`` is answered cheaply and the round ends sooner for the rest.
- **The sustained wait.** A timer that should fire every ``PROBE_SECONDS`` fires late by
  the time the callbacks queued ahead of it took: the median of the last three probes is the
  wait a request arriving now should expect. One stall is over by the time it is seen and
  moves nothing; a wait that stays moves the shares.

The shares follow the sustained wait like a thermostat, not a switch. While it is at or
over ``degrade_after_ms`` the degraded share grows by ``STEP_UP`` each probe; once it is
under half that, it shrinks by ``STEP_DOWN``; between the two it holds. Ranking is most of a
request's cost and a degraded answer little of it, so the share settles where the load the
scorer ranks is the load it can rank within the budget: admitted requests keep their
latency and the excess still gets an answer. An all-or-nothing switch (the first design)
made the queue swing: everything degraded, the queue drained, everything ranked, the queue
grew, and the admitted p99 was that swing. Only when degrading every request is not enough
does a shed share grow the same way, and only while requests keep arriving (a host busy
with other processes delays the probe too, and refusing a trickle of requests would not
shorten that wait); a wait of ``shed_after_ms`` sheds everything. A client
that sends a deadline (``X-Tailor-Deadline-Ms``) is refused at once when the wait alone
would exceed it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import selectors
import time
from dataclasses import dataclass, replace
from typing import Literal

from prometheus_client import Counter, Gauge

QUEUE_WAIT = Gauge(
    "tailor_scorer_queue_wait_seconds",
    "How long requests arriving now wait for the event loop (median of the last probes)",
)
DEGRADED_SHARE = Gauge(
    "tailor_scorer_degraded_share",
    "Share of requests now answered from trending or popular items because of the load",
)
SHED_SHARE = Gauge(
    "tailor_scorer_shed_share", "Share of requests now refused with 503 because of the load"
)
DEGRADED = Counter(
    "tailor_scorer_degraded", "Requests answered from trending or popular items because of the load"
)
SHED = Counter("tailor_scorer_shed", "Requests refused with 503 because of the load")

DEADLINE_HEADER = "X-Tailor-Deadline-Ms"
DEADLINE_HEADER_KEY = DEADLINE_HEADER.lower()  # as the server hands headers over
PROBE_SECONDS = 0.002

# Per probe over the limit, and per probe well under it. Fast up, so a burst is caught
# within a few probes (10 ms from nothing degraded to half); slow down, so the share does
# not drop to nothing between two bursts and swing back (full to nothing in 100 probes,
# 0.2-0.5 s: the load is back to fully ranked well within a second of dropping).
STEP_UP = 0.1
STEP_DOWN = 0.01

Verdict = Literal["rank", "degrade", "shed"]


@dataclass(frozen=True)
class Limits:
    """Queue waits (ms) past which answers degrade, and at which every request is refused."""

    degrade_after_ms: float = 3.0
    shed_after_ms: float = 50.0


@dataclass(frozen=True)
class Shares:
    """Of the requests arriving now, the share degraded and the share shed."""

    degrade: float = 0.0
    shed: float = 0.0


def adjusted(shares: Shares, sustained_ms: float, limits: Limits, queued: bool = True) -> Shares:
    """The shares after one probe saw ``sustained_ms`` (pure). Shedding starts only once
    every request is degraded, and stops before any is ranked again. ``queued``: requests
    kept arriving while the loop was late, so the wait is theirs; when it is not (a few
    requests a second on a host busy with other processes, which delay the probe as much),
    refusing requests cannot shorten it: they are degraded at most, never shed."""
    if sustained_ms >= limits.shed_after_ms:
        return Shares(1.0, 1.0) if queued else replace(shares, degrade=1.0)
    if sustained_ms >= limits.degrade_after_ms:
        if shares.degrade < 1.0:
            return replace(shares, degrade=min(1.0, shares.degrade + STEP_UP))
        if not queued:
            return shares
        return replace(shares, shed=min(1.0, shares.shed + STEP_UP))
    if sustained_ms < limits.degrade_after_ms / 2:
        if shares.shed > 0.0:
            return replace(shares, shed=max(0.0, shares.shed - STEP_DOWN))
        return replace(shares, degrade=max(0.0, shares.degrade - STEP_DOWN))
    return shares


class LoopSelector(selectors.DefaultSelector):
    """The event loop's selector, stamping when it last returned (every callback of that
    round handles data that was there by then) and how many connections had data."""

    woke = 0.0
    ready = 0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(timeout)
        self.woke = time.perf_counter()
        self.ready = len(ready)
        return ready


def loop_factory(selector: LoopSelector) -> asyncio.AbstractEventLoop:
    """An event loop on ``selector`` (for asyncio.Runner)."""
    return asyncio.SelectorEventLoop(selector)


class Admission:
    """The event loop's current lateness, kept up to date by a probe task that runs only
    while requests come in (an idle scorer must not burn CPU: its HPA scales on CPU), and
    the verdict for each request from the shares it sets."""

    # The probe stops after this long without a request.
    IDLE_SECONDS = 0.5

    # The sustained wait is the median of this many probes.
    SUSTAINED_PROBES = 3

    def __init__(self, limits: Limits | None = None, selector: LoopSelector | None = None) -> None:
        self.limits = limits or Limits()
        # None (a loop of asyncio's choosing, as in tests): each request's own wait is unknown.
        self._selector = selector
        self.ms = 0.0
        self.sustained_ms = 0.0
        # The longer of the last request's own wait and the latest probe's (for messages).
        self.last_wait_ms = 0.0
        self.shares = Shares()
        # What each share owes (_shared).
        self._owed_degrade = self._owed_shed = 0.0
        self._recent: collections.deque[float] = collections.deque(maxlen=self.SUSTAINED_PROBES)
        # Requests that arrived during each of those probes.
        self._arrived: collections.deque[int] = collections.deque(maxlen=self.SUSTAINED_PROBES)
        self._requests = 0
        self._probing = False
        self._task: asyncio.Task[None] | None = None

    def verdict(self, now: float, deadline_ms: float | None = None) -> Verdict:
        """What to do with a request the handler started at ``now`` (perf_counter). A
        client's deadline is held against the longer of its own wait and the latest probe's:
        a request that waited that long is of no use to it."""
        self._note_request()
        limits, selector = self.limits, self._selector
        waited_ms = (now - selector.woke) * 1000.0 if selector is not None else 0.0
        self.last_wait_ms = max(waited_ms, self.ms)
        if deadline_ms is not None and self.last_wait_ms >= deadline_ms:
            return "shed"
        if waited_ms >= limits.shed_after_ms:
            return "shed"
        verdict = self._shared()
        # Degrading a request that waited helps the ones behind it; one alone in its round
        # (it waited because the process was descheduled) has no one behind it.
        burst = selector is not None and selector.ready > 1
        if verdict == "rank" and burst and waited_ms >= limits.degrade_after_ms:
            return "degrade"
        return verdict

    def _shared(self) -> Verdict:
        """The next request's turn under the shares: each share is spread evenly over the
        requests (every fifth, not five in a row)."""
        shares = self.shares
        if not (shares.degrade or shares.shed):
            return "rank"
        owed = self._owed_shed + shares.shed
        if owed >= 1.0:
            self._owed_shed = owed - 1.0
            return "shed"
        self._owed_shed = owed
        owed = self._owed_degrade + shares.degrade
        if owed >= 1.0:
            self._owed_degrade = owed - 1.0
            return "degrade"
        self._owed_degrade = owed
        return "rank"

    def start(self) -> None:
        """Probe now, whether or not requests come in (for a caller that needs a value)."""
        self._note_request()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._probing = False

    def _note_request(self) -> None:
        """A request arrived: keep (or start) probing. Per request, so it only counts: the
        probe reads the count to see whether requests still come."""
        self._requests += 1
        if not self._probing:
            self._probing = True
            self._task = asyncio.get_running_loop().create_task(self._probe())

    async def _probe(self) -> None:
        loop = asyncio.get_running_loop()
        seen, last_request = -1, 0.0
        while True:
            if self._requests != seen:
                seen, last_request = self._requests, loop.time()
            elif loop.time() - last_request >= self.IDLE_SECONDS:
                break
            due, before = loop.time() + PROBE_SECONDS, self._requests
            await asyncio.sleep(PROBE_SECONDS)
            self.ms = max(0.0, (loop.time() - due) * 1000.0)
            self._recent.append(self.ms)
            self._arrived.append(self._requests - before)
            if len(self._recent) == self._recent.maxlen:
                # The median of the last three: one late probe (a stall) does not move it.
                self.sustained_ms = sorted(self._recent)[len(self._recent) // 2]
                # At least a request per probe on average: the queue is made of requests.
                queued = sum(self._arrived) >= len(self._arrived)
                self._set(adjusted(self.shares, self.sustained_ms, self.limits, queued))
        # Idle: nothing waits, and the next request starts from a clean slate.
        self.ms = self.sustained_ms = 0.0
        self._recent.clear()
        self._arrived.clear()
        self._set(Shares())
        self._owed_degrade = self._owed_shed = 0.0
        self._probing = False

    def _set(self, shares: Shares) -> None:
        if shares != self.shares:
            self.shares = shares
            DEGRADED_SHARE.set(shares.degrade)
            SHED_SHARE.set(shares.shed)
        QUEUE_WAIT.set(self.sustained_ms / 1000.0)
