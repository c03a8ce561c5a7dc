"""Overload protection: the shares from the queue wait, the verdicts they spread over the
requests, and what each verdict answers."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from tailor_pipeline.admission import (
    PROBE_SECONDS,
    STEP_DOWN,
    STEP_UP,
    Admission,
    Limits,
    LoopSelector,
    Shares,
    adjusted,
)
from tests.unit.test_scorer_http import post, scorer

LIMITS = Limits(degrade_after_ms=3.0, shed_after_ms=50.0)


@pytest.mark.parametrize(
    ("before", "sustained_ms", "after"),
    [
        (Shares(), 0.5, Shares()),
        (Shares(), 3.0, Shares(STEP_UP, 0.0)),  # a wait that stays: degrade some
        (Shares(0.5), 2.0, Shares(0.5)),  # between half the limit and the limit: hold
        (Shares(0.5), 1.0, Shares(0.5 - STEP_DOWN)),  # well under it: rank more again
        (Shares(1.0), 4.0, Shares(1.0, STEP_UP)),  # degrading everything is not enough
        (Shares(1.0, 0.5), 1.0, Shares(1.0, 0.5 - STEP_DOWN)),  # shed less before ranking
        (Shares(), 50.0, Shares(1.0, 1.0)),  # far behind: refuse everything at once
    ],
)
def test_the_shares_follow_the_wait(before: Shares, sustained_ms: float, after: Shares) -> None:
    assert adjusted(before, sustained_ms, LIMITS) == pytest.approx(after)


@pytest.mark.parametrize(
    ("before", "sustained_ms", "after"),
    [
        (Shares(), 3.0, Shares(STEP_UP, 0.0)),  # a slow loop still degrades ...
        (Shares(1.0), 4.0, Shares(1.0)),  # ... but a trickle of requests is never shed
        (Shares(0.2), 50.0, Shares(1.0)),  # however late the loop is
        (Shares(1.0, 0.5), 1.0, Shares(1.0, 0.5 - STEP_DOWN)),  # a shed share still drains
    ],
)
def test_a_wait_not_made_of_requests_degrades_and_never_sheds(
    before: Shares, sustained_ms: float, after: Shares
) -> None:
    assert adjusted(before, sustained_ms, LIMITS, queued=False) == pytest.approx(after)


def test_the_degraded_share_settles_where_the_ranked_load_fits() -> None:
    """A scorer that ranks 5,000 req/s offered 8,000 (a degraded answer costing a fifth of a
    ranking): its wait grows while it ranks more than it can and shrinks otherwise. The
    share must settle near the 0.47 that fits, not swing between nothing and everything."""
    rank_s, degrade_s, offered, probe_s = 1 / 5000, 1 / 25000, 8000, 0.002
    shares, backlog_s, waits, seen = Shares(), 0.0, [], []
    for _ in range(2000):  # 4 s of probes
        work = offered * probe_s * ((1 - shares.degrade) * rank_s + shares.degrade * degrade_s)
        backlog_s = max(0.0, backlog_s + work - probe_s)
        waits.append(backlog_s * 1000)
        shares = adjusted(shares, backlog_s * 1000, LIMITS)
        seen.append(shares.degrade)
    settled = seen[500:]
    assert min(settled) > 0.35
    assert max(settled) < 0.65
    assert max(waits[500:]) < 2 * LIMITS.degrade_after_ms
    assert shares.shed == 0.0


def test_the_shares_are_spread_over_the_requests() -> None:
    admission = FixedLoad(0.0, Shares(degrade=0.25))
    verdicts = asyncio.run(admission.verdicts(100))
    assert verdicts.count("degrade") == 25
    assert "degrade" not in {a for a, b in itertools.pairwise(verdicts) if a == b}
    shedding = asyncio.run(FixedLoad(0.0, Shares(1.0, 0.5)).verdicts(10))
    assert shedding == ["degrade", "shed"] * 5  # every request still answered is degraded


@pytest.mark.parametrize(
    ("waited_ms", "ready", "expected"),
    [
        (1.0, 40, "rank"),
        (4.0, 40, "degrade"),  # a burst: it waited behind others, and others wait behind it
        (4.0, 1, "rank"),  # alone in its round (the process was descheduled): rank it
        (60.0, 1, "shed"),
    ],
)
def test_a_request_that_waited_in_a_burst_is_answered_cheaply(
    waited_ms: float, ready: int, expected: str
) -> None:
    async def verdict() -> str:
        selector = LoopSelector()
        now = time.perf_counter()
        selector.woke, selector.ready = now - waited_ms / 1000.0, ready
        admission = Admission(LIMITS, selector)
        try:
            return admission.verdict(now)
        finally:
            await admission.stop()
            selector.close()

    assert asyncio.run(verdict()) == expected


class FixedLoad(Admission):
    """Admission at a wait and shares the test sets (no probe runs)."""

    def __init__(self, ms: float, shares: Shares | None = None) -> None:
        super().__init__(LIMITS)
        self.ms = self.sustained_ms = ms
        self.shares = shares or Shares()

    def _note_request(self) -> None:
        pass

    async def verdicts(self, n: int) -> list[str]:
        return [self.verdict(time.perf_counter()) for _ in range(n)]


def call(admission: Admission, headers: dict[str, str] | None = None, **payload):
    s, recorder = scorer()
    payload = {"user_id": "u", "k": 2, "exclude": ["hot"], **payload}
    status, answer_headers, body = asyncio.run(post(s, payload, headers, admission))
    return status, answer_headers, body, recorder


def test_a_loaded_scorer_answers_from_trending_and_logs_it() -> None:
    status, _, body, recorder = call(FixedLoad(10.0, Shares(1.0)))
    assert status == 200
    assert [(i["item_id"], i["reason"]) for i in body["items"]] == [("warm", "degraded")]
    assert len(recorder.records) == 1


def test_a_degraded_answer_without_trending_items_falls_back_to_popular_ones() -> None:
    s, _ = scorer()
    s.table.trending = [("hot", 3.0)]
    s.table.popular = [("hot", 90.0), ("classic", 60.0), ("staple", 30.0)]
    status, _, body = asyncio.run(
        post(s, {"user_id": "u", "k": 3}, None, FixedLoad(10.0, Shares(1.0)))
    )
    assert status == 200
    assert [(i["item_id"], i["score"], i["reason"]) for i in body["items"]] == [
        ("hot", 1.0, "degraded"),
        ("classic", pytest.approx(2 / 3), "degraded"),
        ("staple", pytest.approx(1 / 3), "degraded"),
    ]


def test_an_overloaded_scorer_refuses_with_retry_after() -> None:
    status, headers, body, recorder = call(FixedLoad(80.0, Shares(1.0, 1.0)))
    assert status == 503
    assert headers["Retry-After"] == "1"
    assert "overloaded: requests wait 80 ms" in body["error"]
    assert recorder.records == []


def test_a_client_deadline_shorter_than_the_wait_is_refused_at_once() -> None:
    status, _, _, _ = call(FixedLoad(10.0), {"X-Tailor-Deadline-Ms": "5"})
    assert status == 503
    status, _, body, _ = call(FixedLoad(10.0), {"X-Tailor-Deadline-Ms": "soon"})
    assert (status, body["field"]) == (400, "X-Tailor-Deadline-Ms")
    status, _, body, _ = call(FixedLoad(1.0), {"X-Tailor-Deadline-Ms": "5"})
    assert status == 200
    assert body["items"][0]["reason"] != "degraded"


def test_the_probe_measures_how_late_the_loop_runs() -> None:
    async def blocked() -> tuple[float, float]:
        admission = Admission(LIMITS)
        admission.start()
        await asyncio.sleep(0.02)
        idle = admission.ms
        time.sleep(0.03)  # a handler that holds the loop for 30 ms
        for _ in range(3):  # let the overdue probe run, but not its next round
            await asyncio.sleep(0)
        busy = admission.ms
        await admission.stop()
        return idle, busy

    idle, busy = asyncio.run(blocked())
    assert idle < 5.0
    assert busy >= 20.0


def test_a_wait_that_stays_degrades_and_an_idle_scorer_stops_probing() -> None:
    """An idle scorer must not spend CPU on the probe (its HPA scales on CPU), and starts
    again from nothing degraded."""

    async def loaded_then_idle() -> tuple[float, bool, bool, Shares]:
        admission = Admission(LIMITS)
        admission.start()
        for _ in range(10):  # handlers that each hold the loop for 5 ms
            time.sleep(0.005)
            await asyncio.sleep(0)
        degraded = admission.shares.degrade
        probing = admission._task is not None and not admission._task.done()
        await asyncio.sleep(Admission.IDLE_SECONDS + 0.1)
        stopped = admission._task is not None and admission._task.done()
        return degraded, probing, stopped, admission.shares

    degraded, probing, stopped, shares = asyncio.run(loaded_then_idle())
    assert degraded > 0.0
    assert (probing, stopped, shares) == (True, True, Shares())


def test_a_loop_held_up_by_something_else_degrades_but_sheds_nothing() -> None:
    """The probe sees the loop 60 ms late again and again, with one request in all that
    time: the host is busy, not the scorer; refusing that request would not help."""

    async def stalled() -> Shares:
        admission = Admission(LIMITS)
        admission.start()
        for _ in range(6):  # 0.4 s: within IDLE_SECONDS of that one request
            time.sleep(0.06)
            await asyncio.sleep(PROBE_SECONDS)
        return admission.shares

    shares = asyncio.run(stalled())
    assert shares.degrade == 1.0
    assert shares.shed == 0.0
