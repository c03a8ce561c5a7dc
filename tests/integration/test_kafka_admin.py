"""The operator's shared Kafka admin client against a real broker that goes away."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import pytest

from tailor_localenv.kafka import KafkaBroker
from tailor_operator.adapters.kafka_admin import KafkaAdmin, KafkaAdmins, KafkaUnavailable
from tailor_operator.render.topics import DesiredTopic
from tailor_operator.topic_plan import ActualTopic, TopicPlan


def described(admin: KafkaAdmin, names: Iterable[str]) -> dict[str, ActualTopic]:
    """The topics, once the broker's metadata has them all (a moment after creation)."""
    wanted = set(names)
    deadline = time.monotonic() + 10
    while len(actual := admin.describe(wanted)) < len(wanted) and time.monotonic() < deadline:
        time.sleep(0.1)
    return actual


@pytest.mark.kafka
def test_concurrent_creations_share_requests_and_keep_their_own_answers(kafka):
    """Twenty pipelines create their topics at once through the shared client (their
    creations go out together): each gets exactly its own answers, and one's invalid
    config fails that one alone."""
    admin = KafkaAdmins().get({"bootstrap.servers": kafka})
    run = uuid.uuid4().hex[:8]

    def plan(n: int) -> TopicPlan:
        topics = [DesiredTopic("events", f"{run}.p{n}.t{t}", 1 + t % 3, 1) for t in range(4)]
        if n == 7:
            topics[0].config["cleanup.policy"] = "no-such-policy"
        return TopicPlan(create=topics)

    with ThreadPoolExecutor(20) as pool:
        failures = list(pool.map(lambda n: admin.execute(plan(n)), range(20)))

    assert [n for n, failed in enumerate(failures) if failed] == [7]
    (failure,) = failures[7]
    assert f"{run}.p7.t0" in failure
    wanted = {t.name: t.partitions for n in range(20) for t in plan(n).create}
    del wanted[f"{run}.p7.t0"]
    actual = described(admin, wanted)
    assert {name: topic.partitions for name, topic in actual.items()} == wanted


@pytest.mark.kafka
def test_a_topic_asked_for_twice_at_once_is_created_once(kafka):
    """Kafka refuses a CreateTopics request naming a topic twice (INVALID_REQUEST:
    Duplicate topic name); grouped, that would fail every caller asking for it. The
    grouped request carries each name once, and each caller gets its answer."""
    admin = KafkaAdmins().get({"bootstrap.servers": kafka})
    topic = DesiredTopic("events", f"{uuid.uuid4().hex[:8]}.twice", 2, 1)
    assert admin.execute(TopicPlan(create=[topic, topic])) == []
    assert described(admin, [topic.name])[topic.name].partitions == 2


@pytest.mark.kafka
def test_one_pipelines_timeout_does_not_tear_down_the_others_requests(toolchain):
    """Six pipelines share one client; when the broker is gone each must learn that Kafka
    is unavailable, not get `_DESTROY` because another's timeout replaced the client."""
    broker = KafkaBroker().start()
    try:
        admin = KafkaAdmins().get({"bootstrap.servers": broker.bootstrap_servers})
        assert admin.describe(["nothing-here"]) == {}  # connected
        broker.halt()

        def describe(n: int) -> str:
            try:
                admin.describe([f"ns.pipeline-{n}.events"])
            except KafkaUnavailable:
                return "unavailable"
            except Exception as exc:
                return f"{type(exc).__name__}: {exc}"
            return "answered"

        with ThreadPoolExecutor(6) as pool:
            outcomes = list(pool.map(describe, range(6)))
        assert outcomes == ["unavailable"] * 6
    finally:
        broker.stop()
