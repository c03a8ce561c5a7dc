"""Reads a pipeline's decisions and click events from Kafka into a canary analysis tally.

One reader per running canary: a consumer assigned every partition of the decisions and
events topics from the analysis start (``offsets_for_times``), with no consumer group and
nothing committed. Each reconcile reads on from where the last one stopped. An operator
that restarts builds a new reader from the start time in status and reads the same records
again, so the verdict does not depend on which replica of the operator computed it.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Callable, Mapping

from confluent_kafka import Consumer, IsolationLevel, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from tailor_operator.analysis import Tally
from tailor_pipeline import decisions
from tailor_pipeline.events import ClickEvent, decode

_log = logging.getLogger("tailor.decision_log")
CLICK = "click"
# Longest a reconcile spends reading; the rest is read by the next one.
READ_BUDGET_SECONDS = 2.0


def _millis(rfc3339: str) -> int:
    return int(datetime.datetime.fromisoformat(rfc3339).timestamp() * 1000)


class _Reader:
    def __init__(
        self,
        config: Mapping[str, str],
        decisions_topic: str,
        events_topic: str,
        since: str,
        attribution_ms: int,
        event_types: frozenset[str],
    ) -> None:
        self.tally = Tally(attribution_ms)
        self._decisions_topic = decisions_topic
        self._event_types = event_types
        self._consumer = Consumer(
            {
                **config,
                "group.id": "tailor-operator-canary-analysis",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "isolation.level": "read_committed",
                "fetch.max.bytes": 16 * 1024 * 1024,
                # librdkafka prefetches up to 64 MB per consumer by default; the analysis
                # reads in 2 s bursts and needs no more than a burst's worth.
                "queued.max.messages.kbytes": 16 * 1024,
                "logger": _log,
            }
        )
        self._admin = AdminClient({**config, "logger": _log})
        since_ms = _millis(since)
        wanted = []
        for topic in (decisions_topic, events_topic):
            metadata = self._consumer.list_topics(topic, timeout=10).topics[topic]
            if metadata.error is not None:
                raise RuntimeError(f"cannot read {topic}: {metadata.error}")
            wanted += [TopicPartition(topic, p, since_ms) for p in metadata.partitions]
        self._partitions = [TopicPartition(tp.topic, tp.partition) for tp in wanted]
        start = self._consumer.offsets_for_times(wanted, timeout=10)
        if any(tp.offset < 0 for tp in start):
            # Nothing written since the start yet: begin at today's end, explicitly (a
            # logical "end" would be resolved at the first fetch, skipping what comes in
            # before it).
            ends = self._end_offsets()
            for tp in start:
                if tp.offset < 0:
                    tp.offset = ends[(tp.topic, tp.partition)]
        self._consumer.assign(start)
        # Next offset to read per partition, as far as this reader knows.
        self._positions: dict[tuple[str, int], int] = {
            (tp.topic, tp.partition): tp.offset for tp in start
        }

    def read(self, budget_s: float) -> None:
        """Read up to the end offsets as of now (a consistent snapshot: a click written
        before its decision is never left behind while the decision is counted), or until
        the budget is spent; the next call goes on from there."""
        deadline = time.monotonic() + budget_s
        behind = {
            where: high
            for where, high in self._end_offsets().items()
            if self._positions.get(where, -1) < high
        }
        while behind and time.monotonic() < deadline:
            for message in self._consumer.consume(10_000, timeout=0.5):
                where = (message.topic(), message.partition())
                error = message.error()
                if error is not None:
                    # An end-of-partition from an earlier fetch may still be queued: only
                    # one at or past the target offset means caught up.
                    if error.code() == KafkaError._PARTITION_EOF:
                        if (message.offset() or 0) >= behind.get(where, 0):
                            behind.pop(where, None)
                    else:
                        _log.warning("Reading for the canary analysis: %s", error)
                    continue
                offset = message.offset()
                self._positions[where] = offset + 1
                if offset + 1 >= behind.get(where, 0):
                    behind.pop(where, None)
                self._add(message.topic(), message.value())

    def _end_offsets(self) -> dict[tuple[str, int], int]:
        """The committed end of every partition, in one request (a consumer asks one
        partition at a time, each waiting out a fetch)."""
        wanted = {tp: OffsetSpec.latest() for tp in self._partitions}
        futures = self._admin.list_offsets(
            wanted, isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=10
        )
        return {(tp.topic, tp.partition): f.result().offset for tp, f in futures.items()}

    def _add(self, topic: str | None, value: bytes | None) -> None:
        if value is None:
            return
        if topic == self._decisions_topic:
            decision = decisions.decode(value)
            if decision is not None:
                self.tally.add_decision(decision)
            return
        event = decode(value, self._event_types, now_ms=2**62)
        if isinstance(event, ClickEvent) and event.type == CLICK:
            self.tally.add_click(event.user_id, event.item_id, event.ts)

    def close(self) -> None:
        self._consumer.close()


class DecisionLogs:
    """Readers by (namespace, pipeline), each for one analysis start; shared by reconciles
    (a pipeline's reconciles never run at the same time, so a reader has one user)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._readers: dict[tuple[str, str], tuple[str, _Reader]] = {}

    def tally(
        self,
        pipeline: tuple[str, str],
        config: Callable[[], Mapping[str, str]],
        topics: tuple[str, str],
        since: str,
        attribution_ms: int,
        event_types: frozenset[str],
    ) -> Tally:
        """Everything logged since ``since`` that can be read now (within a budget).
        ``config``: the client settings, asked for only when a reader is created (they may
        read a Secret)."""
        with self._lock:
            current = self._readers.get(pipeline)
        if current is None or current[0] != since:
            if current is not None:
                current[1].close()
            reader = _Reader(config(), *topics, since, attribution_ms, event_types)
            with self._lock:
                self._readers[pipeline] = (since, reader)
        else:
            reader = current[1]
        reader.read(READ_BUDGET_SECONDS)
        return reader.tally

    def close(self, pipeline: tuple[str, str]) -> None:
        """The analysis is over: free the consumer and the tally."""
        with self._lock:
            current = self._readers.pop(pipeline, None)
        if current is not None:
            current[1].close()
