"""Canary analysis: the evidence from the decision log and the clicks, and the verdict. Pure.

A ``Tally`` is fed decisions (``tailor_pipeline.decisions``) and click events in any
interleaving (they come from two topics) and keeps, per model version, what the verdict
needs: requests, errors, a latency histogram, and how many decisions were followed by a
click on one of the items they showed within the attribution window.

``judge`` turns two arms (canary, stable) into pass, fail or wait. Noise can neither promote
nor kill a model: every check needs ``min_samples`` on each arm it compares, and the
click-through check fails only when the canary is *significantly* (one-sided, ``z``) below
``min_ctr_ratio`` times stable's rate.
"""

from __future__ import annotations

import array
import bisect
import math
import zlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from tailor_pipeline.decisions import Decision

# Latency buckets: 0.05 ms to ~60 s, each 5% wider than the last, so a p99 read from the
# histogram is at most 5% above the true one.
_BUCKET_RATIO = 1.05
LATENCY_BOUNDS_MS: tuple[float, ...] = tuple(
    0.05 * _BUCKET_RATIO**i for i in range(int(math.log(60_000 / 0.05, _BUCKET_RATIO)) + 2)
)
# One-sided 95%.
DEFAULT_Z = 1.645


@dataclass
class Arm:
    """What one model version did during the analysis."""

    requests: int = 0
    errors: int = 0
    # Answered decisions that showed at least one item, and those followed by a click.
    shown: int = 0
    clicked: int = 0
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS_MS) + 1))

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def ctr(self) -> float:
        return self.clicked / self.shown if self.shown else 0.0

    def observe_latency(self, ms: float) -> None:
        self.latency_counts[bisect.bisect_left(LATENCY_BOUNDS_MS, ms)] += 1

    def latency_quantile_ms(self, q: float) -> float | None:
        """The upper bound of the bucket holding quantile ``q``; None without requests."""
        total = sum(self.latency_counts)
        if total == 0:
            return None
        rank = math.ceil(q * total)
        seen = 0
        for index, count in enumerate(self.latency_counts):
            seen += count
            if seen >= rank:
                return LATENCY_BOUNDS_MS[min(index, len(LATENCY_BOUNDS_MS) - 1)]
        return LATENCY_BOUNDS_MS[-1]  # pragma: no cover - rank <= total


def _item_key(item: str) -> int:
    # Shown items are kept as 32-bit hashes, not strings: a tenth of the memory, and a
    # false match needs two of a user's items in one decision window to collide.
    return zlib.crc32(item.encode())


@dataclass(slots=True)
class _Shown:
    ts: int
    version: str | None
    items: array.array[int]
    clicked: bool = False


@dataclass(slots=True)
class _Click:
    ts: int
    item: int
    # The decision this click credits, while it is kept; ``final`` once that decision was
    # forgotten (its credit stays counted, and the click credits nothing else).
    credits: _Shown | None = None
    final: bool = False


# The most decisions and clicks a Tally keeps for the click-through join (a few hundred
# bytes each with their user's entry): at 5,000 decisions/s two 5-minute windows would be
# 3 million.
MAX_PENDING = 100_000


def _user_bucket(user: str) -> int:
    # Stable across processes: an operator that restarts samples the same users.
    return zlib.crc32(user.encode())


class Tally:
    """Arms per model version, from decisions and clicks read in any interleaving.

    Requests, errors and latency count every decision. The click-through join credits each
    click to the latest decision before it, within the attribution window, that showed the
    item and has no click yet. It is recomputed per user from what is kept, so the result
    does not depend on which topic was read first: crediting whichever decision was read
    first gave the oldest ones the clicks, and a canary, younger than stable by its start,
    got almost none.

    The join keeps the decisions and clicks of a sample of users, by a hash of the user id:
    all of them while they fit in ``max_pending``, then half, a quarter ... Both arms are
    sampled alike (the Service spreads every user's requests over both), so their rates
    stay comparable; a user who leaves the sample keeps the credits already counted, whose
    later clicks are lost to both arms alike. Memory stays bounded whatever the traffic."""

    def __init__(self, attribution_ms: int, max_pending: int = MAX_PENDING) -> None:
        self.attribution_ms = attribution_ms
        self.max_pending = max_pending
        self.arms: dict[str | None, Arm] = defaultdict(Arm)
        self._shown: dict[str, list[_Shown]] = defaultdict(list)
        self._clicks: dict[str, list[_Click]] = defaultdict(list)
        # Users with entries added since their last join.
        self._dirty: set[str] = set()
        self._watermark = 0
        self._since_prune = 0
        self._pending = 0
        # A user is in the sample when the low ``_sample_bits`` bits of its hash are 0.
        self._sample_bits = 0

    @property
    def sample_rate(self) -> float:
        """The share of users whose decisions and clicks the click-through join sees."""
        return 1.0 / (1 << self._sample_bits)

    def _sampled(self, user: str) -> bool:
        return _user_bucket(user) & ((1 << self._sample_bits) - 1) == 0

    def arm(self, version: str | None) -> Arm:
        self._join_dirty()
        return self.arms[version]

    def add_decision(self, decision: Decision) -> None:
        arm = self.arms[decision.model_version]
        arm.requests += 1
        arm.observe_latency(decision.latency_ms)
        if decision.error is not None:
            arm.errors += 1
            return
        if not decision.items or not self._sampled(decision.user_id):
            return
        arm.shown += 1
        items = array.array("I", [_item_key(i.item_id) for i in decision.items])
        self._shown[decision.user_id].append(_Shown(decision.ts, decision.model_version, items))
        self._added(decision.user_id, decision.ts)

    def add_click(self, user: str, item: str, ts: int) -> None:
        if not self._sampled(user):
            return
        self._clicks[user].append(_Click(ts, _item_key(item)))
        self._added(user, ts)

    def _added(self, user: str, ts: int) -> None:
        self._dirty.add(user)
        self._pending += 1
        self._watermark = max(self._watermark, ts)
        self._since_prune += 1
        if self._since_prune >= 10_000 or self._pending > self.max_pending:
            self.prune()

    def _join_dirty(self) -> None:
        for user in self._dirty:
            self._join(user)
        self._dirty.clear()

    def _join(self, user: str) -> None:
        """Credit the user's clicks, oldest first, each to the latest uncredited decision
        before it that showed the item; the arms' click counts follow the change."""
        shown = self._shown.get(user, [])
        shown.sort(key=lambda s: s.ts)
        clicks = self._clicks.get(user, [])
        clicks.sort(key=lambda c: c.ts)
        for entry in shown:
            if entry.clicked:
                self.arms[entry.version].clicked -= 1
                entry.clicked = False
        for click in clicks:
            if click.final:
                continue
            click.credits = None
            first = bisect.bisect_right(shown, click.ts, key=lambda s: s.ts)
            for entry in reversed(shown[:first]):
                if entry.ts < click.ts - self.attribution_ms:
                    break
                if not entry.clicked and click.item in entry.items:
                    entry.clicked, click.credits = True, entry
                    self.arms[entry.version].clicked += 1
                    break

    def prune(self) -> None:
        """Forget what can no longer be joined (memory follows traffic in one window), then
        halve the sample until what is left fits in ``max_pending``."""
        self._join_dirty()
        self._since_prune = 0
        horizon = self._watermark - 2 * self.attribution_ms
        self._keep(lambda user, entry: entry.ts >= horizon)
        while self._pending > self.max_pending:
            self._sample_bits += 1
            self._keep(lambda user, entry: self._sampled(user))

    def _keep(self, keep: Callable[[str, _Shown | _Click], bool]) -> None:
        """Keep the entries ``keep`` says; a forgotten decision's credit stays counted."""
        pending = 0
        for user in list(self._shown.keys() | self._clicks.keys()):
            shown = []
            for entry in self._shown.get(user, ()):
                if keep(user, entry):
                    shown.append(entry)
                elif entry.clicked:
                    entry.clicked = False  # counted for good: a later join must not undo it
            clicks = [entry for entry in self._clicks.get(user, ()) if keep(user, entry)]
            for click in clicks:
                if click.credits is not None and not click.credits.clicked and not click.final:
                    click.final, click.credits = True, None
            for table, kept in ((self._shown, shown), (self._clicks, clicks)):
                if kept:
                    table[user] = kept  # type: ignore[assignment]
                else:
                    table.pop(user, None)
            pending += len(shown) + len(clicks)
        self._pending = pending

    @property
    def pending(self) -> int:
        """Decisions and clicks kept for the click-through join."""
        return self._pending

    @property
    def newest_ms(self) -> int:
        """The newest timestamp read so far (how far behind the reader is)."""
        return self._watermark


@dataclass(frozen=True)
class Criteria:
    """When a canary passes; from ``spec.scorer.rollout``."""

    analysis_s: float
    # Elapsed seconds after which a canary still short of samples has stalled.
    deadline_s: float
    max_error_rate: float
    max_p99_ms: float
    min_ctr_ratio: float
    min_samples: int
    z: float = DEFAULT_Z


Outcome = Literal["pass", "fail", "wait"]


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    # Which check decided (error rate, p99 latency, click-through rate, stalled, pods).
    check: str
    message: str


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def ctr_significantly_below(canary: Arm, stable: Arm, ratio: float, z: float) -> bool:
    """Is the canary's click-through rate below ``ratio`` x stable's, beyond noise? One-sided
    test on the difference of two proportions, with the Agresti-Caffo adjustment (one click
    and one miss added to each arm): with rare clicks, an arm with none would otherwise look
    certain, and zero clicks in 150 decisions would "prove" a model worse than 5 in 368."""
    p_c = (canary.clicked + 1) / (canary.shown + 2)
    p_s = (stable.clicked + 1) / (stable.shown + 2)
    difference = p_c - ratio * p_s
    variance = p_c * (1 - p_c) / (canary.shown + 2) + ratio**2 * p_s * (1 - p_s) / (
        stable.shown + 2
    )
    return difference + z * math.sqrt(variance) < 0


def summary(canary: Arm, stable: Arm) -> str:
    p99_c, p99_s = canary.latency_quantile_ms(0.99), stable.latency_quantile_ms(0.99)
    return (
        f"canary {canary.requests} requests, errors {_pct(canary.error_rate)}, p99"
        f" {_ms(p99_c)}, CTR {_pct(canary.ctr)} of {canary.shown}; stable {stable.requests}"
        f" requests, errors {_pct(stable.error_rate)}, p99 {_ms(p99_s)}, CTR"
        f" {_pct(stable.ctr)} of {stable.shown}"
    )


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}ms"


def judge(canary: Arm, stable: Arm, criteria: Criteria, elapsed_s: float) -> Verdict:
    """Pass, fail or wait, after ``elapsed_s`` of analysis. A failure is reported as soon as
    it is certain; a pass only once the whole analysis window has elapsed."""
    n = criteria.min_samples
    numbers = summary(canary, stable)
    if canary.requests >= n and canary.error_rate > criteria.max_error_rate:
        return Verdict(
            "fail",
            "error rate",
            f"error rate {_pct(canary.error_rate)} > {_pct(criteria.max_error_rate)}"
            f" ({canary.errors} of {canary.requests} requests failed)",
        )
    p99 = canary.latency_quantile_ms(0.99)
    if canary.requests >= n and p99 is not None and p99 > criteria.max_p99_ms:
        return Verdict(
            "fail",
            "p99 latency",
            f"p99 latency {p99:.1f}ms > {criteria.max_p99_ms:g}ms over {canary.requests} requests",
        )
    ctr_ready = canary.shown >= n and stable.shown >= n
    if ctr_ready and ctr_significantly_below(canary, stable, criteria.min_ctr_ratio, criteria.z):
        return Verdict(
            "fail",
            "click-through rate",
            f"click-through rate {_pct(canary.ctr)} ({canary.clicked}/{canary.shown}) is"
            f" significantly below {criteria.min_ctr_ratio:g} x stable's {_pct(stable.ctr)}"
            f" ({stable.clicked}/{stable.shown})",
        )
    if elapsed_s >= criteria.analysis_s and canary.requests >= n and ctr_ready:
        return Verdict("pass", "all", f"passed after {elapsed_s:.0f}s: {numbers}")
    if elapsed_s >= criteria.deadline_s:
        missing = []
        if canary.requests < n:
            missing.append(f"canary has {canary.requests} of {n} requests")
        if canary.shown < n:
            missing.append(f"canary has {canary.shown} of {n} decisions with items")
        if stable.shown < n:
            missing.append(f"stable has {stable.shown} of {n} decisions with items")
        return Verdict(
            "fail",
            "stalled",
            f"no verdict after {elapsed_s:.0f}s (the analysis window plus"
            f" progressDeadlineSeconds): {'; '.join(missing) or 'window not over'}",
        )
    return Verdict(
        "wait", "", f"analysing for {elapsed_s:.0f}s of {criteria.analysis_s:.0f}s: {numbers}"
    )
