"""Renders the Kafka topics a pipeline needs: names, partitions and the configs Tailor owns."""

from __future__ import annotations

from dataclasses import dataclass, field

from tailor_operator import api, naming
from tailor_operator.resource import Pipeline


@dataclass(frozen=True)
class DesiredTopic:
    role: naming.TopicRole
    name: str
    # None: leave it to the broker default (or, for an existing topic, as it is).
    partitions: int | None
    replication_factor: int | None
    config: dict[str, str] = field(default_factory=dict)
    managed: bool = True


def _spec_of(topics: api.TopicsSpec, role: naming.TopicRole) -> api.TopicSpec:
    return topics.dead_letter if role == "dead-letter" else getattr(topics, role)


def desired_topics(pipeline: Pipeline) -> list[DesiredTopic]:
    topics = pipeline.spec.topics
    events_partitions = topics.events.partitions
    desired = []
    for role in naming.TOPIC_ROLES:
        spec = _spec_of(topics, role)
        config = dict(spec.config)
        compacted = role in naming.COMPACTED_ROLES
        config["cleanup.policy"] = "compact" if compacted else "delete"
        if spec.retention_ms is not None:
            config["retention.ms"] = str(spec.retention_ms)
        partitions = spec.partitions
        if partitions is None and compacted:
            # Same count and same key (user_id) as events: a worker's profiles then live in
            # the partition numbered like the events partition it owns.
            partitions = events_partitions
        desired.append(
            DesiredTopic(
                role=role,
                name=pipeline.topic_name(role),
                partitions=partitions,
                replication_factor=spec.replication_factor,
                config=config,
                managed=spec.managed and not pipeline.topics_unmanaged,
            )
        )
    return desired
