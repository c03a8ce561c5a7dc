"""The decision-log contract: what every scorer writes to the decisions topic (version 1).

One record per request the scorer answered (200) or failed (500), keyed by ``user_id``:

====================  ========  =========================================================
field                 type      meaning
====================  ========  =========================================================
``request_id``        string    unique per request; returned to the caller too
``user_id``           string    who the decision was for
``model_version``     string?   the model that ranked (null: no model, trending only)
``items``             array     what was shown, best first: ``item_id``, ``score``,
                                ``reason``; empty on an error
``ts``                integer   when, in milliseconds since the Unix epoch
``latency_ms``        number    time spent answering, in the handler
``error``             string?   set when the scorer failed the request (HTTP 500)
``context``           object?   the request's context, passed through
``profile_age_ms``    integer?  age of the profile the decision used
====================  ========  =========================================================

The operator's canary analysis reads it back: error rate and p99 latency per model version
from ``error`` and ``latency_ms``, and click-through rate by joining ``items`` with later
click events of the same user. Requests refused as invalid (400) are the caller's fault and
are not logged.
"""

from __future__ import annotations

from typing import Any

import msgspec


class ShownItem(msgspec.Struct, frozen=True, gc=False):
    item_id: str
    score: float = 0.0
    reason: str = ""


class Decision(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    request_id: str
    user_id: str
    ts: int
    model_version: str | None = None
    items: tuple[ShownItem, ...] = ()
    latency_ms: float = 0.0
    error: str | None = None
    context: dict[str, Any] | None = None
    profile_age_ms: int | None = None


_decoder = msgspec.json.Decoder(Decision)
_encoder = msgspec.json.Encoder()


def encode(decision: Decision) -> bytes:
    return _encoder.encode(decision)


def decode(raw: bytes) -> Decision | None:
    """One record, or None when it is not a decision of this contract (never raises)."""
    try:
        return _decoder.decode(raw)
    except msgspec.MsgspecError:
        return None
