"""Kafka topics through the admin API: describe, create, grow, align configs, delete."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from tailor_operator.render.topics import DesiredTopic
from tailor_operator.topic_plan import ActualTopic, TopicPlan

TIMEOUT_S = 10.0
_log = logging.getLogger("tailor.kafka")


class KafkaUnavailable(Exception):
    """The cluster did not answer: retry later, change nothing."""


class TopicOperationFailed(Exception):
    """Kafka refused an operation; the message is Kafka's own reason."""


def _kafka_reason(exc: BaseException) -> str:
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        error: KafkaError = exc.args[0]
        return f"{error.name()}: {error.str()}"
    if isinstance(exc, TimeoutError):
        return f"no answer within {TIMEOUT_S:.0f}s"
    return str(exc) or type(exc).__name__


def _unreachable(exc: BaseException) -> bool:
    # Our own wait on the future expiring means nobody answered at all.
    if isinstance(exc, TimeoutError):
        return True
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return bool(
            exc.args[0].code()
            in (
                KafkaError._TRANSPORT,
                KafkaError._TIMED_OUT,
                KafkaError._ALL_BROKERS_DOWN,
                # A client being replaced after a timeout: no answer, not a refusal.
                KafkaError._DESTROY,
            )
        )
    return False


def _missing(exc: BaseException) -> bool:
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return bool(exc.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART)
    return False


def _wait(futures: Mapping[Any, Future[Any]], what: str) -> list[str]:
    """Wait for every future; return Kafka's reason for each one that failed."""
    failures = []
    for key, future in futures.items():
        try:
            future.result(timeout=TIMEOUT_S)
        except Exception as exc:
            if _unreachable(exc):
                raise KafkaUnavailable(f"{what} {key}: {_kafka_reason(exc)}") from exc
            failures.append(f"{what} {getattr(key, 'name', key)}: {_kafka_reason(exc)}")
    return failures


class _GroupedCreates:
    """Topic creations of concurrent reconciles, sent together in one CreateTopics request.

    Each request costs the controller a metadata commit of its own: 50 pipelines creating
    their 5 topics in 50 requests took 1.6-1.8 s to the last one on the local broker, the
    same 250 topics in one request 0.05-0.09 s. So while one request is out, the topics
    asked for meanwhile wait and go out together in the next, sent by whichever of their
    callers gets there first; each caller returns once its own topics are answered. A
    topic asked for twice while waiting is created once, and both callers get its answer.
    """

    def __init__(self) -> None:
        self._turn = threading.Condition()
        self._waiting: dict[str, tuple[NewTopic, Future[None]]] = {}
        self._sending = False

    def create(self, admin: AdminClient, topics: list[NewTopic]) -> dict[str, Future[None]]:
        with self._turn:
            mine = {}
            for topic in topics:
                if topic.topic not in self._waiting:
                    self._waiting[topic.topic] = (topic, Future())
                mine[topic.topic] = self._waiting[topic.topic][1]
            # Not all answered and nobody sending: ours are among the waiting ones (a
            # request answers every topic it carried before it ends).
            while not all(future.done() for future in mine.values()):
                if self._sending:
                    self._turn.wait()
                    continue
                batch, self._waiting, self._sending = self._waiting, {}, True
                self._turn.release()
                try:
                    _send_creates(admin, batch)
                finally:
                    self._turn.acquire()
                    self._sending = False
                    self._turn.notify_all()
        return mine


def _send_creates(admin: AdminClient, batch: Mapping[str, tuple[NewTopic, Future[None]]]) -> None:
    """One CreateTopics request for ``batch``; answers every one of its futures."""
    try:
        answers = admin.create_topics([t for t, _ in batch.values()], request_timeout=TIMEOUT_S)
    except Exception as exc:
        for _, future in batch.values():
            future.set_exception(exc)
        return
    # One deadline for the request: a broker that does not answer costs TIMEOUT_S, not
    # TIMEOUT_S per topic.
    deadline = time.monotonic() + TIMEOUT_S
    for name, (_, future) in batch.items():
        try:
            answers[name].result(timeout=max(0.0, deadline - time.monotonic()))
        except Exception as exc:
            future.set_exception(exc)
        else:
            future.set_result(None)


class KafkaAdmin:
    """One admin connection to one Kafka cluster."""

    def __init__(self, config: Mapping[str, str]) -> None:
        self._config = dict(config)
        self._admin = self._connect()
        self._creates = _GroupedCreates()

    def _connect(self) -> AdminClient:
        return AdminClient(
            {
                **self._config,
                "socket.timeout.ms": 10000,
                "socket.connection.setup.timeout.ms": 5000,
                "reconnect.backoff.max.ms": 10000,
                # A broker that just started may answer metadata without a controller;
                # librdkafka would then wait for the next refresh (5 min by default).
                "topic.metadata.refresh.interval.ms": 10000,
                "logger": _log,
            }
        )

    def _reconnect_after(self, exc: KafkaUnavailable) -> KafkaUnavailable:
        """A client that got no answer is replaced: its view of the cluster may be stuck.
        Requests of other pipelines still running on the old one keep it alive (each
        operation holds its own reference), so they end with their own answer."""
        self._admin = self._connect()
        return exc

    def topic_names(self) -> set[str]:
        """Every topic of the cluster, from one metadata request: the cheap check for
        topics deleted behind the operator's back."""
        admin = self._admin
        try:
            metadata = admin.list_topics(timeout=TIMEOUT_S / 2)
        except KafkaException as exc:
            raise KafkaUnavailable(f"cannot list topics: {_kafka_reason(exc)}") from exc
        return set(metadata.topics)

    def describe(self, names: Iterable[str]) -> dict[str, ActualTopic]:
        """The topics among ``names`` that exist, with partitions, RF and topic-level configs.
        Asks about these topics only: the cost does not grow with the cluster's topic count."""
        wanted = list(names)
        admin = self._admin
        futures = admin.describe_topics(TopicCollection(wanted), request_timeout=TIMEOUT_S)
        present: dict[str, Any] = {}
        for name, future in futures.items():
            try:
                present[name] = future.result(timeout=TIMEOUT_S)
            except Exception as exc:
                if _unreachable(exc):
                    raise self._reconnect_after(
                        KafkaUnavailable(f"cannot describe topics: {_kafka_reason(exc)}")
                    ) from exc
                if _missing(exc):
                    continue
                raise TopicOperationFailed(f"describe {name}: {_kafka_reason(exc)}") from exc
        if not present:
            return {}
        resources = [ConfigResource(ResourceType.TOPIC, n) for n in present]
        configs: dict[str, dict[str, str]] = {}
        for resource, future in admin.describe_configs(resources).items():
            try:
                entries = future.result(timeout=TIMEOUT_S)
            except Exception as exc:
                if _unreachable(exc):
                    raise self._reconnect_after(KafkaUnavailable(_kafka_reason(exc))) from exc
                raise TopicOperationFailed(
                    f"describe configs of {resource.name}: {_kafka_reason(exc)}"
                ) from exc
            configs[resource.name] = {
                name: entry.value
                for name, entry in entries.items()
                if entry.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
            }
        return {
            name: ActualTopic(
                name,
                len(description.partitions),
                len(description.partitions[0].replicas) if description.partitions else 0,
                configs.get(name, {}),
            )
            for name, description in present.items()
        }

    def execute(self, plan: TopicPlan) -> list[str]:
        """Carry out a plan; returns Kafka's reasons for what it refused (the rest is done)."""
        try:
            return self._execute(self._admin, plan)
        except KafkaUnavailable as exc:
            raise self._reconnect_after(exc) from exc.__cause__

    def _execute(self, admin: AdminClient, plan: TopicPlan) -> list[str]:
        failures: list[str] = []
        if plan.create:
            new = [_new_topic(t) for t in plan.create]
            failures += _wait(self._creates.create(admin, new), "create")
        if plan.add_partitions:
            grow = [NewPartitions(name, total) for name, total in plan.add_partitions.items()]
            futures = admin.create_partitions(grow, request_timeout=TIMEOUT_S)
            failures += _wait(futures, "add partitions to")
        if plan.alter_configs:
            resources = [
                ConfigResource(
                    ResourceType.TOPIC,
                    name,
                    incremental_configs=[
                        ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                        for k, v in sorted(changes.items())
                    ],
                )
                for name, changes in plan.alter_configs.items()
            ]
            futures = admin.incremental_alter_configs(resources)
            failures += _wait(futures, "alter configs of")
        return failures

    def delete(self, names: list[str]) -> list[str]:
        """Delete topics; a topic already gone is not a failure."""
        admin = self._admin
        futures = admin.delete_topics(names, operation_timeout=TIMEOUT_S)
        try:
            failures = _wait(futures, "delete")
        except KafkaUnavailable as exc:
            raise self._reconnect_after(exc) from exc.__cause__
        return [f for f in failures if "UNKNOWN_TOPIC_OR_PART" not in f]


def _new_topic(topic: DesiredTopic) -> NewTopic:
    # -1 lets the broker apply num.partitions / default.replication.factor (KIP-464).
    return NewTopic(
        topic.name,
        num_partitions=topic.partitions or topic.create_partitions or -1,
        replication_factor=topic.replication_factor or -1,
        config=dict(topic.config),
    )


class KafkaAdmins:
    """Admin clients by cluster settings, created once and shared by every pipeline."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._admins: dict[tuple[tuple[str, str], ...], KafkaAdmin] = {}

    def get(self, config: Mapping[str, str]) -> KafkaAdmin:
        key = tuple(sorted(config.items()))
        with self._lock:
            admin = self._admins.get(key)
            if admin is None:
                admin = self._admins[key] = KafkaAdmin(config)
            return admin
