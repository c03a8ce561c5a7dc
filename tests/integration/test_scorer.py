"""The scorer on the real Kafka, fed by a real stream worker: fresh decisions, bad input."""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tailor_localenv.pipelines import Workers, create_pipeline, produce_all, read_topic
from tailor_localenv.processes import ManagedProcess, free_port, http_get, ready_on, wait_for
from tailor_pipeline import events
from tailor_pipeline.events import ClickEvent
from tailor_pipeline.generator import GeneratorSettings, stream
from tailor_pipeline.train import train, write_model

pytestmark = pytest.mark.kafka


def post(port: int, body: bytes | dict, timeout: float = 5.0) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/decide",
        data=data,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def start_scorer(config: Path, log_dir: Path) -> tuple[ManagedProcess, int]:
    port = free_port()
    proc = ManagedProcess(
        "scorer",
        [
            sys.executable,
            "-m",
            "tailor_pipeline.scorer_main",
            f"--config={config}",
            f"--http-port={port}",
            f"--model-cache={log_dir / 'models'}",
        ],
        log_dir,
    ).start()
    return proc, port


@pytest.fixture(scope="module")
def history():
    """A day of generated clicks: the model's training data and the topic's backlog."""
    return list(
        stream(
            GeneratorSettings(
                seed=5, users=200, items=300, days=1, start_ms=int(time.time() * 1000) - 86_400_000
            )
        )
    )


def trained_model(history, path: Path, version: str) -> dict[str, str]:
    digest = write_model(path, train(history), "item-knn", version)
    return {"name": "item-knn", "version": version, "uri": f"file://{path}", "sha256": digest}


def test_decisions_follow_a_click_made_a_moment_ago(kafka, tmp_path, history):
    model = trained_model(history, tmp_path / "m.tailor", "2026-11-25")
    settings, config = create_pipeline(
        kafka,
        tmp_path,
        partitions=2,
        spec={"scorer": {"model": model}, "streamWorker": {"transactionIntervalMs": 50}},
    )
    produce_all(kafka, settings.topics.events, ((e.user_id, events.encode(e)) for e in history))
    workers = Workers(config, tmp_path)
    scorer = None
    try:
        workers.start("w0")
        scorer, port = start_scorer(config, tmp_path)
        scorer.wait_healthy(lambda: ready_on(port), 90, "ready")

        status, body = post(port, {"user_id": "user-1", "k": 5})
        assert status == 200, body
        assert body["model_version"] == "2026-11-25"
        assert len(body["items"]) == 5
        assert {"item_id", "score", "reason"} <= set(body["items"][0])
        assert body["request_id"]

        # A brand-new user clicks an item; within a second the decision builds on it.
        clicked = history[0].item_id
        click = ClickEvent(
            user_id="newcomer",
            item_id=clicked,
            type="add_to_cart",
            ts=int(time.time() * 1000),
            category=history[0].category,
        )
        status, cold = post(port, {"user_id": "newcomer", "k": 5})
        assert status == 200
        assert cold["profile_age_ms"] is None
        # Nothing personal yet; the last slot may be exploration (epsilon 0.05 by default).
        assert all(i["reason"] in ("trending now", "popular", "exploration") for i in cold["items"])
        produce_all(kafka, settings.topics.events, [("newcomer", events.encode(click))])
        clicked_at = time.monotonic()
        warm = wait_for(
            lambda: (
                (b := post(port, {"user_id": "newcomer", "k": 5})[1])["profile_age_ms"] is not None
                and b
            ),
            10,
            "the click to reach the scorer",
            interval=0.05,
        )
        assert time.monotonic() - clicked_at < 3
        reasons = {i["reason"] for i in warm["items"]}
        assert (
            f"similar to {clicked}" in reasons or f"you recently engaged with {clicked}" in reasons
        )

        status, profile = http_get(f"http://127.0.0.1:{port}/v1/users/newcomer/profile")
        assert status == 200
        assert json.loads(profile)[0] == [clicked]  # recent items

        # Decisions are logged to the decisions topic, off the request path.
        logged = wait_for(
            lambda: [
                m for m in read_topic(kafka, settings.topics.decisions) if m.key() == b"newcomer"
            ],
            15,
            "the decision log",
        )
        assert json.loads(logged[0].value())["model_version"] == "2026-11-25"
    finally:
        if scorer:
            scorer.stop()
        workers.stop_all()


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"k": 5}, 400, "user_id"),
        ({"user_id": "u", "k": 100000}, 400, "k"),
        ({"user_id": "u", "k": "five"}, 400, "k"),
        ({"user_id": "u", "colour": "red"}, 400, "colour"),
        (b"{not json", 400, None),
        # Over the body limit (what the largest valid request needs, 2.9 MB).
        ({"user_id": "u", "candidates": ["x" * 300] * 10_000}, 413, None),
    ],
)
def test_malformed_requests_are_refused_naming_the_field(
    kafka, tmp_path_factory, body, status, field, scorer_without_model
):
    port = scorer_without_model
    code, answer = post(port, body)
    assert code == status, answer
    assert answer["error"]
    if field:
        assert answer["field"] == field


@pytest.fixture(scope="module")
def scorer_without_model(kafka, tmp_path_factory):
    work = tmp_path_factory.mktemp("scorer")
    _, config = create_pipeline(kafka, work, partitions=1)
    proc, port = start_scorer(config, work)
    proc.wait_healthy(lambda: ready_on(port), 60, "ready")
    yield port
    proc.stop()


def test_a_model_with_the_wrong_checksum_is_refused(kafka, tmp_path, history):
    model = trained_model(history, tmp_path / "m.tailor", "v1")
    model["sha256"] = "0" * 64
    _, config = create_pipeline(kafka, tmp_path, partitions=1, spec={"scorer": {"model": model}})
    scorer, _ = start_scorer(config, tmp_path)
    try:
        # It exits, saying why: in a pod that is the termination message the pipeline's
        # status shows, and the kubelet's restarts retry with backoff.
        wait_for(lambda: not scorer.alive(), 60, "the scorer to refuse the model and exit")
        assert scorer.exit_code == 3
        last = scorer.log_tail(3)
        assert "model refused: item-knn v1:" in last, last
        assert "sha256" in last, last
    finally:
        scorer.stop()
