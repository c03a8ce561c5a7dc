"""The local broker is a real Kafka: transactions commit, and an aborted one stays invisible."""

from __future__ import annotations

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
