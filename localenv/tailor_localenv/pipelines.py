"""A pipeline's topics and programs on the real Kafka, without Kubernetes.

Topics and settings come from the operator's own renderers, so the programs under test get
exactly what the operator would create and put in the ConfigMap.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from tailor_localenv.processes import ManagedProcess, free_port, http_get, ready_on
from tailor_operator.adapters.kafka_admin import KafkaAdmin
from tailor_operator.render.config import pipeline_settings
from tailor_operator.render.topics import desired_topics
from tailor_operator.resource import Pipeline
from tailor_operator.topic_plan import plan_topic_changes
from tailor_pipeline.settings import PipelineSettings


def create_pipeline(
    bootstrap: str, config_dir: Path, partitions: int = 4, spec: dict[str, Any] | None = None
) -> tuple[PipelineSettings, Path]:
    """Create a fresh pipeline's topics; returns its settings and their file."""
    body = {
        "metadata": {"namespace": "it", "name": f"p{uuid.uuid4().hex[:8]}", "uid": "uid"},
        "spec": {
            "kafka": {"bootstrapServers": bootstrap},
            "topics": {"events": {"partitions": partitions, "replicationFactor": 1}},
            **(spec or {}),
        },
    }
    pipeline = Pipeline.from_body(body)
    desired = desired_topics(pipeline)
    admin = KafkaAdmin({"bootstrap.servers": bootstrap})
    failures = admin.execute(plan_topic_changes(desired, admin.describe([t.name for t in desired])))
    assert not failures, failures
    settings = pipeline_settings(pipeline, pipeline.spec.scorer.model)
    path = config_dir / f"{pipeline.name}.json"
    path.write_text(settings.model_dump_json())
    return settings, path


def producer(bootstrap: str) -> Producer:
    # Idempotent: a retried batch never reorders one user's events.
    return Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})


def produce_all(bootstrap: str, topic: str, records: Iterable[tuple[str, bytes]]) -> None:
    p = producer(bootstrap)
    for key, value in records:
        while True:
            try:
                p.produce(topic, key=key, value=value)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    assert p.flush(30) == 0


def read_topic(bootstrap: str, topic: str, timeout: float = 30.0) -> list[Any]:
    """Every committed record of ``topic``, in partition order."""
    reader = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    try:
        partitions = reader.list_topics(topic, timeout=10).topics[topic].partitions
        reader.assign([TopicPartition(topic, p, 0) for p in partitions])
        remaining = set(partitions)
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while remaining and time.monotonic() < deadline:
            for message in reader.consume(1000, timeout=0.5):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        remaining.discard(message.partition())
                    continue
                out.append(message)
        assert not remaining, f"did not reach the end of {topic} partitions {remaining}"
        return out
    finally:
        reader.close()


def latest_by_key(messages: Iterable[Any]) -> dict[str, bytes]:
    latest: dict[str, bytes] = {}
    for message in messages:
        latest[message.key().decode()] = message.value()
    return latest


def group_lag(bootstrap: str, group: str, topic: str) -> int:
    """Records of ``topic`` the group has not committed yet (stable offsets only)."""
    probe = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "isolation.level": "read_committed"}
    )
    try:
        partitions = probe.list_topics(topic, timeout=10).topics[topic].partitions
        committed = probe.committed([TopicPartition(topic, p) for p in partitions], timeout=30)
        lag = 0
        for tp in committed:
            _, high = probe.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)
            lag += high - max(tp.offset, 0)
        return lag
    finally:
        probe.close()


@dataclass
class Workers:
    """Stream-worker processes, started the way the Deployment starts them."""

    config: Path
    log_dir: Path
    running: dict[str, ManagedProcess] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    def start(
        self, instance: str, wait_ready: bool = True, cpus: str | None = None
    ) -> ManagedProcess:
        """``cpus``: run on these cores only (taskset's list), from the first instruction."""
        port = self.ports.setdefault(instance, free_port())
        proc = ManagedProcess(
            f"stream-worker-{instance}",
            [
                *(("taskset", "-c", cpus) if cpus else ()),
                sys.executable,
                "-m",
                "tailor_pipeline.worker_main",
                f"--config={self.config}",
                f"--instance-id={instance}",
                f"--http-port={port}",
            ],
            self.log_dir,
        ).start()
        self.running[instance] = proc
        if wait_ready:
            proc.wait_healthy(lambda: self.ready(instance), 90, "ready")
        return proc

    def ready(self, instance: str) -> bool:
        return ready_on(self.ports[instance])

    def metrics(self, instance: str) -> bytes:
        _, body = http_get(f"http://127.0.0.1:{self.ports[instance]}/metrics")
        return body

    def kill(self, instance: str) -> None:
        self.running.pop(instance).kill()

    def stop_all(self) -> None:
        for proc in self.running.values():
            proc.stop()
        self.running.clear()

    def __iter__(self) -> Iterator[str]:
        return iter(self.running)


def scorer_traffic(
    version: str,
    requests: int,
    *,
    error_rate: float = 0.0,
    ctr: float = 0.1,
    latency_ms: float = 2.0,
    seed: int = 0,
) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]:
    """What scorers serving ``version`` write to the decisions topic (the scorer's own
    record encoder), and the clicks users make on what they were shown, as (key, value)
    lists. For the canary analysis where the scorer pods are KWOK's and serve nothing."""
    import random

    from tailor_pipeline import decisions, events

    rng = random.Random(f"{version}-{seed}")
    now = int(time.time() * 1000)
    logged, clicks = [], []
    for i in range(requests):
        user = f"{version}-u{seed}-{i}"
        failed = rng.random() < error_rate
        shown = (
            ()
            if failed
            else tuple(decisions.ShownItem(f"item-{rng.randrange(500)}") for _ in range(5))
        )
        decision = decisions.Decision(
            request_id=uuid.uuid4().hex,
            user_id=user,
            ts=now + i,
            model_version=version,
            items=shown,
            latency_ms=latency_ms,
            error="RuntimeError: simulated" if failed else None,
        )
        logged.append((user, decisions.encode(decision)))
        if shown and rng.random() < ctr:
            click = events.ClickEvent(user, shown[0].item_id, "click", now + i + 500)
            clicks.append((user, events.encode(click)))
    return logged, clicks


def serve_traffic(
    bootstrap: str, namespace: str, pipeline: str, *arms: tuple[str, int, dict[str, float]]
) -> None:
    """Write the decisions and clicks of several model versions (version, requests, knobs
    of scorer_traffic) to a pipeline's topics."""
    for seed, (version, requests, knobs) in enumerate(arms):
        logged, clicks = scorer_traffic(version, requests, seed=seed, **knobs)
        # Clicks first: whenever the operator sees a decision, it can see its click too.
        produce_all(bootstrap, f"{namespace}.{pipeline}.events", clicks)
        produce_all(bootstrap, f"{namespace}.{pipeline}.decisions", logged)
