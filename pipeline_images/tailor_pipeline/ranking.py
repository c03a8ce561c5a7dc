"""Ranking: what one user should see now, from their live profile, the model and trending.

Pure; the scorer service, the quality benchmark and the tests all call ``rank``.

Candidates and scores:
1. The user's strongest items (decayed affinity as of now, the top ``seeds``) each vote for
   their model neighbours: ``affinity(seed) * similarity(seed, item)``; the reason names the
   seed that gave the most.
2. The seeds themselves, scaled by ``revisit_weight``: someone who put an item in the cart a
   minute ago may well buy it now.
3. The prior: this week's most popular items (``popular``, or the model's; or trending items
   with ``fallback="trending"``), normalised to the best one. Personal votes (1 and 2, with
   seed affinities normalised to the strongest) are weighted by ``e / (e + prior_evidence)``
   and the prior by the rest, where ``e`` is the user's total decayed affinity (one fresh
   view is 1): a first visit gets the prior alone, an active user mostly their own
   neighbours, and a user back after weeks, whose evidence has decayed away, the prior again
   rather than stale items renormalised to look fresh.
4. Trending items, scaled by ``trending_weight`` (normalised to the best trending score).
5. Every score is multiplied by ``1 + category_boost * share`` where ``share`` is the
   item's category's part of the user's decayed category affinity.
Seen items (the profile's seen set, ``exclude_seen``) are excluded, as are the request's
``exclude``; a ``candidates`` filter keeps only those items. Unknown users get the prior,
then the model's popular items, never an error. With probability ``epsilon`` the last slot
goes to a random trending or popular item not already shown (exploration).
"""

from __future__ import annotations

import heapq
import itertools
import operator
import random
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from math import exp2
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from tailor_pipeline import voting
from tailor_pipeline.features import Profile, item_hash
from tailor_pipeline.model import Model


@dataclass(frozen=True)
class RankingSettings:
    half_life_s: float
    seeds: int = 20
    revisit_weight: float = 0.5
    trending_weight: float = 0.05
    category_boost: float = 0.5
    exclude_seen: bool = True
    epsilon: float = 0.0
    # How much fresh evidence (decayed event weight: one view is 1) makes the profile
    # weigh as much as the popularity prior: the personal part of every score is
    # ``evidence / (evidence + prior_evidence)``, the popular part the rest. A user back
    # after weeks, whose evidence has decayed away, sees what is popular, not stale items.
    # Chosen by bench/quality.py: 0.05 to 0.25 score alike (0.25 best on NDCG@10), 1.0
    # loses 0.03 HR@10 on every scenario by leaning on popularity too long.
    prior_evidence: float = 0.25
    # The prior: this week's most popular items (``popular``), or ``trending``.
    fallback: Literal["popular", "trending"] = "popular"


class Scored(NamedTuple):
    # A tuple, not a frozen dataclass: built ten times a request, at a third of the cost.
    item: str
    score: float
    reason: str


def model_popular(model: Model | None, n: int) -> list[tuple[str, float]]:
    """The model's ``n`` most popular items, best first. The same list object for the same
    model and ``n`` (do not change it): _as_arrays then finds its model indices memoised,
    where building both anew costs a cold user's request 10-20 us."""
    if model is None:
        return []
    memo = _popular_memo.get((id(model), n))
    if memo is not None and memo[0] is model:
        return memo[1]
    listed = [(model.item_ids[i], float(model.popularity[i])) for i in model.popular_order[:n]]
    if len(_popular_memo) >= _MEMO_LISTS:
        _popular_memo.clear()
    _popular_memo[(id(model), n)] = (model, listed)
    return listed


# The seeds: strongest affinity first, then name (items are unique: a total order).
_AFFINITY_THEN_NAME = operator.itemgetter(1, 0)

_popular_memo: dict[tuple[int, int], tuple[Model, list[tuple[str, float]]]] = {}


def rank(
    profile: Profile | None,
    model: Model | None,
    trending: Sequence[tuple[str, float]],
    now_ms: float,
    k: int,
    settings: RankingSettings,
    exclude: Collection[str] = (),
    candidates: Collection[str] | None = None,
    rng: random.Random | None = None,
    popular: Sequence[tuple[str, float]] = (),
) -> list[Scored]:
    """The ``k`` best items for this user, best first. ``popular``: this week's most
    popular items, best first (empty: the model's)."""
    banned = set(exclude)
    seen: set[int] = set()
    if profile is not None and settings.exclude_seen:
        # Profiles written before the seen set existed name only recent purchases.
        banned.update(profile.purchased)
        seen = set(profile.seen)
    allowed = set(candidates) if candidates is not None else None

    def usable(item: str) -> bool:
        return (
            item not in banned
            and (not seen or item_hash(item) not in seen)
            and (allowed is None or item in allowed)
        )

    votes = _Votes(model, seen)
    category_share: Mapping[str, float] = {}
    personal = 0.0
    if profile is not None and profile.items:
        # decayed(), inlined (the same float operations): a call per item and category
        # cost more than the arithmetic.
        per_ms = settings.half_life_s * 1000.0
        affinity = [
            (item, s if now_ms <= t else s * exp2(-(now_ms - t) / per_ms))
            for item, (s, t) in profile.items.items()
        ]
        evidence = sum(a for _, a in affinity)
        personal = evidence / (evidence + settings.prior_evidence)
        # A user idle for weeks has every affinity decayed to exactly 0.0 (float underflow
        # after ~1,075 half-lives): such seeds carry no evidence, and dividing by the
        # strongest of them would fail.
        seeds = [
            (seed, a)
            for seed, a in sorted(affinity, key=_AFFINITY_THEN_NAME, reverse=True)[: settings.seeds]
            if a > 0.0
        ]
        strongest = seeds[0][1] if seeds else 1.0
        votes.seeds([(seed, personal * a / strongest) for seed, a in seeds], settings)
        weights = {
            c: s if now_ms <= t else s * exp2(-(now_ms - t) / per_ms)
            for c, (s, t) in profile.categories.items()
        }
        total = sum(weights.values())
        if total > 0:
            category_share = {c: w / total for c, w in weights.items()}
    prior, reason = (
        (trending, TRENDING)
        if settings.fallback == "trending"
        else (popular or model_popular(model, PRIOR_ITEMS), POPULAR)
    )
    if prior and personal < 1.0:
        votes.listed(prior, 1.0 - personal, prior[0][1] or 1.0, reason)
    if trending:
        votes.listed(trending, settings.trending_weight, trending[0][1] or 1.0, TRENDING)

    result = votes.best(k, usable, banned, allowed, category_share, settings.category_boost)
    if len(result) < k:
        shown = {s.item for s in result}
        for item, _ in model_popular(model, k * 4 + len(banned)):
            if len(result) >= k:
                break
            if item not in shown and usable(item):
                result.append(Scored(item, 0.0, "popular"))
                shown.add(item)
    if settings.epsilon > 0 and result and rng is not None and rng.random() < settings.epsilon:
        shown = {s.item for s in result}
        pool = [i for i, _ in trending if i not in shown and usable(i)] or [
            i for i, _ in model_popular(model, 100) if i not in shown and usable(i)
        ]
        if pool:
            result[-1] = Scored(rng.choice(pool), 0.0, "exploration")
    return result


# The scorer passes the same trending and popular lists to every request until its next
# refresh: the model indices of their items are looked up once per list (by identity, not
# contents), for the few lists in use.
_memo: dict[
    tuple[int, int],
    tuple[object, object, npt.NDArray[np.int64], npt.NDArray[np.float64], list[int]],
] = {}
_MEMO_LISTS = 4


def _as_arrays(
    listed: Sequence[tuple[str, float]], model: Model | None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], list[int]]:
    """The model index of each listed item (-1 where the model does not know it), the
    scores, and the places of the items the model does not know."""
    key = (id(listed), id(model))
    memo = _memo.get(key)
    if memo is not None and memo[0] is listed and memo[1] is model:
        return memo[2], memo[3], memo[4]
    index = model.index if model is not None else {}
    keys = np.array([index.get(item, -1) for item, _ in listed], dtype=np.int64)
    scores = np.array([score for _, score in listed], dtype=np.float64)
    unknown = np.flatnonzero(keys < 0).tolist()
    if len(_memo) >= _MEMO_LISTS:
        _memo.clear()
    _memo[key] = (listed, model, keys, scores, unknown)
    return keys, scores, unknown


# Reason codes of votes from a list rather than a seed.
TRENDING = -1
POPULAR = -2
_LISTED_REASONS = {TRENDING: "trending now", POPULAR: "popular"}
# How many of the most popular items the prior votes for.
PRIOR_ITEMS = 100


class _Votes:
    """Every vote of one ranking, summed per item as if cast one at a time (``voting``).

    The votes, in the order the straightforward ranking casts them: for each seed, the seed
    itself (revisit), then its neighbours in model order; then each listed item. An item's
    score is the sum of its votes in that order (so exactly the float one-by-one addition
    gives); its reason is that of its largest vote, the first cast among equal ones, and
    follows from the vote's place: the seed block is one row per seed (the revisit, then
    the neighbours), each listed batch starts where the one before it ended. Items the
    model knows are counted by model row, the few it does not (a seed or trending item
    newer than the model) as ``items + position`` in ``_names``.
    """

    def __init__(self, model: Model | None, seen: set[int]) -> None:
        self._model = model
        self._seen = seen
        self._items = model.items if model is not None else 0
        self._names: dict[str, int] = {}
        self._seeds: list[str] = []
        self._rows = _NO_SLOTS
        self._seed_slots = _NO_SLOTS
        self._seed_weight = _NO_AMOUNTS
        self._revisit = 0.0
        self._listed_slots: list[npt.NDArray[np.int64]] = []
        self._listed_amounts: list[npt.NDArray[np.float64]] = []
        # Where each listed batch starts among the votes, and its reason code.
        self._listed: list[tuple[int, int]] = []
        # Votes per seed row (1 + the model's neighbours), and all votes so far.
        self._row = 1
        self._cast = 0

    def _slot(self, item: str) -> int:
        i = self._model.index.get(item) if self._model is not None else None
        if i is not None:
            return i
        return self._items + self._names.setdefault(item, len(self._names))

    def seeds(self, seeds: Sequence[tuple[str, float]], settings: RankingSettings) -> None:
        """Each seed votes for itself (revisit) and, through the model, its neighbours."""
        if not seeds:
            return
        self._seeds = [seed for seed, _ in seeds]
        model = self._model
        index = model.index if model is not None else {}
        rows = [index.get(seed, -1) for seed in self._seeds]
        self._rows = np.array(rows, dtype=np.int64)
        self._seed_slots = np.array(
            [r if r >= 0 else self._slot(seed) for r, seed in zip(rows, self._seeds, strict=True)],
            dtype=np.int64,
        )
        self._seed_weight = np.array([w for _, w in seeds], dtype=np.float64)
        self._revisit = settings.revisit_weight
        width = model.neighbours.shape[1] if model is not None else 0
        self._row = width + 1 if width > 0 else 1
        self._cast = len(seeds) * self._row

    def listed(
        self, listed: Sequence[tuple[str, float]], weight: float, best: float, reason: int
    ) -> None:
        """Each listed item votes ``weight`` times its score relative to ``best``, cast
        after every earlier vote."""
        known, scores, unknown = _as_arrays(listed, self._model)
        slots = known
        if unknown:
            slots = known.copy()
            for place in unknown:
                slots[place] = self._slot(listed[place][0])
        self._listed.append((self._cast, reason))
        self._listed_slots.append(slots)
        self._listed_amounts.append(weight * scores / best)
        self._cast += len(slots)

    def _name(self, slot: int) -> str:
        if slot < self._items:
            assert self._model is not None
            return self._model.item_ids[slot]
        return next(n for n, p in self._names.items() if p == slot - self._items)

    def _reason(self, vote: int) -> str:
        """The reason of the vote cast ``vote``-th."""
        if self._listed and vote >= self._listed[0][0]:
            for start, code in reversed(self._listed):
                if vote >= start:
                    return _LISTED_REASONS[code]
        seed, column = divmod(vote, self._row)
        name = self._seeds[seed]
        return f"similar to {name}" if column else f"you recently engaged with {name}"

    def best(
        self,
        k: int,
        usable: Callable[[str], bool],
        banned: set[str],
        allowed: set[str] | None,
        category_share: Mapping[str, float],
        category_boost: float,
    ) -> list[Scored]:
        if not self._seeds and not self._listed:
            return []
        model = self._model
        # Unusable items get no votes: banned ones, seen ones, those outside ``candidates``.
        blocked: list[int] = []
        inside: list[int] | None = None
        item_category, share = _NO_CATEGORY, _NO_AMOUNTS
        if model is not None:
            index = model.index
            blocked = [index[b] for b in banned if b in index]
            if self._seen:
                blocked.extend(model.rows_of(np.fromiter(self._seen, np.uint32, len(self._seen))))
            if allowed is not None:
                inside = [index[a] for a in allowed if a in index]
            if category_share:
                item_category = model.category
                share = np.zeros(len(model.categories))
                for category, part in category_share.items():
                    for code in model.category_codes.get(category, ()):
                        share[code] = part
        for name, place in self._names.items():
            if not usable(name):
                blocked.append(self._items + place)
            elif inside is not None:
                inside.append(self._items + place)
        listed_slots = np.concatenate(self._listed_slots) if self._listed else _NO_SLOTS
        slots, scores, votes = voting.tally(
            rows=self._rows,
            seed_slots=self._seed_slots,
            seed_weight=self._seed_weight,
            revisit_weight=self._revisit,
            neighbours=model.neighbours if model is not None else None,
            weights=model.weights if model is not None else None,
            row_length=model.row_length if model is not None else None,
            listed_slots=listed_slots,
            listed_amounts=np.concatenate(self._listed_amounts) if self._listed else _NO_AMOUNTS,
            blocked=np.array(blocked, dtype=np.int64),
            allowed=np.array(inside, dtype=np.int64) if inside is not None else None,
            item_category=item_category,
            category_share=share,
            category_boost=category_boost,
            k=k,
            slots=self._items + len(self._names),
        )
        places, cast = slots.tolist(), votes.tolist()
        ranked = _top(k, scores.tolist(), lambda c: self._name(places[c]))
        return [Scored(name, score, self._reason(cast[c])) for name, score, c in ranked]


_NO_SLOTS = np.zeros(0, dtype=np.int64)
_NO_AMOUNTS = np.zeros(0, dtype=np.float64)
_NO_CATEGORY = np.zeros(0, dtype=np.int32)


def _top(k: int, scores: list[float], name: Callable[[int], str]) -> list[tuple[str, float, int]]:
    """heapq.nlargest(k) by (score, name) of contenders sorted by score, best first, as
    (name, score, contender)."""
    if any(a == b for a, b in itertools.pairwise(scores)):
        # Equal scores are ordered by name: rare enough to do it the plain way.
        return heapq.nlargest(
            k,
            ((name(c), score, c) for c, score in enumerate(scores)),
            key=lambda t: (t[1], t[0]),
        )
    return [(name(c), score, c) for c, score in enumerate(scores[:k])]
