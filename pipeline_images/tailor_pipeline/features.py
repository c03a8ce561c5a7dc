"""Feature math: a user's profile and a partition's trending items, updated one event at a time.

Pure and deterministic: the same events in the same order give bit-identical state, which is
what lets a test compare what the workers wrote with a profile computed offline.

Decay is exponential with a half-life. Each score carries the time it was last brought up
to date, so an event touches one entry (O(1)) instead of decaying the whole profile; a score
is read at time ``t`` as ``score * 2 ** (-(t - updated) / half_life)``. Time is the events'
own ``ts``, never the wall clock, so replaying a stream gives the same profile. An event
older than an entry's last update adds its weight undecayed (clocks never run backwards).
"""

from __future__ import annotations

import heapq
import math

import msgspec

from tailor_pipeline.events import ClickEvent
from tailor_pipeline.settings import FeatureSettings

# Pruning happens when a map outgrows its cap by this factor, down to the cap: amortized
# O(1) per event instead of an O(n) scan each time a heavy user adds an item.
_PRUNE_SLACK = 1.25


def decayed(score: float, updated_ms: float, now_ms: float, half_life_s: float) -> float:
    """``score`` as of ``now_ms``."""
    if now_ms <= updated_ms:
        return score
    return score * math.exp2(-(now_ms - updated_ms) / (half_life_s * 1000.0))


def _bump(
    scores: dict[str, list[float]], key: str, weight: float, ts: float, half_life_s: float
) -> None:
    entry = scores.get(key)
    if entry is None:
        scores[key] = [weight, ts]
        return
    entry[0] = decayed(entry[0], entry[1], ts, half_life_s) + weight
    if ts > entry[1]:
        entry[1] = ts


def _prune(scores: dict[str, list[float]], cap: int, now_ms: float, half_life_s: float) -> None:
    if len(scores) <= cap * _PRUNE_SLACK:
        return
    # Ties broken by key so that pruning is deterministic.
    keep = heapq.nlargest(
        cap,
        scores.items(),
        key=lambda kv: (decayed(kv[1][0], kv[1][1], now_ms, half_life_s), kv[0]),
    )
    scores.clear()
    scores.update(keep)


def top(
    scores: dict[str, list[float]], k: int, now_ms: float, half_life_s: float
) -> list[tuple[str, float]]:
    """The ``k`` highest scores as of ``now_ms``, best first."""
    best = heapq.nlargest(
        k,
        ((key, decayed(s, t, now_ms, half_life_s)) for key, (s, t) in scores.items()),
        key=lambda kv: (kv[1], kv[0]),
    )
    return best


class Profile(msgspec.Struct, array_like=True, gc=False):
    """One user's real-time state. Field order is the wire order (see profile_codec)."""

    # Most recent distinct items, oldest first, at most ``recent_items``.
    recent: list[str] = msgspec.field(default_factory=list)
    # item -> [score, updated_ms]; at most ``max_items`` (lowest decayed scores pruned).
    items: dict[str, list[float]] = msgspec.field(default_factory=dict)
    # category -> [score, updated_ms]; at most ``max_categories``.
    categories: dict[str, list[float]] = msgspec.field(default_factory=dict)
    # Purchased items, oldest first, at most ``max_purchased``: the scorer can exclude them.
    purchased: list[str] = msgspec.field(default_factory=list)
    # event type -> count.
    counts: dict[str, int] = msgspec.field(default_factory=dict)
    # Latest event ts seen (ms).
    last_seen_ms: int = 0
    events: int = 0


def _push_recent(recent: list[str], item: str, limit: int) -> None:
    if recent and recent[-1] == item:
        return
    if item in recent:
        recent.remove(item)
    recent.append(item)
    if len(recent) > limit:
        del recent[: len(recent) - limit]


def update_profile(profile: Profile, event: ClickEvent, settings: FeatureSettings) -> None:
    """Fold one valid event into a profile, in place."""
    weight = settings.event_weights.get(event.type, 0.0)
    ts = float(event.ts)
    half_life = settings.half_life_s
    _push_recent(profile.recent, event.item_id, settings.recent_items)
    _bump(profile.items, event.item_id, weight, ts, half_life)
    _prune(profile.items, settings.max_items, ts, half_life)
    if event.category:
        _bump(profile.categories, event.category, weight, ts, half_life)
        _prune(profile.categories, settings.max_categories, ts, half_life)
    if event.type == "purchase":
        _push_recent(profile.purchased, event.item_id, settings.max_purchased)
    profile.counts[event.type] = profile.counts.get(event.type, 0) + 1
    if event.ts > profile.last_seen_ms:
        profile.last_seen_ms = event.ts
    profile.events += 1


class Trending(msgspec.Struct, array_like=True, gc=False):
    """Time-decayed interaction counts of items, for one events partition."""

    # item -> [score, updated_ms]; at most ``trending_max_items``.
    items: dict[str, list[float]] = msgspec.field(default_factory=dict)
    # Latest event ts seen (ms): "now" for this partition's trending.
    clock_ms: int = 0


def update_trending(trending: Trending, event: ClickEvent, settings: FeatureSettings) -> None:
    ts = float(event.ts)
    if event.ts > trending.clock_ms:
        trending.clock_ms = event.ts
    _bump(
        trending.items,
        event.item_id,
        settings.event_weights.get(event.type, 0.0),
        ts,
        settings.trending_half_life_s,
    )
    _prune(
        trending.items,
        settings.trending_max_items,
        float(trending.clock_ms),
        settings.trending_half_life_s,
    )
