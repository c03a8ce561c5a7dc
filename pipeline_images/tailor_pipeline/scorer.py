"""The scorer: ``POST /v1/decide`` answers what a user should see now, in milliseconds.

Every replica holds every profile: a background thread reads the profiles and trending
topics (all partitions, ``read_committed``) into memory, keeping each profile in its compact
wire form and decoding it per request. ``/readyz`` turns 200 once the model is verified and
loaded and the table has reached the end offsets that existed at start; from then on a click
the worker commits reaches the next decision within the worker's transaction interval.

Decisions are logged to the decisions topic by a background thread from a bounded queue:
the request never waits on Kafka, and a full queue drops log lines (counted), not requests.
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import msgspec
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from tailor_pipeline import decisions as contract
from tailor_pipeline import http1, profile_codec
from tailor_pipeline import model as model_file
from tailor_pipeline.admission import (
    DEADLINE_HEADER,
    DEADLINE_HEADER_KEY,
    DEGRADED,
    SHED,
    Admission,
    Limits,
    LoopSelector,
)
from tailor_pipeline.consuming import next_batch
from tailor_pipeline.features import Profile, Trending, decayed, top
from tailor_pipeline.model import Model, ModelError
from tailor_pipeline.ranking import PRIOR_ITEMS, RankingSettings, model_popular, rank
from tailor_pipeline.settings import MAX_K, ModelRef, PipelineSettings

_log = logging.getLogger("tailor.scorer")

REQUESTS = Counter("tailor_scorer_requests", "Decision requests by HTTP status", ["code"])
DECISION_SECONDS = Histogram(
    "tailor_scorer_decision_seconds",
    "Time to rank one request (inside the handler)",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
)
PROFILES = Gauge("tailor_scorer_profiles", "User profiles held in memory")
MODEL_INFO = Gauge("tailor_scorer_model_info", "The loaded model", ["name", "version"])
LOGGED = Counter("tailor_scorer_decisions_logged", "Decisions written to the decisions topic")
DROPPED = Counter("tailor_scorer_decision_log_dropped", "Decision log lines dropped (queue full)")

MAX_CANDIDATES = 10_000
MAX_EXCLUDE = 1_000
MAX_ITEM_ID = 256
# A request's context may nest this deep (JSON that nests deeper is refused with 400, not
# a RecursionError).
MAX_CONTEXT_DEPTH = 32
# The largest valid request fits by construction: every candidate and excluded id at its
# longest (quoted, comma-separated), plus 64 KiB for the user id and the context.
MAX_BODY_BYTES = 64 * 1024 + (MAX_CANDIDATES + MAX_EXCLUDE) * (MAX_ITEM_ID + 3)
TRENDING_TOP = 200
TRENDING_REFRESH_S = 1.0
DRAIN_SECONDS = 0.005


ItemId = Annotated[str, msgspec.Meta(max_length=MAX_ITEM_ID)]


class DecideRequest(msgspec.Struct, forbid_unknown_fields=True):
    user_id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    k: Annotated[int, msgspec.Meta(ge=1, le=MAX_K)] | None = None
    context: dict[str, Any] | None = None
    exclude: Annotated[list[ItemId], msgspec.Meta(max_length=MAX_EXCLUDE)] | None = None
    candidates: Annotated[list[ItemId], msgspec.Meta(max_length=MAX_CANDIDATES)] | None = None


# Request ids: this process's random 64 bits, then a counter. Unique across replicas and
# restarts like a uuid4, without a getrandom() system call per request.
_ID_PREFIX = os.urandom(8).hex()
_ID_COUNTER = itertools.count()


def _request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


def _nests_deeper(value: Any, limit: int) -> bool:
    """Does a decoded JSON value nest more than ``limit`` containers deep? Iterative: the
    point is to refuse what recursion cannot handle."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = (
            node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        )
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


_decide_decoder = msgspec.json.Decoder(DecideRequest)


class ProfileTable:
    """Profiles and trending of every partition, fed from Kafka by one thread."""

    def __init__(self, settings: PipelineSettings, kafka: dict[str, str]) -> None:
        self._settings = settings
        self._kafka = kafka
        self.profiles: dict[str, bytes] = {}
        self._trending: dict[str, Trending] = {}
        self.trending: list[tuple[str, float]] = []
        self.popular: list[tuple[str, float]] = []
        self.caught_up = threading.Event()
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="profile-table", daemon=True)

    def start(self) -> ProfileTable:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def profile(self, user: str) -> Profile | None:
        value = self.profiles.get(user)
        return profile_codec.decode_profile(value) if value is not None else None

    def _run(self) -> None:
        topics = self._settings.topics
        reader = Consumer(
            {
                **self._kafka,
                "group.id": f"{self._settings.namespace}.{self._settings.pipeline}.scorer",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
                "fetch.wait.max.ms": 50,
                # librdkafka's own lines through logging: JSON like every other line.
                "logger": _log,
            }
        )
        try:
            sources = []
            for topic in (topics.profiles, topics.trending):
                partitions = reader.list_topics(topic, timeout=30).topics[topic].partitions
                if not partitions:
                    self.error = f"topic {topic} does not exist"
                    _log.error("Cannot read profiles: %s", self.error)
                    return
                sources += [TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions]
            reader.assign(sources)
            # Caught up = every partition reached the end it had when we started (EOF once).
            behind = {(tp.topic, tp.partition) for tp in sources}
            started, refreshed = time.monotonic(), 0.0
            while not self._stop.is_set():
                for message in next_batch(reader, 10_000, 0.1):
                    error = message.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF and behind:
                            behind.discard((message.topic(), message.partition()))
                            if not behind:
                                self._caught_up(started)
                        elif error.code() != KafkaError._PARTITION_EOF:
                            _log.warning("Profile read error: %s", error)
                        continue
                    self._apply(message.topic(), message.key(), message.value())
                if time.monotonic() - refreshed >= TRENDING_REFRESH_S:
                    self._refresh_trending()
                    refreshed = time.monotonic()
        except Exception as exc:  # the service must report this, not die silently
            self.error = f"profile table stopped: {exc}"
            _log.exception("Profile table stopped")
        finally:
            reader.close()

    def _caught_up(self, started: float) -> None:
        self._refresh_trending()
        PROFILES.set(len(self.profiles))
        _log.info(
            "Caught up: %d profiles in %.2fs",
            len(self.profiles),
            time.monotonic() - started,
            extra={"profiles": len(self.profiles)},
        )
        self.caught_up.set()

    def _apply(self, topic: str | None, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        if topic == self._settings.topics.profiles:
            user = key.decode()
            if value is None:
                self.profiles.pop(user, None)
            else:
                self.profiles[user] = value
            return
        if value is not None:
            try:
                self._trending[key.decode()] = profile_codec.decode_trending(value)
            except (profile_codec.UnsupportedFormat, ValueError) as exc:
                _log.warning("Skipping trending of partition %s: %s", key, exc)

    def _refresh_trending(self) -> None:
        """Each events partition counts the items its users touched, over the last hours
        (trending) and the last weeks (popular): sum them, decayed to the newest
        partition's clock."""
        features = self._settings.features
        partitions = list(self._trending.values())
        clock = max((p.clock_ms for p in partitions), default=0)
        self.trending = _merged([p.items for p in partitions], clock, features.trending_half_life_s)
        self.popular = _merged([p.popular for p in partitions], clock, features.popular_half_life_s)
        PROFILES.set(len(self.profiles))


def _merged(
    maps: list[dict[str, list[float]]], clock: int, half_life: float
) -> list[tuple[str, float]]:
    totals: dict[str, list[float]] = {}
    for counts in maps:
        for item, (score, updated) in counts.items():
            entry = totals.setdefault(item, [0.0, float(clock)])
            entry[0] += decayed(score, updated, clock, half_life)
    return top(totals, TRENDING_TOP, clock, half_life)


class DecisionLog:
    """Decisions to Kafka from a background thread; never blocks a request."""

    def __init__(self, topic: str, kafka: dict[str, str], capacity: int = 100_000) -> None:
        self._topic = topic
        self._capacity = capacity
        # Not a queue.Queue: its lock and a wake-up of this thread per request cost the
        # request path more than ranking does. deque.append is atomic; the thread drains
        # every DRAIN_SECONDS (the producer lingers 50 ms anyway).
        self._pending: collections.deque[tuple[str, bytes]] = collections.deque()
        self._stopping = threading.Event()
        self._producer = Producer(
            {
                **kafka,
                "linger.ms": 50,
                "compression.type": "lz4",
                "enable.idempotence": True,
                "logger": _log,
            }
        )
        self._thread = threading.Thread(target=self._run, name="decision-log", daemon=True)

    def start(self) -> DecisionLog:
        self._thread.start()
        return self

    def log(self, user: str, record: bytes) -> None:
        if len(self._pending) >= self._capacity:
            DROPPED.inc()
            return
        self._pending.append((user, record))

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=10)
        self._producer.flush(10)

    def _run(self) -> None:
        while not self._stopping.wait(DRAIN_SECONDS):
            self._drain()
        self._drain()

    def _drain(self) -> None:
        produced = 0
        while self._pending:
            user, record = self._pending.popleft()
            while True:
                try:
                    self._producer.produce(self._topic, key=user, value=record)
                    break
                except BufferError:
                    self._producer.poll(0.1)
            produced += 1
        if produced:
            LOGGED.inc(produced)
        self._producer.poll(0)


def fetch_model(ref: ModelRef, cache_dir: Path) -> Path:
    """The artifact as a local file: a path or file:// URI as is, http(s) downloaded once
    (streamed, with retries) into ``cache_dir`` under its digest."""
    uri = ref.uri
    if uri.startswith("file://"):
        return Path(uri.removeprefix("file://"))
    if not uri.startswith(("http://", "https://")):
        return Path(uri)
    import httpx

    target = cache_dir / f"{ref.sha256}.tailor"
    if target.is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    last: Exception | None = None
    for attempt in range(1, 4):
        try:
            with httpx.stream("GET", uri, timeout=30.0, follow_redirects=True) as response:
                response.raise_for_status()
                with partial.open("wb") as f:
                    for chunk in response.iter_bytes(1 << 20):
                        f.write(chunk)
            partial.replace(target)
            return target
        except httpx.HTTPStatusError as exc:
            # 404, 403...: asking again gets the same answer. 408 and 429 ask us to.
            if exc.response.status_code < 500 and exc.response.status_code not in (408, 429):
                raise ModelError(f"cannot download {uri}: {exc}") from exc
            last = exc
        except httpx.HTTPError as exc:
            last = exc
        _log.warning("Model download attempt %d failed: %s", attempt, last)
        if attempt < 3:
            time.sleep(2 * attempt)
    raise ModelError(f"cannot download {uri}: {last}")


def fetch_and_load(ref: ModelRef, cache_dir: Path) -> Model:
    """The verified model. A download that fails verification is deleted, so the next
    start (the kubelet restarts a scorer that gave up) downloads it again."""
    path = fetch_model(ref, cache_dir)
    try:
        return model_file.load(path, ref.sha256)
    except ModelError:
        if path.parent == cache_dir:
            path.unlink(missing_ok=True)
        raise


@dataclass
class Scorer:
    settings: PipelineSettings
    table: ProfileTable
    decisions: DecisionLog | None
    model: Model | None = None
    model_error: str | None = None
    clock: Callable[[], float] = time.time
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        scorer = self.settings.scorer_settings()
        self._default_k = scorer.default_k
        self._ranking = RankingSettings(
            half_life_s=self.settings.features.half_life_s,
            epsilon=scorer.epsilon,
            exclude_seen=scorer.exclude_seen,
            fallback=scorer.fallback,
        )

    def load_model(self, cache_dir: Path) -> None:
        ref = self.settings.scorer_settings().model
        if ref is None:
            _log.info("No model configured: ranking by trending items")
            return
        try:
            self.model = fetch_and_load(ref, cache_dir)
        except (ModelError, OSError) as exc:
            self.model_error = f"{ref.name} {ref.version}: {exc}"
            return
        if self.model.version != ref.version:
            _log.warning(
                "The artifact says version %s, the pipeline %s; serving as %s",
                self.model.version,
                ref.version,
                ref.version,
            )
        MODEL_INFO.labels(ref.name, ref.version).set(1)
        _log.info("Loaded model %s %s: %d items", ref.name, ref.version, self.model.items)

    @property
    def model_version(self) -> str | None:
        ref = self.settings.scorer_settings().model
        return ref.version if ref is not None and self.model is not None else None

    def ready(self) -> tuple[bool, str]:
        if self.model_error:
            return False, f"model refused: {self.model_error}"
        if self.settings.scorer_settings().model is not None and self.model is None:
            return False, "loading the model"
        if self.table.error:
            return False, self.table.error
        if not self.table.caught_up.is_set():
            return False, "catching up on profiles"
        return True, "ok"

    def decide(self, request: DecideRequest, started: float | None = None) -> dict[str, Any]:
        """Rank for one request and log the decision. ``started``: perf_counter() when the
        request arrived, so the logged latency covers parsing too."""
        started = time.perf_counter() if started is None else started
        now_ms = self.clock() * 1000.0
        profile = self.table.profile(request.user_id)
        ranked = rank(
            profile,
            self.model,
            self.table.trending,
            now_ms,
            request.k or self._default_k,
            self._ranking,
            exclude=request.exclude or (),
            candidates=request.candidates,
            rng=self.rng,
            popular=self.table.popular,
        )
        profile_age_ms = (
            int(now_ms - profile.last_seen_ms) if profile and profile.last_seen_ms else None
        )
        shown = [(s.item, round(s.score, 6), s.reason) for s in ranked]
        return self._answer(request, shown, now_ms, started, profile_age_ms)

    def degraded(self, request: DecideRequest, started: float) -> dict[str, Any]:
        """The cheap answer under overload, marked ``reason: degraded`` and logged like any
        decision: the top trending items the request allows, then (when there are too few,
        as in a pipeline's first minutes) this week's popular items, or the model's. Scores
        are each list's own, relative to its best; the popular ones come after the trending
        ones shown, scaled to score no higher than the last of them."""
        banned = set(request.exclude or ())
        allowed = set(request.candidates) if request.candidates is not None else None
        k = request.k or self._default_k
        popular = self.table.popular or model_popular(self.model, PRIOR_ITEMS)
        shown: dict[str, float] = {}
        ceiling = 1.0
        for listed in (self.table.trending, popular):
            best = listed[0][1] if listed and listed[0][1] > 0 else 1.0
            for item, score in listed:
                if len(shown) >= k:
                    break
                if (
                    item not in banned
                    and item not in shown
                    and (allowed is None or item in allowed)
                ):
                    shown[item] = round(ceiling * score / best, 6)
            if shown:
                ceiling = min(shown.values())
        DEGRADED.inc()
        answer = [(item, score, "degraded") for item, score in shown.items()]
        return self._answer(request, answer, self.clock() * 1000.0, started, None)

    def _answer(
        self,
        request: DecideRequest,
        shown: list[tuple[str, float, str]],
        now_ms: float,
        started: float,
        profile_age_ms: int | None,
    ) -> dict[str, Any]:
        """The answer to one request, and its line in the decision log (item, score and
        reason of each item shown)."""
        request_id = _request_id()
        elapsed = time.perf_counter() - started
        DECISION_SECONDS.observe(elapsed)
        # One tuple for the log and the answer: a ShownItem encodes as the answer's item.
        items = tuple(contract.ShownItem(i, s, r) for i, s, r in shown)
        self._log(
            contract.Decision(
                request_id=request_id,
                user_id=request.user_id,
                ts=int(now_ms),
                model_version=self.model_version,
                items=items,
                latency_ms=round(elapsed * 1000.0, 3),
                context=request.context,
                profile_age_ms=profile_age_ms,
            )
        )
        return {
            "request_id": request_id,
            "user_id": request.user_id,
            "model_version": self.model_version,
            "items": items,
            "ts": int(now_ms),
            "profile_age_ms": profile_age_ms,
        }

    def failed(self, request: DecideRequest, error: BaseException, started: float) -> str:
        """Log a request the scorer could not answer; returns its request id. The canary
        analysis counts these per model version (its error rate)."""
        request_id = _request_id()
        self._log(
            contract.Decision(
                request_id=request_id,
                user_id=request.user_id,
                ts=int(self.clock() * 1000.0),
                model_version=self.model_version,
                latency_ms=round((time.perf_counter() - started) * 1000.0, 3),
                error=f"{type(error).__name__}: {error}"[:500],
                context=request.context,
            )
        )
        return request_id

    def _log(self, decision: contract.Decision) -> None:
        if self.decisions is not None:
            self.decisions.log(decision.user_id, contract.encode(decision))


def _error(status: int, message: str, field: str | None = None) -> http1.Response:
    REQUESTS.labels(str(status)).inc()
    body: dict[str, Any] = {"error": message}
    if field:
        body["field"] = field
    return http1.json_response(msgspec.json.encode(body), status)


def _field_of(message: str) -> str | None:
    # msgspec: "Expected `int`, got `str` - at `$.k`"
    marker = "at `$."
    if marker in message:
        return message.split(marker, 1)[1].rstrip("`").split("`")[0]
    if "missing required field" in message:
        return message.rsplit("`", 2)[-2]
    if "unknown field" in message:
        return message.rsplit("`", 2)[-2]
    return None


LIMITS = http1.Limits(max_body_bytes=MAX_BODY_BYTES)
_PROFILE_PATH = ("/v1/users/", "/profile")
_OK = REQUESTS.labels("200")


def admission_for(scorer: Scorer, selector: LoopSelector | None = None) -> Admission:
    """Overload protection with the limits the pipeline sets; ``selector``: the serving
    loop's, so that each request's own wait counts too."""
    settings = scorer.settings.scorer_settings()
    return Admission(Limits(settings.degrade_after_ms, settings.shed_after_ms), selector)


def make_handler(scorer: Scorer, admission: Admission) -> http1.Handler:
    """The scorer's routes. ``admission``: what decides, by the load, how each decision is
    answered (a test may pass its own)."""

    def decide(request: http1.Request) -> http1.Response:
        started = time.perf_counter()
        try:
            parsed = _decide_decoder.decode(request.body)
        except msgspec.ValidationError as exc:
            return _error(400, str(exc), _field_of(str(exc)))
        except msgspec.DecodeError as exc:
            return _error(400, f"body is not JSON: {exc}")
        except RecursionError:
            return _error(400, f"context nests deeper than {MAX_CONTEXT_DEPTH}", "context")
        if parsed.context and _nests_deeper(parsed.context, MAX_CONTEXT_DEPTH):
            return _error(400, f"context nests deeper than {MAX_CONTEXT_DEPTH}", "context")
        ok, why = scorer.ready()
        if not ok:
            return _error(503, why)
        deadline_ms: float | None = None
        deadline = request.headers.get(DEADLINE_HEADER_KEY)
        if deadline is not None:
            try:
                deadline_ms = float(deadline)
            except ValueError:
                return _error(400, "not a number of milliseconds", DEADLINE_HEADER)
        admit = admission.verdict(started, deadline_ms)
        if admit == "shed":
            SHED.inc()
            refused = _error(
                503, f"overloaded: requests wait {admission.last_wait_ms:.0f} ms for this scorer"
            )
            refused.headers = (("Retry-After", "1"),)
            return refused
        try:
            if admit == "degrade":
                response = scorer.degraded(parsed, started)
            else:
                response = scorer.decide(parsed, started)
        except Exception as exc:
            # A bug or a bad model: answer, log it for the canary analysis, keep serving.
            _log.exception("Decision for %r failed", parsed.user_id)
            request_id = scorer.failed(parsed, exc, started)
            return _error(500, f"decision failed (request {request_id})")
        _OK.inc()
        return http1.json_response(msgspec.json.encode(response))

    def profile(user: str) -> http1.Response:
        found = scorer.table.profile(user)
        if found is None:
            return _error(404, f"no profile for user {user!r}", "user_id")
        return http1.json_response(msgspec.json.encode(found))

    def healthz() -> http1.Response:
        if scorer.table.error:
            return http1.Response(503, scorer.table.error.encode())
        return http1.Response(200, b"ok")

    def readyz() -> http1.Response:
        ok, why = scorer.ready()
        return http1.Response(200 if ok else 503, why.encode())

    def metrics() -> http1.Response:
        return http1.Response(200, generate_latest(), CONTENT_TYPE_LATEST)

    reads: dict[str, Callable[[], http1.Response]] = {
        "/healthz": healthz,
        "/readyz": readyz,
        "/metrics": metrics,
    }

    def route(request: http1.Request) -> http1.Response:
        path, method = request.path, request.method
        if path == "/v1/decide":
            return decide(request) if method == "POST" else _not_allowed("POST")
        read = reads.get(path)
        if read is None and path.startswith(_PROFILE_PATH[0]) and path.endswith(_PROFILE_PATH[1]):
            user = path[len(_PROFILE_PATH[0]) : -len(_PROFILE_PATH[1])]
            if user and "/" not in user:
                read = partial(profile, user)
        if read is None:
            return _error(404, f"no route {path}")
        return read() if method == "GET" else _not_allowed("GET")

    return route


def _not_allowed(allowed: str) -> http1.Response:
    refused = _error(405, f"use {allowed}")
    refused.headers = (("Allow", allowed),)
    return refused
