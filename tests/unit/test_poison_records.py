"""No single record stops a partition: deep nesting, sizes at the broker limit, any bytes."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tailor_pipeline import events, worker
from tailor_pipeline.dead_letter import DEFAULT_MAX_MESSAGE_BYTES, dead_letter
from tailor_pipeline.settings import FeatureSettings
from tailor_pipeline.worker import PartitionState, fold_record

FEATURES = FeatureSettings(
    half_life_s=1800, recent_items=50, event_weights={"view": 1, "click": 2, "purchase": 8}
)
NOW = 1_800_000_000_000
SOURCE = ("shop.p.events", 3, 41)


def nested(depth: int, open_: bytes, close: bytes, field: str) -> bytes:
    return (
        b'{"user_id":"u","item_id":"i","type":"view","ts":1,"'
        + field.encode()
        + b'":'
        + open_ * depth
        + b"1" * (open_ == b'{"a":')
        + close * depth
        + b"}"
    )


@pytest.mark.parametrize("field", ["context", "not_in_the_contract"])
@pytest.mark.parametrize(("open_", "close"), [(b"[", b"]"), (b'{"a":', b"}")])
def test_an_event_nested_a_thousand_deep_is_dead_lettered_not_raised(field, open_, close):
    raw = nested(1000, open_, close, field)
    assert len(raw) < events.MAX_EVENT_BYTES
    rejected = fold_record(PartitionState(), raw, FEATURES, NOW)
    assert rejected is not None
    assert rejected.reason == "malformed"


def test_a_record_just_under_the_producer_limit_is_dead_lettered_truncated():
    value = b"x" * (DEFAULT_MAX_MESSAGE_BYTES - 100)
    key = b"user-1"
    rejected = fold_record(PartitionState(), value, FEATURES, NOW)
    assert rejected is not None
    assert rejected.reason == "too_large"
    copy = dead_letter(key, value, rejected, SOURCE)
    assert copy.size() <= DEFAULT_MAX_MESSAGE_BYTES - 1024
    headers = dict(copy.headers)
    assert headers["tailor.truncated"] == b"true"
    assert int(headers["tailor.original.size"]) == len(value)
    assert headers["tailor.original.sha256"] == hashlib.sha256(value).hexdigest().encode()
    assert headers["tailor.source.offset"] == b"41"
    assert copy.key == key
    assert copy.value is not None
    assert value.startswith(copy.value)
    assert len(copy.value) > DEFAULT_MAX_MESSAGE_BYTES // 2


def test_a_small_rejected_record_is_copied_whole():
    rejected = events.Rejected("malformed", "not JSON")
    copy = dead_letter(b"k", b"{oops", rejected, SOURCE)
    assert (copy.key, copy.value) == (b"k", b"{oops")
    assert "tailor.truncated" not in dict(copy.headers)


def test_a_huge_key_is_cut_too_and_its_size_recorded():
    key = b"k" * 900_000
    copy = dead_letter(key, b"v" * 99_000, events.Rejected("too_large", "big"), SOURCE)
    assert copy.size() <= DEFAULT_MAX_MESSAGE_BYTES - 1024
    assert dict(copy.headers)["tailor.original.key.size"] == b"900000"
    assert copy.key is not None
    assert len(copy.key) < len(key)


def test_a_fold_that_fails_is_unprocessable_not_fatal(monkeypatch):
    def broken(*_: object) -> None:
        raise OverflowError("math range error")

    monkeypatch.setattr(worker, "update_profile", broken)
    state = PartitionState()
    raw = events.encode(events.ClickEvent(user_id="u", item_id="i", type="view", ts=1))
    rejected = fold_record(state, raw, FEATURES, NOW)
    assert rejected == events.Rejected("unprocessable", "OverflowError: math range error")
    assert not state.dirty


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=40,
)


@st.composite
def records(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["bytes", "nested", "big", "json"]))
    if kind == "bytes":
        return draw(st.binary(max_size=4096))
    if kind == "nested":
        depth = draw(st.integers(1, 5000))
        brackets = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
        return nested(depth, *brackets, draw(st.sampled_from(["context", "x"])))
    if kind == "big":
        return b"x" * draw(st.integers(events.MAX_EVENT_BYTES, DEFAULT_MAX_MESSAGE_BYTES))
    import json

    body = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "user_id": st.text(max_size=300) | json_values,
                "item_id": st.text(max_size=300) | json_values,
                "type": st.sampled_from(["view", "click", "purchase", "teleport"]) | json_values,
                "ts": st.integers(-(2**70), 2**70) | json_values,
                "category": st.text(max_size=300) | json_values,
                "context": json_values,
                "v": st.integers(-5, 5) | json_values,
            },
        )
    )
    return json.dumps(body).encode()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=records(), key=st.none() | st.binary(max_size=2000))
def test_any_record_is_folded_or_dead_lettered_within_the_limit(raw, key):
    state = PartitionState()
    rejected = fold_record(state, raw, FEATURES, NOW)
    if rejected is None:
        assert len(state.dirty) == 1
        return
    assert rejected.reason in events.REJECT_REASONS
    copy = dead_letter(key, raw, rejected, SOURCE)
    assert copy.size() <= DEFAULT_MAX_MESSAGE_BYTES - 1024
