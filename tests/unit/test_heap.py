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
