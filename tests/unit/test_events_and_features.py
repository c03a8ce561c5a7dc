"""The event contract, the feature math and the profile wire format: pure, fast."""

from __future__ import annotations

import math
from typing import Any

import msgspec
import pytest

from tailor_pipeline import events, profile_codec
from tailor_pipeline.events import ClickEvent, Rejected
from tailor_pipeline.features import (
    Profile,
    Trending,
    decayed,
    item_hash,
    top,
    update_profile,
    update_trending,
)
from tailor_pipeline.settings import FeatureSettings

NOW = 1_790_000_000_000
TYPES = {"view", "click", "add_to_cart", "purchase"}
FEATURES = FeatureSettings(
    half_life_s=1800,
    recent_items=3,
    event_weights={"view": 1, "click": 2, "add_to_cart": 4, "purchase": 8},
    max_items=4,
    max_categories=2,
    max_purchased=2,
    trending_max_items=3,
)


def event(item: str, type_: str = "view", ts: int = NOW, category: str | None = None) -> ClickEvent:
    return ClickEvent(user_id="u1", item_id=item, type=type_, ts=ts, category=category)


def test_a_valid_event_decodes_and_unknown_fields_are_ignored():
    raw = b'{"user_id":"u1","item_id":"i9","type":"click","ts":1790000000000,"extra":[1]}'
    decoded = events.decode(raw, TYPES, NOW)
    assert decoded == ClickEvent(user_id="u1", item_id="i9", type="click", ts=NOW)
    assert events.decode(events.encode(decoded), TYPES, NOW) == decoded


@pytest.mark.parametrize(
    ("raw", "reason", "mentions"),
    [
        (b"not json", "malformed", "not JSON"),
        (None, "malformed", "empty"),
        (b'{"item_id":"i","type":"view","ts":1}', "malformed", "user_id"),
        (b'{"user_id":7,"item_id":"i","type":"view","ts":1}', "malformed", "$.user_id"),
        (b'{"user_id":"","item_id":"i","type":"view","ts":1}', "malformed", "$.user_id"),
        (b'{"user_id":"u","item_id":"i","type":"view","ts":-5}', "malformed", "$.ts"),
        (b'{"user_id":"u","item_id":"i","type":"teleport","ts":1}', "unknown_type", "teleport"),
        (b'{"user_id":"u","item_id":"i","type":"view","ts":1,"v":2}', "unsupported_version", "2"),
        (
            b'{"user_id":"u","item_id":"i","type":"view","ts":%d}' % (NOW + 3_600_000),
            "future_timestamp",
            "$.ts",
        ),
        (b'{"user_id":"u","item_id":"' + b"x" * 20000 + b'"}', "too_large", "bytes"),
    ],
)
def test_invalid_events_are_rejected_with_a_reason(raw, reason, mentions):
    rejected = events.decode(raw, TYPES, NOW)
    assert isinstance(rejected, Rejected)
    assert rejected.reason == reason
    assert mentions in rejected.error


def test_decay_halves_a_score_every_half_life():
    assert decayed(8.0, NOW, NOW + 1800_000, 1800) == pytest.approx(4.0)
    assert decayed(8.0, NOW, NOW - 5, 1800) == 8.0  # never grows backwards in time


def test_affinity_is_a_decayed_sum_of_event_weights():
    profile = Profile()
    update_profile(profile, event("a", "view", NOW, "shoes"), FEATURES)
    update_profile(profile, event("a", "purchase", NOW + 1800_000, "shoes"), FEATURES)
    score, updated = profile.items["a"]
    assert score == pytest.approx(1 * 0.5 + 8)
    assert updated == NOW + 1800_000
    assert profile.categories["shoes"][0] == pytest.approx(8.5)
    assert profile.counts == {"view": 1, "purchase": 1}
    assert profile.purchased == ["a"]
    assert profile.last_seen_ms == NOW + 1800_000
    assert profile.events == 2


def test_recent_items_are_distinct_newest_last_and_bounded():
    profile = Profile()
    for item in ["a", "b", "a", "c", "d"]:
        update_profile(profile, event(item), FEATURES)
    assert profile.recent == ["a", "c", "d"]


def test_memory_per_user_is_bounded_and_pruning_keeps_the_strongest():
    profile = Profile()
    update_profile(profile, event("keep", "purchase", category="c0"), FEATURES)
    for i in range(100):
        update_profile(profile, event(f"i{i}", "view", NOW + i, category=f"c{i + 1}"), FEATURES)
    assert len(profile.items) <= FEATURES.max_items * 1.25
    assert "keep" in profile.items
    assert len(profile.categories) <= math.floor(FEATURES.max_categories * 1.25)
    assert len(profile.recent) == FEATURES.recent_items


def test_the_same_events_give_bit_identical_profiles():
    stream = [
        event(f"i{i % 7}", ["view", "click", "purchase"][i % 3], NOW + i * 977) for i in range(50)
    ]
    first, second = Profile(), Profile()
    for e in stream:
        update_profile(first, e, FEATURES)
    for e in stream:
        update_profile(second, e, FEATURES)
    assert profile_codec.encode_profile(first) == profile_codec.encode_profile(second)


def test_trending_ranks_by_decayed_counts_per_partition():
    trending = Trending()
    for item, ts in [("old", NOW), ("old", NOW), ("new", NOW + 7200_000)]:
        update_trending(trending, event(item, "view", ts), FEATURES)
    ranked = top(trending.items, 2, trending.clock_ms, FEATURES.trending_half_life_s)
    assert [item for item, _ in ranked] == ["new", "old"]
    assert ranked[1][1] == pytest.approx(2 * 0.25)


def test_profile_codec_round_trips_exactly_and_refuses_other_versions():
    profile = Profile()
    update_profile(profile, event("a", "click", NOW, "shoes"), FEATURES)
    update_profile(profile, event("b", "purchase", NOW + 1234, None), FEATURES)
    encoded = profile_codec.encode_profile(profile)
    assert encoded[0] == profile_codec.FORMAT_VERSION
    assert profile_codec.decode_profile(encoded) == profile
    with pytest.raises(profile_codec.UnsupportedFormat, match="format version 9"):
        profile_codec.decode_profile(b"\x09" + encoded[1:])
    with pytest.raises(profile_codec.UnsupportedFormat):
        profile_codec.decode_profile(b"")
    trending = Trending()
    update_trending(trending, event("a"), FEATURES)
    assert profile_codec.decode_trending(profile_codec.encode_trending(trending)) == trending


def test_trending_also_remembers_what_is_popular_this_week():
    trending = Trending()
    for item, ts in [("old", NOW), ("old", NOW), ("new", NOW + 7200_000)]:
        update_trending(trending, event(item, "view", ts), FEATURES)
    # Two hours later, two old views still outweigh one new one at a 7-day half-life.
    ranked = top(trending.popular, 2, trending.clock_ms, FEATURES.popular_half_life_s)
    assert [item for item, _ in ranked] == ["old", "new"]


def test_seen_items_have_no_cap_and_their_types_are_configurable():
    profile = Profile()
    for i in range(50):
        update_profile(profile, event(f"i{i}", "purchase", NOW + i), FEATURES)
        update_profile(profile, event(f"i{i}", "purchase", NOW + i), FEATURES)
    assert len(profile.purchased) == FEATURES.max_purchased == 2
    assert profile.seen == sorted({item_hash(f"i{i}") for i in range(50)})
    update_profile(profile, event("viewed", "view"), FEATURES)
    assert item_hash("viewed") not in profile.seen

    films = FEATURES.model_copy(update={"seen_event_types": ("view", "purchase")})
    update_profile(profile, event("viewed", "view"), films)
    assert item_hash("viewed") in profile.seen
    nothing = FEATURES.model_copy(update={"seen_event_types": ()})
    fresh = Profile()
    update_profile(fresh, event("bought", "purchase"), nothing)
    assert fresh.seen == []


def test_records_written_before_the_seen_set_and_the_weekly_counts_still_decode():
    # Format 1 as the first release wrote it: no trailing seen / popular fields.
    old_profile = b"\x01" + msgspec.msgpack.encode([["a"], {"a": [1.0, 5.0]}, {}, [], {}, 5, 1])
    assert profile_codec.decode_profile(old_profile).seen == []
    old_trending = b"\x01" + msgspec.msgpack.encode([{"a": [1.0, 5.0]}, 5])
    assert profile_codec.decode_trending(old_trending).popular == {}
    # And a reader of that first release skips the fields it does not know.
    profile = Profile(seen=[1, 2])
    first_release = msgspec.defstruct(
        "FirstRelease",
        [(f, Any) for f in Profile.__struct_fields__ if f != "seen"],
        array_like=True,
    )
    decoded = msgspec.msgpack.decode(profile_codec.encode_profile(profile)[1:], type=first_release)
    assert decoded.events == 0
