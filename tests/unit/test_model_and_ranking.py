"""The model artifact, training and ranking: pure, fast."""

from __future__ import annotations

import math

import hypothesis
import msgspec
import numpy as np
import pytest
from hypothesis import strategies as st

from tailor_pipeline import model
from tailor_pipeline.events import ClickEvent
from tailor_pipeline.features import Profile, update_profile
from tailor_pipeline.generator import GeneratorSettings, stream
from tailor_pipeline.ranking import RankingSettings, rank
from tailor_pipeline.settings import FeatureSettings
from tailor_pipeline.train import TrainingSettings, train, write_model

FEATURES = FeatureSettings(
    half_life_s=1800,
    recent_items=20,
    event_weights={"view": 1, "click": 2, "add_to_cart": 4, "purchase": 8},
)
RANKING = RankingSettings(half_life_s=1800)
T0 = 1_767_225_600_000


def session(user: str, session_id: str, items: list[str], start: int) -> list[ClickEvent]:
    return [
        ClickEvent(
            user_id=user,
            item_id=i,
            type="view",
            ts=start + n * 1000,
            session_id=session_id,
            category="shoes" if i.startswith("s") else "hats",
        )
        for n, i in enumerate(items)
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    events = []
    for u in range(30):
        events += session(f"u{u}", f"a{u}", ["s1", "s2", "s3"], T0 + u * 10_000)
        events += session(f"u{u}", f"b{u}", ["h1", "h2"], T0 + 10**7 + u * 10_000)
    events += session("x", "lonely", ["s1", "rare"], T0 + 2 * 10**7)
    path = tmp_path_factory.mktemp("model") / "m.tailor"
    arrays = train(
        sorted(events, key=lambda e: e.ts), FEATURES.event_weights, TrainingSettings(neighbours=3)
    )
    digest = write_model(path, arrays, "test", "v1")
    return path, digest


def test_training_learns_co_occurrence_with_shrinkage(trained):
    path, digest = trained
    m = model.load(path, digest)
    assert (m.name, m.version, m.items) == ("test", "v1", 6)
    s1 = m.index["s1"]
    neighbours = [m.item_ids[j] for j in m.neighbours[s1] if j >= 0]
    # Seen together 30 times beats seen together once, despite the rare item's tiny count.
    assert neighbours[:2] == ["s2", "s3"] or neighbours[:2] == ["s3", "s2"]
    assert "h1" not in neighbours
    assert m.category_of(s1) == "shoes"
    assert m.popularity[s1] > m.popularity[m.index["rare"]]


def test_a_bad_artifact_is_refused_with_the_reason(trained, tmp_path):
    path, _digest = trained
    with pytest.raises(model.ModelError, match="sha256"):
        model.load(path, "0" * 64)
    truncated = tmp_path / "t.tailor"
    truncated.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(model.ModelError, match="truncated"):
        model.load(truncated, None)
    foreign = tmp_path / "f.tailor"
    foreign.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(model.ModelError, match="not a Tailor model"):
        model.load(foreign, None)
    future = tmp_path / "v9.tailor"
    raw = bytearray(path.read_bytes())
    raw[8] = 9
    future.write_bytes(bytes(raw))
    with pytest.raises(model.ModelError, match="format version 9"):
        model.load(future, None)


def test_a_model_indexing_outside_its_items_is_refused(tmp_path):
    """Ranking reads the model in compiled code without bounds checks: the load checks."""
    good = {
        "name": "m",
        "version": "v",
        "item_ids": ["a", "b"],
        "popularity": np.ones(2, dtype=np.float32),
        "category": np.zeros(2, dtype=np.int32),
        "categories": ["c"],
        "neighbours": np.array([[1, -1], [0, -1]], dtype=np.int32),
        "weights": np.array([[0.5, 0.0], [0.5, 0.0]], dtype=np.float32),
    }
    model.load(tmp_path / "good.tailor", model.write(tmp_path / "good.tailor", **good))
    for change, reason in (
        ({"neighbours": np.array([[1, 2], [0, -1]], dtype=np.int32)}, "a neighbour"),
        ({"neighbours": np.array([[1, -2], [0, -1]], dtype=np.int32)}, "a neighbour"),
        ({"category": np.array([0, 1], dtype=np.int32)}, "a category code"),
        ({"weights": np.ones((2, 3), dtype=np.float32)}, "weights"),
    ):
        bad = tmp_path / "bad.tailor"
        with pytest.raises(model.ModelError, match=reason):
            model.load(bad, model.write(bad, **{**good, **change}))


def test_ranking_follows_the_live_profile(trained):
    path, digest = trained
    m = model.load(path, digest)
    profile = Profile()
    viewed = session("u", "s", ["s1"], T0)[0]
    update_profile(profile, viewed, FEATURES)
    update_profile(profile, msgspec.structs.replace(viewed, type="click"), FEATURES)
    ranked = rank(profile, m, [("h2", 5.0)], T0 + 1000, 3, RANKING)
    assert [s.item for s in ranked][:2] in (["s2", "s3"], ["s3", "s2"])
    assert ranked[0].reason == "similar to s1"
    # A purchase is not recommended again; exclusions and candidate filters hold.
    update_profile(
        profile, ClickEvent(user_id="u", item_id="s2", type="purchase", ts=T0 + 2000), FEATURES
    )
    items = [s.item for s in rank(profile, m, [], T0 + 3000, 5, RANKING, exclude=["s3"])]
    assert "s2" not in items
    assert "s3" not in items
    only = rank(profile, m, [], T0 + 3000, 5, RANKING, candidates=["h1", "h2"])
    assert {s.item for s in only} <= {"h1", "h2"}


def test_seen_items_stay_excluded_however_many_there_are(trained):
    path, digest = trained
    m = model.load(path, digest)
    profile = Profile()
    bought = ClickEvent(user_id="u", item_id="s2", type="purchase", ts=T0)
    update_profile(profile, bought, FEATURES)
    for n in range(FEATURES.max_purchased + 50):
        later = msgspec.structs.replace(bought, item_id=f"x{n}", ts=T0 + n + 1)
        update_profile(profile, later, FEATURES)
    assert "s2" not in profile.purchased  # fell off the capped list long ago
    update_profile(profile, session("u", "s", ["s1"], T0 + 1000)[0], FEATURES)
    popular = [("s2", 9.0), ("h1", 1.0)]
    ranked = [
        s.item for s in rank(profile, m, [("s2", 1.0)], T0 + 2000, 6, RANKING, popular=popular)
    ]
    assert "s2" not in ranked
    assert "s3" in ranked
    keep = RankingSettings(half_life_s=1800, exclude_seen=False)
    assert "s2" in [s.item for s in rank(profile, m, [], T0 + 2000, 30, keep, popular=popular)]


def test_first_visits_lean_on_what_is_popular_this_week(trained):
    path, digest = trained
    m = model.load(path, digest)
    this_week = [("h1", 50.0), ("s3", 40.0)]
    ranked = rank(None, m, [("h2", 3.0)], T0, 4, RANKING, popular=this_week)
    assert [(s.item, s.reason) for s in ranked[:2]] == [("h1", "popular"), ("s3", "popular")]
    assert len(ranked) == 4
    # Before the workers have counted anything, the model's popularity is the prior.
    assert {s.reason for s in rank(None, m, [], T0, 4, RANKING)} == {"popular"}
    trending_first = RankingSettings(half_life_s=1800, fallback="trending")
    ranked = rank(None, m, [("h2", 3.0)], T0, 4, trending_first, popular=this_week)
    assert (ranked[0].item, ranked[0].reason) == ("h2", "trending now")
    assert rank(None, None, [], T0, 4, RANKING) == []


def test_the_prior_fades_as_fresh_evidence_grows(trained):
    path, digest = trained
    m = model.load(path, digest)
    this_week = [("h1", 50.0)]
    profile = Profile()
    viewed = session("u", "s", ["s1"], T0)[0]
    update_profile(profile, viewed, FEATURES)

    def h1_score(now_ms: float) -> float:
        ranked = rank(profile, m, [], now_ms, 6, RANKING, popular=this_week)
        return next(s.score for s in ranked if s.item == "h1")

    # One view is an evidence of 1: the prior weighs prior_evidence / (1 + prior_evidence);
    # a day later the evidence has decayed away and the user sees what is popular, at full
    # weight; ten fresh views leave the prior little.
    prior = RANKING.prior_evidence
    assert h1_score(T0) == pytest.approx(prior / (1 + prior), rel=0.01)
    assert h1_score(T0 + DAY_MS) > 0.99
    for _ in range(9):
        update_profile(profile, viewed, FEATURES)
    assert h1_score(T0) == pytest.approx(prior / (10 + prior), rel=0.01)


def test_the_generator_is_seeded_and_realistic():
    settings = GeneratorSettings(seed=3, users=50, items=200, days=2)
    first, second = list(stream(settings)), list(stream(settings))
    assert first == second
    assert [e.ts for e in first] == sorted(e.ts for e in first)
    types = [e.type for e in first]
    assert types.count("view") > types.count("click") > types.count("add_to_cart")
    assert types.count("add_to_cart") >= types.count("purchase") > 0
    assert first != list(stream(GeneratorSettings(seed=4, users=50, items=200, days=2)))


def scorer_with(trained, **scorer_settings):
    from tailor_operator.render.config import pipeline_settings
    from tailor_operator.resource import Pipeline
    from tailor_pipeline.scorer import ProfileTable, Scorer

    body = {
        "metadata": {"namespace": "ns", "name": "p", "uid": "u"},
        "spec": {"kafka": {"bootstrapServers": "unused:9092"}, "topics": {"events": {}}},
    }
    pipeline = Pipeline.from_body(body)
    settings = pipeline_settings(pipeline, pipeline.spec.scorer.model)
    # No exploration: it would put a random item in the last slot.
    settings = settings.model_copy(
        update={"scorer": settings.scorer.model_copy(update={"epsilon": 0.0, **scorer_settings})}
    )
    table = ProfileTable(settings, {})  # never started: filled by hand below
    table.trending = [("h2", 3.0)]
    path, digest = trained
    return Scorer(settings, table, None, model=model.load(path, digest), clock=lambda: T0 / 1000)


def test_the_scorer_honours_fallback_and_purchase_settings(trained):
    from tailor_pipeline import profile_codec
    from tailor_pipeline.scorer import DecideRequest

    trending_first = scorer_with(trained, fallback="trending")
    cold = trending_first.decide(DecideRequest(user_id="nobody", k=2))
    assert cold["items"][0].item_id == "h2"
    assert cold["profile_age_ms"] is None
    popular_first = scorer_with(trained, fallback="popular")
    assert {i.reason for i in popular_first.decide(DecideRequest("nobody", k=2))["items"]} == {
        "popular"
    }

    profile = Profile()
    update_profile(
        profile, ClickEvent(user_id="b", item_id="s1", type="purchase", ts=T0 - 1000), FEATURES
    )
    for keep, excluded in ((True, True), (False, False)):
        scorer = scorer_with(trained, exclude_seen=keep)
        scorer.table.profiles["b"] = profile_codec.encode_profile(profile)
        answer = scorer.decide(DecideRequest("b", k=5))
        assert ("s1" not in [i.item_id for i in answer["items"]]) is excluded
        # What a caller needs to tell whether a given click is in the profile used.
        assert answer["ts"] - answer["profile_age_ms"] == T0 - 1000


def test_exploration_replaces_the_last_slot_with_an_unshown_item(trained):
    import random

    path, digest = trained
    m = model.load(path, digest)
    explore = RankingSettings(half_life_s=1800, epsilon=1.0, fallback="trending")
    ranked = rank(None, m, [("h2", 3.0), ("s1", 2.0)], T0, 1, explore, rng=random.Random(1))
    assert ranked[-1].reason == "exploration"
    assert ranked[-1].item == "s1"  # the only trending item not already shown
    never = RankingSettings(half_life_s=1800, epsilon=0.0)
    assert all(s.reason != "exploration" for s in rank(None, m, [("h2", 3.0)], T0, 3, never))


DAY_MS = 86_400_000


def test_a_user_back_after_three_weeks_gets_an_answer_not_an_error():
    # Every affinity of a user idle >= 22.4 days underflows to 0.0 at a 30-minute half-life.
    profile = Profile()
    update_profile(profile, ClickEvent(user_id="u", item_id="i1", type="click", ts=T0), FEATURES)
    ranked = rank(profile, None, [("i9", 1.0)], T0 + 23 * DAY_MS, 5, RANKING)
    assert [s.item for s in ranked] == ["i9"]
    assert ranked[0].reason == "trending now"


profile_events = st.lists(
    st.builds(
        ClickEvent,
        user_id=st.just("u"),
        item_id=st.sampled_from(["s1", "s2", "s3", "h1", "h2", "rare", "gone"]),
        type=st.sampled_from(list(FEATURES.event_weights)),
        ts=st.integers(0, 10 * 365 * DAY_MS).map(lambda dt: T0 - dt),
        category=st.none() | st.sampled_from(["shoes", "hats"]),
    ),
    max_size=300,
)


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(
    history=profile_events,
    idle_ms=st.integers(0, 10 * 365 * DAY_MS),
    half_life_s=st.floats(1.0, 365 * 86_400.0),
    weight=st.floats(1e-6, 1e6),
    k=st.integers(1, 100),
    with_model=st.booleans(),
    trending=st.lists(
        st.tuples(st.sampled_from(["s1", "h2", "t1", "t2"]), st.floats(0.0, 1e9)), max_size=4
    ),
)
def test_rank_never_raises_for_a_valid_profile(
    trained, history, idle_ms, half_life_s, weight, k, with_model, trending
):
    features = FEATURES.model_copy(
        update={
            "half_life_s": half_life_s,
            "event_weights": {t: w * weight for t, w in FEATURES.event_weights.items()},
        }
    )
    profile = Profile()
    for event in sorted(history, key=lambda e: e.ts):
        update_profile(profile, event, features)
    loaded = model.load(*trained) if with_model else None
    trending = sorted(trending, key=lambda t: -t[1])
    now = (max((e.ts for e in history), default=T0)) + idle_ms
    ranked = rank(profile, loaded, trending, now, k, RankingSettings(half_life_s=half_life_s))
    assert len(ranked) <= k
    assert len({s.item for s in ranked}) == len(ranked)
    assert all(math.isfinite(s.score) and s.score >= 0 for s in ranked)
    assert not {s.item for s in ranked} & set(profile.purchased)


@pytest.fixture(scope="module")
def wide_model(tmp_path_factory):
    """60 items with up to 8 neighbours each (rows padded with -1), repeated similarities
    (ties), categories, and one item without one."""
    import numpy as np

    rng = np.random.default_rng(7)
    n, width = 60, 8
    neighbours = np.full((n, width), -1, dtype=np.int32)
    weights = np.zeros((n, width), dtype=np.float32)
    for i in range(n):
        count = int(rng.integers(0, width + 1))
        neighbours[i, :count] = rng.choice([j for j in range(n) if j != i], count, replace=False)
        weights[i, :count] = np.sort(rng.choice([0.0, 0.25, 0.5, 0.5, 1.0], count))[::-1]
    category = rng.integers(-1, 3, n).astype(np.int32)
    path = tmp_path_factory.mktemp("wide") / "m.tailor"
    digest = model.write(
        path,
        name="wide",
        version="v1",
        item_ids=[f"i{i}" for i in range(n)],
        popularity=rng.random(n).astype(np.float32),
        category=category,
        categories=["shoes", "hats", "bags"],
        neighbours=neighbours,
        weights=weights,
    )
    return model.load(path, digest)


wide_items = st.sampled_from([f"i{i}" for i in range(60)] + ["new1", "new2"])


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(
    history=st.lists(
        st.builds(
            ClickEvent,
            user_id=st.just("u"),
            item_id=wide_items,
            type=st.sampled_from(list(FEATURES.event_weights)),
            ts=st.integers(0, 3 * DAY_MS).map(lambda dt: T0 - dt),
            category=st.none() | st.sampled_from(["shoes", "hats", "bags", "other"]),
        ),
        max_size=80,
    ),
    trending=st.lists(st.tuples(wide_items, st.sampled_from([0.0, 1.0, 2.0, 7.5])), max_size=8),
    popular=st.lists(st.tuples(wide_items, st.sampled_from([0.0, 1.0, 3.0, 40.0])), max_size=8),
    exclude=st.lists(wide_items, max_size=5),
    candidates=st.none() | st.lists(wide_items, max_size=30),
    k=st.integers(1, 30),
    with_model=st.booleans(),
)
def test_rank_agrees_with_the_one_vote_at_a_time_reference(
    wide_model, history, trending, popular, exclude, candidates, k, with_model
):
    from tests.unit.reference_ranking import reference_rank

    profile = Profile()
    for event in sorted(history, key=lambda e: e.ts):
        update_profile(profile, event, FEATURES)
    trending = sorted(trending, key=lambda t: -t[1])
    loaded = wide_model if with_model else None
    args = (profile, loaded, trending, T0 + 60_000, k, RANKING)
    options = {
        "exclude": exclude,
        "candidates": candidates,
        "popular": sorted(popular, key=lambda t: -t[1]),
    }
    assert rank(*args, **options) == reference_rank(*args, **options)


def test_the_session_cap_is_a_setting_of_the_trainer(tmp_path):
    from tailor_pipeline import events as wire
    from tailor_pipeline import train as trainer

    # One session of 40 distinct items: a cap of 30 keeps only its last 30.
    path = tmp_path / "events.jsonl"
    long_session = session("u", "s", [f"i{n}" for n in range(40)], T0)
    path.write_bytes(b"\n".join(wire.encode(e) for e in long_session) + b"\n")

    def trained_with(*cap: str) -> model.Model:
        out = tmp_path / f"m{'-'.join(cap)}.tailor"
        argv = ["--events", str(path), "--out", str(out), "--name", "n", "--model-version", "v"]
        assert trainer.main([*argv, *cap]) == 0
        return model.load(out, None)

    for cap, first_items_paired in (("30", False), ("100", True)):
        m = trained_with("--max-session-items", cap)
        assert bool(m.neighbours[m.index["i0"], 0] >= 0) is first_items_paired
        assert m.header["training"]["max_session_items"] == int(cap)
    assert trained_with().header["training"]["max_session_items"] == 100
    with pytest.raises(SystemExit):
        trained_with("--max-session-items", "1")
