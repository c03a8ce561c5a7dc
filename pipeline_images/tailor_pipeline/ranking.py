"""Ranking: what one user should see now, from their live profile, the model and trending.

Pure; the scorer service, the quality benchmark and the tests all call ``rank``.

Candidates and scores:
1. The user's strongest items (decayed affinity as of now, the top ``seeds``) each vote for
   their model neighbours: ``affinity(seed) * similarity(seed, item)``; the reason names the
   seed that gave the most.
2. The seeds themselves, scaled by ``revisit_weight``: someone who put an item in the cart a
   minute ago may well buy it now.
3. Trending items, scaled by ``trending_weight`` (normalised to the best trending score).
4. Every score is multiplied by ``1 + category_boost * share`` where ``share`` is the
   item's category's part of the user's decayed category affinity.
Purchased items are excluded (``exclude_purchased``), as are the request's ``exclude``; a
``candidates`` filter keeps only those items. Cold-start and unknown users get trending,
then the model's popular items, never an error. With probability ``epsilon`` the last slot
goes to a random trending or popular item not already shown (exploration).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tailor_pipeline.features import Profile, decayed, top
from tailor_pipeline.model import Model


@dataclass(frozen=True)
class RankingSettings:
    half_life_s: float
    seeds: int = 20
    revisit_weight: float = 0.5
    trending_weight: float = 0.05
    category_boost: float = 0.5
    exclude_purchased: bool = True
    epsilon: float = 0.0


@dataclass(frozen=True)
class Scored:
    item: str
    score: float
    reason: str


def _popular(model: Model | None, n: int) -> list[tuple[str, float]]:
    if model is None:
        return []
    return [(model.item_ids[i], float(model.popularity[i])) for i in model.popular_order[:n]]


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
) -> list[Scored]:
    """The ``k`` best items for this user, best first."""
    banned = set(exclude)
    if profile is not None and settings.exclude_purchased:
        banned.update(profile.purchased)
    allowed = set(candidates) if candidates is not None else None

    def usable(item: str) -> bool:
        return item not in banned and (allowed is None or item in allowed)

    votes = _Votes(model)
    category_share: Mapping[str, float] = {}
    if profile is not None and profile.items:
        # A user idle for weeks has every affinity decayed to exactly 0.0 (float underflow
        # after ~1,075 half-lives): such seeds carry no evidence, and dividing by the
        # strongest of them would fail.
        seeds = [
            (seed, affinity)
            for seed, affinity in top(profile.items, settings.seeds, now_ms, settings.half_life_s)
            if affinity > 0.0
        ]
        strongest = seeds[0][1] if seeds else 1.0
        votes.seeds([(seed, affinity / strongest) for seed, affinity in seeds], settings)
        total = sum(
            decayed(s, t, now_ms, settings.half_life_s) for s, t in profile.categories.values()
        )
        if total > 0:
            category_share = {
                c: decayed(s, t, now_ms, settings.half_life_s) / total
                for c, (s, t) in profile.categories.items()
            }
    if trending:
        best_trending = trending[0][1] or 1.0
        votes.trending(trending, best_trending, settings)

    result = votes.best(k, usable, banned, allowed, category_share, settings.category_boost)
    if len(result) < k:
        shown = {s.item for s in result}
        for item, _ in _popular(model, k * 4 + len(banned)):
            if len(result) >= k:
                break
            if item not in shown and usable(item):
                result.append(Scored(item, 0.0, "popular"))
                shown.add(item)
    if settings.epsilon > 0 and result and rng is not None and rng.random() < settings.epsilon:
        shown = {s.item for s in result}
        pool = [i for i, _ in trending if i not in shown and usable(i)] or [
            i for i, _ in _popular(model, 100) if i not in shown and usable(i)
        ]
        if pool:
            result[-1] = Scored(rng.choice(pool), 0.0, "exploration")
    return result


# The scorer passes the same trending list to every request until its next refresh: the
# model indices of its items are looked up once per list (identity, not contents).
_memo: tuple[object, object, npt.NDArray[np.int64], npt.NDArray[np.float64]] | None = None


def _as_arrays(
    trending: Sequence[tuple[str, float]], model: Model | None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """The model index of each trending item (-1 where the model does not know it), and
    the scores."""
    global _memo
    memo = _memo
    if memo is not None and memo[0] is trending and memo[1] is model:
        return memo[2], memo[3]
    index = model.index if model is not None else {}
    keys = np.array([index.get(item, -1) for item, _ in trending], dtype=np.int64)
    scores = np.array([score for _, score in trending], dtype=np.float64)
    _memo = (trending, model, keys, scores)
    return keys, scores


class _Votes:
    """Every vote of one ranking, summed per item with NumPy, as if cast one at a time.

    The votes, in the order the straightforward ranking casts them: for each seed, the seed
    itself (revisit), then its neighbours in model order; then trending items. An item's
    score is the sum of its votes in that order (so exactly the float one-by-one addition
    gives); its reason is that of its largest vote, the first cast among equal ones. Items
    the model knows are counted by model index, the few it does not (a seed or trending
    item newer than the model) by name.
    """

    def __init__(self, model: Model | None) -> None:
        self._model = model
        # Batches: item key (model index, or -1 - position in _names), amount, the vote's
        # place in casting order, and its reason (2 * seed position, + 1 for "similar to";
        # -1 for trending).
        self._batches: list[tuple[npt.NDArray[Any], ...]] = []
        self._seeds: list[str] = []
        self._names: dict[str, int] = {}

    def _key(self, item: str) -> int:
        i = self._model.index.get(item) if self._model is not None else None
        if i is not None:
            return i
        return -1 - self._names.setdefault(item, len(self._names))

    def seeds(self, seeds: Sequence[tuple[str, float]], settings: RankingSettings) -> None:
        """Each seed votes for itself (revisit) and, through the model, its neighbours."""
        if not seeds:
            return
        self._seeds = [seed for seed, _ in seeds]
        model = self._model
        width = model.neighbours.shape[1] if model is not None else 0
        weight = np.array([w for _, w in seeds], dtype=np.float64)
        position = np.arange(len(seeds))
        self._batches.append(
            (
                np.array([self._key(seed) for seed in self._seeds], dtype=np.int64),
                settings.revisit_weight * weight,
                position * (width + 1),
                position * 2,
            )
        )
        if model is None or width == 0:
            return
        rows = np.array([model.index.get(seed, -1) for seed in self._seeds], dtype=np.int64)
        known = rows >= 0
        rows, weight, position = rows[known], weight[known], position[known]
        neighbours = model.neighbours[rows].astype(np.int64)
        # A row ends at its first -1 (padding after the last neighbour).
        valid = np.cumprod(neighbours >= 0, axis=1).astype(bool)
        amounts = weight[:, None] * model.weights[rows].astype(np.float64)
        order = position[:, None] * (width + 1) + 1 + np.arange(width)[None, :]
        reason = np.broadcast_to((position * 2 + 1)[:, None], neighbours.shape)
        self._batches.append((neighbours[valid], amounts[valid], order[valid], reason[valid]))

    def trending(
        self, trending: Sequence[tuple[str, float]], best: float, settings: RankingSettings
    ) -> None:
        model = self._model
        after = (len(self._seeds) + 1) * ((model.neighbours.shape[1] if model else 0) + 1)
        known, scores = _as_arrays(trending, model)
        keys = known.copy()
        for place in np.nonzero(keys < 0)[0]:
            keys[place] = self._key(trending[int(place)][0])
        self._batches.append(
            (
                keys,
                settings.trending_weight * scores / best,
                after + np.arange(len(trending)),
                np.full(len(trending), -1),
            )
        )

    def _name(self, key: int) -> str:
        if key >= 0:
            assert self._model is not None
            return self._model.item_ids[key]
        return next(n for n, p in self._names.items() if -1 - p == key)

    def _reason(self, code: int) -> str:
        if code < 0:
            return "trending now"
        seed = self._seeds[code // 2]
        return f"similar to {seed}" if code % 2 else f"you recently engaged with {seed}"

    def best(
        self,
        k: int,
        usable: Callable[[str], bool],
        banned: set[str],
        allowed: set[str] | None,
        category_share: Mapping[str, float],
        category_boost: float,
    ) -> list[Scored]:
        if not self._batches:
            return []
        keys, amounts, order, why = (
            np.concatenate(column) for column in zip(*self._batches, strict=True)
        )
        cast = np.argsort(order, kind="stable")
        keys, amounts, why = keys[cast], amounts[cast], why[cast]
        keep = amounts > 0
        # Unusable items get no votes: banned ones, and those outside ``candidates``.
        model = self._model
        if model is not None and (banned or allowed is not None):
            known = keys >= 0
            if banned:
                out = [model.index[b] for b in banned if b in model.index]
                keep &= ~(known & np.isin(keys, out))
            if allowed is not None:
                inside = [model.index[a] for a in allowed if a in model.index]
                keep &= ~known | np.isin(keys, inside)
        for name, place in self._names.items():
            if not usable(name):
                keep &= keys != -1 - place
        keys, amounts, why = keys[keep], amounts[keep], why[keep]
        if len(keys) == 0:
            return []
        items, group = np.unique(keys, return_inverse=True)
        scores = np.bincount(group, weights=amounts)
        # The largest vote of each item, the first cast among equals: a stable sort.
        ranked_votes = np.lexsort((-amounts, group))
        first = ranked_votes[np.r_[True, group[ranked_votes][1:] != group[ranked_votes][:-1]]]
        reason_of = why[first]
        if category_share and model is not None:
            known = items >= 0
            codes = model.category[np.where(known, items, 0)]
            share = np.array([category_share.get(c, 0.0) for c in model.categories] + [0.0])
            boosted = known & (codes >= 0)
            factor = 1.0 + category_boost * share[np.where(boosted, codes, -1)]
            scores = np.where(boosted, scores * factor, scores)
        # heapq.nlargest by (score, item): every item tied with the k-th best score is a
        # contender, ordered by name.
        if len(scores) > k:
            threshold = np.partition(scores, len(scores) - k)[len(scores) - k]
            contenders = np.nonzero(scores >= threshold)[0]
        else:
            contenders = np.arange(len(scores))
        ranked = heapq.nlargest(
            k,
            ((self._name(int(items[c])), float(scores[c]), int(c)) for c in contenders),
            key=lambda t: (t[1], t[0]),
        )
        return [Scored(name, score, self._reason(int(reason_of[c]))) for name, score, c in ranked]
