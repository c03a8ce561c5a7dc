"""Data for the scorer benchmark at scale: a model of ``items`` items with 50 neighbours
each, and ``users`` profiles, written straight into the profiles topic as the stream workers
would have left them (the workers' own throughput is bench/worker.py's business).

Items are drawn with a power law (a few are popular, most are rare), each user has 5 to 40
of them with scores and timestamps from the last two hours, and every item has a category.
The model's neighbours of an item are other items drawn the same way, best first. The
shapes match what training on real clicks produces; the numbers in them are not meant to
rank well, only to cost what real ones cost.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from tailor_pipeline import model, profile_codec
from tailor_pipeline.features import Profile

NEIGHBOURS = 50
CATEGORIES = 50


def _item(rng: random.Random, items: int) -> int:
    # Power law: item 0 is the most popular.
    return min(items - 1, int(items * rng.random() ** 3))


def write_model(path: Path, items: int, seed: int = 3) -> str:
    """A model file of ``items`` items; its sha256."""
    rng = np.random.default_rng(seed)
    ids = [f"item-{i}" for i in range(items)]
    draws = (items * rng.random((items, NEIGHBOURS)) ** 3).astype(np.int32)
    neighbours = np.minimum(draws, items - 1).astype(np.int32)
    weights = np.sort(rng.random((items, NEIGHBOURS)).astype(np.float32), axis=1)[:, ::-1]
    popularity = (1.0 / (1.0 + np.arange(items, dtype=np.float32))).astype(np.float32)
    category = (np.arange(items) % CATEGORIES).astype(np.int32)
    return model.write(
        path,
        name="item-knn",
        version="bench",
        item_ids=ids,
        popularity=popularity,
        category=category,
        categories=[f"category-{c}" for c in range(CATEGORIES)],
        neighbours=neighbours,
        weights=np.ascontiguousarray(weights),
        training={"synthetic": True},
    )


def profiles(users: int, items: int, seed: int = 5) -> Iterator[tuple[str, Profile]]:
    """Each user's profile, in user order."""
    rng = random.Random(seed)
    now_ms = time.time() * 1000
    for u in range(users):
        profile = Profile()
        for _ in range(rng.randint(5, 40)):
            item = _item(rng, items)
            ts = now_ms - rng.random() * 7_200_000
            profile.items[f"item-{item}"] = [rng.uniform(1, 8), ts]
            profile.categories[f"category-{item % CATEGORIES}"] = [rng.uniform(1, 8), ts]
            profile.recent.append(f"item-{item}")
            profile.events += 1
            profile.last_seen_ms = max(profile.last_seen_ms, int(ts))
        yield f"user-{u}", profile


def records(users: int, items: int) -> Iterator[tuple[str, bytes]]:
    """(key, value) of the profiles topic."""
    for user, profile in profiles(users, items):
        yield user, profile_codec.encode_profile(profile)


def feast_rows(users: int, items: int, half_life_s: float) -> Iterator[tuple[str, dict]]:
    """The same profiles as Feast features: top 10 items by decayed score, last event time
    and event count."""
    from tailor_pipeline.features import top

    now_ms = time.time() * 1000
    for user, profile in profiles(users, items):
        yield (
            user,
            {
                "top_items": json.dumps(
                    [i for i, _ in top(profile.items, 10, now_ms, half_life_s)]
                ),
                "last_seen_ms": profile.last_seen_ms,
                "events": profile.events,
            },
        )
