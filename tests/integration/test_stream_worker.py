"""The stream worker on the real Kafka: profiles, dead letters, exactly-once under kill -9."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter

import pytest

from tailor_localenv.pipelines import (
    Workers,
    create_pipeline,
    group_lag,
    latest_by_key,
    produce_all,
    read_topic,
)
from tailor_localenv.processes import wait_for
from tailor_pipeline import events, profile_codec
from tailor_pipeline.events import ClickEvent
from tailor_pipeline.features import Profile, update_profile
from tailor_pipeline.settings import PipelineSettings

pytestmark = pytest.mark.kafka

TYPES = ["view", "view", "view", "click", "click", "add_to_cart", "purchase"]


def click_stream(
    seed: int, n_events: int, n_users: int, start_ms: int
) -> list[tuple[str, bytes, bool]]:
    """(key, value, valid?) records: valid events with a few of every kind of bad one mixed in."""
    rng = random.Random(seed)
    out: list[tuple[str, bytes, bool]] = []
    invalid = [
        lambda u: b"{not json",
        lambda u: json.dumps({"user_id": u, "type": "view", "ts": start_ms}).encode(),
        lambda u: json.dumps({"user_id": u, "item_id": "i", "type": "teleport", "ts": 1}).encode(),
        lambda u: json.dumps(
            {"user_id": u, "item_id": "i", "type": "view", "ts": start_ms + 10**11}
        ).encode(),
        lambda u: b'{"user_id":"' + u.encode() + b'","item_id":"' + b"x" * 20000 + b'"}',
    ]
    for i in range(n_events):
        user = f"u{rng.randrange(n_users)}"
        if rng.random() < 0.01:
            out.append((user, rng.choice(invalid)(user), False))
            continue
        item = rng.randrange(500)
        event = ClickEvent(
            user_id=user,
            item_id=f"i{item}",
            type=rng.choice(TYPES),
            ts=start_ms + i * 10 + rng.randrange(5),
            category=f"c{item % 20}" if rng.random() < 0.9 else None,
            session_id=f"s{rng.randrange(1000)}",
        )
        out.append((user, events.encode(event), True))
    return out


def offline_profiles(
    records: list[tuple[str, bytes, bool]], settings: PipelineSettings
) -> dict[str, Profile]:
    """The profiles the workers must have written, from the same pure functions."""
    profiles: dict[str, Profile] = {}
    types = settings.features.event_weights
    for _, value, valid in records:
        if not valid:
            continue
        event = events.decode(value, types, int(time.time() * 1000))
        assert isinstance(event, ClickEvent)
        update_profile(profiles.setdefault(event.user_id, Profile()), event, settings.features)
    return profiles


def written_profiles(bootstrap: str, settings: PipelineSettings) -> dict[str, Profile]:
    latest = latest_by_key(read_topic(bootstrap, settings.topics.profiles))
    return {user: profile_codec.decode_profile(value) for user, value in latest.items()}


def wait_committed(bootstrap: str, settings: PipelineSettings, timeout: float, what: str) -> None:
    """Until the pipeline's workers have committed every event of its topic."""
    assert settings.worker is not None
    group, topic = settings.worker.group_id, settings.topics.events
    wait_for(lambda: group_lag(bootstrap, group, topic) == 0, timeout, what)


def test_profiles_and_dead_letters(kafka, tmp_path):
    settings, config = create_pipeline(kafka, tmp_path, partitions=2)
    records = click_stream(seed=1, n_events=3000, n_users=200, start_ms=int(time.time() * 1000))
    workers = Workers(config, tmp_path)
    try:
        workers.start("w0")
        produce_all(kafka, settings.topics.events, ((k, v) for k, v, _ in records))
        wait_committed(kafka, settings, 60, "the worker to commit every event")
        assert written_profiles(kafka, settings) == offline_profiles(records, settings)

        dead = read_topic(kafka, settings.topics.dead_letter)
        assert sorted(m.value() for m in dead) == sorted(v for _, v, ok in records if not ok)
        headers = dict(dead[0].headers())
        assert headers["tailor.source.topic"].decode() == settings.topics.events
        assert headers["tailor.reason"].decode() in events.REJECT_REASONS
        assert int(headers["tailor.source.offset"]) >= 0
        assert headers["tailor.error"]

        trending = latest_by_key(read_topic(kafka, settings.topics.trending))
        assert set(trending) == {"0", "1"}
        assert profile_codec.decode_trending(trending["0"]).items

        metrics = workers.metrics("w0").decode()
        invalid = sum(1 for *_, ok in records if not ok)
        assert f'tailor_worker_events_total{{result="dead_letter"}} {invalid}.0' in metrics
        assert 'tailor_worker_dead_letters_total{reason="malformed"}' in metrics
        assert "tailor_worker_restore_seconds_count" in metrics
    finally:
        workers.stop_all()


def test_a_caught_up_worker_commits_without_waiting_for_its_interval(kafka, tmp_path):
    # With a minute's interval, a click would sit a minute before reaching the profiles
    # topic if the worker only committed on the interval.
    settings, config = create_pipeline(
        kafka, tmp_path, partitions=1, spec={"streamWorker": {"transactionIntervalMs": 60000}}
    )
    assert settings.worker.transaction_interval_ms == 60000
    workers = Workers(config, tmp_path)
    try:
        workers.start("w0")
        records = click_stream(seed=3, n_events=1, n_users=1, start_ms=int(time.time() * 1000))
        produce_all(kafka, settings.topics.events, ((k, v) for k, v, _ in records))
        wait_committed(kafka, settings, 30, "the only event, long before the 60 s interval")
        assert written_profiles(kafka, settings) == offline_profiles(records, settings)
    finally:
        workers.stop_all()


def test_poison_pills_are_dead_lettered_and_the_partition_keeps_flowing(kafka, tmp_path):
    """A 2 KB event nested 1,000 deep and an event just under the producer's 1 MB limit used
    to crash the worker at the same offset on every restart. Now both go to the dead-letter
    topic (the big one truncated) and the next valid event is processed by the same process."""
    settings, config = create_pipeline(kafka, tmp_path, partitions=1)
    now = int(time.time() * 1000)
    deep = (
        b'{"user_id":"p","item_id":"i","type":"view","ts":1,"context":'
        + b'{"a":' * 1000
        + b"1"
        + b"}" * 1000
        + b"}"
    )
    # Fits the producer's 1,000,000-byte message.max.bytes alone, not with the tailor.* headers.
    huge = b'{"user_id":"p","item_id":"' + b"x" * (999_500 - 30) + b'"}'
    valid = ClickEvent(user_id="after", item_id="i1", type="click", ts=now)
    workers = Workers(config, tmp_path)
    group, topic = settings.worker.group_id, settings.topics.events
    try:
        process = workers.start("w0")
        produce_all(kafka, topic, [("p", deep), ("p", huge), ("after", events.encode(valid))])
        wait_for(lambda: group_lag(kafka, group, topic) == 0, 60, "all three records committed")
        assert process.alive()
        assert "after" in written_profiles(kafka, settings)

        dead = read_topic(kafka, settings.topics.dead_letter)
        by_source = {int(dict(m.headers())["tailor.source.offset"]): m for m in dead}
        assert sorted(by_source) == [0, 1]
        assert by_source[0].value() == deep
        assert "nested too deep" in dict(by_source[0].headers())["tailor.error"].decode()
        truncated = dict(by_source[1].headers())
        assert truncated["tailor.reason"] == b"too_large"
        assert truncated["tailor.truncated"] == b"true"
        assert int(truncated["tailor.original.size"]) == len(huge)
        assert huge.startswith(by_source[1].value())
    finally:
        workers.stop_all()


def test_a_restarted_worker_resumes_from_its_restored_state(kafka, tmp_path):
    settings, config = create_pipeline(kafka, tmp_path, partitions=2)
    start = int(time.time() * 1000) - 10**7
    first = click_stream(seed=2, n_events=1000, n_users=50, start_ms=start)
    second = click_stream(seed=3, n_events=1000, n_users=50, start_ms=start + 10**6)
    workers = Workers(config, tmp_path)
    group, topic = settings.worker.group_id, settings.topics.events
    try:
        workers.start("w0")
        produce_all(kafka, topic, ((k, v) for k, v, _ in first))
        wait_for(lambda: group_lag(kafka, group, topic) == 0, 60, "the first batch")
        workers.running["w0"].stop()  # SIGTERM: drain and commit
        del workers.running["w0"]
        produce_all(kafka, topic, ((k, v) for k, v, _ in second))
        workers.start("w0")
        wait_for(lambda: group_lag(kafka, group, topic) == 0, 60, "the second batch")
        assert written_profiles(kafka, settings) == offline_profiles(first + second, settings)
    finally:
        workers.stop_all()


@pytest.mark.slow
def test_exactly_once_while_workers_are_killed(kafka, tmp_path):
    """100,000 events for 5,000 users; two workers SIGKILLed at random moments and restarted
    while the events arrive. Afterwards every profile equals the offline computation and
    the dead-letter topic holds each invalid event exactly once."""
    settings, config = create_pipeline(kafka, tmp_path, partitions=6)
    records = click_stream(
        seed=7, n_events=100_000, n_users=5_000, start_ms=int(time.time() * 1000) - 2 * 10**6
    )
    workers = Workers(config, tmp_path)
    rng = random.Random(11)
    group, topic = settings.worker.group_id, settings.topics.events
    try:
        workers.start("w0")
        workers.start("w1")

        # Events arrive over ~20 s while the workers die and come back.
        def produce_slowly() -> None:
            for i in range(0, len(records), 5000):
                produce_all(kafka, topic, ((k, v) for k, v, _ in records[i : i + 5000]))
                time.sleep(1)

        producing = threading.Thread(target=produce_slowly)
        producing.start()
        kills = Counter[str]()
        while producing.is_alive() or sum(kills.values()) < 6:
            time.sleep(rng.uniform(0.5, 3.0))
            victim = rng.choice(["w0", "w1"])
            workers.kill(victim)
            kills[victim] += 1
            time.sleep(rng.uniform(0.0, 1.5))
            workers.start(victim, wait_ready=False)
        producing.join()
        wait_for(lambda: group_lag(kafka, group, topic) == 0, 180, "every event committed")

        expected = offline_profiles(records, settings)
        written = written_profiles(kafka, settings)
        assert len(written) == len(expected)
        wrong = [u for u in expected if written.get(u) != expected[u]]
        assert not wrong, f"{len(wrong)} profiles differ, e.g. {wrong[:3]}"

        dead = read_topic(kafka, settings.topics.dead_letter)
        assert sorted(m.value() for m in dead) == sorted(v for _, v, ok in records if not ok)
        assert sum(kills.values()) >= 6
    finally:
        workers.stop_all()
