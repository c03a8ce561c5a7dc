"""docs/argocd/health.lua, run by a real Lua interpreter on pipelines in every state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

lupa = pytest.importorskip("lupa", reason="lupa (a dev dependency) runs the Lua health check")

SCRIPT = (Path(__file__).resolve().parents[2] / "docs" / "argocd" / "health.lua").read_text()


def health(obj: dict[str, Any]) -> tuple[str, str]:
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)

    def to_lua(value: Any) -> Any:
        if isinstance(value, dict):
            return lua.table_from({k: to_lua(v) for k, v in value.items()})
        if isinstance(value, list):
            return lua.table_from([to_lua(v) for v in value])
        return value

    result = lua.eval(f"function(obj) {SCRIPT} end")(to_lua(obj))
    return result["status"], result["message"]


def pipeline(generation: int = 1, observed: int = 1, suspend: bool = False, **conditions: Any):
    status = {
        "observedGeneration": observed,
        "conditions": [
            {"type": t, "status": s, "reason": r, "message": m}
            for t, (s, r, m) in conditions.items()
        ],
    }
    return {
        "metadata": {"generation": generation},
        "spec": {"suspend": suspend},
        "status": status if conditions else None,
    }


def test_ready_is_healthy():
    assert health(pipeline(Ready=("True", "AllComponentsReady", "all good"))) == (
        "Healthy",
        "all good",
    )


def test_not_yet_observed_or_not_ready_is_progressing():
    assert health(pipeline())[0] == "Progressing"
    stale = pipeline(generation=3, observed=2, Ready=("True", "AllComponentsReady", "old"))
    assert health(stale) == ("Progressing", "Waiting for the operator to observe generation 3")
    waiting = pipeline(Ready=("False", "ComponentsNotReady", "waiting for TopicsReady"))
    assert health(waiting) == ("Progressing", "waiting for TopicsReady")


def test_degraded_and_rolled_back_are_degraded():
    crash = pipeline(
        Ready=("False", "ComponentsNotReady", "x"),
        Degraded=("True", "ComponentFailing", "scorer: CrashLoopBackOff"),
    )
    assert health(crash) == ("Degraded", "scorer: CrashLoopBackOff")
    rolled_back = pipeline(
        Ready=("True", "AllComponentsReady", "serving v1"),
        Degraded=("False", "AsExpected", ""),
        ModelRolledOut=("False", "RolledBack", "spec asks for v2, v2 failed its canary"),
    )
    assert health(rolled_back) == ("Degraded", "spec asks for v2, v2 failed its canary")


def test_a_rollout_in_progress_is_progressing_and_a_failed_canary_degraded():
    ready = ("True", "AllComponentsReady", "serving")
    canary = pipeline(Ready=ready, ModelRolledOut=("False", "CanaryAnalysis", "canary v2: ..."))
    assert health(canary) == ("Progressing", "canary v2: ...")
    rolling = pipeline(Ready=ready, ModelRolledOut=("False", "RollingOut", "rolling out v2"))
    assert health(rolling)[0] == "Progressing"
    kept = pipeline(Ready=ready, ModelRolledOut=("False", "CanaryFailed", "canary v2 failed"))
    assert health(kept) == ("Degraded", "canary v2 failed")
    assert health(pipeline(Ready=ready, ModelRolledOut=("True", "RolledOut", "v2")))[0] == (
        "Healthy"
    )


def test_suspended():
    assert health(pipeline(suspend=True, Ready=("True", "AllComponentsReady", "")))[0] == (
        "Suspended"
    )
