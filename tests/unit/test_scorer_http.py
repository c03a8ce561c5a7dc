"""The scorer's HTTP handler logs every answered or failed request for the canary analysis."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx

from tailor_operator.render.config import pipeline_settings
from tailor_operator.resource import Pipeline
from tailor_pipeline import decisions, http1
from tailor_pipeline.admission import Admission
from tailor_pipeline.scorer import LIMITS, ProfileTable, Scorer, admission_for, make_handler


class Recorder:
    """Stands in for the Kafka-backed DecisionLog: keeps what would be produced."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes]] = []

    def log(self, user: str, record: bytes) -> None:
        self.records.append((user, record))


def scorer(**spec: Any) -> tuple[Scorer, Recorder]:
    body = {
        "metadata": {"namespace": "ns", "name": "p", "uid": "u"},
        "spec": {"kafka": {"bootstrapServers": "unused:9092"}, **spec},
    }
    pipeline = Pipeline.from_body(body)
    settings = pipeline_settings(pipeline, pipeline.spec.scorer.model)
    table = ProfileTable(settings, {})  # never started: the test fills it
    table.caught_up.set()
    table.trending = [("hot", 3.0), ("warm", 1.0)]
    recorder = Recorder()
    return Scorer(settings, table, recorder), recorder  # type: ignore[arg-type]


async def post(
    s: Scorer,
    payload: dict[str, Any] | bytes,
    headers: dict[str, str] | None = None,
    admission: Admission | None = None,
) -> tuple[int, httpx.Headers, dict[str, Any]]:
    """One request to the scorer's real server on a loopback port: status, headers, body."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    admission = admission or admission_for(s)
    async with (
        http1.serving(make_handler(s, admission), LIMITS) as base,
        httpx.AsyncClient(base_url=base) as client,
    ):
        response = await client.post(
            "/v1/decide",
            content=body,
            headers={"Content-Type": "application/json", **(headers or {})},
        )
    await admission.stop()
    return response.status_code, response.headers, response.json()


def decide(s: Scorer, payload: dict[str, Any] | bytes) -> tuple[int, dict[str, Any]]:
    status, _, body = asyncio.run(post(s, payload))
    return status, body


def test_an_answer_is_logged_with_its_latency_and_items() -> None:
    s, recorder = scorer()
    status, body = decide(s, {"user_id": "new-user", "k": 2})
    assert status == 200
    assert [i["item_id"] for i in body["items"]] == ["hot", "warm"]
    ((user, raw),) = recorder.records
    logged = decisions.decode(raw)
    assert logged is not None
    assert user == "new-user"
    assert logged.request_id == body["request_id"]
    assert [i.item_id for i in logged.items] == ["hot", "warm"]
    assert logged.error is None
    assert logged.latency_ms > 0


def test_a_failed_decision_is_a_500_and_logged_as_an_error() -> None:
    s, recorder = scorer()
    s.table.profiles["broken"] = b"\xff not a profile"
    status, body = decide(s, {"user_id": "broken"})
    assert status == 500
    assert "decision failed" in body["error"]
    ((_, raw),) = recorder.records
    logged = decisions.decode(raw)
    assert logged is not None
    assert logged.error is not None
    assert logged.items == ()
    # Still serving: the next user gets an answer.
    assert decide(s, {"user_id": "other"})[0] == 200


def test_an_invalid_request_is_the_callers_fault_and_not_logged() -> None:
    s, recorder = scorer()
    status, body = decide(s, {"user_id": "u", "k": "ten"})
    assert (status, body["field"]) == (400, "k")
    assert recorder.records == []


def test_a_user_back_after_three_weeks_is_answered() -> None:
    from tailor_pipeline import profile_codec
    from tailor_pipeline.events import ClickEvent
    from tailor_pipeline.features import Profile, update_profile

    s, recorder = scorer()
    weeks_ago = int(time.time() * 1000) - 23 * 86_400_000
    profile = Profile()
    event = ClickEvent(user_id="back", item_id="old", type="click", ts=weeks_ago)
    update_profile(profile, event, s.settings.features)
    s.table.profiles["back"] = profile_codec.encode_profile(profile)
    status, body = decide(s, {"user_id": "back", "k": 2})
    assert status == 200, body
    assert [i["item_id"] for i in body["items"]] == ["hot", "warm"]
    assert decisions.decode(recorder.records[0][1]).error is None  # type: ignore[union-attr]


def test_a_context_nesting_too_deep_is_a_400_not_a_crash() -> None:
    s, recorder = scorer()
    for depth in (40, 2000):
        nested = b'{"a":' * depth + b"1" + b"}" * depth
        status, body = decide(s, b'{"user_id": "u", "context": ' + nested + b"}")
        assert (status, body["field"]) == (400, "context"), depth
    assert recorder.records == []
    status, _ = decide(s, {"user_id": "u", "context": {"page": {"slot": [1, {}]}}})
    assert status == 200


def test_the_largest_valid_request_fits_the_body_limit() -> None:
    from tailor_pipeline.scorer import MAX_CANDIDATES, MAX_EXCLUDE, MAX_ITEM_ID

    s, _ = scorer()
    candidates = [f"{n:0{MAX_ITEM_ID}d}" for n in range(MAX_CANDIDATES)]
    exclude = [f"x{n:0{MAX_ITEM_ID - 1}d}" for n in range(MAX_EXCLUDE)]
    payload = {"user_id": "u" * 256, "k": 100, "candidates": candidates, "exclude": exclude}
    status, body = decide(s, payload)
    assert status == 200, body
    too_many = {"user_id": "u", "candidates": [*candidates, "one-more"]}
    status, body = decide(s, too_many)
    assert (status, body["field"]) == (400, "candidates")


def test_a_cold_user_gets_trending_items_when_popular_has_no_model_to_come_from() -> None:
    s, _ = scorer(decision={"fallback": "popular"})
    status, body = decide(s, {"user_id": "first-visit", "k": 2})
    assert status == 200
    assert [i["item_id"] for i in body["items"]] == ["hot", "warm"]
