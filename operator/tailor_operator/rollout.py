"""Model rollouts: which model each scorer Deployment serves, and the steps between. Pure.

All rollout state lives in ``status.model`` (``api.ModelStatus``), so an operator that
restarts mid-rollout reads it back and carries on: the same canary, the same analysis start,
no second canary, no lost rollback.

- ``transition`` is the one a full reconcile takes, before rendering, from the scorer
  Deployments as last watched (``Observed``): the new model status, its Events, and what
  the stable and the canary Deployment serve (``render.Served``); rendering needs nothing
  else. It is ``step`` (start a canary, promote it or roll it back on the analysis verdict,
  roll back a Rolling update past its deadline, honour the retry annotation) then
  ``settle``.
- ``settle`` alone is what a status refresh takes: a rolling update (or the stable scorers
  after a promotion) finishes once the stable Deployment serves the version, rolled out.

A version that failed stays failed while the spec names it (Git still says so): the stable
scorers keep serving ``active`` and nothing retries in a loop. A new version in the spec, or
a new value of the ``tailor.dev/retry-rollout`` annotation, starts a new rollout.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tailor_operator import analysis, api, conditions, naming
from tailor_operator.availability import deployment_availability
from tailor_operator.conditions import Reason
from tailor_operator.kube_events import Event
from tailor_operator.render.served import Served
from tailor_operator.resource import Pipeline


@dataclass(frozen=True)
class Observed:
    """The scorer Deployments as the watch last showed them, before this run applies.
    ``stable_version``: the model every stable scorer serves, once its rollout of the
    current generation is done (else None); ``stable_message``: its availability, for a
    rollout past its deadline; ``canary_failing``: why the canary's pods are broken."""

    stable_version: str | None = None
    stable_message: str = ""
    canary_failing: str | None = None


def observe(
    pipeline: Pipeline,
    deployments: Mapping[str, Mapping[str, Any]],
    pods: Mapping[str, Sequence[Mapping[str, Any]]],
    now: str,
    unready_seconds: float,
) -> Observed:
    """What the rollout needs of the scorer Deployments as last watched (slim_deployment),
    and of their pods while they are not available (slim_pod)."""
    canary = deployments.get(f"Deployment/{naming.scorer_canary(pipeline.name)}")
    canary_failing = None
    if canary is not None:
        availability = deployment_availability(
            canary, pods.get(naming.CANARY_COMPONENT, ()), now, unready_seconds
        )
        canary_failing = availability.message if availability.failing else None
    stable = deployments.get(f"Deployment/{naming.scorer(pipeline.name)}")
    scorer = deployment_availability(stable, pods.get("scorer", ()), now, unready_seconds)
    version = None
    if stable is not None and scorer.status == "True":
        annotations = stable["metadata"].get("annotations") or {}
        version = annotations.get(naming.MODEL_VERSION_ANNOTATION)
    return Observed(version, scorer.message, canary_failing)


@dataclass
class Transition:
    """A reconcile's rollout decision: the model status to write, its Events, and what the
    scorer Deployments are to serve."""

    status: api.ModelStatus | None
    events: list[Event]
    served: Served


def transition(
    pipeline: Pipeline,
    previous: api.ModelStatus | None,
    evidence: Evidence,
    observed: Observed,
    now: str,
) -> Transition:
    taken = step(
        pipeline, previous, evidence, observed.canary_failing, observed.stable_message, now
    )
    status = settle(pipeline, taken.status, observed, now)
    return Transition(status, taken.events, served(pipeline, status))


def settle(
    pipeline: Pipeline, previous: api.ModelStatus | None, observed: Observed, now: str
) -> api.ModelStatus | None:
    """The status-only transitions (``finish``), from what the stable scorers serve."""
    spec = pipeline.spec.scorer.model
    serving = spec is not None and observed.stable_version == spec.version
    return finish(pipeline, previous, serving, now)


def served(pipeline: Pipeline, status: api.ModelStatus | None) -> Served:
    spec = pipeline.spec.scorer.model
    ms = status or api.ModelStatus()
    if spec is None or ms.active_ref is None or spec.version == ms.active:
        return Served(spec)
    if spec.version == ms.failed:
        return Served(ms.active_ref)
    if pipeline.spec.scorer.rollout.strategy == "Canary":
        return Served(ms.active_ref, spec if ms.canary == spec.version else None)
    return Served(spec)


def criteria(rollout: api.RolloutSpec) -> analysis.Criteria:
    canary = rollout.canary
    window = api.parse_duration(canary.analysis_duration)
    return analysis.Criteria(
        analysis_s=window,
        deadline_s=window + rollout.progress_deadline_seconds,
        max_error_rate=canary.max_error_rate,
        max_p99_ms=canary.max_p99_latency_ms,
        min_ctr_ratio=canary.min_ctr_ratio,
        min_samples=canary.min_samples,
    )


# (canary version, stable version, analysis start RFC 3339) -> (canary arm, stable arm)
Evidence = Callable[[str, str | None, str], tuple[analysis.Arm, analysis.Arm]]


@dataclass
class Step:
    status: api.ModelStatus | None
    events: list[Event] = field(default_factory=list)
    # What the analysis decided this time (None: no canary was judged).
    verdict: analysis.Verdict | None = None


def step(
    pipeline: Pipeline,
    previous: api.ModelStatus | None,
    evidence: Evidence,
    canary_failing: str | None,
    scorer_message: str,
    now: str,
) -> Step:
    """One reconcile's rollout transitions. ``canary_failing``: why the canary's pods are
    broken (crash loop ...), else None. ``scorer_message``: the stable Deployment's
    availability, for a Rolling update past its deadline."""
    spec = pipeline.spec.scorer.model
    rollout = pipeline.spec.scorer.rollout
    if spec is None:
        if previous is not None and previous.canary:
            return Step(_without_canary(previous))
        return Step(previous)
    ms = previous or api.ModelStatus()
    events: list[Event] = []
    token = pipeline.annotations.get(naming.RETRY_ROLLOUT_ANNOTATION)
    if token and token != ms.retry_token:
        # Recorded even when there is nothing to retry, so an old value never fires later.
        ms = ms.model_copy(update={"retry_token": token})
        if ms.failed == spec.version:
            ms = ms.model_copy(update={"failed": None, "failed_reason": None})
            events.append(
                Event(
                    "Normal",
                    "RolloutRetried",
                    f"Retrying {spec.version}: {naming.RETRY_ROLLOUT_ANNOTATION}={token}",
                )
            )
    if spec.version in (ms.active, ms.failed):
        if ms.canary:
            events.append(
                Event("Normal", "CanaryWithdrawn", f"Withdrew canary {ms.canary}: not in the spec")
            )
            ms = _without_canary(ms)
        return Step(ms, events)
    if rollout.strategy == "Canary" and ms.active_ref is not None:
        return _canary_step(pipeline, spec, ms, events, evidence, canary_failing, now)
    if ms.canary:
        events.append(
            Event("Normal", "CanaryWithdrawn", f"Withdrew canary {ms.canary}: strategy Rolling")
        )
        ms = _without_canary(ms)
    overdue = (
        ms.rolling_out == spec.version
        and ms.rollout_started is not None
        and conditions.seconds_between(ms.rollout_started, now) > rollout.progress_deadline_seconds
    )
    if overdue and rollout.auto_rollback and ms.active_ref is not None:
        reason = (
            f"not rolled out after {rollout.progress_deadline_seconds}s"
            f" (progressDeadlineSeconds): {scorer_message}"
        )
        ms, event = _rolled_back(ms, spec.version, reason, now)
        events.append(event)
    return Step(ms, events)


def _canary_step(
    pipeline: Pipeline,
    spec: api.ModelSpec,
    ms: api.ModelStatus,
    events: list[Event],
    evidence: Evidence,
    canary_failing: str | None,
    now: str,
) -> Step:
    rollout = pipeline.spec.scorer.rollout
    if ms.canary != spec.version or ms.canary_started is None:
        if ms.canary:
            events.append(
                Event("Normal", "CanaryWithdrawn", f"Withdrew canary {ms.canary}: replaced")
            )
        replicas = rollout.canary.replicas
        events.append(
            Event(
                "Normal",
                Reason.CANARY_STARTED,
                f"Canary {spec.version} on {replicas} replica{'s' * (replicas > 1)} beside"
                f" {ms.active}; analysis for {rollout.canary.analysis_duration}",
            )
        )
        ms = ms.model_copy(
            update={
                "canary": spec.version,
                "canary_started": now,
                "analysis": None,
                "failed_reason": None,
                "rolling_out": None,
                "rollout_started": now,
                "rollout_finished": None,
            }
        )
        return Step(ms, events)
    started = ms.canary_started
    elapsed = conditions.seconds_between(started, now)
    if canary_failing:
        verdict = analysis.Verdict("fail", "canary pods", canary_failing)
        ms = ms.model_copy(update={"analysis": f"canary pods failing: {canary_failing}"})
    else:
        canary_arm, stable_arm = evidence(spec.version, ms.active, started)
        verdict = analysis.judge(canary_arm, stable_arm, criteria(rollout), elapsed)
        ms = ms.model_copy(update={"analysis": analysis.summary(canary_arm, stable_arm)})
    if verdict.outcome == "pass":
        events.append(
            Event("Normal", Reason.CANARY_PROMOTED, f"Promoted {spec.version}: {verdict.message}")
        )
        ms = ms.model_copy(
            update={
                "active": spec.version,
                "active_ref": spec,
                "previous": ms.active,
                "canary": None,
                "canary_started": None,
                "rolling_out": spec.version,
            }
        )
    elif verdict.outcome == "fail" and rollout.auto_rollback:
        ms, event = _rolled_back(
            ms, spec.version, f"failed its canary on {verdict.check}: {verdict.message}", now
        )
        events.append(event)
    elif verdict.outcome == "fail" and ms.failed_reason is None:
        reason = f"failed its canary on {verdict.check}: {verdict.message}"
        events.append(
            Event("Warning", Reason.CANARY_FAILED, f"{spec.version} {reason}; autoRollback off")
        )
        ms = ms.model_copy(update={"failed_reason": reason})
    return Step(ms, events, verdict)


def _without_canary(ms: api.ModelStatus) -> api.ModelStatus:
    return ms.model_copy(update={"canary": None, "canary_started": None})


def _rolled_back(
    ms: api.ModelStatus, version: str, reason: str, now: str
) -> tuple[api.ModelStatus, Event]:
    event = Event(
        "Warning",
        Reason.ROLLED_BACK,
        f"Rolled back {version}, serving {ms.active}: {version} {reason}",
    )
    status = ms.model_copy(
        update={
            "failed": version,
            "failed_reason": reason,
            "canary": None,
            "canary_started": None,
            "rolling_out": None,
            "rollout_finished": now,
        }
    )
    return status, event


def finish(
    pipeline: Pipeline, previous: api.ModelStatus | None, serving: bool, now: str
) -> api.ModelStatus | None:
    """Status-only transitions: a rolling update (or the stable Deployment after a
    promotion) starts when the version differs and finishes once every stable scorer serves
    the spec's version (``serving``); the version is then active and the one before it
    previous."""
    spec = pipeline.spec.scorer.model
    if spec is None:
        return previous
    ms = previous or api.ModelStatus()
    if spec.version == ms.failed or ms.canary == spec.version:
        return ms
    if spec.version == ms.active:
        if ms.rolling_out is None:
            return ms
        if not serving:
            return ms
        return ms.model_copy(update={"rolling_out": None, "rollout_finished": now})
    if pipeline.spec.scorer.rollout.strategy == "Canary" and ms.active_ref is not None:
        return ms  # the canary starts in a full reconcile (step)
    if serving:
        return ms.model_copy(
            update={
                "active": spec.version,
                "active_ref": spec,
                "previous": ms.active,
                "rolling_out": None,
                "rollout_started": ms.rollout_started or now,
                "rollout_finished": now,
            }
        )
    if ms.rolling_out == spec.version:
        return ms
    return ms.model_copy(
        update={"rolling_out": spec.version, "rollout_started": now, "rollout_finished": None}
    )


def condition(
    pipeline: Pipeline, ms: api.ModelStatus | None
) -> tuple[conditions.Status, Reason, str] | None:
    """ModelRolledOut from the model status; None when the pipeline has no model."""
    spec = pipeline.spec.scorer.model
    if spec is None or ms is None:
        return None
    version = spec.version
    if version == ms.failed:
        return (
            "False",
            Reason.ROLLED_BACK,
            f"spec asks for {version}, {version} {ms.failed_reason}; serving {ms.active}."
            f" Change spec.scorer.model, or set the {naming.RETRY_ROLLOUT_ANNOTATION}"
            " annotation to a new value to try it again",
        )
    if ms.canary == version:
        if ms.failed_reason:
            return "False", Reason.CANARY_FAILED, f"canary {version} {ms.failed_reason}"
        return (
            "False",
            Reason.CANARY_ANALYSIS,
            f"canary {version} beside {ms.active}: {ms.analysis or 'starting'}",
        )
    if version == ms.active and ms.rolling_out is None:
        return "True", Reason.ROLLED_OUT, f"serving {version}"
    serving = f"serving {ms.active}" if ms.active else "no scorer"
    if version == ms.active:
        return "False", Reason.ROLLING_OUT, f"promoted {version}; rolling the stable scorers"
    return "False", Reason.ROLLING_OUT, f"rolling out {version} ({serving} yet)"
