"""The inner loop of ranking, compiled: every vote of one request summed per item, and the
items that can make the top ``k``.

Why compiled: summing ~1,300 votes per request with NumPy took some 35 array calls, each
about a microsecond of overhead on arrays this small; the loop itself is a few
microseconds. Numba compiles it once per process, when this module is imported (about a
second, before the scorer listens), with no C compiler in the image. Compiled code does not
check bounds: ``model.load`` refuses a model whose rows or codes are out of range.

Items are *slots*: a model row, or ``items + p`` for the ``p``-th item the model does not
know (a seed or trending item newer than the model). Votes are cast in a fixed order (each
seed's revisit, then its neighbours in model order, then each listed item) and summed in
that order, so every score is exactly the float the one-vote-at-a-time ranking computes.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit, types

# The scratch record of a slot: its summed score, its largest vote so far and where that
# vote was cast, or, while no vote has counted, one of these states. Between requests every
# record is (0, 0, FREE).
_SCORE, _LARGEST, _STATE = 0, 1, 2
_FREE, _BLOCKED, _ALLOWED = -1.0, -2.0, -3.0


def _array(dtype: Any, dims: int = 1, readonly: bool = False) -> Any:
    return types.Array(dtype, dims, "C", readonly=readonly)


# The one signature, compiled when this module is imported (before a scorer is Ready, not
# on its first request). The model's arrays are read-only (memory-mapped): ``tally`` hands
# every model array over read-only, so no other signature is ever needed.
_I64, _F64 = _array(types.int64), _array(types.float64)
_SIGNATURE = types.Tuple((_I64, _F64, _I64))(
    _I64,  # rows
    _I64,  # seed_slots
    _F64,  # seed_weight
    types.float64,  # revisit_weight
    _array(types.int32, 2, readonly=True),  # neighbours
    _array(types.float32, 2, readonly=True),  # weights
    _array(types.int64, readonly=True),  # row_length
    _I64,  # listed_slots
    _F64,  # listed_amounts
    _I64,  # blocked
    _I64,  # allowed
    types.boolean,  # only_allowed
    _array(types.int32, readonly=True),  # item_category
    _F64,  # category_share
    types.float64,  # category_boost
    types.int64,  # k
    _array(types.float64, 2),  # scratch
    _I64,  # touched
)


@njit(_SIGNATURE, cache=False, nogil=True)  # type: ignore[untyped-decorator]
def _tally(
    rows: Any,
    seed_slots: Any,
    seed_weight: Any,
    revisit_weight: float,
    neighbours: Any,
    weights: Any,
    row_length: Any,
    listed_slots: Any,
    listed_amounts: Any,
    blocked: Any,
    allowed: Any,
    only_allowed: bool,
    item_category: Any,
    category_share: Any,
    category_boost: float,
    k: int,
    scratch: Any,
    touched: Any,
) -> tuple[Any, Any, Any]:
    for s in blocked:
        scratch[s, _STATE] = _BLOCKED
    if only_allowed:
        for s in allowed:
            if scratch[s, _STATE] == _FREE:
                scratch[s, _STATE] = _ALLOWED
    usable = _ALLOWED if only_allowed else _FREE
    n = 0
    width = neighbours.shape[1]
    row = width + 1 if width > 0 else 1
    # Casting order: each seed's revisit, then its neighbours up to the row's first -1;
    # then the listed items. One loop over the casting places, the vote counted in one
    # place: a helper function taking the scratch array costs a reference count
    # increment and decrement (atomic) per vote, which made voting 5 times slower.
    start = len(rows) * row
    for vote in range(start + len(listed_slots)):
        if vote < start:
            seed, column = divmod(vote, row)
            if column == 0:
                slot = seed_slots[seed]
                amount = revisit_weight * seed_weight[seed]
            else:
                r = rows[seed]
                if r < 0 or column > row_length[r]:
                    continue
                slot = np.int64(neighbours[r, column - 1])
                amount = seed_weight[seed] * np.float64(weights[r, column - 1])
        else:
            slot = listed_slots[vote - start]
            amount = listed_amounts[vote - start]
        if not amount > 0.0:
            continue
        state = scratch[slot, _STATE]
        if state == usable:
            touched[n] = slot
            scratch[slot, _SCORE] = amount
            scratch[slot, _LARGEST] = amount
            scratch[slot, _STATE] = vote
            n += 1
        elif state >= 0.0:
            scratch[slot, _SCORE] += amount
            if amount > scratch[slot, _LARGEST]:
                scratch[slot, _LARGEST] = amount
                scratch[slot, _STATE] = vote
    # The category boost, then the k-th best score.
    scores = np.empty(n)
    for t in range(n):
        slot = touched[t]
        score = scratch[slot, _SCORE]
        if slot < len(item_category):
            code = item_category[slot]
            if code >= 0:
                score = score * (1.0 + category_boost * category_share[code])
        scores[t] = score
    threshold = -np.inf
    if n > k:
        # The k best so far, ascending, kept sorted by insertion (k is small); no helper
        # functions, for the reason above.
        kept = np.sort(scores[:k])
        for t in range(k, n):
            score = scores[t]
            if score > kept[0]:
                at = 0
                while at + 1 < k and kept[at + 1] < score:
                    kept[at] = kept[at + 1]
                    at += 1
                kept[at] = score
        threshold = kept[0]
    # Every item at or above the k-th best score (k of them, or more when scores tie
    # there), best first.
    m = 0
    for t in range(n):
        if scores[t] >= threshold:
            m += 1
    slots = np.empty(m, dtype=np.int64)
    best = np.empty(m)
    cast = np.empty(m, dtype=np.int64)
    m = 0
    for t in range(n):
        slot = touched[t]
        if scores[t] >= threshold:
            # Insertion by score: m is about k.
            at = m
            while at > 0 and best[at - 1] < scores[t]:
                slots[at], best[at], cast[at] = slots[at - 1], best[at - 1], cast[at - 1]
                at -= 1
            slots[at], best[at], cast[at] = slot, scores[t], np.int64(scratch[slot, _STATE])
            m += 1
        scratch[slot, _SCORE] = 0.0
        scratch[slot, _LARGEST] = 0.0
        scratch[slot, _STATE] = _FREE
    for s in blocked:
        scratch[s, _STATE] = _FREE
    for s in allowed:
        scratch[s, _STATE] = _FREE
    return slots, best, cast


class _Scratch(threading.local):
    """The slots' records, reused by every request of a thread (allocating them per
    request would cost more than the votes); ``_tally`` resets the records it touched."""

    def __init__(self) -> None:
        self.records = np.zeros((0, 3))

    def fit(self, slots: int) -> npt.NDArray[np.float64]:
        if slots > len(self.records):
            self.records = np.zeros((max(slots, 2 * len(self.records)), 3))
            self.records[:, _STATE] = _FREE
        return self.records


def _read_only(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    if not array.flags.writeable:
        return array
    view = array.view()
    view.flags.writeable = False
    return view


_scratch = _Scratch()
_NO_NEIGHBOURS = _read_only(np.zeros((0, 0), dtype=np.int32))
_NO_WEIGHTS = _read_only(np.zeros((0, 0), dtype=np.float32))
_NO_ROWS = _read_only(np.zeros(1, dtype=np.int64))


def tally(
    *,
    rows: npt.NDArray[np.int64],
    seed_slots: npt.NDArray[np.int64],
    seed_weight: npt.NDArray[np.float64],
    revisit_weight: float,
    neighbours: npt.NDArray[np.int32] | None,
    weights: npt.NDArray[np.float32] | None,
    row_length: npt.NDArray[np.intp] | None,
    listed_slots: npt.NDArray[np.int64],
    listed_amounts: npt.NDArray[np.float64],
    blocked: npt.NDArray[np.int64],
    allowed: npt.NDArray[np.int64] | None,
    item_category: npt.NDArray[np.int32],
    category_share: npt.NDArray[np.float64],
    category_boost: float,
    k: int,
    slots: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """The contenders for the top ``k``: every usable item whose score is at or above the
    ``k``-th best (more than ``k`` only when scores tie there), best first, as (slot, score,
    the casting place of its largest vote, the first cast among equal ones). ``slots``:
    how many slots there are (model rows, then the unknown items). ``item_category``: the
    category code of each model row (empty: no boost), ``category_share`` the user's
    share of each code."""
    records = _scratch.fit(slots)
    votes = len(seed_slots) * (1 + (neighbours.shape[1] if neighbours is not None else 0))
    touched = np.empty(votes + len(listed_slots), dtype=np.int64)
    result: tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.int64]]
    result = _tally(
        rows,
        seed_slots,
        seed_weight,
        revisit_weight,
        _read_only(neighbours) if neighbours is not None else _NO_NEIGHBOURS,
        _read_only(weights) if weights is not None else _NO_WEIGHTS,
        _read_only(row_length) if row_length is not None else _NO_ROWS,
        listed_slots,
        listed_amounts,
        blocked,
        allowed if allowed is not None else blocked[:0],
        allowed is not None,
        _read_only(item_category),
        category_share,
        category_boost,
        k,
        records,
        touched,
    )
    return result
