"""Runs reconciles: one at a time per pipeline, coalesced, off the event loop. What it
remembers of each pipeline, and decides from that, is pipeline_state.PipelineState."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tailor_operator import conditions, metrics, naming
from tailor_operator.availability import slim_pod
from tailor_operator.conditions import Reason
from tailor_operator.dependencies import Dependencies
from tailor_operator.ownership import change_marker
from tailor_operator.pipeline_state import PipelineState, inputs, slim_deployment
from tailor_operator.reconcile import Outcome, observe, reconcile

Key = tuple[str, str]

_log = logging.getLogger("tailor.runtime")
# Events of one rollout arrive in bursts; a short wait lets them become one status write.
DEBOUNCE_SECONDS = 0.2
# While a canary or a rolling update is under way, it is looked at every
# settings.rollout_check_seconds (analysis verdicts, deadlines): Kafka has no watch to wake
# us. While a Deployment is not available, its pipeline's pods are listed after
# settings.pod_check_seconds, to tell starting from failing (a crash loop, an unschedulable
# pod); the wait doubles, up to POD_CHECK_MAX_SECONDS, while the Deployments stay as they
# are. Listing a few pipelines' pods now and then costs far less than watching every pod of
# every pipeline (each pod event is work for the operator, and the watch holds memory).
POD_CHECK_MAX_SECONDS = 60.0
# Threads for the short requests around runs (a status write, an Event, a pods listing),
# apart from the pool the reconciles wait in: when hundreds of pipelines are created at
# once, the status write that says the first one is Ready must not queue behind the
# reconciles of all the others.
QUICK_THREADS = 4


def backoff(retry: int) -> float:
    """Seconds before retry number ``retry``: 2, 4, 8 ... capped at a minute."""
    return float(min(60, 2 ** (retry + 1)))


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


@dataclass
class Runtime:
    """Shared by every handler through Kopf's memo."""

    deps: Dependencies
    _pipelines: dict[Key, PipelineState] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _resync: asyncio.Task[None] | None = None
    _topic_checker: asyncio.Task[None] | None = None
    _quick: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(QUICK_THREADS, thread_name_prefix="status")
    )

    async def _request(self, call: Callable[..., Any], *args: Any) -> Any:
        """One short API request, in the threads kept for those (QUICK_THREADS)."""
        return await asyncio.get_running_loop().run_in_executor(self._quick, call, *args)

    def _state(self, key: Key) -> PipelineState:
        state = self._pipelines.get(key)
        if state is None:
            state = self._pipelines[key] = PipelineState()
        return state

    def pipeline_seen(self, event_type: str | None, body: dict[str, Any]) -> None:
        """A pipeline was created, changed, deleted, or listed at start. A change to what it
        renders from is reconciled at once; anything else (our own status writes) is not."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        state = self._state(key)
        if event_type == "DELETED":
            state.body = None
            self.trigger(*key, full=False)  # the run reads it, finds it gone, forgets it
            return
        state.saw(body)
        if meta.get("deletionTimestamp"):
            return  # the deletion handler's, and the garbage collector's
        state.known = True
        if event_type is None and state.applied is None:
            state.listed = True
        if state.reconciled != inputs(body):
            self.trigger(*key, full=True, delay=0.0)

    def start_resync(self, interval: float) -> None:
        self._resync = asyncio.create_task(self._resync_forever(interval))

    def start_topic_watch(self, interval: float) -> None:
        self._topic_checker = asyncio.create_task(self._watch_topics_forever(interval))

    def stop(self) -> None:
        for task in (self._resync, self._topic_checker):
            if task is not None:
                task.cancel()
        self._quick.shutdown(wait=False)

    async def _watch_topics_forever(self, interval: float) -> None:
        """Kafka has no watch: every ``interval``, one metadata request per cluster (not per
        pipeline) tells whether a topic of a pipeline has gone, and that pipeline is
        reconciled at once instead of at the next resync."""
        while True:
            await asyncio.sleep(interval)
            clusters: dict[frozenset[tuple[str, str]], list[Key]] = {}
            for key, state in self._pipelines.items():
                if state.topic_watch is not None:
                    clusters.setdefault(frozenset(state.topic_watch[0].items()), []).append(key)
            for config_items, keys in clusters.items():
                admin = self.deps.kafka_admin(dict(config_items))
                try:
                    present = await asyncio.to_thread(admin.topic_names)
                except Exception as exc:  # Kafka away: the reconciles report that
                    _log.debug("Topic check skipped: %s", exc)
                    continue
                for key in keys:
                    current = self._pipelines.get(key)
                    watched = current.topic_watch if current is not None else None
                    if watched is not None and not watched[1] <= present:
                        _log.info("Topics of %s/%s are missing in Kafka: reconciling", *key)
                        self.trigger(*key, full=True)

    async def _resync_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            for namespace, name in sorted(k for k, s in self._pipelines.items() if s.known):
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
        state = self._state(key)
        _log.debug(
            "Saw %s %s/%s marker=%s", event_type, meta["namespace"], name, change_marker(child)
        )
        if event_type == "DELETED":
            state.deployments.pop(name, None)
            if state.child_deleted(name):
                self.trigger(*key, full=True)
            return
        state.child_changed(name, change_marker(child))
        if child.get("kind") == "Deployment":
            state.deployments[name] = slim_deployment(child)
            self._pods_moved(state)
            self.trigger(*key, full=False)
        elif state.drifted():
            self.trigger(*key, full=True)

    def _follow_pods(self, key: Key, state: PipelineState, wanted: bool) -> None:
        """After a run: while a Deployment is unavailable, list the pipeline's pods later
        (then refresh); once all are available, forget them."""
        if not wanted:
            state.pods = {}
            state.pod_check_wait = None
            if state.pod_check is not None:
                state.pod_check.cancel()
                state.pod_check = None
            return
        if state.pod_check is not None:
            return
        wait = state.pod_check_wait or self.deps.settings.pod_check_seconds
        state.pod_check_wait = min(2 * wait, POD_CHECK_MAX_SECONDS)

        def due() -> None:
            state.pod_check = None
            self._spawn(self._list_pods(key))

        state.pod_check = asyncio.get_running_loop().call_later(wait, due)

    def _pods_moved(self, state: PipelineState) -> None:
        """A Deployment changed: if one is still unavailable, its pods are listed again
        within the first wait, not after a wait grown while nothing moved."""
        state.pod_check_wait = None
        handle = state.pod_check
        now = asyncio.get_running_loop().time()
        if handle is not None and handle.when() - now > self.deps.settings.pod_check_seconds:
            handle.cancel()
            state.pod_check = None

    async def _list_pods(self, key: Key) -> None:
        try:
            listed = await self._request(self.deps.kube.list_pods, *key)
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
        state = self._pipelines.get(key)
        if state is not None:
            state.pods = by_component
        self.trigger(*key, full=False)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def trigger(
        self, namespace: str, name: str, full: bool = True, delay: float = DEBOUNCE_SECONDS
    ) -> None:
        """Reconcile in ``delay``; many triggers while one waits become one (full wins)."""
        key = (namespace, name)
        if self._state(key).queue(full):
            self._spawn(self._triggered(key, delay))

    async def _triggered(self, key: Key, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
            async with self._state(key).lock:
                # Looked up again: a run that forgot the pipeline meanwhile left a fresh
                # state behind for this one, with the same lock.
                state = self._state(key)
                full = state.take()
                # What the watch or our last status write showed, when it is known to be
                # the newest: one GET fewer per run.
                body = state.body
                if body is None:
                    body = await self._request(self.deps.kube.get_pipeline, *key)
                    state.saw(body)
                if body is None:
                    await self._forget(key, state)
                    return
                if body["metadata"].get("deletionTimestamp"):
                    return
                _log.debug("Running a %s of %s/%s", "reconcile" if full else "refresh", *key)
                if full:
                    # Set now: the events of this run's own writes are not a change.
                    state.reconciled = inputs(body)
                    outcome = await self._run(key, state, body)
                    if outcome.invalid:
                        _log.warning("%s/%s has an invalid spec: %s", *key, outcome.invalid)
                    self._retry_later(key, state, outcome.retry)
                else:
                    await self._observe(key, state, body)
        except Exception:
            failed = self._pipelines.get(key)
            if failed is not None:
                failed.queued = None
                self._retry_later(key, failed, wanted=True)
            _log.exception("Reconcile of %s/%s failed", *key)

    async def _forget(self, key: Key, state: PipelineState) -> None:
        """The pipeline is gone: its metric, its canary's decision log and its state go."""
        _forget_ready(key)
        await asyncio.to_thread(self.deps.decision_logs.close, key)
        state.cancel_timers()
        if state.queued is None:
            del self._pipelines[key]
        else:  # a run waits on this lock (the pipeline may be back): it starts afresh
            self._pipelines[key] = PipelineState(lock=state.lock, queued=state.queued)

    def _retry_later(self, key: Key, state: PipelineState, wanted: bool) -> None:
        """The one retry path, whatever started the run: a full reconcile after a backoff
        that grows while runs keep failing (Kafka away, a refused child); reset by a run
        that needs none. An invalid spec is not retried: a new spec is a new run."""
        if not wanted:
            state.failures = 0
            if state.retry is not None:
                state.retry.cancel()
                state.retry = None
            return
        failures = state.retry_wanted()
        if failures is None:
            return

        def due() -> None:
            state.retry = None
            self.trigger(*key, full=True)

        state.retry = asyncio.get_running_loop().call_later(backoff(failures), due)

    async def _report_repairs(self, body: dict[str, Any], repairs: dict[str, str]) -> None:
        for child in repairs:
            metrics.REPAIRS.labels(child.split("/", 1)[0]).inc()
        message = "; ".join(f"{what} {child}" for child, what in sorted(repairs.items()))
        _log.info(
            "Repaired %s/%s: %s", body["metadata"]["namespace"], body["metadata"]["name"], message
        )
        await self._request(
            self.deps.kube.post_event, body, "Normal", "Repaired", message[0].upper() + message[1:]
        )

    def _check_later(self, key: Key, state: PipelineState) -> None:
        """One full reconcile after settings.rollout_check_seconds, unless one is already
        scheduled."""
        if state.rollout_check is not None:
            return

        def due() -> None:
            state.rollout_check = None
            self.trigger(*key, full=True)

        state.rollout_check = asyncio.get_running_loop().call_later(
            self.deps.settings.rollout_check_seconds, due
        )

    async def _patch_status(self, key: Key, state: PipelineState, status: dict[str, Any]) -> None:
        written = await self._request(self.deps.kube.patch_status, *key, status)
        # Until the watch shows this write, the response is the newest body there is.
        state.saw(written)

    async def _observe(self, key: Key, state: PipelineState, body: dict[str, Any]) -> None:
        outcome = observe(
            body,
            state.deployments,
            conditions.now_rfc3339(),
            state.pods,
            self.deps.settings.unready_seconds,
        )
        _log.debug(
            "Refreshed %s/%s: %s",
            *key,
            {c["type"]: c["status"] for c in outcome.status["conditions"]}
            if outcome.status
            else "unchanged",
        )
        if outcome.status is not None:
            await self._patch_status(key, state, outcome.status)
        _record_ready(key, outcome.status or body.get("status"))
        metrics.STATUS_REFRESHES.inc()
        if outcome.rollout_active:
            self._check_later(key, state)
        self._follow_pods(key, state, outcome.pods_wanted)

    async def _run(self, key: Key, state: PipelineState, body: dict[str, Any]) -> Outcome:
        started = time.monotonic()
        try:
            outcome = await asyncio.to_thread(
                reconcile, body, self.deps, state.deployments, state.pods, state.present()
            )
        except Exception:
            metrics.RECONCILES.labels("error").inc()
            raise
        finally:
            metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)
        repairs = state.applied_run(
            outcome.applied_markers,
            outcome.created,
            body["metadata"].get("generation"),
            # A promotion or rollback changes children on purpose: nothing to report.
            on_purpose=outcome.rollout_changed,
        )
        if outcome.topic_watch is not None:
            state.topic_watch = outcome.topic_watch
        if outcome.status is not None:
            await self._patch_status(key, state, outcome.status)
        _record_ready(key, outcome.status or body.get("status"))
        if repairs:
            await self._report_repairs(body, repairs)
        if outcome.recreated_topics:
            metrics.REPAIRS.labels("KafkaTopic").inc(len(outcome.recreated_topics))
        for event in outcome.events:
            await self._request(
                self.deps.kube.post_event, body, event.type, event.reason, event.message
            )
        for operation, count in outcome.topic_operations.items():
            if count:
                metrics.TOPIC_OPERATIONS.labels(operation).inc(count)
        for event in outcome.events:
            if event.reason in _ROLLOUT_RESULTS:
                metrics.ROLLOUTS.labels(_ROLLOUT_RESULTS[event.reason]).inc()
        if outcome.rollout_active:
            self._check_later(key, state)
        self._follow_pods(key, state, outcome.pods_wanted)
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
