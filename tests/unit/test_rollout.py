"""Model rollouts are pure: spec and status in, what serves and the next status out."""

from __future__ import annotations

from typing import Any

from tailor_operator import analysis, api, rollout
from tailor_operator.render import Images, Served, desired_children
from tailor_operator.resource import Pipeline
from tailor_pipeline.settings import PipelineSettings

IMAGES = Images(stream_worker="registry.test/worker:1", scorer="registry.test/scorer:1")


def model(version: str) -> dict[str, str]:
    return {"name": "knn", "version": version, "uri": f"file:///m/{version}", "sha256": "a" * 64}


def pipeline(version: str | None, strategy: str = "Canary", annotations=None, **rollout_spec: Any):
    scorer: dict[str, Any] = {"rollout": {"strategy": strategy, **rollout_spec}}
    if version:
        scorer["model"] = model(version)
    return Pipeline.from_body(
        {
            "metadata": {
                "namespace": "shop",
                "name": "front",
                "uid": "u",
                "generation": 2,
                "annotations": annotations or {},
            },
            "spec": {"kafka": {"bootstrapServers": "k:9092"}, "scorer": scorer},
        }
    )


def active(version: str, **more: Any) -> api.ModelStatus:
    return api.ModelStatus(
        active=version, active_ref=api.ModelSpec.model_validate(model(version)), **more
    )


def t(seconds: int) -> str:
    """An RFC 3339 time ``seconds`` into 2026-01-01."""
    return f"2026-01-01T{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}Z"


def no_evidence(*_: Any) -> tuple[analysis.Arm, analysis.Arm]:
    raise AssertionError("no analysis expected")


def evidence(canary: analysis.Arm, stable: analysis.Arm) -> rollout.Evidence:
    return lambda *_: (canary, stable)


def healthy(n: int) -> analysis.Arm:
    arm = analysis.Arm(requests=n, shown=n, clicked=n // 10)
    for _ in range(n):
        arm.observe_latency(1.0)
    return arm


def test_rolling_bookkeeping() -> None:
    p1 = pipeline("v1", "Rolling")
    first = rollout.finish(p1, None, False, "T1")
    assert (first.active, first.rolling_out, first.rollout_started) == (None, "v1", "T1")
    assert rollout.finish(p1, first, False, "T2") == first  # still rolling: nothing moves
    live = rollout.finish(p1, first, True, "T3")
    assert (live.active, live.previous, live.rolling_out) == ("v1", None, None)
    assert (live.rollout_started, live.rollout_finished) == ("T1", "T3")
    assert live.active_ref is not None
    second = rollout.finish(pipeline("v2", "Rolling"), live, False, "T4")
    assert (second.active, second.rolling_out, second.rollout_started) == ("v1", "v2", "T4")
    assert second.rollout_finished is None
    done = rollout.finish(pipeline("v2", "Rolling"), second, True, "T5")
    assert (done.active, done.previous, done.rollout_finished) == ("v2", "v1", "T5")
    assert rollout.finish(pipeline(None), done, True, "T6") == done


def test_the_first_model_rolls_even_with_canary_there_is_nothing_to_compare() -> None:
    p = pipeline("v1")
    assert rollout.served(p, None) == Served(p.spec.scorer.model)
    assert rollout.step(p, None, no_evidence, None, "", "T1").events == []
    assert rollout.finish(p, None, True, "T1").active == "v1"


def test_a_new_version_starts_one_canary_beside_stable() -> None:
    p = pipeline("v2")
    started = rollout.step(p, active("v1"), no_evidence, None, "", t(0))
    ms = started.status
    assert ms is not None
    assert (ms.canary, ms.canary_started, ms.active) == ("v2", t(0), "v1")
    assert [e.reason for e in started.events] == ["CanaryStarted"]
    served = rollout.served(p, ms)
    assert served.stable is not None
    assert served.canary is not None
    assert (served.stable.version, served.canary.version) == ("v1", "v2")
    # Status-only refreshes leave the canary alone; the condition says what goes on.
    assert rollout.finish(p, ms, True, "T") == ms
    assert rollout.condition(p, ms)[1] == "CanaryAnalysis"
    # The next reconcile judges the same canary: no second one.
    again = rollout.step(p, ms, evidence(healthy(10), healthy(10)), None, "", t(5))
    assert again.status is not None
    assert again.status.canary_started == t(0)
    assert again.verdict is not None
    assert again.verdict.outcome == "wait"
    assert again.events == []


def running(p: Pipeline) -> api.ModelStatus:
    ms = rollout.step(p, active("v1"), no_evidence, None, "", t(0)).status
    assert ms is not None
    return ms


def test_a_passing_canary_is_promoted_and_the_stable_scorers_roll() -> None:
    p = pipeline("v2", canary={"analysisDuration": "1m", "minSamples": 100})
    ms = running(p)
    step = rollout.step(p, ms, evidence(healthy(200), healthy(2000)), None, "", t(60))
    promoted = step.status
    assert promoted is not None
    assert (promoted.active, promoted.previous, promoted.canary) == ("v2", "v1", None)
    assert promoted.rolling_out == "v2"
    assert [e.reason for e in step.events] == ["CanaryPromoted"]
    assert rollout.served(p, promoted) == Served(p.spec.scorer.model)
    assert rollout.condition(p, promoted)[:2] == ("False", "RollingOut")
    done = rollout.finish(p, promoted, True, t(120))
    assert (done.rolling_out, done.rollout_finished) == (None, t(120))
    assert rollout.condition(p, done)[:2] == ("True", "RolledOut")


def test_a_failing_canary_is_rolled_back_and_stays_rolled_back() -> None:
    p = pipeline("v2", canary={"minSamples": 100})
    ms = running(p)
    broken = healthy(200)
    broken.errors = 50
    step = rollout.step(p, ms, evidence(broken, healthy(2000)), None, "", t(30))
    back = step.status
    assert back is not None
    assert (back.failed, back.canary, back.active) == ("v2", None, "v1")
    assert [(e.type, e.reason) for e in step.events] == [("Warning", "RolledBack")]
    assert "error rate 25.00% > 1.00%" in step.events[0].message
    served = rollout.served(p, back)
    assert served.canary is None
    assert served.stable is not None
    assert served.stable.version == "v1"
    status, reason, message = rollout.condition(p, back)
    assert (status, reason) == ("False", "RolledBack")
    assert message.startswith("spec asks for v2, v2 failed its canary on error rate")
    assert "serving v1" in message
    # Later reconciles do not start it again, and the refresh does not roll it either.
    later = rollout.step(p, back, no_evidence, None, "", t(3600))
    assert (later.status, later.events) == (back, [])
    assert rollout.finish(p, back, True, "T") == back
    # A new version does start a new canary.
    fresh = rollout.step(pipeline("v3"), back, no_evidence, None, "", t(7200))
    assert fresh.status is not None
    assert fresh.status.canary == "v3"


def test_the_retry_annotation_starts_one_new_rollout_per_value() -> None:
    p = pipeline("v2")
    back = active("v1", failed="v2", failed_reason="failed its canary on stalled: x")
    retry = pipeline("v2", annotations={"tailor.dev/retry-rollout": "1"})
    step = rollout.step(retry, back, no_evidence, None, "", "T")
    assert step.status is not None
    assert (step.status.failed, step.status.retry_token) == (None, "1")
    assert [e.reason for e in step.events] == ["RolloutRetried", "CanaryStarted"]
    canary = rollout.served(retry, step.status).canary
    assert canary is not None
    assert canary.version == "v2"
    # When it fails again, the same annotation value does not retry it a second time.
    failed_again = step.status.model_copy(
        update={"failed": "v2", "failed_reason": "r", "canary": None}
    )
    assert rollout.step(retry, failed_again, no_evidence, None, "", "T").status == failed_again
    assert rollout.step(p, back, no_evidence, None, "", "T").status == back


def test_crash_looping_canary_pods_fail_the_canary_at_once() -> None:
    p = pipeline("v2")
    step = rollout.step(p, running(p), no_evidence, "canary-0: CrashLoopBackOff", "", t(1))
    assert step.verdict is not None
    assert step.verdict.check == "canary pods"
    assert step.status is not None
    assert step.status.failed == "v2"


def test_a_canary_without_samples_stalls_after_window_plus_deadline() -> None:
    p = pipeline("v2", canary={"analysisDuration": "1m"}, progressDeadlineSeconds=60)
    ms = running(p)
    empty = evidence(analysis.Arm(), analysis.Arm())
    assert rollout.step(p, ms, empty, None, "", t(119)).status.failed is None
    stalled = rollout.step(p, ms, empty, None, "", t(120))
    assert stalled.status.failed == "v2"
    assert "stalled" in stalled.status.failed_reason


def test_without_auto_rollback_a_failed_canary_keeps_serving_and_says_so() -> None:
    p = pipeline("v2", autoRollback=False, canary={"minSamples": 100})
    broken = healthy(200)
    broken.errors = 100
    step = rollout.step(p, running(p), evidence(broken, healthy(1000)), None, "", t(10))
    assert step.status is not None
    assert (step.status.failed, step.status.canary) == (None, "v2")
    assert rollout.condition(p, step.status)[1] == "CanaryFailed"
    assert [e.reason for e in step.events] == ["CanaryFailed"]
    # Reported once, not on every reconcile.
    again = rollout.step(p, step.status, evidence(broken, healthy(1000)), None, "", t(20))
    assert again.events == []


def test_a_rolling_update_past_its_deadline_rolls_back() -> None:
    p = pipeline("v2", "Rolling", progressDeadlineSeconds=60)
    ms = rollout.finish(p, active("v1"), False, t(0))
    assert ms is not None
    assert ms.rolling_out == "v2"
    assert rollout.served(p, ms).stable.version == "v2"
    ok = rollout.step(p, ms, no_evidence, None, "1/2 ready", t(60))
    assert ok.status == ms
    late = rollout.step(p, ms, no_evidence, None, "1/2 ready", t(61))
    assert late.status is not None
    assert late.status.failed == "v2"
    assert "1/2 ready" in late.status.failed_reason
    assert rollout.served(p, late.status).stable.version == "v1"


def test_the_spec_back_on_the_active_version_withdraws_the_canary() -> None:
    ms = running(pipeline("v2"))
    step = rollout.step(pipeline("v1"), ms, no_evidence, None, "", "T")
    assert step.status is not None
    assert step.status.canary is None
    assert [e.reason for e in step.events] == ["CanaryWithdrawn"]


def test_the_canary_deployment_serves_the_canary_config_under_the_same_service() -> None:
    p = pipeline("v2", canary={"replicas": 2})
    served = rollout.served(p, running(p))
    rendered = {c.key: c.manifest for c in desired_children(p, IMAGES, served)}
    canary = rendered["Deployment/front-scorer-canary"]
    stable = rendered["Deployment/front-scorer"]
    service = rendered["Service/front-scorer"]
    assert canary is not None
    assert stable is not None
    assert service is not None
    assert canary["spec"]["replicas"] == 2
    labels = canary["spec"]["template"]["metadata"]["labels"]
    stable_labels = stable["spec"]["template"]["metadata"]["labels"]
    assert labels["tailor.dev/track"] == "canary"
    # The Service spreads requests over both tracks ...
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= stable_labels.items()
    # ... but the stable Deployment, its PDB and (through its selector) its HPA count only
    # stable pods, and the canary only its own.
    pdb = rendered["PodDisruptionBudget/front-scorer"]
    assert pdb is not None
    for selector in (stable["spec"]["selector"], pdb["spec"]["selector"]):
        assert not selector["matchLabels"].items() <= labels.items()
    assert canary["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert not canary["spec"]["selector"]["matchLabels"].items() <= stable_labels.items()

    def served_model(deployment: dict[str, Any]) -> str:
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        config_map = rendered[f"ConfigMap/{volumes['config']['configMap']['name']}"]
        assert config_map is not None
        settings = PipelineSettings.model_validate_json(config_map["data"]["pipeline.json"])
        model = settings.scorer_settings().model
        assert model is not None
        return model.version

    # Each track mounts its own settings: the stable scorers keep v1 while the canary has v2.
    assert (served_model(stable), served_model(canary)) == ("v1", "v2")
    hashes = {
        d["spec"]["template"]["metadata"]["annotations"]["tailor.dev/config-hash"]
        for d in (canary, stable)
    }
    assert len(hashes) == 2
    # Without a canary, the Deployment is looked for (to delete it) only with strategy Canary.
    none = {c.key: c.manifest for c in desired_children(p, IMAGES, Served(None), True)}
    assert none["Deployment/front-scorer-canary"] is None
    assert "Deployment/front-scorer-canary" not in {
        c.key for c in desired_children(pipeline("v2", "Rolling"), IMAGES)
    }


def deployment(version: str, rolled_out: bool = True) -> dict[str, Any]:
    """A slim scorer Deployment (pipeline_state.slim_deployment) serving ``version``."""
    return {
        "metadata": {
            "name": "front-scorer",
            "namespace": "shop",
            "generation": 3,
            "annotations": {"tailor.dev/model-version": version},
        },
        "spec": {"replicas": 2},
        "status": {
            "observedGeneration": 3 if rolled_out else 2,
            "replicas": 2,
            "updatedReplicas": 2,
            "readyReplicas": 2,
            "availableReplicas": 2,
        },
    }


def observe(*deployments: dict[str, Any]) -> rollout.Observed:
    watched = {f"Deployment/{d['metadata']['name']}": d for d in deployments}
    return rollout.observe(pipeline("v1"), watched, {}, t(0), 120.0)


def test_the_stable_version_is_observed_only_once_its_rollout_is_done() -> None:
    assert observe(deployment("v1")).stable_version == "v1"
    # The annotation changes with the apply; the pods only once the rollout is done.
    assert observe(deployment("v2", rolled_out=False)).stable_version is None
    assert observe().stable_version is None
    assert observe().stable_message == "not created yet"


def test_one_transition_decides_status_events_and_what_serves_before_rendering() -> None:
    p = pipeline("v2", "Rolling")
    # The watch still shows v1 serving: v2 starts rolling, and nothing calls it done.
    move = rollout.transition(p, active("v1"), no_evidence, observe(deployment("v1")), t(0))
    assert move.status is not None
    assert (move.status.active, move.status.rolling_out) == ("v1", "v2")
    assert move.served == Served(p.spec.scorer.model)
    # A refresh once every stable scorer serves v2 finishes it; until then it waits.
    assert rollout.settle(p, move.status, observe(deployment("v2", False)), t(5)) == move.status
    done = rollout.settle(p, move.status, observe(deployment("v2")), t(9))
    assert done is not None
    assert (done.active, done.previous, done.rolling_out, done.rollout_finished) == (
        "v2",
        "v1",
        None,
        t(9),
    )


def test_a_canary_starts_in_the_transition_that_renders_it() -> None:
    p = pipeline("v2")
    move = rollout.transition(p, active("v1"), no_evidence, observe(deployment("v1")), t(0))
    assert [e.reason for e in move.events] == ["CanaryStarted"]
    assert move.served.stable is not None
    assert move.served.canary is not None
    assert (move.served.stable.version, move.served.canary.version) == ("v1", "v2")
    rendered = {c.key: c.manifest for c in desired_children(p, IMAGES, move.served, True)}
    canary = rendered["Deployment/front-scorer-canary"]
    assert canary is not None
    assert canary["metadata"]["annotations"]["tailor.dev/model-version"] == "v2"
