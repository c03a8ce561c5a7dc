"""One level-triggered reconcile: parse, render, apply, observe, compute status.

It reads top to bottom and never branches on why it was called (create, update, resume,
a child's change, a timer): the same spec always leads to the same world.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import pydantic
from kubernetes.client.exceptions import ApiException

from tailor_operator import analysis, api, conditions, naming, rollout, topic_plan
from tailor_operator.adapters.decision_log import DecisionLogs
from tailor_operator.adapters.kafka_admin import (
    KafkaAdmin,
    KafkaUnavailable,
    TopicOperationFailed,
)
from tailor_operator.adapters.kube import KubeAdapter, api_message
from tailor_operator.conditions import Reason
from tailor_operator.kube_events import Event
from tailor_operator.ownership import change_marker
from tailor_operator.render import Child, Images, desired_children, desired_topics
from tailor_operator.resource import Pipeline
from tailor_pipeline.settings import KafkaSettings

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
    # The canary analysis' verdict this run, when one was judged.
    verdict: analysis.Verdict | None = None
    # A Deployment is not available: its pods can tell starting from failing.
    pods_wanted: bool = False


@dataclass(frozen=True)
class Dependencies:
    kube: KubeAdapter
    kafka_admin: Callable[[Mapping[str, str]], KafkaAdmin]
    images: Images
    decision_logs: DecisionLogs = field(default_factory=DecisionLogs)
    now: Callable[[], str] = conditions.now_rfc3339


def kafka_client_config(pipeline: Pipeline, kube: KubeAdapter) -> dict[str, str]:
    """The operator's own admin-client settings, with credentials read from the Secret."""
    kafka = pipeline.spec.kafka
    secret: dict[str, str] = {}
    if kafka.auth_secret_ref is not None:
        secret = kube.read_secret(pipeline.namespace, kafka.auth_secret_ref.name)
    settings = KafkaSettings(
        bootstrap_servers=kafka.bootstrap_servers,
        security_protocol=kafka.security_protocol,
        sasl_mechanism=kafka.sasl_mechanism,
    )
    config = settings.client_config(
        {
            "TAILOR_KAFKA_USERNAME": secret.get("username", ""),
            "TAILOR_KAFKA_PASSWORD": secret.get("password", ""),
        }
    )
    if "ca.crt" in secret and kafka.security_protocol.endswith("SSL"):
        config["ssl.ca.pem"] = secret["ca.crt"]
    return config


def _describe_settled(admin: KafkaAdmin, names: list[str]) -> dict[str, topic_plan.ActualTopic]:
    """Describe right after a change: a new topic reaches the metadata of every broker a
    moment after CreateTopics returns, so look again briefly before calling it missing."""
    actual = admin.describe(names)
    for pause in (0.05, 0.1, 0.2, 0.4, 0.8):
        if len(actual) == len(names):
            break
        time.sleep(pause)
        actual = admin.describe(names)
    return actual


@dataclass
class _TopicsResult:
    status: Literal["True", "False"]
    reason: Reason
    message: str
    topics: dict[str, api.TopicStatus]
    unavailable: bool = False
    operations: dict[str, int] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)
    client_config: dict[str, str] | None = None


def _reconcile_topics(pipeline: Pipeline, deps: Dependencies) -> _TopicsResult:
    names = [pipeline.topic_name(role) for role in naming.TOPIC_ROLES]
    try:
        client_config = kafka_client_config(pipeline, deps.kube)
        admin = deps.kafka_admin(client_config)
        actual = admin.describe(names)
        events = actual.get(pipeline.topic_name("events"))
        desired = desired_topics(pipeline, events.partitions if events else None)
        plan = topic_plan.plan_topic_changes(desired, actual)
        failures = admin.execute(plan) if not plan.empty else []
        if not plan.empty:
            actual = _describe_settled(admin, [t.name for t in desired])
    except KafkaUnavailable as exc:
        return _TopicsResult(
            "False",
            Reason.KAFKA_UNAVAILABLE,
            f"Kafka at {pipeline.spec.kafka.bootstrap_servers} did not answer: {exc}",
            {},
            unavailable=True,
        )
    except TopicOperationFailed as exc:
        return _TopicsResult("False", Reason.TOPIC_ERROR, str(exc), {})
    except ApiException as exc:  # the credentials Secret
        return _TopicsResult("False", Reason.KAFKA_CLIENT_ERROR, api_message(exc), {})
    except Exception as exc:
        # librdkafka refusing the client's configuration, an undecodable Secret: the spec
        # or the Secret must change, and the condition says which.
        return _TopicsResult(
            "False",
            Reason.KAFKA_CLIENT_ERROR,
            f"cannot create the Kafka client: {type(exc).__name__}: {exc}",
            {},
        )
    topics: dict[str, api.TopicStatus] = {
        t.role: api.TopicStatus(
            name=t.name,
            partitions=actual[t.name].partitions,
            replication_factor=actual[t.name].replication_factor,
        )
        for t in desired
        if t.name in actual
    }
    operations = {
        "create": len(plan.create),
        "add_partitions": len(plan.add_partitions),
        "alter_configs": len(plan.alter_configs),
    }
    missing = [t.name for t in desired if t.name not in actual]
    created = [t.name for t in plan.create]
    if failures or missing:
        message = "; ".join(failures) or f"missing topics: {', '.join(missing)}"
        return _TopicsResult(
            "False", Reason.TOPIC_ERROR, message, topics, operations=operations, created=created
        )
    message = f"{len(topics)} topics ready"
    if plan.warnings:
        message += "; " + "; ".join(plan.warnings)
    reason = Reason.TOPICS_UNMANAGED if pipeline.topics_unmanaged else Reason.TOPICS_READY
    return _TopicsResult(
        "True",
        reason,
        message,
        topics,
        operations=operations,
        created=created,
        client_config=client_config,
    )


@dataclass(frozen=True)
class _Availability:
    status: Literal["True", "False"]
    reason: Reason
    message: str
    failing: bool
    replicas: int
    ready: int


# Container waiting reasons that mean "broken", not "starting".
_BROKEN = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
# A running pod that is still unready after this long is failing, not starting.
UNREADY_SECONDS = float(os.environ.get("TAILOR_UNREADY_SECONDS", "120"))


def slim_pod(pod: Mapping[str, Any]) -> dict[str, Any]:
    """What the status needs of a pod: readiness, and why its container is not running."""
    status = pod.get("status") or {}
    ready: Mapping[str, Any] = next(
        (c for c in status.get("conditions", []) if c.get("type") == "Ready"), {}
    )
    scheduled: Mapping[str, Any] = next(
        (c for c in status.get("conditions", []) if c.get("type") == "PodScheduled"), {}
    )
    containers = status.get("containerStatuses") or [{}]
    first = containers[0]
    waiting = (first.get("state") or {}).get("waiting") or {}
    last = (first.get("lastState") or {}).get("terminated") or {}
    # With FallbackToLogsOnError the message may be the log's tail: its last line says why.
    message = (last.get("message") or "").strip().splitlines()[-1:] or [last.get("reason", "")]
    return {
        "name": pod["metadata"]["name"],
        "ready": ready.get("status") == "True",
        "unready_since": ready.get("lastTransitionTime"),
        "phase": status.get("phase"),
        "waiting": waiting.get("reason"),
        "restarts": int(first.get("restartCount", 0)),
        "last_exit": (f"exit {last.get('exitCode')}: {message[0][:300]}" if last else ""),
        # The scheduler's reason a pod has no node, e.g. "0/3 nodes are available: ...".
        "unschedulable": (
            f"{scheduled.get('reason')}: {scheduled.get('message', '')[:300]}"
            if scheduled.get("status") == "False" and scheduled.get("reason")
            else ""
        ),
    }


def _failing_pods(pods: Sequence[Mapping[str, Any]], now: str) -> list[str]:
    """Why pods are broken, one phrase each; empty when they are merely starting."""
    found = []
    for pod in pods:
        if pod["ready"]:
            continue
        if pod.get("unschedulable"):
            found.append(f"{pod['name']}: {pod['unschedulable']}")
        elif pod["waiting"] in _BROKEN:
            detail = f"{pod['name']}: {pod['waiting']} ({pod['restarts']} restarts)"
            if pod["last_exit"]:
                detail += f", last {pod['last_exit']}"
            found.append(detail)
        elif pod["phase"] == "Running" and pod["unready_since"]:
            unready = conditions.seconds_between(pod["unready_since"], now)
            if unready >= UNREADY_SECONDS:
                found.append(f"{pod['name']}: running but not ready for {unready:.0f}s")
    return found


def deployment_availability(
    deployment: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]] = (),
    now: str | None = None,
) -> _Availability:
    """Is a Deployment fully rolled out and ready? Pure, from the stored object and, when it
    is not, from its pods (slim_pod): a crash loop or a long unready pod is failing."""
    if deployment is None:
        return _Availability("False", Reason.DEPLOYMENT_PROGRESSING, "not created yet", False, 0, 0)
    spec = deployment.get("spec", {})
    status = deployment.get("status", {})
    desired = int(spec.get("replicas", 1))
    ready = int(status.get("readyReplicas", 0))
    updated = int(status.get("updatedReplicas", 0))
    available = int(status.get("availableReplicas", 0))
    by_type = {c["type"]: c for c in status.get("conditions", [])}
    progressing = by_type.get("Progressing", {})
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        return _Availability(
            "False",
            Reason.DEPLOYMENT_FAILED,
            progressing.get("message", "progress deadline exceeded"),
            True,
            desired,
            ready,
        )
    if desired == 0:
        return _Availability("True", Reason.SUSPENDED, "scaled to zero", False, 0, 0)
    # The ReplicaSet cannot create pods (quota, admission, an invalid pod): the Deployment
    # controller copies its FailedCreate here at once, long before the progress deadline.
    replica_failure = by_type.get("ReplicaFailure", {})
    if replica_failure.get("status") == "True":
        return _Availability(
            "False",
            Reason.PODS_FAILING,
            f"{ready}/{desired} replicas ready; pods cannot be created:"
            f" {replica_failure.get('reason')}: {replica_failure.get('message', '')}",
            True,
            desired,
            ready,
        )
    current = status.get("observedGeneration", 0) >= deployment["metadata"].get("generation", 0)
    # Old pods still running: the rollout is not done, whatever the new ones count (an old
    # ready pod and a new crash-looping one make updated, available and ready all 1 of 1).
    only_new = int(status.get("replicas", 0)) <= updated
    if current and only_new and updated >= desired and available >= desired and ready >= desired:
        return _Availability(
            "True",
            Reason.DEPLOYMENT_AVAILABLE,
            f"{ready}/{desired} replicas ready",
            False,
            desired,
            ready,
        )
    broken = _failing_pods(pods, now) if now is not None else []
    if broken:
        return _Availability(
            "False",
            Reason.PODS_FAILING,
            f"{ready}/{desired} replicas ready; " + "; ".join(broken[:3]),
            True,
            desired,
            ready,
        )
    return _Availability(
        "False",
        Reason.DEPLOYMENT_PROGRESSING,
        f"{ready}/{desired} replicas ready, {updated} updated",
        False,
        desired,
        ready,
    )


def pods_wanted(deployments: Iterable[Mapping[str, Any]]) -> bool:
    """Is a Deployment not available? Only then do its pods say anything the status needs."""
    return any(deployment_availability(d).status != "True" for d in deployments)


class ChildRefused(Exception):
    """The API server refused to apply one child."""

    def __init__(self, child: str, exc: ApiException) -> None:
        super().__init__(f"{child}: {api_message(exc)}")
        self.child = child
        self.status = exc.status
        self.message = api_message(exc)


def _apply_children(
    pipeline: Pipeline,
    children: list[Child],
    deps: Dependencies,
    events: list[Event],
    created: list[str],
) -> dict[str, dict[str, Any]]:
    """Apply or delete every child; returns the stored objects by child key and adds the
    ones it created to ``created``."""
    stored: dict[str, dict[str, Any]] = {}
    deleted: list[str] = []
    for child in children:
        if child.manifest is None:
            if deps.kube.delete_if_owned(pipeline, child):
                deleted.append(child.key)
            continue
        try:
            applied = deps.kube.apply(pipeline, child)
        except ApiException as exc:
            raise ChildRefused(child.key, exc) from exc
        stored[child.key] = applied.object
        if applied.created:
            created.append(child.key)
    # One Event per kind of change, not per child: a new pipeline makes seven children.
    if created:
        events.append(Event("Normal", "Created", f"Created {', '.join(created)}"))
    if deleted:
        events.append(Event("Normal", "Deleted", f"Deleted {', '.join(deleted)}"))
    return stored


def _invalid(body: Mapping[str, Any], exc: pydantic.ValidationError, now: str) -> Outcome:
    message = "; ".join(
        f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
    )
    return _stopped(body, Reason.INVALID_SPEC, message, now, invalid=True)


def _stopped(
    body: Mapping[str, Any], reason: Reason, message: str, now: str, invalid: bool = False
) -> Outcome:
    """A reconcile that could not go on: Ready=False with the reason and the cause's own
    message, and a Warning Event. An invalid spec waits for a new one; anything else (RBAC,
    an admission policy, a quota, the API server) may be fixed outside, so it is retried with
    backoff."""
    previous = _previous_status(body)
    generation = int(body["metadata"].get("generation", 0))
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
    status = previous.model_copy(update=update)
    return Outcome(
        status=_changed(previous, status),
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
    canary = stored.get(f"Deployment/{naming.scorer_canary(pipeline.name)}")
    canary_failing = None
    if canary is not None:
        availability = deployment_availability(canary, pods.get(naming.CANARY_COMPONENT, ()), now)
        canary_failing = availability.message if availability.failing else None
    scorer = deployment_availability(
        stored.get(f"Deployment/{naming.scorer(pipeline.name)}"), pods.get("scorer", ()), now
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
    ``pods``: the watched pods of each component (slim_pod), for why one is failing."""
    now = deps.now()
    try:
        pipeline = Pipeline.from_body(body)
    except pydantic.ValidationError as exc:
        return _invalid(body, exc, now)

    events: list[Event] = []
    previous = _previous_status(body)
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
    # Kafka and the API server share nothing: reconcile the topics while the children apply.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="topics") as pool:
        topics_future = pool.submit(_reconcile_topics, pipeline, deps)
        created: list[str] = []
        try:
            stored = _apply_children(pipeline, children, deps, events, created)
            step = _rollout_step(pipeline, previous, stored, pods or {}, deps, now)
            events.extend(step.events)
            served_now = rollout.served(pipeline, step.status)
            if served_now != served:
                stored = _apply_children(
                    pipeline,
                    desired_children(pipeline, deps.images, served_now, True, known_events),
                    deps,
                    events,
                    created,
                )
        except ChildRefused as exc:
            topics_future.result()
            return _refused(body, exc, now)
        topics = topics_future.result()
        if "events" in topics.topics and topics.topics["events"].partitions != known_events:
            try:
                _recap_worker_hpa(pipeline, topics.topics["events"].partitions, deps, stored)
            except ChildRefused as exc:
                return _refused(body, exc, now)
    if topics.status == "False" and not topics.unavailable:
        events.append(Event("Warning", topics.reason, topics.message))
    if sum(topics.operations.values()):
        _add_topic_operations(events, topics.operations)
    stored_status = previous
    previous = previous.model_copy(update={"model": step.status})
    topics_condition = conditions.Condition(
        type=conditions.TOPICS_READY,
        status=topics.status,
        reason=topics.reason,
        message=topics.message,
        last_transition_time=now,
    )
    deployments = {key: obj for key, obj in stored.items() if key.startswith("Deployment/")}
    status = compute_status(
        pipeline,
        previous,
        pipeline.generation,
        topics_condition,
        topics.topics or previous.topics,
        deployments,
        now,
        pods,
    )
    if _settled(stored.values()):
        # No old pod runs any more, so no restart can need an old version of the settings.
        keep = {key.split("/", 1)[1] for key in stored if key.startswith("ConfigMap/")}
        try:
            deps.kube.delete_stale_config_maps(pipeline, keep)
        except ApiException as exc:  # tidying up: the next settled reconcile tries again
            _log.warning("Could not delete old settings of %s: %s", pipeline.name, exc.reason)
    known = {t.name for t in previous.topics.values()}
    recreated = [name for name in topics.created if name in known]
    if recreated:
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
        status = status.model_copy(update={"conditions": alarm})
    return Outcome(
        status=_changed(stored_status, status),
        events=events,
        recreated_topics=recreated,
        rollout_changed=served_now != served,
        rollout_active=_rollout_active(status.model),
        verdict=step.verdict,
        pods_wanted=pods_wanted(deployments.values()),
        kafka_unavailable=topics.unavailable,
        retry=topics.status == "False",
        topic_operations=topics.operations,
        applied_markers={key: change_marker(obj) for key, obj in stored.items()},
        created=created,
        topic_watch=(
            (topics.client_config, frozenset(t.name for t in topics.topics.values()))
            if topics.client_config is not None
            else None
        ),
    )


def observe(
    body: Mapping[str, Any],
    deployments: Mapping[str, Mapping[str, Any]],
    now: str,
    pods: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> Outcome:
    """Refresh status from Deployments as last seen by the watch: no writes to children or
    Kafka, for the many status-only changes of a rollout. The topics' condition and the
    observed generation stay what the last full reconcile found."""
    try:
        pipeline = Pipeline.from_body(body)
    except pydantic.ValidationError as exc:
        return _invalid(body, exc, now)
    previous = _previous_status(body)
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
    )
    return Outcome(
        status=_changed(previous, status),
        rollout_active=_rollout_active(status.model),
        pods_wanted=pods_wanted(deployments.values()),
    )


def compute_status(
    pipeline: Pipeline,
    previous: api.PipelineStatus,
    generation: int,
    topics: api.Condition,
    topic_status: Mapping[str, api.TopicStatus],
    deployments: Mapping[str, Mapping[str, Any]],
    now: str,
    pods: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> api.PipelineStatus:
    """The whole status from what was observed. Pure. ``pods``: slim pods by component."""
    pods = pods or {}
    worker_name, scorer_name = naming.stream_worker(pipeline.name), naming.scorer(pipeline.name)
    worker = deployment_availability(
        deployments.get(f"Deployment/{worker_name}"), pods.get("stream-worker", ()), now
    )
    scorer = deployment_availability(
        deployments.get(f"Deployment/{scorer_name}"), pods.get("scorer", ()), now
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

    model_status = rollout.finish(pipeline, previous.model, scorer.status == "True", now)
    rolled_out = rollout.condition(pipeline, model_status)
    if rolled_out is not None:
        put(conditions.MODEL_ROLLED_OUT, *rolled_out)
    return api.PipelineStatus(
        observed_generation=generation,
        conditions=conds,
        topics=dict(topic_status),
        stream_worker=api.WorkloadStatus(replicas=worker.replicas, ready_replicas=worker.ready),
        scorer=api.WorkloadStatus(replicas=scorer.replicas, ready_replicas=scorer.ready),
        model=model_status,
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


def _settled(stored: Iterable[Mapping[str, Any]]) -> bool:
    """Has every Deployment finished rolling out: observed its latest spec, with every pod
    of the current version (none of an older one left)?"""
    for obj in stored:
        if obj.get("kind") != "Deployment":
            continue
        status = obj.get("status") or {}
        if status.get("observedGeneration", 0) < obj["metadata"].get("generation", 0):
            return False
        if int(status.get("replicas", 0)) > int(status.get("updatedReplicas", 0)):
            return False
    return True


def _recap_worker_hpa(
    pipeline: Pipeline, partitions: int, deps: Dependencies, stored: dict[str, dict[str, Any]]
) -> None:
    """The events topic turned out to have another count than the HPA was rendered for
    (created, grown, or first seen): apply the workers' HPA again, capped by the real one."""
    hpa_key = f"HorizontalPodAutoscaler/{naming.stream_worker(pipeline.name)}"
    if hpa_key not in stored:
        return
    # Rendering is pure and cheap: render all, apply the one child whose cap moved.
    children = desired_children(pipeline, deps.images, existing_events=partitions)
    hpa = next(c for c in children if c.key == hpa_key)
    try:
        stored[hpa_key] = deps.kube.apply(pipeline, hpa).object
    except ApiException as exc:
        raise ChildRefused(hpa_key, exc) from exc


def _rollout_active(model: api.ModelStatus | None) -> bool:
    return model is not None and bool(model.canary or model.rolling_out)


def _add_topic_operations(events: list[Event], operations: Mapping[str, int]) -> None:
    """Topic changes in their own Event, or in this run's Created Event when there is one:
    a new pipeline gets one Event, not two (each is a request to the API server)."""
    parts = [f"{count} {op.replace('_', ' ')}" for op, count in operations.items() if count]
    message = "Kafka topics reconciled: " + ", ".join(parts)
    for i, event in enumerate(events):
        if event.reason == "Created":
            events[i] = Event(event.type, event.reason, f"{event.message}; {message}")
            return
    events.append(Event("Normal", "TopicsReconciled", message))


def _previous_status(body: Mapping[str, Any]) -> api.PipelineStatus:
    raw = body.get("status") or {}
    known = {k: v for k, v in raw.items() if k in _STATUS_ALIASES}
    try:
        return api.PipelineStatus.model_validate(known)
    except pydantic.ValidationError:
        # A status from an older operator that no longer parses is recomputed from scratch.
        return api.PipelineStatus()


_STATUS_ALIASES = {f.alias or n for n, f in api.PipelineStatus.model_fields.items()}


def _changed(previous: api.PipelineStatus, status: api.PipelineStatus) -> dict[str, Any] | None:
    """The status to write, or None when nothing changed (a resync must not write)."""
    if status == previous:
        return None
    return status.model_dump(mode="json", by_alias=True)


def delete_topics(body: Mapping[str, Any], deps: Dependencies) -> list[str]:
    """On deletion with deletionPolicy Delete: remove the managed topics. Returns Kafka's
    reasons for what it refused; raises KafkaUnavailable when it did not answer."""
    pipeline = Pipeline.from_body(body)
    if pipeline.spec.topics.deletion_policy != "Delete":
        return []
    names = [t.name for t in desired_topics(pipeline) if t.managed]
    if not names:
        return []
    admin = deps.kafka_admin(kafka_client_config(pipeline, deps.kube))
    return admin.delete(names)
