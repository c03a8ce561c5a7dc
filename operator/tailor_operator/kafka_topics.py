"""The pipeline's Kafka topics: the admin client's settings, one reconcile of the topics
(describe, plan, execute, describe again), and their deletion with the pipeline."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from kubernetes.client.exceptions import ApiException

from tailor_operator import api, conditions, naming, topic_plan
from tailor_operator.adapters.kafka_admin import (
    KafkaAdmin,
    KafkaUnavailable,
    TopicOperationFailed,
)
from tailor_operator.adapters.kube import KubeAdapter, api_message
from tailor_operator.conditions import Reason
from tailor_operator.dependencies import Dependencies
from tailor_operator.kube_events import Event
from tailor_operator.render import desired_topics
from tailor_operator.resource import Pipeline
from tailor_pipeline.settings import KafkaSettings


def kafka_client_config(pipeline: Pipeline, kube: KubeAdapter) -> dict[str, str]:
    """The operator's own admin-client settings, with credentials read from the Secret."""
    kafka = pipeline.spec.kafka
    secret: dict[str, str] = {}
    if kafka.auth_secret_ref is not None:
        secret = kube.read_secret(pipeline.namespace, kafka.auth_secret_ref.name)
    settings = KafkaSettings(
        bootstrap_servers=kafka.bootstrap_servers,
        security_protocol=kafka.security_protocol,
        sasl_mechanism=kafka.sasl_mechanism,
    )
    config = settings.client_config(
        {
            "TAILOR_KAFKA_USERNAME": secret.get("username", ""),
            "TAILOR_KAFKA_PASSWORD": secret.get("password", ""),
        }
    )
    if "ca.crt" in secret and kafka.security_protocol.endswith("SSL"):
        config["ssl.ca.pem"] = secret["ca.crt"]
    return config


def _describe_settled(admin: KafkaAdmin, names: list[str]) -> dict[str, topic_plan.ActualTopic]:
    """Describe right after a change: a new topic reaches the metadata of every broker a
    moment after CreateTopics returns, so look again briefly before calling it missing."""
    actual = admin.describe(names)
    for pause in (0.05, 0.1, 0.2, 0.4, 0.8):
        if len(actual) == len(names):
            break
        time.sleep(pause)
        actual = admin.describe(names)
    return actual


@dataclass
class TopicsResult:
    status: Literal["True", "False"]
    reason: Reason
    message: str
    topics: dict[str, api.TopicStatus]
    unavailable: bool = False
    operations: dict[str, int] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)
    client_config: dict[str, str] | None = None

    def condition(self, now: str) -> api.Condition:
        return api.Condition(
            type=conditions.TOPICS_READY,
            status=self.status,
            reason=self.reason,
            message=self.message,
            last_transition_time=now,
        )

    def watch(self) -> tuple[dict[str, str], frozenset[str]] | None:
        """The Kafka client settings and the topics that exist now, for the runtime's cheap
        check that they still do; None when Kafka did not answer."""
        if self.client_config is None:
            return None
        return self.client_config, frozenset(t.name for t in self.topics.values())


def reconcile_topics(pipeline: Pipeline, deps: Dependencies) -> TopicsResult:
    names = [pipeline.topic_name(role) for role in naming.TOPIC_ROLES]
    try:
        client_config = kafka_client_config(pipeline, deps.kube)
        admin = deps.kafka_admin(client_config)
        actual = admin.describe(names)
        events = actual.get(pipeline.topic_name("events"))
        desired = desired_topics(pipeline, events.partitions if events else None)
        plan = topic_plan.plan_topic_changes(desired, actual)
        failures = admin.execute(plan) if not plan.empty else []
        if not plan.empty:
            actual = _describe_settled(admin, [t.name for t in desired])
    except KafkaUnavailable as exc:
        return TopicsResult(
            "False",
            Reason.KAFKA_UNAVAILABLE,
            f"Kafka at {pipeline.spec.kafka.bootstrap_servers} did not answer: {exc}",
            {},
            unavailable=True,
        )
    except TopicOperationFailed as exc:
        return TopicsResult("False", Reason.TOPIC_ERROR, str(exc), {})
    except ApiException as exc:  # the credentials Secret
        return TopicsResult("False", Reason.KAFKA_CLIENT_ERROR, api_message(exc), {})
    except Exception as exc:
        # librdkafka refusing the client's configuration, an undecodable Secret: the spec
        # or the Secret must change, and the condition says which.
        return TopicsResult(
            "False",
            Reason.KAFKA_CLIENT_ERROR,
            f"cannot create the Kafka client: {type(exc).__name__}: {exc}",
            {},
        )
    topics: dict[str, api.TopicStatus] = {
        t.role: api.TopicStatus(
            name=t.name,
            partitions=actual[t.name].partitions,
            replication_factor=actual[t.name].replication_factor,
        )
        for t in desired
        if t.name in actual
    }
    operations = {
        "create": len(plan.create),
        "add_partitions": len(plan.add_partitions),
        "alter_configs": len(plan.alter_configs),
    }
    missing = [t.name for t in desired if t.name not in actual]
    created = [t.name for t in plan.create]
    if failures or missing:
        message = "; ".join(failures) or f"missing topics: {', '.join(missing)}"
        return TopicsResult(
            "False", Reason.TOPIC_ERROR, message, topics, operations=operations, created=created
        )
    message = f"{len(topics)} topics ready"
    if plan.warnings:
        message += "; " + "; ".join(plan.warnings)
    reason = Reason.TOPICS_UNMANAGED if pipeline.topics_unmanaged else Reason.TOPICS_READY
    return TopicsResult(
        "True",
        reason,
        message,
        topics,
        operations=operations,
        created=created,
        client_config=client_config,
    )


def add_topic_operations(events: list[Event], operations: Mapping[str, int]) -> None:
    """Topic changes in their own Event, or in this run's Created Event when there is one:
    a new pipeline gets one Event, not two (each is a request to the API server)."""
    parts = [f"{count} {op.replace('_', ' ')}" for op, count in operations.items() if count]
    message = "Kafka topics reconciled: " + ", ".join(parts)
    for i, event in enumerate(events):
        if event.reason == "Created":
            events[i] = Event(event.type, event.reason, f"{event.message}; {message}")
            return
    events.append(Event("Normal", "TopicsReconciled", message))


def delete_topics(body: Mapping[str, Any], deps: Dependencies) -> list[str]:
    """On deletion with deletionPolicy Delete: remove the managed topics. Returns Kafka's
    reasons for what it refused; raises KafkaUnavailable when it did not answer."""
    pipeline = Pipeline.from_body(body)
    if pipeline.spec.topics.deletion_policy != "Delete":
        return []
    names = [t.name for t in desired_topics(pipeline) if t.managed]
    if not names:
        return []
    admin = deps.kafka_admin(kafka_client_config(pipeline, deps.kube))
    return admin.delete(names)
