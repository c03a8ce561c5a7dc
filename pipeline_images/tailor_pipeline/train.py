"""Training the item-neighbour model from click events: ``tailor-train``.

Within each user session (``session_id``, else a gap of ``session_gap_s``) every pair of
distinct items co-occurs with the session's weight: the sum of its events' type weights,
decayed by the session's age at training time (``half_life_s``), so last week's sessions
count more than last quarter's. Similarity is a shrunk cosine::

    sim(i, j) = C(i, j) / (sqrt(N(i) * N(j)) + shrinkage)

where ``C`` is the decayed co-occurrence and ``N`` an item's decayed session weight. The
shrinkage term keeps a pair seen once between two rare items from outranking a pair seen
hundreds of times. Each item keeps its ``neighbours`` most similar items.

    tailor-train --events events.jsonl --out model.tailor --name storefront --model-version v2
    tailor-train --topic ns.storefront.events --bootstrap-servers kafka:9092 --out ...
"""

from __future__ import annotations

import argparse
import heapq
import json
import logging
import math
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tailor_pipeline import events, model
from tailor_pipeline.events import ClickEvent
from tailor_pipeline.program import add_version

_log = logging.getLogger("tailor.train")

DEFAULT_WEIGHTS = {"view": 1.0, "click": 2.0, "add_to_cart": 4.0, "purchase": 8.0}


@dataclass(frozen=True)
class TrainingSettings:
    neighbours: int = 50
    half_life_s: float = 7 * 86400.0
    shrinkage: float = 2.0
    session_gap_s: float = 1800.0
    # Distinct items of a session that count (its last ones): pairs, so training time and
    # memory, grow with the square of it. 100 keeps the long bursts real shoppers have
    # (30 cut 42% of the events of a real dataset; bench/quality.py's bursty scenario
    # gains from 100, nothing from 200); longer sessions are mostly bots and crawlers.
    max_session_items: int = 100


@dataclass
class Arrays:
    item_ids: list[str]
    popularity: np.ndarray[Any, np.dtype[np.float32]]
    category: np.ndarray[Any, np.dtype[np.int32]]
    categories: list[str]
    neighbours: np.ndarray[Any, np.dtype[np.int32]]
    weights: np.ndarray[Any, np.dtype[np.float32]]


def _sessions(
    stream: Iterable[ClickEvent], gap_ms: float
) -> Iterator[tuple[list[ClickEvent], str]]:
    """Events grouped by user session, in the order sessions end (input sorted by ts)."""
    open_sessions: dict[str, tuple[str | None, float, list[ClickEvent]]] = {}
    for event in stream:
        current = open_sessions.get(event.user_id)
        if current is not None:
            session_id, last_ts, items = current
            if session_id == event.session_id and (
                event.session_id is not None or event.ts - last_ts <= gap_ms
            ):
                items.append(event)
                open_sessions[event.user_id] = (session_id, event.ts, items)
                continue
            yield items, event.user_id
        open_sessions[event.user_id] = (event.session_id, event.ts, [event])
    for user, (_, _, items) in open_sessions.items():
        yield items, user


def train(
    stream: Iterable[ClickEvent],
    weights: dict[str, float] | None = None,
    settings: TrainingSettings | None = None,
    progress_every: int = 0,
) -> Arrays:
    """Pure: the model's arrays from events sorted by ``ts``."""
    settings = settings or TrainingSettings()
    weights = weights or DEFAULT_WEIGHTS
    collected = list(stream)
    if not collected:
        raise ValueError("no events to train on")
    now = max(e.ts for e in collected)
    half_life_ms = settings.half_life_s * 1000.0
    index: dict[str, int] = {}
    popularity: list[float] = []
    category_votes: dict[int, Counter[str]] = defaultdict(Counter)
    occurrence: list[float] = []
    pairs: dict[int, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    seen = 0
    for session, _user in _sessions(collected, settings.session_gap_s * 1000.0):
        decay = math.exp2(-(now - session[-1].ts) / half_life_ms)
        items: dict[int, float] = {}
        for event in session:
            i = index.get(event.item_id)
            if i is None:
                i = index[event.item_id] = len(popularity)
                popularity.append(0.0)
                occurrence.append(0.0)
            w = weights.get(event.type, 0.0) * decay
            popularity[i] += w
            if event.category:
                category_votes[i][event.category] += 1
            items[i] = items.get(i, 0.0) + w
        distinct = list(items)[-settings.max_session_items :]
        for i in distinct:
            occurrence[i] += items[i]
        for a_pos, a in enumerate(distinct):
            for b in distinct[a_pos + 1 :]:
                shared = min(items[a], items[b])
                pairs[a][b] += shared
                pairs[b][a] += shared
        seen += len(session)
        if progress_every and seen // progress_every != (seen - len(session)) // progress_every:
            _log.info("Folded in %d of %d events", seen, len(collected))

    n, k = len(popularity), settings.neighbours
    neighbours = np.full((n, k), -1, dtype=np.int32)
    similarity = np.zeros((n, k), dtype=np.float32)
    for i in range(n):
        row = pairs.get(i)
        if not row:
            continue
        best = heapq.nlargest(
            k,
            (
                (c / (math.sqrt(occurrence[i] * occurrence[j]) + settings.shrinkage), j)
                for j, c in row.items()
            ),
        )
        for slot, (score, j) in enumerate(best):
            neighbours[i, slot] = j
            similarity[i, slot] = score
    categories = sorted({c for votes in category_votes.values() for c in votes})
    category_index = {c: n for n, c in enumerate(categories)}
    category = np.full(n, -1, dtype=np.int32)
    for i, votes in category_votes.items():
        category[i] = category_index[votes.most_common(1)[0][0]]
    item_ids = [""] * n
    for item, i in index.items():
        item_ids[i] = item
    return Arrays(
        item_ids=item_ids,
        popularity=np.asarray(popularity, dtype=np.float32),
        category=category,
        categories=categories,
        neighbours=neighbours,
        weights=similarity,
    )


def write_model(path: Path, arrays: Arrays, name: str, version: str, **training: Any) -> str:
    return model.write(
        path,
        name=name,
        version=version,
        item_ids=arrays.item_ids,
        popularity=arrays.popularity,
        category=arrays.category,
        categories=arrays.categories,
        neighbours=arrays.neighbours,
        weights=arrays.weights,
        training=training,
    )


def _read_file(path: Path, types: set[str]) -> Iterator[ClickEvent]:
    now = int(time.time() * 1000)
    with path.open("rb") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            event = events.decode(line.rstrip(b"\n"), types, now)
            if isinstance(event, events.Rejected):
                _log.warning("Skipping line %d: %s (%s)", number, event.reason, event.error)
                continue
            yield event


def _read_topic(bootstrap: str, topic: str, types: set[str]) -> Iterator[ClickEvent]:
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    reader = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "tailor-train",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "logger": _log,
        }
    )
    try:
        partitions = reader.list_topics(topic, timeout=30).topics[topic].partitions
        if not partitions:
            raise SystemExit(f"tailor-train: topic {topic} does not exist")
        reader.assign([TopicPartition(topic, p, 0) for p in partitions])
        remaining = set(partitions)
        now = int(time.time() * 1000)
        while remaining:
            for message in reader.consume(10000, timeout=1.0):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        remaining.discard(message.partition())
                    continue
                event = events.decode(message.value(), types, now)
                if isinstance(event, ClickEvent):
                    yield event
    finally:
        reader.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tailor-train", description=__doc__.splitlines()[0])
    add_version(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--events", type=Path, help="a JSON-lines file of click events")
    source.add_argument("--topic", help="an events topic to read from the beginning")
    parser.add_argument(
        "--bootstrap-servers",
        default="127.0.0.1:9092",
        help="Kafka brokers, with --topic (default %(default)s)",
    )
    parser.add_argument("--out", type=Path, required=True, help="the model file to write")
    parser.add_argument(
        "--name", required=True, help="model family, as spec.scorer.model.name names it"
    )
    parser.add_argument(
        "--model-version",
        required=True,
        help="the model's version, as spec.scorer.model.version names it (e.g. 2026-11-25)",
    )
    parser.add_argument(
        "--neighbours",
        type=int,
        default=TrainingSettings.neighbours,
        help="neighbours kept per item (default %(default)s)",
    )
    parser.add_argument(
        "--half-life-days",
        type=float,
        default=7.0,
        help="older co-occurrences count less, halving every this many days (default %(default)s)",
    )
    parser.add_argument(
        "--shrinkage",
        type=float,
        default=TrainingSettings.shrinkage,
        help="pulls similarities of rarely seen pairs towards zero (default %(default)s)",
    )
    parser.add_argument(
        "--max-session-items",
        type=int,
        default=TrainingSettings.max_session_items,
        help="distinct items of a session that count (its last ones): pairs, and so"
        " training time and memory, grow with the square of it; longer sessions are mostly"
        " bots and bursts (default %(default)s)",
    )
    parser.add_argument(
        "--weights",
        type=json.loads,
        default=DEFAULT_WEIGHTS,
        help="event type weights, JSON (default: the pipeline's default eventWeights)",
    )
    args = parser.parse_args(argv)
    if args.max_session_items < 2:
        parser.error("--max-session-items must be at least 2 (a pair)")
    logging.basicConfig(level=logging.INFO, format="tailor-train: %(message)s")
    types = set(args.weights)
    stream = (
        _read_file(args.events, types)
        if args.events
        else _read_topic(args.bootstrap_servers, args.topic, types)
    )
    started = time.monotonic()
    _log.info("Reading events from %s", args.events or args.topic)
    ordered = sorted(stream, key=lambda e: e.ts)
    _log.info("Read %d events in %.1fs; training", len(ordered), time.monotonic() - started)
    settings = TrainingSettings(
        neighbours=args.neighbours,
        half_life_s=args.half_life_days * 86400,
        shrinkage=args.shrinkage,
        max_session_items=args.max_session_items,
    )
    try:
        arrays = train(ordered, args.weights, settings, progress_every=100_000)
    except ValueError as exc:
        _log.error("%s", exc)
        return 1
    digest = write_model(
        args.out, arrays, args.name, args.model_version, events=len(ordered), **vars(settings)
    )
    _log.info(
        "Wrote %s: %d items, %d neighbours each, in %.1fs",
        args.out,
        len(arrays.item_ids),
        settings.neighbours,
        time.monotonic() - started,
    )
    print(f"sha256 {digest}")  # noqa: T201 - the one line scripts read
    return 0


if __name__ == "__main__":
    sys.exit(main())
