"""Overload protection: the verdict from the queue wait, and what each verdict answers."""

from __future__ import annotations

import asyncio
import time

import pytest

from tailor_pipeline.admission import Limits, QueueWait, verdict
from tests.unit.test_scorer_http import post, scorer

LIMITS = Limits(degrade_after_ms=3.0, shed_after_ms=50.0)


@pytest.mark.parametrize(
    ("wait_ms", "sustained_ms", "deadline_ms", "expected"),
    [
        (0.5, 0.5, None, "rank"),
        (3.0, 3.0, None, "degrade"),
        (49.0, 49.0, None, "degrade"),
        (50.0, 50.0, None, "shed"),
        (160.0, 0.4, None, "rank"),  # one stall, over by now: rank as usual
        (0.5, 0.5, 100.0, "rank"),
        (20.0, 0.0, 15.0, "shed"),  # the client will have given up: refuse at once
    ],
)
def test_the_verdict_follows_the_wait(wait_ms, sustained_ms, deadline_ms, expected) -> None:
    assert verdict(wait_ms, sustained_ms, LIMITS, deadline_ms) == expected


class FixedWait(QueueWait):
    def __init__(self, ms: float) -> None:
        super().__init__()
        self.ms = self.sustained_ms = ms

    def note_request(self) -> None:
        pass  # no probe: the wait stays what the test says


def call(wait_ms: float, headers: dict[str, str] | None = None):
    s, recorder = scorer()
    payload = {"user_id": "u", "k": 2, "exclude": ["hot"]}
    status, answer_headers, body = asyncio.run(post(s, payload, headers, FixedWait(wait_ms)))
    return status, answer_headers, body, recorder


def test_a_loaded_scorer_answers_from_trending_and_logs_it() -> None:
    status, _, body, recorder = call(10.0)
    assert status == 200
    assert [(i["item_id"], i["reason"]) for i in body["items"]] == [("warm", "degraded")]
    assert len(recorder.records) == 1


def test_an_overloaded_scorer_refuses_with_retry_after() -> None:
    status, headers, body, recorder = call(80.0)
    assert status == 503
    assert headers["Retry-After"] == "1"
    assert "overloaded" in body["error"]
    assert recorder.records == []


def test_a_client_deadline_shorter_than_the_wait_is_refused_at_once() -> None:
    status, _, _, _ = call(10.0, {"X-Tailor-Deadline-Ms": "5"})
    assert status == 503
    status, _, body, _ = call(10.0, {"X-Tailor-Deadline-Ms": "soon"})
    assert (status, body["field"]) == (400, "X-Tailor-Deadline-Ms")


def test_the_probe_measures_how_late_the_loop_runs() -> None:
    async def blocked() -> tuple[float, float]:
        wait = QueueWait()
        wait.start()
        await asyncio.sleep(0.02)
        idle = wait.ms
        time.sleep(0.03)  # a handler that holds the loop for 30 ms
        for _ in range(3):  # let the overdue probe run, but not its next round
            await asyncio.sleep(0)
        busy = wait.ms
        await wait.stop()
        return idle, busy

    idle, busy = asyncio.run(blocked())
    assert idle < 5.0
    assert busy >= 20.0


def test_an_idle_scorer_stops_probing() -> None:
    """An idle scorer must not spend CPU on the probe (its HPA scales on CPU)."""

    async def idle() -> tuple[bool, bool]:
        wait = QueueWait()
        wait.note_request()
        await asyncio.sleep(0.05)
        busy = wait._task is not None and not wait._task.done()
        await asyncio.sleep(QueueWait.IDLE_SECONDS + 0.1)
        stopped = wait._task is not None and wait._task.done()
        return busy, stopped

    assert asyncio.run(idle()) == (True, True)
