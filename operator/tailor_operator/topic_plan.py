"""Plans topic changes from desired and actual state; refuses what Kafka cannot undo."""

from __future__ import annotations

from dataclasses import dataclass, field

from tailor_operator.render.topics import DesiredTopic


@dataclass(frozen=True)
class ActualTopic:
    name: str
    partitions: int
    replication_factor: int
    # Only the configs whose source is the topic itself, not broker defaults.
    config: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TopicPlan:
    create: list[DesiredTopic] = field(default_factory=list)
    # name -> new total partition count
    add_partitions: dict[str, int] = field(default_factory=dict)
    # name -> the configs to set (incrementally: others stay as they are)
    alter_configs: dict[str, dict[str, str]] = field(default_factory=dict)
    # Differences Tailor will not fix, for the TopicsReady message.
    warnings: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.create or self.add_partitions or self.alter_configs)


def plan_topic_changes(desired: list[DesiredTopic], actual: dict[str, ActualTopic]) -> TopicPlan:
    plan = TopicPlan()
    for topic in desired:
        current = actual.get(topic.name)
        if current is None:
            plan.create.append(topic)
            continue
        if not topic.managed:
            continue
        if topic.partitions is not None:
            if topic.partitions > current.partitions:
                plan.add_partitions[topic.name] = topic.partitions
            elif topic.partitions < current.partitions:
                plan.warnings.append(
                    f"{topic.name} has {current.partitions} partitions, the spec asks for"
                    f" {topic.partitions}: Kafka cannot remove partitions, keeping"
                    f" {current.partitions}"
                )
        if (
            topic.replication_factor is not None
            and topic.replication_factor != current.replication_factor
        ):
            plan.warnings.append(
                f"{topic.name} has replication factor {current.replication_factor}, the spec"
                f" asks for {topic.replication_factor}: Tailor does not reassign replicas"
            )
        changed = {k: v for k, v in topic.config.items() if current.config.get(k) != v}
        if changed:
            plan.alter_configs[topic.name] = changed
    return plan
