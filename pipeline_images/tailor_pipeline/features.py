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

import bisect
import heapq
import math
import zlib

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
    # decayed(), inlined: this runs four times per event on the worker's hot path.
    updated = entry[1]
    if ts > updated:
        entry[0] = entry[0] * math.exp2(-(ts - updated) / (half_life_s * 1000.0)) + weight
        entry[1] = ts
    else:
        entry[0] += weight


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


def item_hash(item: str) -> int:
    """An item's key in a profile's seen set: the CRC-32 of its UTF-8 id.

    Four bytes per item instead of the id: a user's whole history fits, so exclusion never
    depends on a cap. Two items share a key with probability 2**-32 per pair: a user who
    has seen 1,000 items hides a given unseen item by mistake about once in four million.
    """
    return zlib.crc32(item.encode())


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
    # item_hash of every item the user had an event of a ``seen_event_types`` type on,
    # ascending, no cap: the scorer never recommends them. Last, so profiles written
    # before it existed still decode (with an empty set).
    seen: list[int] = msgspec.field(default_factory=list)


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
    if event.type in settings.seen_event_types:
        key = item_hash(event.item_id)
        at = bisect.bisect_left(profile.seen, key)
        if at == len(profile.seen) or profile.seen[at] != key:
            profile.seen.insert(at, key)
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
    # Interactions (each event counts 1) with the much longer ``popular_half_life_s``:
    # what is popular this week, the prior of users with little or no evidence. Last, so
    # records written before it existed still decode (with no popularity: the scorer
    # then uses the model's).
    popular: dict[str, list[float]] = msgspec.field(default_factory=dict)


def update_trending(trending: Trending, event: ClickEvent, settings: FeatureSettings) -> None:
    ts = float(event.ts)
    if event.ts > trending.clock_ms:
        trending.clock_ms = event.ts
    clock = float(trending.clock_ms)
    cap = settings.trending_max_items
    weight = settings.event_weights.get(event.type, 0.0)
    _bump(trending.items, event.item_id, weight, ts, settings.trending_half_life_s)
    if len(trending.items) > cap * _PRUNE_SLACK:
        _prune(trending.items, cap, clock, settings.trending_half_life_s)
    # Popularity counts interactions, whatever their type: weighting purchases up favours
    # what is bought over what is looked at, and lost to plain counts on first visits
    # (bench/quality.py).
    _bump(trending.popular, event.item_id, 1.0, ts, settings.popular_half_life_s)
    if len(trending.popular) > cap * _PRUNE_SLACK:
        _prune(trending.popular, cap, clock, settings.popular_half_life_s)
