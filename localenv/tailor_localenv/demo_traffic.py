"""The demo's load: a live click stream, decision requests, and a few tracked shoppers whose
clicks must show in their next decision; with what the screen and the summary report."""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import random
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
from confluent_kafka import Producer

from tailor_localenv.processes import http_get
from tailor_pipeline import events
from tailor_pipeline.events import ClickEvent
from tailor_pipeline.generator import DAY_MS, GeneratorSettings, stream

# Days of the demo store's stream: far more than any demo runs (a day is about 5,400 events,
# 27 s at 200 events/s), generated lazily one day at a time.
STORE_DAYS = 100_000


def demo_store(now_ms: int, history_days: int) -> tuple[list[ClickEvent], Iterator[ClickEvent]]:
    """The demo store (400 shoppers, 600 items in 12 categories): its last ``history_days``
    of clicks up to ``now_ms``, and the live clicks that follow them, without end. One
    stream, so live shoppers keep the tastes and the items the models learnt from the
    history (a stream of another seed is another store: no model predicts its clicks, and a
    canary's click-through rate would be noise)."""
    clicks = stream(
        GeneratorSettings(
            seed=1,
            days=STORE_DAYS,
            start_ms=now_ms - history_days * DAY_MS,
            users=400,
            items=600,
            categories=12,
        )
    )
    history: list[ClickEvent] = []
    for event in clicks:
        if event.ts >= now_ms:
            return history, itertools.chain([event], clicks)
        history.append(event)
    return history, iter(())


@dataclass
class Stats:
    produced: int = 0
    decisions: int = 0
    errors: int = 0
    # Why requests failed: "HTTP 503", "ConnectionRefusedError" ... -> count.
    error_kinds: dict[str, int] = field(default_factory=dict)
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=5000))
    freshness: list[float] = field(default_factory=list)
    # Answers a scorer under overload computed from trending alone (reason "degraded").
    degraded: int = 0
    clicks_checked: int = 0
    clicks_reflected: int = 0
    # The checks that failed, with what is needed to tell why.
    clicks_missed: list[dict[str, Any]] = field(default_factory=list)
    versions_served: dict[str, int] = field(default_factory=dict)
    tracked: dict[str, dict[str, Any]] = field(default_factory=dict)
    log: deque[str] = field(default_factory=lambda: deque(maxlen=12))


def ms(values: list[float], q: float) -> float | None:
    """The ``q`` quantile of ``values`` (seconds) in milliseconds; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def _degraded(answer: dict[str, Any]) -> bool:
    return any(item.get("reason") == "degraded" for item in answer.get("items", ()))


class Traffic:
    """The ``live`` clicks into the events topic at ``rate``/s, stamped with the time they
    are sent, and decisions from ``endpoints()`` (base URLs of the scorers: the Service, or
    each local process as a Service would pick one) for the users of ``history``."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        endpoints: Callable[[], list[str]],
        rate: int,
        history: list[ClickEvent],
        live: Iterator[ClickEvent],
    ) -> None:
        self.topic = topic
        self.live = live
        self.endpoints = endpoints
        self.rate = rate
        self.stats = Stats()
        self.stop = threading.Event()
        self._producer = Producer(
            {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5}
        )
        counts: dict[str, int] = {}
        for e in history:
            counts[e.user_id] = counts.get(e.user_id, 0) + 1
        self.tracked = sorted(counts, key=lambda u: -counts[u])[:3]
        self.items = sorted({e.item_id for e in history})
        self.categories = {e.item_id: e.category for e in history}
        self.users = sorted(counts)
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for target in (self._run_clicks, self._run_decisions, self._run_tracked):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)

    def finish(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=15)

    def produce(self, event: ClickEvent) -> None:
        self._producer.produce(self.topic, key=event.user_id, value=events.encode(event))
        self._producer.poll(0)
        self.stats.produced += 1

    def _run_clicks(self) -> None:
        period = 1.0 / self.rate
        next_at = time.monotonic()
        for event in self.live:
            if self.stop.is_set():
                break
            self.produce(msgspec.structs.replace(event, ts=int(time.time() * 1000)))
            next_at += period
            time.sleep(max(0.0, next_at - time.monotonic()))
        self._producer.flush(10)

    def decide(self, user: str) -> dict[str, Any] | None:
        endpoints = self.endpoints()
        if not endpoints:
            return None
        url = urllib.parse.urlsplit(random.choice(endpoints))
        started = time.perf_counter()
        try:
            connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=5)
            try:
                connection.request(
                    "POST",
                    "/v1/decide",
                    json.dumps({"user_id": user, "k": 5}),
                    {"Content-Type": "application/json"},
                )
                response = connection.getresponse()
                body: dict[str, Any] = json.loads(response.read())
            finally:
                connection.close()
        except (OSError, ValueError) as exc:
            self._failed(type(exc).__name__)
            return None
        if response.status != 200:
            self._failed(f"HTTP {response.status}: {str(body.get('error', ''))[:80]}")
            return None
        self.stats.latencies.append(time.perf_counter() - started)
        self.stats.decisions += 1
        self.stats.degraded += _degraded(body)
        version = body.get("model_version") or "none"
        self.stats.versions_served[version] = self.stats.versions_served.get(version, 0) + 1
        return body

    def _failed(self, kind: str) -> None:
        self.stats.errors += 1
        self.stats.error_kinds[kind] = self.stats.error_kinds.get(kind, 0) + 1

    def _run_decisions(self) -> None:
        while not self.stop.is_set():
            self.decide(random.choice(self.users))
            time.sleep(0.02)

    def _run_tracked(self) -> None:
        """Every few seconds a tracked user clicks something new; 1 s later the decision
        must already build on it."""
        rng = random.Random(3)
        while not self.stop.wait(2.5):
            user = rng.choice(self.tracked)
            item = rng.choice(self.items)
            clicked = time.monotonic()
            click_ms = int(time.time() * 1000)
            self.produce(
                ClickEvent(
                    user_id=user,
                    item_id=item,
                    type="add_to_cart",
                    ts=click_ms,
                    category=self.categories[item],
                )
            )
            self._producer.flush(5)
            seen_at = self._wait_profile(user, item, clicked + 5)
            if seen_at is not None:
                self.stats.freshness.append(seen_at - clicked)
            time.sleep(max(0.0, clicked + 1.0 - time.monotonic()))
            asked_ms = time.time() * 1000
            body = self.decide(user)
            # A scorer shedding load answers from trending without reading the profile
            # (reason "degraded"): that says nothing about freshness; ask again shortly.
            for _ in range(10):
                if body is None or not _degraded(body):
                    break
                time.sleep(0.05)
                body = self.decide(user)
            if body is None or _degraded(body):
                continue
            # The decision reflects the click when the profile it was computed from is at
            # least as new as the click (its newest event: this click or a later one). The
            # scorer's own clock dates it: the time the request was sent would count the
            # request's latency as staleness.
            age = body.get("profile_age_ms")
            newest_ms = body["ts"] - age if age is not None else None
            self.stats.clicks_checked += 1
            if newest_ms is not None and newest_ms >= click_ms:
                self.stats.clicks_reflected += 1
            else:
                self.stats.clicks_missed.append(
                    {
                        "user": user,
                        "click_ms": click_ms,
                        "profile_newest_ms": newest_ms,
                        "seen_in_profile_after_s": None
                        if seen_at is None
                        else round(seen_at - clicked, 3),
                        "asked_after_s": round(asked_ms / 1000 - click_ms / 1000, 3),
                    }
                )
            self.stats.tracked[user] = {
                "clicked": item,
                "top": [i["item_id"] for i in body["items"]],
                "model": body.get("model_version"),
            }

    def _wait_profile(self, user: str, item: str, deadline: float) -> float | None:
        while time.monotonic() < deadline and not self.stop.is_set():
            endpoints = self.endpoints()
            if endpoints:
                with contextlib.suppress(OSError, ValueError):
                    code, body = http_get(f"{endpoints[0]}/v1/users/{user}/profile")
                    if code == 200 and json.loads(body)[0][-1:] == [item]:
                        return time.monotonic()
            time.sleep(0.02)
        return None

    def last_version(self) -> str | None:
        body = self.decide(self.users[0])
        return body.get("model_version") if body else None
