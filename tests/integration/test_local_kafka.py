"""The local broker is a real Kafka: transactions commit, and an aborted one stays invisible."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic


def create_topic(bootstrap: str, partitions: int = 3) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        future.result(timeout=30)
    return name


def consume_all(bootstrap: str, topic: str, isolation: str, expected: int) -> list[bytes]:
    """Read the topic from the start until ``expected`` records or 10 s of silence."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"g-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": isolation,
        }
    )
    consumer.subscribe([topic])
    values: list[bytes] = []
    idle = 0
    try:
        while len(values) < expected and idle < 20:
            msg = consumer.poll(0.5)
            if msg is None:
                idle += 1
                continue
            assert msg.error() is None, msg.error()
            idle = 0
            values.append(msg.value())
        # Keep reading briefly: anything beyond `expected` is a failure too.
        for _ in range(4):
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                values.append(msg.value())
    finally:
        consumer.close()
    return values


def test_committed_transactions_are_read_and_an_aborted_one_is_not(kafka):
    topic = create_topic(kafka)
    producer = Producer(
        {
            "bootstrap.servers": kafka,
            "transactional.id": f"tx-{uuid.uuid4().hex[:8]}",
            "enable.idempotence": True,
        }
    )
    producer.init_transactions(60)

    def transaction(values: list[bytes], commit: bool) -> None:
        producer.begin_transaction()
        for i, value in enumerate(values):
            producer.produce(topic, key=f"user-{i}".encode(), value=value)
        producer.flush(30)
        if commit:
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)

    transaction([b"a1", b"a2", b"a3"], commit=True)
    transaction([b"b1", b"b2", b"b3"], commit=False)
    transaction([b"c1", b"c2", b"c3"], commit=True)

    committed = consume_all(kafka, topic, "read_committed", expected=6)
    assert sorted(committed) == [b"a1", b"a2", b"a3", b"c1", b"c2", b"c3"]

    # The aborted records were really written: a read_uncommitted reader sees them. This is what
    # makes the assertion above about transactions and not about a produce that never happened.
    everything = consume_all(kafka, topic, "read_uncommitted", expected=9)
    assert sorted(everything) == sorted(
        [b"a1", b"a2", b"a3", b"b1", b"b2", b"b3", b"c1", b"c2", b"c3"]
    )


def test_compacted_topic_can_be_created(kafka):
    admin = AdminClient({"bootstrap.servers": kafka})
    name = f"t-{uuid.uuid4().hex[:8]}"
    futures = admin.create_topics([NewTopic(name, 2, 1, config={"cleanup.policy": "compact"})])
    for future in futures.values():
        future.result(timeout=30)
    from confluent_kafka.admin import ConfigResource

    resource = ConfigResource(ConfigResource.Type.TOPIC, name)
    configs = admin.describe_configs([resource])[resource].result(timeout=30)
    assert configs["cleanup.policy"].value == "compact"


def test_next_batch_returns_what_has_arrived_without_waiting_for_a_full_batch(kafka):
    from tailor_pipeline.consuming import next_batch

    topic = create_topic(kafka, partitions=1)
    producer = Producer({"bootstrap.servers": kafka})
    for i in range(3):
        producer.produce(topic, value=b"%d" % i)
    producer.flush(30)
    consumer = Consumer(
        {
            "bootstrap.servers": kafka,
            "group.id": f"g-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    try:
        # consume(1000, 60) would sit out the whole minute for records that never come.
        started = time.monotonic()
        got: list[bytes] = []
        while len(got) < 3:
            got += [m.value() for m in next_batch(consumer, 1000, 60) if m.error() is None]
        assert got == [b"0", b"1", b"2"]
        assert time.monotonic() - started < 30
        assert len(next_batch(consumer, 2, 0.2)) == 0  # nothing more: [] after the timeout
    finally:
        consumer.close()
