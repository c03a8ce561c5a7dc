"""Reading Kafka in batches without waiting for a batch to fill."""

from __future__ import annotations

from confluent_kafka import Consumer, Message


def next_batch(consumer: Consumer, max_messages: int, timeout: float) -> list[Message]:
    """Up to ``max_messages`` records, as soon as there is at least one (``[]`` after
    ``timeout`` seconds without any).

    ``consume(max_messages, timeout)`` waits until the batch is full or the time is up: under
    light load that wait is what a click's freshness is made of (up to the whole timeout for
    every record). Here the wait ends with the first record, and the rest of the batch is
    what the client has already fetched.
    """
    first = consumer.poll(timeout)
    if first is None:
        return []
    if max_messages == 1:
        return [first]
    return [first, *consumer.consume(num_messages=max_messages - 1, timeout=0)]
