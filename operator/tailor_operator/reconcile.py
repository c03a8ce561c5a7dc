"""One level-triggered reconcile: parse, render, apply, observe, compute status.

It reads top to bottom and never branches on why it was called (create, update, resume,
a child's change, a timer): the same spec always leads to the same world. What it calls
lives by concern: kafka_topics.py, children.py, availability.py, status.py.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pydantic

from tailor_operator import analysis, api, conditions, naming, rollout
from tailor_operator.availability import UNREADY_SECONDS, deployment_availability, pods_wanted
from tailor_operator.children import (
    ChildRefused,
    apply_children,
    delete_stale_settings,
    recap_worker_hpa,
)
from tailor_operator.conditions import Reason
from tailor_operator.dependencies import Dependencies
from tailor_operator.kafka_topics import (
    TopicsResult,
    add_topic_operations,
    kafka_client_config,
    reconcile_topics,
)
from tailor_operator.kube_events import Event
from tailor_operator.ownership import change_marker
from tailor_operator.render import Child, desired_children
from tailor_operator.resource import Pipeline
from tailor_operator.status import (
    changed,
    compute_status,
    invalid_message,
    previous_status,
    rollout_active,
    stopped,
)

_log = logging.getLogger("tailor.reconcile")


@dataclass
class Outcome:
    """What a reconcile decided; the handler layer writes it."""

    status: dict[str, Any] | None
    events: list[Event] = field(default_factory=list)
    # Kafka did not answer, or refused a topic change: reconcile again later with backoff
    # (a refusal may be transient, e.g. brokers being added).
    retry: bool = False
    kafka_unavailable: bool = False
    invalid: str | None = None
    topic_operations: dict[str, int] = field(default_factory=dict)
    # Child key -> its change marker after the apply (ownership.change_marker): a watch event with
    # another marker means someone else changed the child.
    applied_markers: dict[str, str] = field(default_factory=dict)
    # Children this run created (the API server answered 201).
    created: list[str] = field(default_factory=list)
    # Topics this run created although the last status listed them: deleted behind our back.
    recreated_topics: list[str] = field(default_factory=list)
    # The Kafka client settings and the topics that exist now, for the runtime's cheap
    # check that they still do (None when Kafka did not answer).
    topic_watch: tuple[dict[str, str], frozenset[str]] | None = None
    # A rollout transition changed what the scorers serve (the children changed on purpose).
    rollout_changed: bool = False
    # A canary or a rolling update is under way: look again soon, not at the next resync.
    rollout_active: bool = False
    # A Deployment is not available: its pods can tell starting from failing.
    pods_wanted: bool = False


def _invalid(body: Mapping[str, Any], exc: pydantic.ValidationError, now: str) -> Outcome:
    return _stopped(body, Reason.INVALID_SPEC, invalid_message(exc), now, invalid=True)


def _stopped(
    body: Mapping[str, Any], reason: Reason, message: str, now: str, invalid: bool = False
) -> Outcome:
    """A reconcile that could not go on, with a Warning Event. An invalid spec waits for a
    new one; anything else may be fixed outside, so it is retried with backoff."""
    previous = previous_status(body)
    generation = int(body["metadata"].get("generation", 0))
    status = stopped(previous, reason, message, generation, now, invalid)
    return Outcome(
        status=changed(previous, status),
        events=[Event("Warning", reason, message)],
        retry=not invalid,
        invalid=message if invalid else None,
    )


def _refused(body: Mapping[str, Any], exc: ChildRefused, now: str) -> Outcome:
    if exc.status == 403:
        return _stopped(
            body, Reason.FORBIDDEN, f"the operator's RBAC does not allow this: {exc.message}", now
        )
    return _stopped(
        body, Reason.APPLY_FAILED, f"the API server refused {exc.child}: {exc.message}", now
    )


def _canary_possible(pipeline: Pipeline, previous: api.PipelineStatus) -> bool:
    """Might a canary Deployment exist? Only then is an absent one looked for."""
    running = previous.model is not None and previous.model.canary is not None
    return running or pipeline.spec.scorer.rollout.strategy == "Canary"


def _evidence(pipeline: Pipeline, deps: Dependencies) -> rollout.Evidence:
    canary_spec = pipeline.spec.scorer.rollout.canary

    def arms(canary: str, stable: str | None, since: str) -> tuple[analysis.Arm, analysis.Arm]:
        try:
            tally = deps.decision_logs.tally(
                (pipeline.namespace, pipeline.name),
                lambda: kafka_client_config(pipeline, deps.kube),
                (pipeline.topic_name("decisions"), pipeline.topic_name("events")),
                since,
                int(api.parse_duration(canary_spec.attribution_window) * 1000),
                frozenset(pipeline.spec.features.event_weights),
            )
        except Exception as exc:  # Kafka away: no evidence yet; a long outage stalls it
            _log.warning(
                "Canary analysis of %s/%s cannot read Kafka: %s",
                pipeline.namespace,
                pipeline.name,
                exc,
            )
            return analysis.Arm(), analysis.Arm()
        return tally.arm(canary), tally.arm(stable)

    return arms


def _rollout_step(
    pipeline: Pipeline,
    previous: api.PipelineStatus,
    stored: Mapping[str, Mapping[str, Any]],
    pods: Mapping[str, Sequence[Mapping[str, Any]]],
    deps: Dependencies,
    now: str,
) -> rollout.Step:
    unready_seconds = deps.settings.unready_seconds
    canary = stored.get(f"Deployment/{naming.scorer_canary(pipeline.name)}")
    canary_failing = None
    if canary is not None:
        availability = deployment_availability(
            canary, pods.get(naming.CANARY_COMPONENT, ()), now, unready_seconds
        )
        canary_failing = availability.message if availability.failing else None
    scorer = deployment_availability(
        stored.get(f"Deployment/{naming.scorer(pipeline.name)}"),
        pods.get("scorer", ()),
        now,
        unready_seconds,
    )
    step = rollout.step(
        pipeline, previous.model, _evidence(pipeline, deps), canary_failing, scorer.message, now
    )
    if previous.model and previous.model.canary and not (step.status and step.status.canary):
        deps.decision_logs.close((pipeline.namespace, pipeline.name))
    return step


def reconcile(
    body: Mapping[str, Any],
    deps: Dependencies,
    pods: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> Outcome:
    """Bring the world to the pipeline's spec once; never raises for expected failures.
    ``pods``: the listed pods of each component (slim_pod), for why one is failing."""
    now = deps.now()
    try:
        pipeline = Pipeline.from_body(body)
    except pydantic.ValidationError as exc:
        return _invalid(body, exc, now)
    previous = previous_status(body)
    served = rollout.served(pipeline, previous.model)
    # The events topic's partitions as last seen: the workers' HPA is capped by them.
    known_events = previous.topics["events"].partitions if "events" in previous.topics else None
    try:
        children = desired_children(
            pipeline, deps.images, served, _canary_possible(pipeline, previous), known_events
        )
    except (ValueError, ArithmeticError) as exc:
        # What the schema cannot express (the programs' own settings validation).
        return _stopped(body, Reason.INVALID_SPEC, f"cannot render the pipeline: {exc}", now, True)
    try:
        run = _apply(pipeline, previous, children, served, known_events, pods or {}, deps, now)
    except ChildRefused as exc:
        return _refused(body, exc, now)
    topics = run.topics
    deployments = {key: obj for key, obj in run.stored.items() if key.startswith("Deployment/")}
    status = compute_status(
        pipeline,
        previous.model_copy(update={"model": run.step.status}),
        pipeline.generation,
        topics.condition(now),
        topics.topics or previous.topics,
        deployments,
        now,
        pods,
        deps.settings.unready_seconds,
    )
    delete_stale_settings(pipeline, run.stored, deps)
    recreated = [
        name for name in topics.created if name in {t.name for t in previous.topics.values()}
    ]
    if recreated:
        status = _topics_recreated(pipeline, status, recreated, run.events, now)
    return Outcome(
        status=changed(previous, status),
        events=run.events,
        recreated_topics=recreated,
        rollout_changed=run.served != served,
        rollout_active=rollout_active(status.model),
        pods_wanted=pods_wanted(deployments.values()),
        kafka_unavailable=topics.unavailable,
        retry=topics.status == "False",
        topic_operations=topics.operations,
        applied_markers={key: change_marker(obj) for key, obj in run.stored.items()},
        created=run.created,
        topic_watch=topics.watch(),
    )


@dataclass
class _Run:
    """What applying the children and the topics left."""

    stored: dict[str, dict[str, Any]]
    created: list[str]
    events: list[Event]
    step: rollout.Step
    served: rollout.Served
    topics: TopicsResult


def _apply(
    pipeline: Pipeline,
    previous: api.PipelineStatus,
    children: list[Child],
    served: rollout.Served,
    known_events: int | None,
    pods: Mapping[str, Sequence[Mapping[str, Any]]],
    deps: Dependencies,
    now: str,
) -> _Run:
    """Apply the children, take the rollout's step (and apply again if it changed what the
    scorers serve), while the topics are reconciled in a second thread: Kafka and the API
    server share nothing. Raises ChildRefused."""
    events: list[Event] = []
    created: list[str] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="topics") as pool:
        topics_future = pool.submit(reconcile_topics, pipeline, deps)
        stored = apply_children(pipeline, children, deps, events, created)
        step = _rollout_step(pipeline, previous, stored, pods, deps, now)
        events.extend(step.events)
        served_now = rollout.served(pipeline, step.status)
        if served_now != served:
            again = desired_children(pipeline, deps.images, served_now, True, known_events)
            stored = apply_children(pipeline, again, deps, events, created)
        topics = topics_future.result()
    if "events" in topics.topics and topics.topics["events"].partitions != known_events:
        recap_worker_hpa(pipeline, topics.topics["events"].partitions, deps, stored)
    if topics.status == "False" and not topics.unavailable:
        events.append(Event("Warning", topics.reason, topics.message))
    if sum(topics.operations.values()):
        add_topic_operations(events, topics.operations)
    return _Run(stored, created, events, step, served_now, topics)


def _topics_recreated(
    pipeline: Pipeline,
    status: api.PipelineStatus,
    recreated: list[str],
    events: list[Event],
    now: str,
) -> api.PipelineStatus:
    """Topics the last status listed were created again: deleted behind our back. A
    Warning, and Degraded=True for a while (status.TOPIC_ALARM_SECONDS)."""
    message = (
        f"{', '.join(recreated)} deleted outside Tailor and recreated empty: the records"
        " it held are gone (profiles of users whose events were there restart)"
    )
    events.append(Event("Warning", Reason.TOPIC_RECREATED, message))
    alarm = conditions.set_condition(
        status.conditions,
        conditions.DEGRADED,
        "True",
        Reason.TOPIC_RECREATED,
        message,
        pipeline.generation,
        now,
    )
    return status.model_copy(update={"conditions": alarm})


def observe(
    body: Mapping[str, Any],
    deployments: Mapping[str, Mapping[str, Any]],
    now: str,
    pods: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    unready_seconds: float = UNREADY_SECONDS,
) -> Outcome:
    """Refresh status from Deployments as last seen by the watch: no writes to children or
    Kafka, for the many status-only changes of a rollout. The topics' condition and the
    observed generation stay what the last full reconcile found."""
    try:
        pipeline = Pipeline.from_body(body)
    except pydantic.ValidationError as exc:
        return _invalid(body, exc, now)
    previous = previous_status(body)
    topics_condition = conditions.get(previous.conditions, conditions.TOPICS_READY)
    if topics_condition is None:
        return Outcome(status=None)  # never fully reconciled yet: nothing to refresh
    status = compute_status(
        pipeline,
        previous,
        previous.observed_generation,
        topics_condition,
        previous.topics,
        deployments,
        now,
        pods,
        unready_seconds,
    )
    return Outcome(
        status=changed(previous, status),
        rollout_active=rollout_active(status.model),
        pods_wanted=pods_wanted(deployments.values()),
    )
