"""Runs reconciles: one at a time per pipeline, coalesced, off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from tailor_operator import conditions, metrics, naming
from tailor_operator.conditions import Reason
from tailor_operator.ownership import change_marker
from tailor_operator.reconcile import (
    Dependencies,
    Outcome,
    observe,
    reconcile,
    slim_pod,
)

Key = tuple[str, str]

_log = logging.getLogger("tailor.runtime")
# Events of one rollout arrive in bursts; a short wait lets them become one status write.
DEBOUNCE_SECONDS = 0.2
# While a canary or a rolling update is under way, look at it this often (analysis verdicts,
# deadlines): Kafka has no watch to wake us.
ROLLOUT_CHECK_SECONDS = float(os.environ.get("TAILOR_ROLLOUT_CHECK_SECONDS", "5"))
# While a Deployment is not available, its pipeline's pods are listed this often, to tell
# starting from failing (a crash loop, an unschedulable pod); the wait doubles, up to
# POD_CHECK_MAX_SECONDS, while the Deployments stay as they are. Listing a few pipelines'
# pods now and then costs far less than watching every pod of every pipeline (each pod
# event is work for the operator, and the watch holds memory).
POD_CHECK_SECONDS = float(os.environ.get("TAILOR_POD_CHECK_SECONDS", "5"))
POD_CHECK_MAX_SECONDS = 60.0


def backoff(retry: int) -> float:
    """Seconds before retry number ``retry``: 2, 4, 8 ... capped at a minute."""
    return float(min(60, 2 ** (retry + 1)))


def _inputs(body: dict[str, Any]) -> tuple[Any, ...]:
    """What a reconcile works from besides the status: a change to it (a new spec, a label
    or annotation, a new object under the same name) is a full reconcile; a status write
    (ours, mostly) is not. kubectl's copy of the last applied manifest only repeats the
    spec."""
    meta = body["metadata"]
    annotations = dict(meta.get("annotations") or {})
    annotations.pop("kubectl.kubernetes.io/last-applied-configuration", None)
    return (
        meta.get("uid"),
        meta.get("generation"),
        sorted((meta.get("labels") or {}).items()),
        sorted(annotations.items()),
    )


def _repairs(before: dict[str, str] | None, outcome: Outcome, same_spec: bool) -> dict[str, str]:
    """Children this run put back: with the pipeline's spec unchanged since the last apply,
    a child created again was deleted by someone, and a child whose marker moved had been
    changed by someone (our apply of an unchanged manifest changes nothing)."""
    if before is None or not same_spec:
        return {}
    repairs = {}
    for child, marker in outcome.applied_markers.items():
        if child not in before:
            continue
        if child in outcome.created:
            repairs[child] = "recreated"
        elif marker != before[child]:
            repairs[child] = "reverted a change to"
    return repairs


_ROLLOUT_RESULTS: dict[str, str] = {
    Reason.CANARY_STARTED: "canary_started",
    Reason.CANARY_PROMOTED: "promoted",
    Reason.ROLLED_BACK: "rolled_back",
    Reason.CANARY_FAILED: "canary_failed",
}


def _record_ready(key: Key, status: dict[str, Any] | None) -> None:
    """tailor_pipeline_ready from the status as written (or, unchanged, as stored)."""
    conds = (status or {}).get("conditions") or []
    ready = next((c for c in conds if c.get("type") == conditions.READY), None)
    if ready is not None:
        metrics.PIPELINE_READY.labels(*key).set(1 if ready.get("status") == "True" else 0)


def _forget_ready(key: Key) -> None:
    with contextlib.suppress(KeyError):  # it never had a status
        metrics.PIPELINE_READY.remove(*key)


def _slim(deployment: dict[str, Any]) -> dict[str, Any]:
    """What the status is computed from. A whole Deployment with managedFields is tens of
    KB as Python objects; hundreds of pipelines keep one per component."""
    meta = deployment["metadata"]
    return {
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "generation": meta.get("generation"),
        },
        "spec": {"replicas": deployment.get("spec", {}).get("replicas", 1)},
        "status": deployment.get("status", {}),
    }


@dataclass
class Runtime:
    """Shared by every handler through Kopf's memo."""

    deps: Dependencies
    _locks: dict[Key, asyncio.Lock] = field(default_factory=dict)
    # Pipeline -> whether the queued run must be a full reconcile (else a status refresh).
    _queued: dict[Key, bool] = field(default_factory=dict)
    # What the watch last showed of each pipeline's Deployments, and what we last applied.
    _deployments: dict[Key, dict[str, dict[str, Any]]] = field(default_factory=dict)
    _applied: dict[Key, dict[str, str]] = field(default_factory=dict)
    # Pipeline -> component -> slim pods, as last listed while a Deployment was unavailable.
    _pods: dict[Key, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    # Pipelines with a pod listing scheduled, and the wait before the next one.
    _pod_checks: dict[Key, asyncio.TimerHandle] = field(default_factory=dict)
    _pod_check_wait: dict[Key, float] = field(default_factory=dict)
    # The pipeline generation each _applied entry was computed for.
    _applied_for: dict[Key, int | None] = field(default_factory=dict)
    # Child -> marker as the watch last showed it; None once deleted.
    _seen: dict[Key, dict[str, str | None]] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _known: set[Key] = field(default_factory=set)
    _resync: asyncio.Task[None] | None = None
    # Pipelines with a rollout check scheduled.
    _checks: dict[Key, asyncio.TimerHandle] = field(default_factory=dict)
    # Pipeline -> (Kafka client settings, its topics as the last reconcile found them).
    _topic_watch: dict[Key, tuple[dict[str, str], frozenset[str]]] = field(default_factory=dict)
    _topic_checker: asyncio.Task[None] | None = None
    # The inputs (_inputs) of the pipeline as the last full reconcile started from.
    _reconciled: dict[Key, tuple[Any, ...]] = field(default_factory=dict)
    # Pipelines with a retry scheduled, and how many runs in a row asked for one.
    _retries: dict[Key, asyncio.TimerHandle] = field(default_factory=dict)
    _failures: dict[Key, int] = field(default_factory=dict)

    def _lock(self, key: Key) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    def pipeline_seen(self, event_type: str | None, body: dict[str, Any]) -> None:
        """A pipeline was created, changed, deleted, or listed at start. A change to what it
        renders from is reconciled at once; anything else (our own status writes) is not."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        if event_type == "DELETED":
            self.trigger(*key, full=False)  # the run finds it gone and forgets it
            return
        if meta.get("deletionTimestamp"):
            return  # the deletion handler's, and the garbage collector's
        self._known.add(key)
        if self._reconciled.get(key) != _inputs(body):
            self.trigger(*key, full=True, delay=0.0)

    def start_resync(self, interval: float) -> None:
        self._resync = asyncio.create_task(self._resync_forever(interval))

    def start_topic_watch(self, interval: float) -> None:
        self._topic_checker = asyncio.create_task(self._watch_topics_forever(interval))

    def stop(self) -> None:
        for task in (self._resync, self._topic_checker):
            if task is not None:
                task.cancel()

    async def _watch_topics_forever(self, interval: float) -> None:
        """Kafka has no watch: every ``interval``, one metadata request per cluster (not per
        pipeline) tells whether a topic of a pipeline has gone, and that pipeline is
        reconciled at once instead of at the next resync."""
        while True:
            await asyncio.sleep(interval)
            clusters: dict[frozenset[tuple[str, str]], list[Key]] = {}
            for key, (config, _) in self._topic_watch.items():
                clusters.setdefault(frozenset(config.items()), []).append(key)
            for config_items, keys in clusters.items():
                admin = self.deps.kafka_admin(dict(config_items))
                try:
                    present = await asyncio.to_thread(admin.topic_names)
                except Exception as exc:  # Kafka away: the reconciles report that
                    _log.debug("Topic check skipped: %s", exc)
                    continue
                for key in keys:
                    watched = self._topic_watch.get(key)
                    if watched is not None and not watched[1] <= present:
                        _log.info("Topics of %s/%s are missing in Kafka: reconciling", *key)
                        self.trigger(*key, full=True)

    async def _resync_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            for namespace, name in sorted(self._known):
                self.trigger(namespace, name)

    def child_seen(self, event_type: str | None, child: dict[str, Any]) -> None:
        """A child changed. A Deployment's status change refreshes the pipeline's status; a
        child deleted, or changed by someone else (its marker differs from what our last
        apply left), is repaired by a full reconcile. Which one is decided when the run
        starts, after any reconcile in flight recorded what it applied."""
        meta = child["metadata"]
        pipeline = (meta.get("labels") or {}).get(naming.PIPELINE_LABEL)
        if not pipeline:
            return
        key = (meta["namespace"], pipeline)
        name = f"{child.get('kind')}/{meta['name']}"
        seen = self._seen.setdefault(key, {})
        _log.debug(
            "Saw %s %s/%s marker=%s", event_type, meta["namespace"], name, change_marker(child)
        )
        if event_type == "DELETED":
            seen[name] = None
            self._deployments.get(key, {}).pop(name, None)
            applied = self._applied.get(key)
            if applied is not None and name not in applied:
                return  # not ours any more (an old version of the settings we deleted)
            self.trigger(*key, full=True)
            return
        seen[name] = change_marker(child)
        if child.get("kind") == "Deployment":
            self._deployments.setdefault(key, {})[name] = _slim(child)
            self._pods_moved(key)
            self.trigger(*key, full=False)
        elif self._drift(key):
            self.trigger(*key, full=True)

    def _pods_of(self, key: Key) -> dict[str, list[dict[str, Any]]]:
        return self._pods.get(key, {})

    def _follow_pods(self, key: Key, wanted: bool) -> None:
        """After a run: while a Deployment is unavailable, list the pipeline's pods later
        (then refresh); once all are available, forget them."""
        if not wanted:
            self._pods.pop(key, None)
            self._pod_check_wait.pop(key, None)
            handle = self._pod_checks.pop(key, None)
            if handle is not None:
                handle.cancel()
            return
        if key in self._pod_checks:
            return
        wait = self._pod_check_wait.get(key, POD_CHECK_SECONDS)
        self._pod_check_wait[key] = min(2 * wait, POD_CHECK_MAX_SECONDS)

        def due() -> None:
            del self._pod_checks[key]
            task = asyncio.create_task(self._list_pods(key))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        self._pod_checks[key] = asyncio.get_running_loop().call_later(wait, due)

    def _pods_moved(self, key: Key) -> None:
        """A Deployment changed: if one is still unavailable, its pods are listed again
        within POD_CHECK_SECONDS, not after a wait grown while nothing moved."""
        self._pod_check_wait.pop(key, None)
        handle = self._pod_checks.get(key)
        now = asyncio.get_running_loop().time()
        if handle is not None and handle.when() - now > POD_CHECK_SECONDS:
            handle.cancel()
            del self._pod_checks[key]

    async def _list_pods(self, key: Key) -> None:
        try:
            listed = await asyncio.to_thread(self.deps.kube.list_pods, *key)
        except Exception as exc:  # the API server busy or away: the next check asks again
            _log.warning("Could not list the pods of %s/%s: %s", *key, exc)
            # Keep the last listing (a failing pod must not read as starting); the refresh
            # schedules the next check.
            self.trigger(*key, full=False)
            return
        by_component: dict[str, list[dict[str, Any]]] = {}
        for pod in listed:
            meta = pod["metadata"]
            component = (meta.get("labels") or {}).get(naming.COMPONENT_LABEL)
            if component and not meta.get("deletionTimestamp"):
                by_component.setdefault(component, []).append(slim_pod(pod))
        self._pods[key] = by_component
        self.trigger(*key, full=False)

    def _drift(self, key: Key) -> bool:
        """Is a watched child not what the last apply left (deleted, or changed)?"""
        applied = self._applied.get(key)
        if applied is None:
            return False
        return any(
            child in applied and seen != applied[child]
            for child, seen in self._seen.get(key, {}).items()
        )

    def trigger(
        self, namespace: str, name: str, full: bool = True, delay: float = DEBOUNCE_SECONDS
    ) -> None:
        """Reconcile in ``delay``; many triggers while one waits become one (full wins)."""
        key = (namespace, name)
        if key in self._queued:
            self._queued[key] = self._queued[key] or full
            return
        self._queued[key] = full
        task = asyncio.create_task(self._triggered(key, delay))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _triggered(self, key: Key, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
            async with self._lock(key):
                full = self._queued.pop(key, True) or self._drift(key) or key not in self._applied
                body = await asyncio.to_thread(self.deps.kube.get_pipeline, *key)
                if body is None:
                    _forget_ready(key)
                    self._topic_watch.pop(key, None)
                    self._known.discard(key)
                    self._deployments.pop(key, None)
                    self._applied.pop(key, None)
                    self._seen.pop(key, None)
                    self._applied_for.pop(key, None)
                    self._reconciled.pop(key, None)
                    self._follow_pods(key, wanted=False)
                    self._retry_later(key, wanted=False)
                    await asyncio.to_thread(self.deps.decision_logs.close, key)
                    return
                if body["metadata"].get("deletionTimestamp"):
                    return
                _log.debug("Running a %s of %s/%s", "reconcile" if full else "refresh", *key)
                if full:
                    # Set now: the events of this run's own writes are not a change.
                    self._reconciled[key] = _inputs(body)
                    outcome = await self._run(body)
                    if outcome.invalid:
                        _log.warning("%s/%s has an invalid spec: %s", *key, outcome.invalid)
                    self._retry_later(key, outcome.retry)
                else:
                    await self._observe(key, body)
        except Exception:
            self._queued.pop(key, None)
            _log.exception("Reconcile of %s/%s failed", *key)
            self._retry_later(key, wanted=True)

    def _retry_later(self, key: Key, wanted: bool) -> None:
        """The one retry path, whatever started the run: a full reconcile after a backoff
        that grows while runs keep failing (Kafka away, a refused child); reset by a run
        that needs none. An invalid spec is not retried: a new spec is a new run."""
        if not wanted:
            self._failures.pop(key, None)
            handle = self._retries.pop(key, None)
            if handle is not None:
                handle.cancel()
            return
        if key in self._retries:
            return
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1

        def due() -> None:
            del self._retries[key]
            self.trigger(*key, full=True)

        self._retries[key] = asyncio.get_running_loop().call_later(backoff(failures), due)

    async def _report_repairs(self, body: dict[str, Any], repairs: dict[str, str]) -> None:
        for child in repairs:
            metrics.REPAIRS.labels(child.split("/", 1)[0]).inc()
        message = "; ".join(f"{what} {child}" for child, what in sorted(repairs.items()))
        _log.info(
            "Repaired %s/%s: %s", body["metadata"]["namespace"], body["metadata"]["name"], message
        )
        await asyncio.to_thread(
            self.deps.kube.post_event, body, "Normal", "Repaired", message[0].upper() + message[1:]
        )

    def _check_later(self, key: Key) -> None:
        """One full reconcile in ROLLOUT_CHECK_SECONDS, unless one is already scheduled."""
        if key in self._checks:
            return

        def due() -> None:
            del self._checks[key]
            self.trigger(*key, full=True)

        self._checks[key] = asyncio.get_running_loop().call_later(ROLLOUT_CHECK_SECONDS, due)

    async def _observe(self, key: Key, body: dict[str, Any]) -> None:
        outcome = observe(
            body, self._deployments.get(key, {}), conditions.now_rfc3339(), self._pods_of(key)
        )
        _log.debug(
            "Refreshed %s/%s: %s",
            *key,
            {c["type"]: c["status"] for c in outcome.status["conditions"]}
            if outcome.status
            else "unchanged",
        )
        if outcome.status is not None:
            meta = body["metadata"]
            await asyncio.to_thread(
                self.deps.kube.patch_status, meta["namespace"], meta["name"], outcome.status
            )
        _record_ready(key, outcome.status or body.get("status"))
        metrics.STATUS_REFRESHES.inc()
        if outcome.rollout_active:
            self._check_later(key)
        self._follow_pods(key, outcome.pods_wanted)

    async def _run(self, body: dict[str, Any]) -> Outcome:
        started = time.monotonic()
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        try:
            outcome = await asyncio.to_thread(reconcile, body, self.deps, self._pods_of(key))
        except Exception:
            metrics.RECONCILES.labels("error").inc()
            raise
        finally:
            metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)
        meta = body["metadata"]
        generation = meta.get("generation")
        repairs = _repairs(
            self._applied.get(key),
            outcome,
            # A promotion or rollback changes children on purpose: nothing to report.
            same_spec=self._applied_for.get(key) == generation and not outcome.rollout_changed,
        )
        self._applied[key] = outcome.applied_markers
        self._applied_for[key] = generation
        if outcome.topic_watch is not None:
            self._topic_watch[key] = outcome.topic_watch
        # What we just applied is what the watch will show: not drift.
        self._seen[key] = dict(outcome.applied_markers)
        if outcome.status is not None:
            await asyncio.to_thread(
                self.deps.kube.patch_status, meta["namespace"], meta["name"], outcome.status
            )
        _record_ready(key, outcome.status or body.get("status"))
        if repairs:
            await self._report_repairs(body, repairs)
        if outcome.recreated_topics:
            metrics.REPAIRS.labels("KafkaTopic").inc(len(outcome.recreated_topics))
        for event in outcome.events:
            await asyncio.to_thread(
                self.deps.kube.post_event, body, event.type, event.reason, event.message
            )
        for operation, count in outcome.topic_operations.items():
            if count:
                metrics.TOPIC_OPERATIONS.labels(operation).inc(count)
        for event in outcome.events:
            if event.reason in _ROLLOUT_RESULTS:
                metrics.ROLLOUTS.labels(_ROLLOUT_RESULTS[event.reason]).inc()
        if outcome.rollout_active:
            self._check_later(key)
        self._follow_pods(key, outcome.pods_wanted)
        result = (
            "invalid"
            if outcome.invalid
            else "kafka_unavailable"
            if outcome.kafka_unavailable
            else "ok"
        )
        metrics.RECONCILES.labels(result).inc()
        _log.debug("Reconciled %s/%s (%s) in %.3fs", *key, result, time.monotonic() - started)
        return outcome
