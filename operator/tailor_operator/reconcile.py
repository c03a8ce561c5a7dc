"""One level-triggered reconcile: observe, decide, render, apply, compute status.

It reads top to bottom and never branches on why it was called (create, update, resume,
a child's change, a timer): the same spec always leads to the same world. The rollout is
decided once, before rendering, from the Deployments as last watched (rollout.transition);
the children are rendered and applied once; the status only reads. What it calls lives by
concern: rollout.py, render/, kafka_topics.py, children.py, availability.py, status.py.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pydantic

from tailor_operator import analysis, api, conditions, rollout
from tailor_operator.availability import UNREADY_SECONDS, pods_wanted
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


def _decide_rollout(
    pipeline: Pipeline,
    previous: api.PipelineStatus,
    observed: rollout.Observed,
    deps: Dependencies,
    now: str,
) -> rollout.Transition:
    move = rollout.transition(pipeline, previous.model, _evidence(pipeline, deps), observed, now)
    if previous.model and previous.model.canary and not (move.status and move.status.canary):
        deps.decision_logs.close((pipeline.namespace, pipeline.name))
    return move


def reconcile(
    body: Mapping[str, Any],
    deps: Dependencies,
    deployments: Mapping[str, Mapping[str, Any]] | None = None,
    pods: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    present: Collection[str] | None = None,
) -> Outcome:
    """Bring the world to the pipeline's spec once; never raises for expected failures.
    ``deployments``: the pipeline's Deployments as last watched (slim_deployment);
    ``pods``: the listed pods of each component (slim_pod), for why one is failing;
    ``present``: the children known to exist (PipelineState.present), None: unknown."""
    now, pods = deps.now(), pods or {}
    try:
        pipeline = Pipeline.from_body(body)
    except pydantic.ValidationError as exc:
        return _invalid(body, exc, now)
    previous = previous_status(body)
    observed = rollout.observe(
        pipeline, deployments or {}, pods, now, deps.settings.unready_seconds
    )
    move = _decide_rollout(pipeline, previous, observed, deps, now)
    # The events topic's partitions as last seen: the workers' HPA is capped by them.
    known_events = previous.topics["events"].partitions if "events" in previous.topics else None
    try:
        children = desired_children(
            pipeline, deps.images, move.served, _canary_possible(pipeline, previous), known_events
        )
    except (ValueError, ArithmeticError) as exc:
        # What the schema cannot express (the programs' own settings validation).
        return _stopped(body, Reason.INVALID_SPEC, f"cannot render the pipeline: {exc}", now, True)
    try:
        run = _apply(pipeline, children, known_events, deps, present)
    except ChildRefused as exc:
        return _refused(body, exc, now)
    events = [*move.events, *run.events]
    deployments_now = {k: obj for k, obj in run.stored.items() if k.startswith("Deployment/")}
    status = compute_status(
        pipeline,
        previous.model_copy(update={"model": move.status}),
        pipeline.generation,
        run.topics.condition(now),
        run.topics.topics or previous.topics,
        deployments_now,
        now,
        pods,
        deps.settings.unready_seconds,
    )
    delete_stale_settings(pipeline, run.stored, deps)
    recreated = [
        name for name in run.topics.created if name in {t.name for t in previous.topics.values()}
    ]
    if recreated:
        status = _topics_recreated(pipeline, status, recreated, events, now)
    return Outcome(
        status=changed(previous, status),
        events=events,
        recreated_topics=recreated,
        rollout_changed=move.served != rollout.served(pipeline, previous.model),
        rollout_active=rollout_active(status.model),
        pods_wanted=pods_wanted(deployments_now.values()),
        kafka_unavailable=run.topics.unavailable,
        retry=run.topics.status == "False",
        topic_operations=run.topics.operations,
        applied_markers={key: change_marker(obj) for key, obj in run.stored.items()},
        created=run.created,
        topic_watch=run.topics.watch(),
    )


@dataclass
class _Run:
    """What applying the children and the topics left."""

    stored: dict[str, dict[str, Any]]
    created: list[str]
    events: list[Event]
    topics: TopicsResult


def _apply(
    pipeline: Pipeline,
    children: list[Child],
    known_events: int | None,
    deps: Dependencies,
    present: Collection[str] | None,
) -> _Run:
    """Apply the children while the topics are reconciled in a second thread: Kafka and
    the API server share nothing. Raises ChildRefused."""
    events: list[Event] = []
    created: list[str] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="topics") as pool:
        topics_future = pool.submit(reconcile_topics, pipeline, deps)
        stored = apply_children(pipeline, children, deps, events, created, present)
        topics = topics_future.result()
    if "events" in topics.topics and topics.topics["events"].partitions != known_events:
        recap_worker_hpa(pipeline, topics.topics["events"].partitions, deps, stored)
    if topics.status == "False" and not topics.unavailable:
        events.append(Event("Warning", topics.reason, topics.message))
    if sum(topics.operations.values()):
        add_topic_operations(events, topics.operations)
    return _Run(stored, created, events, topics)


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
    observed = rollout.observe(pipeline, deployments, pods or {}, now, unready_seconds)
    model = rollout.settle(pipeline, previous.model, observed, now)
    status = compute_status(
        pipeline,
        previous.model_copy(update={"model": model}),
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
