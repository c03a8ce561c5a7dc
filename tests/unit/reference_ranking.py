"""The straightforward ranking, one vote at a time in plain Python: what ``ranking.rank``
computed before its votes were summed with NumPy, kept as the oracle it must agree with."""

from __future__ import annotations

import heapq
import random
from collections.abc import Collection, Mapping, Sequence

from tailor_pipeline.features import Profile, decayed, item_hash, top
from tailor_pipeline.model import Model
from tailor_pipeline.ranking import PRIOR_ITEMS, RankingSettings, Scored, model_popular


def reference_rank(
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
    """The ``k`` best items for this user, best first."""
    banned = set(exclude)
    seen: set[int] = set()
    if profile is not None and settings.exclude_seen:
        banned.update(profile.purchased)
        seen = set(profile.seen)
    allowed = set(candidates) if candidates is not None else None

    def usable(item: str) -> bool:
        return (
            item not in banned
            and item_hash(item) not in seen
            and (allowed is None or item in allowed)
        )

    scores: dict[str, float] = {}
    reasons: dict[str, tuple[float, str]] = {}

    def vote(item: str, amount: float, reason: str) -> None:
        if amount <= 0 or not usable(item):
            return
        scores[item] = scores.get(item, 0.0) + amount
        best = reasons.get(item)
        if best is None or amount > best[0]:
            reasons[item] = (amount, reason)

    category_share: Mapping[str, float] = {}
    personal = 0.0
    if profile is not None and profile.items:
        evidence = sum(
            decayed(s, t, now_ms, settings.half_life_s) for s, t in profile.items.values()
        )
        personal = evidence / (evidence + settings.prior_evidence)
        # A user idle for weeks has every affinity decayed to exactly 0.0 (float underflow
        # after ~1,075 half-lives): such seeds carry no evidence, and dividing by the
        # strongest of them would fail.
        seeds = [
            (seed, affinity)
            for seed, affinity in top(profile.items, settings.seeds, now_ms, settings.half_life_s)
            if affinity > 0.0
        ]
        strongest = seeds[0][1] if seeds else 1.0
        for seed, affinity in seeds:
            weight = personal * affinity / strongest
            vote(seed, settings.revisit_weight * weight, f"you recently engaged with {seed}")
            if model is None:
                continue
            i = model.index.get(seed)
            if i is None:
                continue
            for j, similarity in zip(model.neighbours[i], model.weights[i], strict=True):
                if j < 0:
                    break
                vote(model.item_ids[j], weight * float(similarity), f"similar to {seed}")
        total = sum(
            decayed(s, t, now_ms, settings.half_life_s) for s, t in profile.categories.values()
        )
        if total > 0:
            category_share = {
                c: decayed(s, t, now_ms, settings.half_life_s) / total
                for c, (s, t) in profile.categories.items()
            }
    if settings.fallback == "trending":
        prior, reason = list(trending), "trending now"
    else:
        prior, reason = list(popular) or model_popular(model, PRIOR_ITEMS), "popular"
    if prior and personal < 1.0:
        best_prior = prior[0][1] or 1.0
        for item, score in prior:
            vote(item, (1.0 - personal) * score / best_prior, reason)
    if trending:
        best_trending = trending[0][1] or 1.0
        for item, score in trending:
            vote(item, settings.trending_weight * score / best_trending, "trending now")
    if category_share and model is not None:
        for item in scores:
            i = model.index.get(item)
            category = model.category_of(i) if i is not None else None
            if category is not None:
                scores[item] *= 1.0 + settings.category_boost * category_share.get(category, 0.0)

    ranked = heapq.nlargest(k, scores.items(), key=lambda kv: (kv[1], kv[0]))
    result = [Scored(item, score, reasons[item][1]) for item, score in ranked]
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
