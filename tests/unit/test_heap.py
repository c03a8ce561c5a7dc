"""heap.settle: what survives is frozen out of the collector, young cyclic garbage is not."""

from __future__ import annotations

import gc
import weakref

from tailor_pipeline import heap


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_settle_collects_young_cycles_and_freezes_what_lives() -> None:
    try:
        garbage = Node()
        garbage.other = Node()
        garbage.other.other = garbage  # a cycle only the collector can free
        dead = weakref.ref(garbage)
        del garbage
        alive = {"items": {"i1": [1.0, 2.0]}}
        frozen_before = gc.get_freeze_count()
        heap.settle()
        assert dead() is None
        assert gc.get_freeze_count() > frozen_before
        assert gc.is_tracked(alive)
        # A frozen object is still freed by reference counting when its last reference goes.
        replaced = Node()
        gone = weakref.ref(replaced)
        heap.settle()
        del replaced
        assert gone() is None
    finally:
        gc.unfreeze()


def test_building_runs_without_the_collector_and_freezes_what_it_built() -> None:
    try:
        frozen_before = gc.get_freeze_count()
        with heap.building():
            assert not gc.isenabled()
            state = {f"user-{i}": {"items": {"i1": [1.0, 2.0]}} for i in range(1000)}
        assert gc.isenabled()
        assert gc.get_freeze_count() >= frozen_before + len(state)
        gc.disable()
        with heap.building():
            pass
        assert not gc.isenabled()  # a caller that had it off keeps it off
    finally:
        gc.enable()
        gc.unfreeze()
