"""Recommendation quality: the real-time scorer against its peers, replayed on the same streams.

    python bench/quality.py [--quick] [--seed N] [--scenario NAME ...]

Needs the bench extra (implicit, scipy): ``pip install -c constraints.txt -e '.[bench]'``.

Each scenario is a seeded synthetic stream (tailor_pipeline.generator) with one shape real
data has (below). It is replayed prequentially: for each view from day 1 on, every system
ranks 10 items for that user *before* the view is fed in, and scores a hit if the viewed
item is among them (HR@10) and 1/log2(rank + 2) (NDCG@10). Then the event is fed to every
system that learns in real time. All systems exclude the same items: those the user had an
event of the scenario's seen types on (what ``features.seenEventTypes`` configures).

Systems:
- ``realtime``: the scorer's ranking (tailor_pipeline.ranking) on profiles and trending
  updated by every event (tailor_pipeline.features, as the stream worker does), with the
  item-neighbour model retrained at each simulated midnight on everything seen so far.
- ``batch``: the same ranking and model, with profiles and trending frozen at midnight
  (what a nightly job would serve); a user unknown at midnight gets what ``realtime``
  gives a user it has never seen, so the comparison is of profiles, not of fallbacks.
- ``popular``: the most popular items so far (7-day decayed counts, refreshed every 1,000
  events).
- ``als_foldin``: implicit's ALS retrained at midnight; at request time the user's vector
  is re-solved from their whole live history (``recalculate_user``). Three settings; the
  best is reported.
- ``itemknn``: implicit's item-kNN (cosine, 50 neighbours) fitted at midnight, scoring the
  user's whole live history at request time.
Both peers fill their list with ``popular`` when they have fewer than 10 items (a user with
no history), as anyone deploying them would.

Scenarios: ``store`` (sessions that walk between related items), ``returning`` (users
back after three weeks), ``first_visit`` (half the users arrive on a later day),
``bursty`` (one session in six is a long burst), ``no_repeat`` (nobody views an item
twice, and a view is enough to make it seen: films, books, articles).

Per scenario and pooled over all of them: ``hr10``/``ndcg10`` of realtime and
``<system>_hr10`` of the others; ``cold_hr10`` and ``popular_cold_hr10`` on a user's very
first event, ``idle_hr10`` and ``popular_idle_hr10`` on users idle for 14 days or more;
``rank_ms_mean``, the ranking's mean time per request; ``ci95`` of realtime minus each
peer in HR@10 from a user-level bootstrap (users resampled with replacement, 1,000
draws). ``targets_missed`` lists every target (realtime >= item-kNN and ALS fold-in; >=
popular on cold and idle users) a scenario misses. The last stdout line is the JSON.
"""

from __future__ import annotations

import os

# implicit's solvers want single-threaded BLAS and OpenMP (threads make a fold-in 20x
# slower on two cores); set before NumPy loads them.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import copy
import dataclasses
import json
import math
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tailor_pipeline import model as model_file
from tailor_pipeline.events import ClickEvent
from tailor_pipeline.features import (
    Profile,
    Trending,
    top,
    update_profile,
    update_trending,
)
from tailor_pipeline.generator import DAY_MS, GeneratorSettings, stream
from tailor_pipeline.ranking import RankingSettings, rank
from tailor_pipeline.settings import FeatureSettings
from tailor_pipeline.train import TrainingSettings, train, write_model

try:
    import scipy.sparse as sparse
    from implicit.als import AlternatingLeastSquares
    from implicit.nearest_neighbours import CosineRecommender
except ImportError as missing:  # pragma: no cover - a message, not a code path
    sys.exit(
        f"bench/quality.py needs the bench extra ({missing.name} is missing):\n"
        "  .venv/bin/pip install -c constraints.txt -e '.[bench]'"
    )

K = 10
WEIGHTS = {"view": 1.0, "click": 2.0, "add_to_cart": 4.0, "purchase": 8.0}
TRENDING_REFRESH = 1000
IDLE_MS = 14 * DAY_MS
ALS_SETTINGS = [(32, 0.01), (64, 0.05), (128, 0.1)]  # (factors, regularization)
BOOTSTRAP_DRAWS = 1000


def scenarios(quick: bool, seed: int) -> dict[str, tuple[GeneratorSettings, tuple[str, ...]]]:
    """Name -> (stream, seen event types)."""
    base = GeneratorSettings(
        seed=seed,
        users=1000 if quick else 4000,
        items=1500 if quick else 6000,
        days=4 if quick else 7,
    )
    long_run = dataclasses.replace(
        base,
        users=base.users // 2,
        days=26,
        sessions_per_user_per_day=0.6,
        dormant_share=0.5,
        dormant_days=21,
    )
    purchases = ("purchase",)
    return {
        "store": (base, purchases),
        "returning": (long_run, purchases),
        "first_visit": (dataclasses.replace(base, first_visit_share=0.5), purchases),
        # Bursts double the events: half the users keep the run as long as the others.
        "bursty": (
            dataclasses.replace(base, users=base.users // 2, long_session_share=1 / 6),
            purchases,
        ),
        "no_repeat": (dataclasses.replace(base, repeat_views=False), tuple(WEIGHTS)),
    }


class Score:
    """Hits of one system, per evaluated request, for totals and the user bootstrap."""

    def __init__(self) -> None:
        self.hits: list[float] = []
        self.gains: list[float] = []

    def add(self, ranked: Sequence[str], item: str) -> None:
        if item in ranked:
            self.hits.append(1.0)
            self.gains.append(1 / math.log2(list(ranked).index(item) + 2))
        else:
            self.hits.append(0.0)
            self.gains.append(0.0)


class Requests:
    """Who asked, and which of them were a first event or a return after 14+ days."""

    def __init__(self) -> None:
        self.user: list[int] = []
        self.cold: list[bool] = []
        self.idle: list[bool] = []


def _rate(values: Sequence[float], mask: Sequence[bool] | None = None) -> float | None:
    picked = [v for v, m in zip(values, mask, strict=True) if m] if mask is not None else values
    return round(sum(picked) / len(picked), 4) if picked else None


def bootstrap_ci(
    users: np.ndarray[Any, Any], ours: np.ndarray[Any, Any], theirs: np.ndarray[Any, Any]
) -> list[float]:
    """95% interval of HR(ours) - HR(theirs), resampling users with replacement."""
    count = int(users.max()) + 1
    n = np.bincount(users, minlength=count).astype(np.float64)
    diff = np.bincount(users, weights=ours - theirs, minlength=count)
    present = np.nonzero(n)[0]
    n, diff = n[present], diff[present]
    draws = np.random.default_rng(0).multinomial(
        len(present), np.full(len(present), 1 / len(present)), size=BOOTSTRAP_DRAWS
    )
    estimates = (draws @ diff) / (draws @ n)
    low, high = np.percentile(estimates, [2.5, 97.5])
    return [round(float(low), 4), round(float(high), 4)]


class Peers:
    """implicit's ALS (fold-in) and item-kNN, refitted at each midnight on the live history."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.columns: dict[str, int] = {}
        self.names: list[str] = []
        self.als: list[Any] = []
        self.knn: Any = None

    def fit(self, history: dict[str, dict[str, float]]) -> None:
        self.names = sorted({item for items in history.values() for item in items})
        self.columns = {item: c for c, item in enumerate(self.names)}
        rows, cols, data = [], [], []
        for r, items in enumerate(history.values()):
            for item, weight in items.items():
                rows.append(r)
                cols.append(self.columns[item])
                data.append(weight)
        matrix = sparse.csr_matrix(
            (np.asarray(data, dtype=np.float32), (rows, cols)),
            shape=(len(history), len(self.names)),
        )
        self.als = []
        for factors, regularization in ALS_SETTINGS:
            als = AlternatingLeastSquares(
                factors=factors,
                regularization=regularization,
                iterations=15,
                random_state=self.seed,
                calculate_training_loss=False,
            )
            als.fit(matrix, show_progress=False)
            self.als.append(als)
        self.knn = CosineRecommender(K=50)
        self.knn.fit(matrix, show_progress=False)

    def _row(self, items: dict[str, float]) -> Any:
        known = sorted((self.columns[i], w) for i, w in items.items() if i in self.columns)
        return sparse.csr_matrix(
            (
                np.asarray([w for _, w in known], dtype=np.float32),
                np.asarray([c for c, _ in known], dtype=np.int32),
                np.asarray([0, len(known)], dtype=np.int32),
            ),
            shape=(1, len(self.names)),
        )

    def recommend(self, items: dict[str, float], banned: set[str]) -> list[list[str]]:
        """Per ALS setting, then item-kNN: up to K items each (possibly fewer)."""
        row = self._row(items)
        skip = np.asarray([self.columns[b] for b in banned if b in self.columns], dtype=np.int32)
        lists = []
        for als in self.als:
            ids, _ = als.recommend(
                0,
                row,
                N=K,
                recalculate_user=True,
                filter_already_liked_items=False,
                filter_items=skip if len(skip) else None,
            )
            lists.append([self.names[i] for i in ids[:K]])
        if row.nnz:
            ids, scores = self.knn.recommend(
                0,
                row,
                N=K + len(skip),
                filter_already_liked_items=False,
                filter_items=skip if len(skip) else None,
            )
            lists.append([self.names[i] for i, s in zip(ids, scores, strict=True) if s > 0][:K])
        else:
            lists.append([])
        return lists


def live_lists(
    trending: Trending, features: FeatureSettings
) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """What the scorer reads from the trending topic: trending and popular items."""
    clock = trending.clock_ms
    return (
        top(trending.items, 200, clock, features.trending_half_life_s),
        top(trending.popular, 200, clock, features.popular_half_life_s),
    )


def _fill(ranked: list[str], popular: Sequence[str], banned: set[str]) -> list[str]:
    out = list(ranked)
    for item in popular:
        if len(out) >= K:
            break
        if item not in banned and item not in out:
            out.append(item)
    return out


def replay(
    generator: GeneratorSettings,
    seen_types: tuple[str, ...],
    ranking: RankingSettings,
    training: TrainingSettings,
    work: Path,
    progress: Callable[[str], None],
) -> tuple[Requests, dict[str, Score], dict[str, Any]]:
    features = FeatureSettings(
        half_life_s=ranking.half_life_s,
        recent_items=50,
        event_weights=WEIGHTS,
        seen_event_types=seen_types,
    )
    events = list(stream(generator))
    rng = random.Random(generator.seed)
    profiles: dict[str, Profile] = {}
    frozen_profiles: dict[str, Profile] = {}
    trending = Trending()
    live_trending: list[tuple[str, float]] = []
    frozen_trending: list[tuple[str, float]] = []
    live_popular: list[tuple[str, float]] = []
    frozen_popular: list[tuple[str, float]] = []
    popularity: dict[str, list[float]] = {}
    popular_now: list[str] = []
    history: dict[str, dict[str, float]] = {}
    seen_by: dict[str, set[str]] = {}
    last_event: dict[str, int] = {}
    users: dict[str, int] = {}
    names = ["realtime", "batch", "popular", "itemknn"] + [
        f"als_foldin_{f}" for f, _ in ALS_SETTINGS
    ]
    scores = {name: Score() for name in names}
    requests = Requests()
    peers = Peers(generator.seed)
    model = None
    day_end = generator.start_ms + DAY_MS
    past: list[ClickEvent] = []
    timings = {"rank_s": 0.0, "ranks": 0, "train_s": 0.0, "peers_fit_s": 0.0}

    for count, event in enumerate(events):
        if event.ts >= day_end:  # midnight: retrain everything, freeze the batch view
            tick = time.monotonic()
            path = work / f"day{len(past)}.tailor"
            digest = write_model(path, train(past, WEIGHTS, training), "quality", str(len(past)))
            model = model_file.load(path, digest)
            timings["train_s"] += time.monotonic() - tick
            tick = time.monotonic()
            peers.fit(history)
            timings["peers_fit_s"] += time.monotonic() - tick
            frozen_profiles = copy.deepcopy(profiles)
            frozen_trending, frozen_popular = live_lists(trending, features)
            day_end += DAY_MS
            progress(f"day {(day_end - generator.start_ms) // DAY_MS - 1}: {count} events")
        if count % TRENDING_REFRESH == 0:
            live_trending, live_popular = live_lists(trending, features)
            popular_now = [i for i, _ in top(popularity, 200, event.ts, 7 * 86400.0)]
        user, item = event.user_id, event.item_id
        if model is not None and event.type == "view":
            banned = seen_by.get(user, set())
            requests.user.append(users.setdefault(user, len(users)))
            requests.cold.append(user not in history)
            requests.idle.append(user in last_event and event.ts - last_event[user] >= IDLE_MS)
            tick = time.perf_counter()
            live = rank(
                profiles.get(user),
                model,
                live_trending,
                event.ts,
                K,
                ranking,
                rng=rng,
                popular=live_popular,
            )
            timings["rank_s"] += time.perf_counter() - tick
            timings["ranks"] += 1
            scores["realtime"].add([s.item for s in live], item)
            frozen = frozen_profiles.get(user)
            nightly = rank(
                frozen,
                model,
                frozen_trending if frozen is not None else live_trending,
                event.ts,
                K,
                ranking,
                rng=rng,
                popular=frozen_popular if frozen is not None else live_popular,
            )
            scores["batch"].add([s.item for s in nightly], item)
            scores["popular"].add(_fill([], popular_now, banned), item)
            *als_lists, knn_list = peers.recommend(history.get(user, {}), banned)
            for (factors, _), als_list in zip(ALS_SETTINGS, als_lists, strict=True):
                scores[f"als_foldin_{factors}"].add(_fill(als_list, popular_now, banned), item)
            scores["itemknn"].add(_fill(knn_list, popular_now, banned), item)
        profile = profiles.get(user)
        if profile is None:
            profile = profiles[user] = Profile()
        update_profile(profile, event, features)
        update_trending(trending, event, features)
        entry = popularity.setdefault(item, [0.0, float(event.ts)])
        entry[0] = entry[0] * 2 ** (-(event.ts - entry[1]) / (7 * 86400e3)) + 1.0
        entry[1] = float(event.ts)
        mine = history.setdefault(user, {})
        mine[item] = mine.get(item, 0.0) + WEIGHTS[event.type]
        if event.type in seen_types:
            seen_by.setdefault(user, set()).add(item)
        last_event[user] = event.ts
        past.append(event)
    timings["events"] = len(events)
    return requests, scores, timings


def summarise(requests: Requests, scores: dict[str, Score]) -> dict[str, Any]:
    als_names = [f"als_foldin_{f}" for f, _ in ALS_SETTINGS]
    best_als = max(als_names, key=lambda n: sum(scores[n].hits))
    hits = {n: scores[n].hits for n in ["realtime", "batch", "popular", "itemknn", best_als]}
    out: dict[str, Any] = {
        "hr10": _rate(hits["realtime"]),
        "ndcg10": _rate(scores["realtime"].gains),
        "popular_hr10": _rate(hits["popular"]),
        "batch_hr10": _rate(hits["batch"]),
        "als_foldin_hr10": _rate(hits[best_als]),
        "als_foldin_best_factors": int(best_als.rsplit("_", 1)[1]),
        "itemknn_hr10": _rate(hits["itemknn"]),
        "popular_ndcg10": _rate(scores["popular"].gains),
        "als_foldin_ndcg10": _rate(scores[best_als].gains),
        "itemknn_ndcg10": _rate(scores["itemknn"].gains),
        "cold_hr10": _rate(hits["realtime"], requests.cold),
        "popular_cold_hr10": _rate(hits["popular"], requests.cold),
        "idle_hr10": _rate(hits["realtime"], requests.idle),
        "popular_idle_hr10": _rate(hits["popular"], requests.idle),
        "evaluated": len(requests.user),
        "cold_requests": sum(requests.cold),
        "idle_requests": sum(requests.idle),
    }
    users = np.asarray(requests.user, dtype=np.int64)
    ours = np.asarray(hits["realtime"])
    out["ci95"] = {
        peer: bootstrap_ci(users, ours, np.asarray(hits[key]))
        for peer, key in [
            ("popular", "popular"),
            ("batch", "batch"),
            ("als_foldin", best_als),
            ("itemknn", "itemknn"),
        ]
    }
    return out


def missed(name: str, result: dict[str, Any]) -> list[str]:
    misses = [
        f"{name}: hr10 {result['hr10']} < {peer} {result[peer]}"
        for peer in ("itemknn_hr10", "als_foldin_hr10")
        if result["hr10"] < result[peer]
    ]
    for ours, theirs in (("cold_hr10", "popular_cold_hr10"), ("idle_hr10", "popular_idle_hr10")):
        if result[ours] is not None and result[ours] < result[theirs]:
            misses.append(f"{name}: {ours} {result[ours]} < {theirs} {result[theirs]}")
    return misses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller streams (a few minutes)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scenario", action="append", help="run only these (repeatable)")
    parser.add_argument(
        "--max-session-items",
        type=int,
        default=TrainingSettings.max_session_items,
        help="the trainer's cap on distinct items per session (default %(default)s)",
    )
    args = parser.parse_args()
    chosen = scenarios(args.quick, args.seed)
    unknown = set(args.scenario or ()) - set(chosen)
    if unknown:
        parser.error(f"unknown scenario(s) {sorted(unknown)}; known: {sorted(chosen)}")
    ranking = RankingSettings(half_life_s=1800)
    training = TrainingSettings(max_session_items=args.max_session_items)
    work = Path(tempfile.mkdtemp(prefix="tailor-quality-"))
    started = time.monotonic()
    result: dict[str, Any] = {"benchmark": "quality", "scenarios": {}}
    pooled_requests, pooled_scores = Requests(), {}
    offset = 0
    rank_s, ranks = 0.0, 0
    for name, (generator, seen_types) in chosen.items():
        if args.scenario and name not in args.scenario:
            continue

        def progress(line: str, name: str = name) -> None:
            print(f"[quality {time.monotonic() - started:6.0f}s] {name}: {line}", flush=True)

        requests, scores, timings = replay(generator, seen_types, ranking, training, work, progress)
        summary = summarise(requests, scores)
        summary["rank_ms_mean"] = round(1000 * timings["rank_s"] / max(timings["ranks"], 1), 3)
        summary["events"] = timings["events"]
        summary["training_s"] = round(timings["train_s"], 1)
        result["scenarios"][name] = summary
        progress(json.dumps(summary, separators=(",", ":")))
        rank_s += timings["rank_s"]
        ranks += timings["ranks"]
        # Pooled: every scenario's requests, users kept apart.
        pooled_requests.user.extend(u + offset for u in requests.user)
        offset += max(requests.user, default=-1) + 1
        pooled_requests.cold.extend(requests.cold)
        pooled_requests.idle.extend(requests.idle)
        for system, score in scores.items():
            into = pooled_scores.setdefault(system, Score())
            into.hits.extend(score.hits)
            into.gains.extend(score.gains)
    pooled = summarise(pooled_requests, pooled_scores)
    pooled["rank_ms_mean"] = round(1000 * rank_s / max(ranks, 1), 3)
    result.update(pooled)
    result["targets_missed"] = [
        miss for name, summary in result["scenarios"].items() for miss in missed(name, summary)
    ]
    result["max_session_items"] = args.max_session_items
    result["quick"] = args.quick
    result["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(result, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
