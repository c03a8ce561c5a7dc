"""The click-event contract: what producers write to the events topic (schema version 1).

One event is one JSON object, keyed by ``user_id`` (UTF-8), on the pipeline's events topic:

====================  ========  =========================================================
field                 type      meaning
====================  ========  =========================================================
``user_id``           string    who acted; 1-256 characters; also the record key
``item_id``           string    what they acted on; 1-256 characters
``type``              string    one of the pipeline's event types (``spec.features.
                                eventWeights``: by default view, click, add_to_cart,
                                purchase)
``ts``                integer   when, in milliseconds since the Unix epoch (UTC)
``session_id``        string?   optional; the client's session
``category``          string?   optional; the item's category, feeds category affinity
``context``           object?   optional; free-form (page, device ...), passed through
``v``                 integer?  optional schema version, default 1
====================  ========  =========================================================

Unknown fields are ignored (producers may add fields without breaking workers). An event
that fails validation never stops a worker: it goes to the dead-letter topic unchanged,
with these headers: ``tailor.reason`` (a code, below), ``tailor.error`` (for humans),
``tailor.source.topic``, ``tailor.source.partition``, ``tailor.source.offset``.

Reason codes: ``too_large`` (over ``MAX_EVENT_BYTES``), ``malformed`` (not JSON, nested
too deep to decode, a field missing or of the wrong type; the error names the field),
``unsupported_version``, ``unknown_type``, ``future_timestamp`` (more than
``MAX_FUTURE_SKEW_MS`` ahead of the worker's clock), ``unprocessable`` (valid by the
contract, yet folding it into the profile failed: a defect of the worker, never a reason to
stop the partition).

A record too large to be copied whole to the dead-letter topic (the headers push it past
the producer's ``message.max.bytes``) is copied truncated, with ``tailor.truncated: true``,
``tailor.original.size`` and ``tailor.original.sha256`` (see ``dead_letter``).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Annotated, Any, Literal, get_args

import msgspec

SCHEMA_VERSION = 1
MAX_EVENT_BYTES = 16 * 1024
MAX_FUTURE_SKEW_MS = 5 * 60 * 1000

RejectReason = Literal[
    "too_large",
    "malformed",
    "unsupported_version",
    "unknown_type",
    "future_timestamp",
    "unprocessable",
]
REJECT_REASONS: tuple[RejectReason, ...] = get_args(RejectReason)

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class ClickEvent(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    user_id: Id
    item_id: Id
    type: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    ts: Annotated[int, msgspec.Meta(ge=0)]
    session_id: str | None = None
    category: Annotated[str, msgspec.Meta(max_length=256)] | None = None
    context: dict[str, Any] | None = None
    v: int = SCHEMA_VERSION


class Rejected(msgspec.Struct, frozen=True, gc=False):
    reason: RejectReason
    error: str


_decoder = msgspec.json.Decoder(ClickEvent)
_encoder = msgspec.json.Encoder()


def decode(raw: bytes | None, known_types: Collection[str], now_ms: int) -> ClickEvent | Rejected:
    """Validate one record's value; never raises."""
    if raw is None:
        return Rejected("malformed", "empty record (no value)")
    if len(raw) > MAX_EVENT_BYTES:
        return Rejected("too_large", f"{len(raw)} bytes, the limit is {MAX_EVENT_BYTES}")
    try:
        event = _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        return Rejected("malformed", str(exc))
    except msgspec.DecodeError as exc:
        return Rejected("malformed", f"not JSON: {exc}")
    except RecursionError:
        # msgspec guards its recursion with the interpreter's limit: a 2 KB record of
        # `[[[[...` a thousand deep is valid JSON that no Python decoder can hold.
        return Rejected("malformed", "nested too deep to decode (arrays or objects)")
    if event.v != SCHEMA_VERSION:
        return Rejected("unsupported_version", f"schema version {event.v}, this worker reads 1")
    if event.type not in known_types:
        return Rejected(
            "unknown_type", f"type {event.type!r} is not one of {sorted(known_types)} - at `$.type`"
        )
    if event.ts > now_ms + MAX_FUTURE_SKEW_MS:
        return Rejected(
            "future_timestamp",
            f"ts {event.ts} is {(event.ts - now_ms) / 1000:.0f}s ahead of this worker's clock"
            " - at `$.ts`",
        )
    return event


def encode(event: ClickEvent) -> bytes:
    """The wire form, for producers written in Python (the generator, tests, the demo)."""
    return _encoder.encode(event)
