"""The stream worker: click events in, user profiles and trending items out, exactly once.

Read-process-write runs in Kafka transactions (KIP-447): profile updates, trending
snapshots, dead letters and the consumer offsets of one batch commit together or not at all.
So the profiles topic always holds exactly the state after the committed offsets, and a new
owner of a partition rebuilds that state by reading the partition's profiles to the end
before it consumes a single event.

Partition ``p`` of the events topic writes its profiles to partition ``p % n`` of the
profiles topic (``n`` = its partition count, equal to the events' by default) and its
trending state under key ``"p"``; restore reads the same places.

A transaction is finished (offsets sent, committed) on a thread of its own while the main
thread goes on reading and folding the next events into memory: waiting for those round
trips took about 1.3 s of a 2.9 s drain of 200,000 events (measured in process), with the
worker's core idle. Nothing is produced while a transaction is being finished: profiles,
trending and dead letters of the next one are written when it begins, so they still commit
together with their offsets or not at all.

Group membership is cooperative-sticky: a rebalance only moves the partitions that change
owner while the rest keep flowing. Membership is dynamic on purpose: with static membership
keyed by the pod name, a worker stopped by a Deployment rollout (whose pods get new names)
sent no LeaveGroup, and its partitions waited out ``session.timeout.ms`` on every rollout
(14.6 s measured on a real node); now a stopping worker leaves the group at once. Zombie
fencing comes from the consumer-group metadata sent with the offsets: a worker that lost its
partitions can no longer commit for them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from prometheus_client import Counter, Gauge, Histogram

from tailor_pipeline import events, heap, profile_codec
from tailor_pipeline.consuming import next_batch
from tailor_pipeline.dead_letter import DEFAULT_MAX_MESSAGE_BYTES, DeadLetter, dead_letter
from tailor_pipeline.features import Profile, Trending, update_profile, update_trending
from tailor_pipeline.settings import FeatureSettings, PipelineSettings

_log = logging.getLogger("tailor.worker")

EVENTS = Counter("tailor_worker_events", "Events consumed, by outcome", ["result"])
PROCESSED = EVENTS.labels("processed")
DEAD_LETTERS = Counter("tailor_worker_dead_letters", "Events sent to dead letter", ["reason"])
LAG = Gauge("tailor_worker_consumer_lag", "Records behind the end, per partition", ["partition"])
TXN_SECONDS = Histogram(
    "tailor_worker_transaction_seconds",
    "Time to commit one transaction (produce flush + offsets + commit)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
TXN_EVENTS = Histogram(
    "tailor_worker_transaction_events",
    "Events per committed transaction",
    buckets=(1, 10, 100, 500, 1000, 5000, 20000),
)
ABORTS = Counter("tailor_worker_aborted_transactions", "Transactions aborted and replayed")
RESTORE_SECONDS = Histogram(
    "tailor_worker_restore_seconds",
    "Time to rebuild the state of newly assigned partitions",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
PROFILES = Gauge("tailor_worker_profiles", "User profiles held in memory")
PARTITIONS = Gauge("tailor_worker_partitions", "Events partitions assigned to this worker")

RESTORE_TIMEOUT_S = 300.0
KAFKA_TIMEOUT_S = 30.0
CONSUME_BATCH = 1000
FINISHING_BATCH_S = 0.002


class WorkerFailed(Exception):
    """A fatal Kafka error (e.g. fenced by another instance with the same id): restart."""


@dataclass
class PartitionState:
    profiles: dict[str, Profile] = field(default_factory=dict)
    trending: Trending = field(default_factory=Trending)
    dirty: set[str] = field(default_factory=set)
    trending_dirty: bool = False
    trending_written: float = 0.0
    # Offset after the last event folded in; None until the first one.
    next_offset: int | None = None


def fold_record(
    state: PartitionState, value: bytes | None, features: FeatureSettings, now: int
) -> events.Rejected | None:
    """Decode one record's value and fold it into the partition's state; what to
    dead-letter instead, if anything. Never raises: one record must not stop a partition,
    so even a defect in the fold turns into an ``unprocessable`` dead letter."""
    result = events.decode(value, features.event_weights, now)
    if isinstance(result, events.Rejected):
        return result
    try:
        profile = state.profiles.get(result.user_id)
        if profile is None:
            profile = state.profiles[result.user_id] = Profile()
        update_profile(profile, result, features)
        update_trending(state.trending, result, features)
    except Exception as exc:
        _log.exception("Folding an event failed; dead-lettering it")
        return events.Rejected("unprocessable", f"{type(exc).__name__}: {exc}")
    state.dirty.add(result.user_id)
    state.trending_dirty = True
    return None


def commit_due(
    pending: int, caught_up: bool, elapsed_s: float, interval_s: float, max_events: int
) -> bool:
    """Whether to commit the open transaction now.

    Caught up (the last read returned less than a full batch), commit at once: a click is in
    the profiles topic one transaction after it arrived. Behind, batch up to the interval or
    the size bound: fewer, larger transactions drain a backlog faster.
    """
    if not pending:
        return False
    return caught_up or pending >= max_events or elapsed_s >= interval_s


def _has_records(reader: Consumer, tp: TopicPartition) -> bool:
    low, high = reader.get_watermark_offsets(tp, timeout=KAFKA_TIMEOUT_S)
    return bool(high > low)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class StreamWorker:
    def __init__(
        self,
        settings: PipelineSettings,
        instance_id: str,
        environ: dict[str, str] | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.settings = settings
        self.instance_id = instance_id
        self._clock = clock
        kafka = settings.kafka.client_config(environ)
        worker = settings.worker_settings()
        self._kafka = kafka
        self._consumer = Consumer(
            {
                **kafka,
                "group.id": worker.group_id,
                "partition.assignment.strategy": "cooperative-sticky",
                "session.timeout.ms": worker.session_timeout_ms,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
                "statistics.interval.ms": 5000,
                "stats_cb": self._on_stats,
                "logger": _log,
            }
        )
        self._producer = Producer(
            {
                **kafka,
                "transactional.id": f"{worker.group_id}.{instance_id}",
                "transaction.timeout.ms": worker.transaction_timeout_ms,
                "linger.ms": 5,
                "compression.type": "lz4",
                # A transaction that starts right after the previous one's commit finds the
                # coordinator still writing its markers (CONCURRENT_TRANSACTIONS) and
                # retries; at the default 100 ms backoff that wait was most of a click's
                # freshness.
                "retry.backoff.ms": 5,
                "retry.backoff.max.ms": 50,
                "logger": _log,
            }
        )
        self._topics = settings.topics
        self._max_message_bytes = int(kafka.get("message.max.bytes", DEFAULT_MAX_MESSAGE_BYTES))
        self._parts: dict[int, PartitionState] = {}
        # Events folded in since the last transaction began, and their dead letters.
        self._pending = 0
        self._dead_letters: list[DeadLetter] = []
        self._txn_started = time.monotonic()
        self._finisher = ThreadPoolExecutor(1, thread_name_prefix="transaction")
        self._finishing: Future[None] | None = None
        self._rewind_needed = False
        self._assigned_once = False
        self._restoring = False
        self._fatal: str | None = None
        self._lag_partitions: set[int] = set()
        self._partition_counts: dict[str, int] = {}

    # --- health -------------------------------------------------------------------------

    def ready(self) -> tuple[bool, str]:
        if self._fatal:
            return False, self._fatal
        if not self._assigned_once:
            return False, "waiting for a partition assignment"
        if self._restoring:
            return False, "restoring state of assigned partitions"
        return True, f"ok: {len(self._parts)} partitions"

    def alive(self) -> tuple[bool, str]:
        return (False, self._fatal) if self._fatal else (True, "ok")

    # --- the loop -----------------------------------------------------------------------

    def run(self, should_stop: Callable[[], bool]) -> None:
        """Consume until ``should_stop()``; then commit what was processed and leave."""
        self._producer.init_transactions(KAFKA_TIMEOUT_S)
        self._consumer.subscribe(
            [self._topics.events],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        interval = self.settings.worker_settings().transaction_interval_ms / 1000.0
        max_events = self.settings.worker_settings().transaction_max_events
        try:
            while not should_stop():
                # A slow transaction must not let the next one grow without bound: past
                # twice the size bound, wait for it.
                self._reap(wait=self._pending >= 2 * max_events)
                if self._finishing is None:
                    batch = next_batch(self._consumer, CONSUME_BATCH, 0.05)
                else:
                    # Fold what arrives while a transaction finishes, so the next one can
                    # begin the moment it is done; gathered for a few ms, not a wake-up per
                    # event (55-60 against 52-54 ms of CPU per 1,000 events at 5,000/s).
                    batch = self._consumer.consume(CONSUME_BATCH, FINISHING_BATCH_S)
                caught_up = len(batch) < CONSUME_BATCH
                # A transaction failed, or partitions were lost during the poll: what was
                # read is replayed after the rewind.
                if self._rewind_needed:
                    self._rewind()
                    continue
                if batch:
                    now, features = self._clock(), self.settings.features
                    # Counted per batch: a labelled counter per event cost a tenth of the
                    # worker's time (profiled draining a backlog).
                    PROCESSED.inc(sum(self._process(m, now, features) for m in batch))
                if self._finishing is None and commit_due(
                    self._pending,
                    caught_up=caught_up,
                    elapsed_s=time.monotonic() - self._txn_started,
                    interval_s=interval,
                    max_events=max_events,
                ):
                    self._begin_commit()
            self._commit_now()
            _log.info("Stopping: committed, leaving the group")
        finally:
            self._consumer.close()
            self._finisher.shutdown()

    def _process(self, message: Message, now: int, features: FeatureSettings) -> bool:
        """Fold one record in (or dead-letter it); whether it was folded in."""
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                _log.warning("Consumer error: %s", error)
            return False
        partition = message.partition()
        assert partition is not None
        state = self._parts.get(partition)
        if state is None:  # a record fetched just before its partition was revoked
            return False
        offset = message.offset()
        assert offset is not None
        rejected = fold_record(state, message.value(), features, now)
        if rejected is not None:
            self._dead_letters.append(self._dead_letter(message, rejected, partition, offset))
        state.next_offset = offset + 1
        self._pending += 1
        return rejected is None

    def _dead_letter(
        self, message: Message, rejected: events.Rejected, partition: int, offset: int
    ) -> DeadLetter:
        raw_key = message.key()
        key = raw_key.encode() if isinstance(raw_key, str) else raw_key
        source = (self._topics.events, partition, offset)
        DEAD_LETTERS.labels(rejected.reason).inc()
        EVENTS.labels("dead_letter").inc()
        return dead_letter(key, message.value(), rejected, source, self._max_message_bytes)

    def _write_dead_letters(self) -> None:
        for copy in self._dead_letters:
            try:
                self._produce(self._topics.dead_letter, copy.key, copy.value, None, copy.headers)
            except KafkaException as exc:
                # The dead-letter topic's own max.message.bytes may be smaller than the
                # producer's: the headers alone still say what was lost and where it is.
                _log.error("Dead letter refused (%s); writing its headers only", exc.args[0])
                headers = [*copy.headers, ("tailor.truncated", b"true")]
                self._produce(self._topics.dead_letter, None, None, None, headers)
        self._dead_letters.clear()

    def _produce(
        self,
        topic: str,
        key: str | bytes | None,
        value: bytes | None,
        partition: int | None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        kwargs: dict[str, Any] = {"key": key, "value": value}
        if partition is not None:
            kwargs["partition"] = partition
        if headers:
            kwargs["headers"] = headers
        while True:
            try:
                self._producer.produce(topic, **kwargs)
                return
            except BufferError:
                self._producer.poll(0.1)  # the local queue is full: let it drain

    # --- transactions -------------------------------------------------------------------

    def _begin_commit(self) -> None:
        """Begin a transaction with everything folded in since the last one (state, dead
        letters, offsets) and leave it to finish on the finisher's thread."""
        self._producer.begin_transaction()
        events_in_txn, self._pending = self._pending, 0
        self._txn_started = time.monotonic()
        try:
            self._write_state()
            self._write_dead_letters()
        except KafkaException as exc:
            self._abort(exc)
            return
        offsets = [
            TopicPartition(self._topics.events, p, s.next_offset)
            for p, s in self._parts.items()
            if s.next_offset is not None
        ]
        group = self._consumer.consumer_group_metadata()
        self._finishing = self._finisher.submit(
            self._finish, offsets, group, events_in_txn, self._txn_started
        )

    def _finish(
        self, offsets: list[TopicPartition], group: object, events_in_txn: int, started: float
    ) -> None:
        """Send the offsets and commit, on the finisher's thread (the client releases the
        GIL while it waits for the broker)."""
        if offsets:
            self._producer.send_offsets_to_transaction(offsets, group, KAFKA_TIMEOUT_S)
        self._commit_with_retries()
        TXN_SECONDS.observe(time.monotonic() - started)
        TXN_EVENTS.observe(events_in_txn)

    def _reap(self, wait: bool) -> None:
        """Take the result of the transaction being finished, if it is done (or ``wait``
        for it); a failed one is aborted and everything since replays from Kafka."""
        finishing = self._finishing
        if finishing is None or not (wait or finishing.done()):
            return
        self._finishing = None
        try:
            finishing.result()
        except KafkaException as exc:
            self._abort(exc)
            return
        PROFILES.set(sum(len(s.profiles) for s in self._parts.values()))
        # The profiles just written live on: keep them out of every full collection.
        heap.settle()

    def _commit_now(self) -> None:
        """Commit everything folded in so far and wait for it (stopping, or partitions
        about to be revoked). Nothing commits after a failed transaction until the
        rewind: memory then holds events whose writes were aborted."""
        self._reap(wait=True)
        if self._pending and not self._rewind_needed:
            self._begin_commit()
            self._reap(wait=True)

    def _commit_with_retries(self) -> None:
        while True:
            try:
                self._producer.commit_transaction(KAFKA_TIMEOUT_S)
                return
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                if error.retriable() and not error.txn_requires_abort() and not error.fatal():
                    _log.warning("Commit failed, retrying: %s", error)
                    continue
                raise

    def _write_state(self) -> None:
        profiles_n = self._partition_counts[self._topics.profiles]
        trending_n = self._partition_counts[self._topics.trending]
        trending_every = self.settings.worker_settings().trending_interval_ms / 1000.0
        now = time.monotonic()
        for partition, state in self._parts.items():
            target = partition % profiles_n
            for user in state.dirty:
                value = profile_codec.encode_profile(state.profiles[user])
                self._produce(self._topics.profiles, user, value, target)
            state.dirty.clear()
            if state.trending_dirty and now - state.trending_written >= trending_every:
                value = profile_codec.encode_trending(state.trending)
                self._produce(self._topics.trending, str(partition), value, partition % trending_n)
                state.trending_dirty = False
                state.trending_written = now

    def _abort(self, exc: KafkaException) -> None:
        error: KafkaError = exc.args[0]
        if error.fatal():
            self._fatal = f"fatal Kafka error: {error}"
            raise WorkerFailed(self._fatal) from exc
        _log.warning("Transaction failed, aborting and replaying from Kafka: %s", error)
        ABORTS.inc()
        try:
            self._producer.abort_transaction(KAFKA_TIMEOUT_S)
        except KafkaException as abort_exc:
            if abort_exc.args[0].fatal():
                self._fatal = f"fatal Kafka error: {abort_exc.args[0]}"
                raise WorkerFailed(self._fatal) from abort_exc
            raise
        self._rewind_needed = True

    def _rewind(self) -> None:
        """After an abort: state and positions back to what Kafka has committed."""
        self._rewind_needed = False
        self._pending = 0
        self._dead_letters.clear()
        owned = [TopicPartition(self._topics.events, p) for p in self._parts]
        if not owned:
            return
        committed = self._consumer.committed(owned, KAFKA_TIMEOUT_S)
        self._restore([tp.partition for tp in committed])
        for tp in committed:
            offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            self._consumer.seek(TopicPartition(self._topics.events, tp.partition, offset))

    # --- rebalances ---------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned_once = True
        if not partitions:
            return
        started = time.monotonic()
        self._restoring = True
        try:
            committed = consumer.committed(partitions, KAFKA_TIMEOUT_S)
            with heap.building():
                self._restore([tp.partition for tp in partitions])
        finally:
            self._restoring = False
        consumer.incremental_assign(committed)
        PARTITIONS.set(len(self._parts))
        elapsed = time.monotonic() - started
        RESTORE_SECONDS.observe(elapsed)
        _log.info(
            "Assigned partitions %s; restored %d profiles in %.2fs",
            sorted(tp.partition for tp in partitions),
            sum(len(self._parts[tp.partition].profiles) for tp in partitions),
            elapsed,
            extra={"partitions": sorted(tp.partition for tp in partitions)},
        )

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Commit what was done for them while we still own them; a failure here replays.
        self._commit_now()
        self._drop(partitions)
        _log.info("Revoked partitions %s", sorted(tp.partition for tp in partitions))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Someone else may own them already: nothing more may commit for them. A
        # transaction being finished fails if they were lost before it committed (its
        # group metadata is fenced) and is then aborted; no other is open.
        _log.warning("Lost partitions %s", sorted(tp.partition for tp in partitions))
        self._reap(wait=True)
        self._drop(partitions)
        # What was folded in since (dead letters of the lost partitions among it) is not
        # ours to commit as it is: the partitions kept replay from Kafka too, as after an
        # abort. Rare: a session timeout.
        self._rewind_needed = True

    def _drop(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._parts.pop(tp.partition, None)
            if tp.partition in self._lag_partitions:
                self._lag_partitions.discard(tp.partition)
                LAG.remove(str(tp.partition))
        PARTITIONS.set(len(self._parts))

    # --- restore ------------------------------------------------------------------------

    def _refresh_partition_counts(self) -> None:
        """Partition counts of the output topics: read at each assignment (partitions can
        only grow, and the operator grows all of a pipeline's topics together), never per
        batch: a metadata request takes hundreds of ms on a busy client."""
        for topic in (self._topics.profiles, self._topics.trending):
            metadata = self._producer.list_topics(topic, timeout=KAFKA_TIMEOUT_S)
            count = len(metadata.topics[topic].partitions)
            if count == 0:
                raise WorkerFailed(f"topic {topic} does not exist")
            self._partition_counts[topic] = count

    def _restore(self, partitions: list[int]) -> None:
        """Rebuild the state of ``partitions`` from the profiles and trending topics."""
        self._refresh_partition_counts()
        profiles_n = self._partition_counts[self._topics.profiles]
        trending_n = self._partition_counts[self._topics.trending]
        wanted = {p: PartitionState() for p in partitions}
        by_profile_partition: dict[int, list[int]] = {}
        for p in partitions:
            by_profile_partition.setdefault(p % profiles_n, []).append(p)
        sources = [
            TopicPartition(self._topics.profiles, q, OFFSET_BEGINNING) for q in by_profile_partition
        ] + [
            TopicPartition(self._topics.trending, q, OFFSET_BEGINNING)
            for q in {p % trending_n for p in partitions}
        ]
        reader = Consumer(
            {
                **self._kafka,
                "group.id": f"{self.settings.worker_settings().group_id}.restore",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
                "fetch.max.bytes": 64 * 1024 * 1024,
                # Reading to the end is all it does: do not let the broker wait for more.
                "fetch.wait.max.ms": 10,
                "logger": _log,
            }
        )
        try:
            # Empty partitions (a new pipeline) need no read at all.
            sources = [tp for tp in sources if _has_records(reader, tp)]
            if sources:
                reader.assign(sources)
            remaining = {(tp.topic, tp.partition) for tp in sources}
            deadline = time.monotonic() + RESTORE_TIMEOUT_S
            while remaining:
                if time.monotonic() > deadline:
                    raise WorkerFailed(f"restore did not reach the end of {sorted(remaining)}")
                for message in reader.consume(num_messages=10000, timeout=0.1):
                    error = message.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            remaining.discard((message.topic(), message.partition()))
                        else:
                            _log.warning("Restore read error: %s", error)
                        continue
                    self._restore_record(message, wanted, by_profile_partition)
        finally:
            reader.close()
        self._parts.update(wanted)

    def _restore_record(
        self,
        message: Message,
        wanted: dict[int, PartitionState],
        by_profile_partition: dict[int, list[int]],
    ) -> None:
        key = message.key()
        if key is None:
            return
        value = message.value()
        if message.topic() == self._topics.trending:
            state = wanted.get(int(key)) if key.isdigit() else None
            if state is not None and value is not None:
                state.trending = profile_codec.decode_trending(value)
            return
        user = key.decode()
        partition = message.partition()
        assert partition is not None
        for p in by_profile_partition.get(partition, ()):
            if value is None:
                wanted[p].profiles.pop(user, None)
                continue
            try:
                wanted[p].profiles[user] = profile_codec.decode_profile(value)
            except (profile_codec.UnsupportedFormat, ValueError) as exc:
                _log.warning("Skipping the stored profile of %r: %s", user, exc)

    # --- metrics ------------------------------------------------------------------------

    def _on_stats(self, raw: str) -> None:
        stats = json.loads(raw)
        topic = stats.get("topics", {}).get(self._topics.events, {})
        for name, partition in topic.get("partitions", {}).items():
            lag = partition.get("consumer_lag", -1)
            if name != "-1" and lag >= 0 and int(name) in self._parts:
                self._lag_partitions.add(int(name))
                LAG.labels(name).set(lag)
