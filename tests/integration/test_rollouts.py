"""Canary rollouts on the real API server and Kafka: promote, roll back, resume, retry.

The scorer pods here are KWOK's and serve nothing, so each test writes what scorers serving
each version would write to the decisions topic (with the scorer's own record encoder), and
the clicks of users on what they were shown to the events topic. The operator reads both
back from Kafka exactly as it does in production.
"""

from __future__ import annotations

from typing import Any

import pytest

from tailor_localenv.pipelines import serve_traffic
from tailor_localenv.processes import wait_for
from tests.integration.test_operator import (
    apply,
    condition,
    get,
    minimal,
    mounted_config,
    wait_ready,
)

NAME = "storefront"
FAST = {"TAILOR_ROLLOUT_CHECK_SECONDS": "1"}


def with_model(kafka: str, version: str, **rollout: Any) -> dict[str, Any]:
    manifest = minimal(kafka)
    manifest["spec"]["scorer"] = {
        "model": {"name": "knn", "version": version, "uri": "file:///m", "sha256": "a" * 64},
        "rollout": {
            "strategy": "Canary",
            "canary": {
                "analysisDuration": "3s",
                "minSamples": 100,
                "attributionWindow": "1m",
                **rollout.pop("canary", {}),
            },
            **rollout,
        },
    }
    return manifest


def model_status(kube, namespace: str) -> dict[str, Any]:
    return get(kube, namespace, f"ppl/{NAME}").get("status", {}).get("model") or {}


def wait_model(kube, namespace: str, check: Any, timeout: float, what: str) -> dict[str, Any]:
    """Wait until ``check(status.model)``; a timeout shows the last model status."""
    last: dict[str, Any] = {}

    def probe() -> dict[str, Any] | None:
        nonlocal last
        last = model_status(kube, namespace)
        return last if check(last) else None

    try:
        return wait_for(probe, timeout, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; status.model: {last}") from None


def deployments(kube, namespace: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in get(kube, namespace, "deployments")["items"]}


def served_version(kube, namespace: str, deployment: str = f"{NAME}-scorer") -> str | None:
    """The model version in the settings a scorer Deployment's pods mount."""
    import json

    data = mounted_config(kube, namespace, deployment)["data"]
    return json.loads(data["pipeline.json"])["scorer"]["model"]["version"]


def start_canary(kube, kafka, operator, namespace, **rollout: Any) -> dict[str, Any]:
    """v1 serving, then v2 in the spec: returns the model status once the canary runs."""
    operator.start(namespace, env=FAST)
    apply(kube, namespace, with_model(kafka, "v1", **rollout))
    wait_ready(kube, namespace, NAME)
    assert model_status(kube, namespace)["active"] == "v1"
    apply(kube, namespace, with_model(kafka, "v2", **rollout))
    running = wait_model(kube, namespace, lambda m: m.get("canary") == "v2", 30, "the canary")
    canary = wait_for(
        lambda: deployments(kube, namespace).get(f"{NAME}-scorer-canary"), 30, "the canary"
    )
    labels = canary["spec"]["template"]["metadata"]["labels"]
    service = get(kube, namespace, f"service/{NAME}-scorer")
    assert service["spec"]["selector"].items() <= labels.items(), "canary pods serve too"
    wait_for(
        lambda: (
            deployments(kube, namespace)[f"{NAME}-scorer-canary"]
            .get("status", {})
            .get("readyReplicas")
        ),
        30,
        "a ready canary pod",
    )
    # The stable scorers' disruption budget counts only their pods (the disruption
    # controller sums the replicas of every Deployment whose pods its selector matches).
    stable = deployments(kube, namespace)[f"{NAME}-scorer"]["spec"]["replicas"]
    wait_for(
        lambda: (
            get(kube, namespace, f"pdb/{NAME}-scorer").get("status", {}).get("expectedPods")
            == stable
        ),
        30,
        f"the scorer PDB to expect {stable} pods, the canary's not among them",
    )
    assert (
        served_version(kube, namespace),
        served_version(kube, namespace, f"{NAME}-scorer-canary"),
    ) == ("v1", "v2")
    rolled = condition(kube, namespace, NAME, "ModelRolledOut")
    assert (rolled["status"], rolled["reason"]) == ("False", "CanaryAnalysis")
    return running


def events(kube, namespace: str, reason: str) -> list[dict[str, Any]]:
    return [
        e
        for e in get(kube, namespace, "events")["items"]
        if e["reason"] == reason and e["involvedObject"]["name"] == NAME
    ]


def wait_rolled_back(kube, namespace: str, check: str) -> dict[str, Any]:
    back = wait_model(kube, namespace, lambda m: m.get("failed") == "v2", 60, "rollback")
    assert back["active"] == "v1"
    assert back.get("canary") is None
    assert check in back["failedReason"]
    wait_for(
        lambda: f"{NAME}-scorer-canary" not in deployments(kube, namespace),
        30,
        "the canary Deployment to go",
    )
    assert served_version(kube, namespace) == "v1"
    rolled = condition(kube, namespace, NAME, "ModelRolledOut")
    assert (rolled["status"], rolled["reason"]) == ("False", "RolledBack")
    assert rolled["message"].startswith(f"spec asks for v2, v2 failed its canary on {check}")
    assert "serving v1" in rolled["message"]
    assert condition(kube, namespace, NAME, "Ready")["status"] == "True"
    warning = wait_for(lambda: events(kube, namespace, "RolledBack"), 10, "the RolledBack Event")
    assert warning[0]["type"] == "Warning"
    return back


def test_a_healthy_canary_is_promoted(kube, kafka, operator, namespace):
    start_canary(kube, kafka, operator, namespace)
    serve_traffic(kafka, namespace, NAME, ("v1", 400, {"ctr": 0.2}), ("v2", 200, {"ctr": 0.22}))
    done = wait_model(kube, namespace, lambda m: m.get("active") == "v2", 60, "promotion")
    assert done["previous"] == "v1"
    assert "canary 200 requests" in done["analysis"]
    wait_for(
        lambda: f"{NAME}-scorer-canary" not in deployments(kube, namespace), 30, "canary removed"
    )
    assert served_version(kube, namespace) == "v2"
    # Every version of the settings was a ConfigMap of its own, never edited; once no old
    # pod is left, only the ones the Deployments mount remain.
    mounted = {
        mounted_config(kube, namespace, d)["metadata"]["name"]
        for d in (f"{NAME}-scorer", f"{NAME}-stream-worker")
    }

    def settings_maps() -> set[str]:
        items = get(kube, namespace, "configmaps", "-l", "app.kubernetes.io/component=config")
        assert all(cm["immutable"] for cm in items["items"])
        return {cm["metadata"]["name"] for cm in items["items"]}

    wait_for(lambda: settings_maps() == mounted, 30, "the old settings to be deleted")
    wait_for(
        lambda: condition(kube, namespace, NAME, "ModelRolledOut")["status"] == "True",
        60,
        "the stable scorers to roll",
    )
    assert events(kube, namespace, "CanaryPromoted")


def test_a_canary_failing_requests_is_rolled_back(kube, kafka, operator, namespace):
    start_canary(kube, kafka, operator, namespace)
    serve_traffic(kafka, namespace, NAME, ("v1", 200, {}), ("v2", 200, {"error_rate": 0.1}))
    wait_rolled_back(kube, namespace, "error rate")


def test_a_canary_with_a_worse_click_through_rate_is_rolled_back(kube, kafka, operator, namespace):
    start_canary(kube, kafka, operator, namespace, canary={"analysisDuration": "1h"})
    serve_traffic(kafka, namespace, NAME, ("v1", 300, {"ctr": 0.3}), ("v2", 300, {"ctr": 0.03}))
    back = wait_rolled_back(kube, namespace, "click-through rate")
    assert "significantly below 0.95 x stable's" in back["failedReason"]


def test_a_stalled_canary_is_rolled_back_and_stays_rolled_back_until_retried(
    kube, kafka, operator, namespace
):
    start_canary(kube, kafka, operator, namespace, progressDeadlineSeconds=30)
    # No traffic reaches the canary: no verdict within the window plus the deadline.
    back = wait_rolled_back(kube, namespace, "stalled")
    assert "canary has 0 of 100 requests" in back["failedReason"]

    # Git still names v2: applying it again, and resyncs, do not start it again.
    apply(kube, namespace, with_model(kafka, "v2", progressDeadlineSeconds=30))
    with pytest.raises(AssertionError):
        wait_for(lambda: model_status(kube, namespace).get("canary"), 8, "no new canary")
    assert f"{NAME}-scorer-canary" not in deployments(kube, namespace)

    # The retry annotation starts exactly one new canary, which can then pass.
    kube.kubectl("annotate", f"ppl/{NAME}", "-n", namespace, "tailor.dev/retry-rollout=attempt-2")
    wait_model(kube, namespace, lambda m: m.get("canary") == "v2", 30, "the retried canary")
    assert model_status(kube, namespace).get("failed") is None
    serve_traffic(kafka, namespace, NAME, ("v1", 200, {}), ("v2", 200, {}))
    wait_model(kube, namespace, lambda m: m.get("active") == "v2", 60, "promotion")
    assert model_status(kube, namespace)["retryToken"] == "attempt-2"


def test_an_operator_restarted_mid_canary_resumes_the_same_canary(kube, kafka, operator, namespace):
    running = start_canary(kube, kafka, operator, namespace)
    serve_traffic(kafka, namespace, NAME, ("v1", 200, {}))
    operator.processes[0].kill()
    # The canary's traffic arrives while no operator runs; the next one reads it from the
    # analysis start in status.
    serve_traffic(kafka, namespace, NAME, ("v2", 200, {"error_rate": 0.2}))
    operator.start(namespace, env=FAST)
    back = wait_rolled_back(kube, namespace, "error rate")
    # The same rollout, not a second canary: same start, one CanaryStarted Event.
    assert back["rolloutStarted"] == running["canaryStarted"]
    assert len(events(kube, namespace, "CanaryStarted")) == 1
