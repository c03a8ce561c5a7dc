"""When the stream worker commits: at once when caught up, in large batches when behind."""

from __future__ import annotations

from tailor_pipeline.worker import commit_due

INTERVAL, MAX = 0.1, 5000


def due(pending: int, caught_up: bool, elapsed: float) -> bool:
    return commit_due(pending, caught_up, elapsed, INTERVAL, MAX)


def test_nothing_to_commit_is_never_due():
    assert not due(0, caught_up=True, elapsed=60.0)


def test_a_caught_up_worker_commits_at_once():
    assert due(1, caught_up=True, elapsed=0.0)


def test_the_size_bound_commits_whatever_the_time():
    assert due(MAX, caught_up=False, elapsed=0.0)
    assert not due(MAX - 1, caught_up=False, elapsed=0.0)


def test_behind_the_interval_bounds_a_transaction():
    assert not due(10, caught_up=False, elapsed=INTERVAL * 0.9)
    assert due(10, caught_up=False, elapsed=INTERVAL)
