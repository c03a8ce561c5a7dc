"""The pipeline's status, computed from what was observed. Pure: reading the last status
and the world, never changing either."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import pydantic

from tailor_operator import api, conditions, naming, rollout
from tailor_operator.availability import UNREADY_SECONDS, deployment_availability
from tailor_operator.conditions import Reason
from tailor_operator.resource import Pipeline


def compute_status(
    pipeline: Pipeline,
    previous: api.PipelineStatus,
    generation: int,
    topics: api.Condition,
    topic_status: Mapping[str, api.TopicStatus],
    deployments: Mapping[str, Mapping[str, Any]],
    now: str,
    pods: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    unready_seconds: float = UNREADY_SECONDS,
) -> api.PipelineStatus:
    """The whole status from what was observed; ``previous.model``: the model status this
    run decided (rollout.transition or rollout.settle), read here, never changed.
    ``pods``: slim pods by component."""
    pods = pods or {}
    worker_name, scorer_name = naming.stream_worker(pipeline.name), naming.scorer(pipeline.name)
    worker = deployment_availability(
        deployments.get(f"Deployment/{worker_name}"),
        pods.get("stream-worker", ()),
        now,
        unready_seconds,
    )
    scorer = deployment_availability(
        deployments.get(f"Deployment/{scorer_name}"), pods.get("scorer", ()), now, unready_seconds
    )
    conds = list(previous.conditions)

    def put(type_: str, status: Literal["True", "False", "Unknown"], reason: str, msg: str) -> None:
        nonlocal conds
        conds = conditions.set_condition(conds, type_, status, reason, msg, generation, now)

    put(conditions.TOPICS_READY, topics.status, topics.reason, topics.message)
    put(conditions.STREAM_WORKER_AVAILABLE, worker.status, worker.reason, worker.message)
    put(conditions.SCORER_AVAILABLE, scorer.status, scorer.reason, scorer.message)
    failing = [
        f"{name}: {a.message}"
        for name, a in (("stream worker", worker), ("scorer", scorer))
        if a.failing
    ]
    alarm = conditions.get(previous.conditions, conditions.DEGRADED)
    if failing:
        put(conditions.DEGRADED, "True", Reason.COMPONENT_FAILING, "; ".join(failing))
    elif (
        alarm is not None
        and alarm.reason == Reason.TOPIC_RECREATED
        and conditions.age_seconds(alarm, now) < TOPIC_ALARM_SECONDS
    ):
        pass  # a recreated topic stays visible for a while, not just until the next refresh
    else:
        put(conditions.DEGRADED, "False", Reason.AS_EXPECTED, "")
    not_ready = [c.type for c in conds if c.type in _READY_PARTS and c.status != "True"]
    if not_ready:
        put(
            conditions.READY,
            "False",
            Reason.COMPONENTS_NOT_READY,
            "waiting for " + ", ".join(not_ready),
        )
    else:
        put(conditions.READY, "True", Reason.ALL_COMPONENTS_READY, "pipeline is serving")

    rolled_out = rollout.condition(pipeline, previous.model)
    if rolled_out is not None:
        put(conditions.MODEL_ROLLED_OUT, *rolled_out)
    return api.PipelineStatus(
        observed_generation=generation,
        conditions=conds,
        topics=dict(topic_status),
        stream_worker=api.WorkloadStatus(replicas=worker.replicas, ready_replicas=worker.ready),
        scorer=api.WorkloadStatus(replicas=scorer.replicas, ready_replicas=scorer.ready),
        model=previous.model,
        scorer_endpoint=naming.scorer_endpoint(
            pipeline.namespace, pipeline.name, pipeline.spec.scorer.port
        ),
    )


# How long Degraded=True/TopicRecreated stays after a deleted topic was recreated.
TOPIC_ALARM_SECONDS = 600

_READY_PARTS = (
    conditions.TOPICS_READY,
    conditions.STREAM_WORKER_AVAILABLE,
    conditions.SCORER_AVAILABLE,
)


def rollout_active(model: api.ModelStatus | None) -> bool:
    return model is not None and bool(model.canary or model.rolling_out)


def previous_status(body: Mapping[str, Any]) -> api.PipelineStatus:
    raw = body.get("status") or {}
    known = {k: v for k, v in raw.items() if k in _STATUS_ALIASES}
    try:
        return api.PipelineStatus.model_validate(known)
    except pydantic.ValidationError:
        # A status from an older operator that no longer parses is recomputed from scratch.
        return api.PipelineStatus()


_STATUS_ALIASES = {f.alias or n for n, f in api.PipelineStatus.model_fields.items()}


def changed(previous: api.PipelineStatus, status: api.PipelineStatus) -> dict[str, Any] | None:
    """The status to write, or None when nothing changed (a resync must not write)."""
    if status == previous:
        return None
    return status.model_dump(mode="json", by_alias=True)


def invalid_message(exc: pydantic.ValidationError) -> str:
    return "; ".join(f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())


def stopped(
    previous: api.PipelineStatus,
    reason: Reason,
    message: str,
    generation: int,
    now: str,
    invalid: bool,
) -> api.PipelineStatus:
    """A reconcile that could not go on: Ready=False with the reason and the cause's own
    message. An invalid spec was looked at (observedGeneration moves); anything else (RBAC,
    an admission policy, a quota, the API server) is Degraded too."""
    conds = conditions.set_condition(
        previous.conditions, conditions.READY, "False", reason, message, generation, now
    )
    update: dict[str, Any] = {"conditions": conds}
    if invalid:
        update["observed_generation"] = generation
    else:
        update["conditions"] = conditions.set_condition(
            conds, conditions.DEGRADED, "True", reason, message, generation, now
        )
    return previous.model_copy(update=update)
