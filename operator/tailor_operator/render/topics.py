"""Renders the Kafka topics a pipeline needs: names, partitions and the configs Tailor owns."""

from __future__ import annotations

from dataclasses import dataclass, field

from tailor_operator import api, naming
from tailor_operator.resource import Pipeline


@dataclass(frozen=True)
class DesiredTopic:
    role: naming.TopicRole
    name: str
    # The count to grow an existing topic to; None: leave it as it is.
    partitions: int | None
    replication_factor: int | None
    config: dict[str, str] = field(default_factory=dict)
    managed: bool = True
    # The count of a new topic when ``partitions`` is None (None: the broker default).
    create_partitions: int | None = None


DEFAULT_EVENTS_PARTITIONS = api.DEFAULT_EVENTS_PARTITIONS


def events_partitions(pipeline: Pipeline, existing: int | None) -> int:
    """The partitions the events topic has or is about to have: the spec's count when it
    asks for more than exist (Kafka only grows), else what exists, else the default."""
    wanted = pipeline.spec.topics.events.partitions or 0
    return max(wanted, existing or 0) or DEFAULT_EVENTS_PARTITIONS


def _spec_of(topics: api.TopicsSpec, role: naming.TopicRole) -> api.TopicSpec:
    return topics.dead_letter if role == "dead-letter" else getattr(topics, role)


def desired_topics(pipeline: Pipeline, existing_events: int | None = None) -> list[DesiredTopic]:
    """``existing_events``: the partitions of the events topic if it exists."""
    topics = pipeline.spec.topics
    events_target = events_partitions(pipeline, existing_events)
    desired = []
    for role in naming.TOPIC_ROLES:
        spec = _spec_of(topics, role)
        config = dict(spec.config)
        compacted = role in naming.COMPACTED_ROLES
        config["cleanup.policy"] = "compact" if compacted else "delete"
        if spec.retention_ms is not None:
            config["retention.ms"] = str(spec.retention_ms)
        partitions = spec.partitions
        create_partitions = partitions
        if partitions is None and (role == "events" or compacted):
            create_partitions = events_target
            if compacted and existing_events is not None:
                # Same count and same key (user_id) as events, growing with it: a worker's
                # profiles then live in the partition numbered like the events partition
                # it owns. Never grown from a guess while the events topic is missing.
                partitions = events_target
        desired.append(
            DesiredTopic(
                role=role,
                name=pipeline.topic_name(role),
                partitions=partitions,
                replication_factor=spec.replication_factor,
                config=config,
                managed=spec.managed and not pipeline.topics_unmanaged,
                create_partitions=create_partitions,
            )
        )
    return desired
