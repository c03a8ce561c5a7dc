"""Topic planning never shrinks, never touches unmanaged topics, and changes only what differs."""

from tailor_operator.render.topics import DesiredTopic
from tailor_operator.topic_plan import ActualTopic, plan_topic_changes


def desired(name: str = "t", partitions: int | None = 6, managed: bool = True, **config: str):
    return DesiredTopic("events", name, partitions, 1, dict(config), managed)


def test_missing_topics_are_created() -> None:
    plan = plan_topic_changes([desired(**{"cleanup.policy": "delete"})], {})
    assert [t.name for t in plan.create] == ["t"]
    assert not plan.add_partitions
    assert not plan.alter_configs


def test_partitions_only_grow() -> None:
    grow = plan_topic_changes([desired(partitions=12)], {"t": ActualTopic("t", 6, 1)})
    assert grow.add_partitions == {"t": 12}
    shrink = plan_topic_changes([desired(partitions=3)], {"t": ActualTopic("t", 6, 1)})
    assert shrink.add_partitions == {}
    assert shrink.empty
    assert "cannot remove partitions" in shrink.warnings[0]


def test_only_differing_configs_are_altered() -> None:
    actual = {"t": ActualTopic("t", 6, 1, {"cleanup.policy": "compact", "retention.ms": "1"})}
    plan = plan_topic_changes(
        [desired(**{"cleanup.policy": "compact", "retention.ms": "2"})], actual
    )
    assert plan.alter_configs == {"t": {"retention.ms": "2"}}


def test_unmanaged_topics_are_only_created_when_missing() -> None:
    actual = {"t": ActualTopic("t", 2, 1, {})}
    plan = plan_topic_changes([desired(partitions=12, managed=False, x="y")], actual)
    assert plan.empty
    assert plan.warnings == []
    assert [t.name for t in plan_topic_changes([desired(managed=False)], {}).create] == ["t"]


def test_a_replication_factor_change_is_reported_not_attempted() -> None:
    plan = plan_topic_changes([desired()], {"t": ActualTopic("t", 6, 3)})
    assert plan.empty
    assert "replication factor 3" in plan.warnings[0]


def test_broker_default_partitions_are_left_alone() -> None:
    assert plan_topic_changes([desired(partitions=None)], {"t": ActualTopic("t", 6, 1)}).empty
