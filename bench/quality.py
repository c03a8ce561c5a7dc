"""Recommendation quality: the real-time scorer against two baselines on the same stream.

    python bench/quality.py [--quick] [--seed N]

A seeded synthetic stream (tailor_pipeline.generator) is replayed prequentially: for each
view event from day 1 on, every system ranks 10 items for that user *before* the event is
fed in, and scores a hit if the viewed item is among them (HR@10) and 1/log2(rank + 2)
(NDCG@10). Then the event is fed to the systems that learn in real time.

- ``realtime``: the scorer's ranking (tailor_pipeline.ranking) on profiles and trending
  updated by every event (tailor_pipeline.features, as the stream worker does), with the
  item-neighbour model retrained at each simulated midnight on everything seen so far.
- ``batch``: the same ranking and the same daily model, but profiles and trending frozen at
  each midnight: what a nightly batch job would serve.
- ``popular``: the globally most popular items so far (decayed weights, refreshed every
  1,000 events).

Prints one JSON object with hr10/ndcg10 of each and the stream's size.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tailor_pipeline import model as model_file
from tailor_pipeline.events import ClickEvent
from tailor_pipeline.features import Profile, Trending, top, update_profile, update_trending
from tailor_pipeline.generator import DAY_MS, GeneratorSettings, stream
from tailor_pipeline.ranking import RankingSettings, rank
from tailor_pipeline.settings import FeatureSettings
from tailor_pipeline.train import train, write_model

K = 10
FEATURES = FeatureSettings(
    half_life_s=1800,
    recent_items=50,
    event_weights={"view": 1, "click": 2, "add_to_cart": 4, "purchase": 8},
)
TRENDING_REFRESH = 1000


class Score:
    def __init__(self) -> None:
        self.hits = 0.0
        self.ndcg = 0.0
        self.n = 0

    def add(self, ranked: list[str], item: str) -> None:
        self.n += 1
        if item in ranked:
            self.hits += 1
            self.ndcg += 1 / math.log2(ranked.index(item) + 2)

    def result(self) -> tuple[float, float]:
        return round(self.hits / max(self.n, 1), 4), round(self.ndcg / max(self.n, 1), 4)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller stream (about 1 min)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    generator = GeneratorSettings(
        seed=args.seed,
        users=1500 if args.quick else 5000,
        items=2000 if args.quick else 8000,
        days=4 if args.quick else 7,
    )
    events = list(stream(generator))
    ranking = RankingSettings(half_life_s=FEATURES.half_life_s)
    work = Path(tempfile.mkdtemp(prefix="tailor-quality-"))
    started = time.monotonic()

    profiles: dict[str, Profile] = {}
    trending = Trending()
    popularity: dict[str, list[float]] = {}
    frozen_profiles: dict[str, Profile] = {}
    frozen_trending: list[tuple[str, float]] = []
    live_trending: list[tuple[str, float]] = []
    popular_now: list[str] = []
    scores = {"realtime": Score(), "batch": Score(), "popular": Score()}
    model = None
    day_end = generator.start_ms + DAY_MS
    seen: list[ClickEvent] = []
    train_seconds = 0.0
    rng = random.Random(args.seed)

    for count, event in enumerate(events):
        if event.ts >= day_end:  # midnight: retrain, freeze the batch system's view
            tick = time.monotonic()
            arrays = train(seen, FEATURES.event_weights)
            path = work / f"day{len(seen)}.tailor"
            digest = write_model(path, arrays, "quality", str(len(seen)))
            model = model_file.load(path, digest)
            train_seconds += time.monotonic() - tick
            frozen_profiles = copy.deepcopy(profiles)
            frozen_trending = top(trending.items, 100, trending.clock_ms, 3600.0)
            day_end += DAY_MS
        if count % TRENDING_REFRESH == 0:
            live_trending = top(trending.items, 100, trending.clock_ms, 3600.0)
            popular_now = [i for i, _ in top(popularity, K, event.ts, 7 * 86400.0)]
        if model is not None and event.type == "view":
            user, item = event.user_id, event.item_id
            live = rank(profiles.get(user), model, live_trending, event.ts, K, ranking, rng=rng)
            scores["realtime"].add([s.item for s in live], item)
            nightly = rank(
                frozen_profiles.get(user), model, frozen_trending, event.ts, K, ranking, rng=rng
            )
            scores["batch"].add([s.item for s in nightly], item)
            scores["popular"].add(popular_now, item)
        profile = profiles.get(event.user_id)
        if profile is None:
            profile = profiles[event.user_id] = Profile()
        update_profile(profile, event, FEATURES)
        update_trending(trending, event, FEATURES)
        entry = popularity.setdefault(event.item_id, [0.0, float(event.ts)])
        entry[0] = entry[0] * 2 ** (-(event.ts - entry[1]) / (7 * 86400e3)) + 1.0
        entry[1] = float(event.ts)
        seen.append(event)

    result: dict[str, Any] = {"benchmark": "quality"}
    for name, score in scores.items():
        hr, ndcg = score.result()
        prefix = "" if name == "realtime" else f"{name}_"
        result[f"{prefix}hr10"] = hr
        result[f"{prefix}ndcg10"] = ndcg
    result["evaluated_events"] = scores["realtime"].n
    result["stream"] = {
        "events": len(events),
        "users": generator.users,
        "items": generator.items,
        "days": generator.days,
        "seed": generator.seed,
    }
    result["seconds"] = round(time.monotonic() - started, 1)
    result["training_seconds"] = round(train_seconds, 1)
    print(json.dumps(result, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
