"""The dead-letter copy of a rejected record: its headers, and truncation when it cannot fit.

Pure. A rejected record is copied unchanged with ``tailor.*`` headers saying why and where
it came from. The headers add bytes, so a record that was just under the producer's
``message.max.bytes`` would no longer fit; ``produce()`` would refuse it and, since the
worker cannot skip a record it has not dead-lettered, the partition would stop. Such a
record is copied truncated instead, with its original size and sha256 in headers, so it is
still identifiable against the events topic (``tailor.source.*``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from tailor_pipeline.events import Rejected

# librdkafka's default message.max.bytes; the broker's default (1048588) is larger.
DEFAULT_MAX_MESSAGE_BYTES = 1_000_000
# librdkafka counts key + value + headers against message.max.bytes; the record and header
# framing (varints, attributes) is a few bytes each: a fixed margin covers it.
_FRAMING_MARGIN = 1024
ERROR_HEADER_CHARS = 1000


@dataclass(frozen=True)
class DeadLetter:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]

    def size(self) -> int:
        """What librdkafka counts against message.max.bytes, without framing."""
        return (
            len(self.key or b"")
            + len(self.value or b"")
            + sum(len(n) + len(v) for n, v in self.headers)
        )


def dead_letter(
    key: bytes | None,
    value: bytes | None,
    rejected: Rejected,
    source: tuple[str, int, int],
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> DeadLetter:
    """The record to produce to the dead-letter topic for ``key``/``value``, never larger
    than ``max_message_bytes`` less a framing margin. ``source`` is (topic, partition,
    offset) of the rejected record. A truncated copy carries the original value's size and
    sha256, and the key's original size when the key was cut too."""
    topic, partition, offset = source
    headers = [
        ("tailor.reason", rejected.reason.encode()),
        ("tailor.error", rejected.error[:ERROR_HEADER_CHARS].encode()),
        ("tailor.source.topic", topic.encode()),
        ("tailor.source.partition", str(partition).encode()),
        ("tailor.source.offset", str(offset).encode()),
    ]
    whole = DeadLetter(key, value, headers)
    budget = max_message_bytes - _FRAMING_MARGIN
    if whole.size() <= budget:
        return whole
    value = value or b""
    headers = [
        *headers,
        ("tailor.truncated", b"true"),
        ("tailor.original.size", str(len(value)).encode()),
        ("tailor.original.sha256", hashlib.sha256(value).hexdigest().encode()),
    ]
    room = max(budget - sum(len(n) + len(v) for n, v in headers), 0)
    # The key places the copy in a partition; it keeps at most a quarter of the room.
    if key is not None and len(key) > room // 4:
        headers.append(("tailor.original.key.size", str(len(key)).encode()))
        room -= len(headers[-1][0]) + len(headers[-1][1])
        key = key[: max(room // 4, 0)]
    room -= len(key or b"")
    return DeadLetter(key, value[: max(room, 0)], headers)
