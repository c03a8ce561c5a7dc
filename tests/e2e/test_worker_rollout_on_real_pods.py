"""A stream-worker rollout on real pods (new pod names): how long the partitions wait for a
new owner. With static membership keyed by the pod name, a stopped worker sent no
LeaveGroup and its partitions waited out session.timeout.ms (15 s) on every rollout."""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from tailor_localenv.pipelines import produce_all
from tailor_localenv.processes import wait_for
from tailor_pipeline import events
from tests.e2e.real_pods import get, pipeline, start_in_real_pods, wait_pipeline_ready

pytestmark = pytest.mark.slow
SESSION_TIMEOUT_S = 15.0  # the worker's default session.timeout.ms
# A handover is a new pod's start, a join and a restore: seconds, well below the timeout.
HANDOVER_BOUND_S = 10.0


def committed(admin: AdminClient, group: str, topic: str, partitions: int) -> int:
    from confluent_kafka import ConsumerGroupTopicPartitions

    request = ConsumerGroupTopicPartitions(
        group, [TopicPartition(topic, p) for p in range(partitions)]
    )
    result = admin.list_consumer_group_offsets([request])[group].result()
    return sum(max(tp.offset, 0) for tp in result.topic_partitions)


def test_a_worker_rollout_hands_partitions_over_without_waiting_for_the_session_timeout(
    kube, kafka, real_node, operator
):
    namespace = start_in_real_pods(kube, real_node, operator, "wroll")
    kube.kubectl("apply", "-f", "-", input=pipeline(namespace, kafka, partitions=2))
    wait_pipeline_ready(kube, namespace)
    status = get(kube, namespace, "ppl", "storefront")["status"]
    topic = status["topics"]["events"]["name"]
    group = f"{namespace}.storefront.stream-worker"
    admin = AdminClient({"bootstrap.servers": kafka})

    stop = threading.Event()

    def produce() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            event = events.ClickEvent(
                user_id=f"u{n % 40}", item_id=f"i{n % 90}", type="view", ts=int(time.time() * 1000)
            )
            produce_all(kafka, topic, [(event.user_id, events.encode(event))])
            time.sleep(0.05)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    try:
        wait_for(lambda: committed(admin, group, topic, 2) > 0, 60, "the worker to commit")
        before = {p["metadata"]["name"] for p in get(kube, namespace, "pods")["items"]}
        kube.kubectl("rollout", "restart", "deployment/storefront-stream-worker", "-n", namespace)
        started = time.monotonic()
        last_value, last_advance, longest = committed(admin, group, topic, 2), started, 0.0
        renamed = False
        while time.monotonic() - started < 90:
            value = committed(admin, group, topic, 2)
            now = time.monotonic()
            if value > last_value:
                longest = max(longest, now - last_advance)
                last_value, last_advance = value, now
                pods = get(
                    kube, namespace, "pods", "-l", "app.kubernetes.io/component=stream-worker"
                )
                names = {p["metadata"]["name"] for p in pods["items"]}
                # Done once a new pod, alone, has advanced the offsets for a while.
                renamed = bool(names) and not names & before
                if renamed and now - started > SESSION_TIMEOUT_S * 1.5:
                    break
            time.sleep(0.2)
        longest = max(longest, time.monotonic() - last_advance)
    finally:
        stop.set()
        producer.join()
    print(f"worker rollout: partitions waited at most {longest:.1f}s for a new owner")  # noqa: T201
    assert renamed, "the rollout did not replace the worker pod"
    assert longest < HANDOVER_BOUND_S, (
        f"partitions waited {longest:.1f}s for a new owner during the rollout "
        f"(session.timeout.ms is {SESSION_TIMEOUT_S:.0f}s)"
    )
    kube.kubectl("delete", "namespace", namespace, "--wait=false")
