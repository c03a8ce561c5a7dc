"""Runs reconciles: one at a time per pipeline, coalesced, off the event loop."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from tailor_operator import conditions, metrics, naming
from tailor_operator.reconcile import Dependencies, Outcome, observe, reconcile

Key = tuple[str, str]

_log = logging.getLogger("tailor.runtime")
# Events of one rollout arrive in bursts; a short wait lets them become one status write.
DEBOUNCE_SECONDS = 0.2
RETRY_SECONDS = 10.0


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
    _applied: dict[Key, dict[str, int]] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _known: set[Key] = field(default_factory=set)
    _resync: asyncio.Task[None] | None = None

    def _lock(self, key: Key) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    async def reconcile_body(self, body: dict[str, Any]) -> Outcome:
        """Reconcile now (the pipeline's own handlers): waits for a running one to finish."""
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        self._known.add(key)
        async with self._lock(key):
            return await self._run(body)

    def start_resync(self, interval: float) -> None:
        self._resync = asyncio.create_task(self._resync_forever(interval))

    def stop(self) -> None:
        if self._resync is not None:
            self._resync.cancel()

    async def _resync_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            for namespace, name in sorted(self._known):
                self.trigger(namespace, name)

    def deployment_seen(self, event_type: str | None, deployment: dict[str, Any]) -> None:
        """A child Deployment changed: refresh the status, or reconcile fully when its spec
        is not what the operator applied (deleted, or edited by someone else). Which one is
        decided when the run starts, after any reconcile in flight recorded what it applied."""
        meta = deployment["metadata"]
        pipeline = (meta.get("labels") or {}).get(naming.PIPELINE_LABEL)
        if not pipeline:
            return
        key = (meta["namespace"], pipeline)
        seen = self._deployments.setdefault(key, {})
        child = f"Deployment/{meta['name']}"
        _log.debug(
            "Saw %s %s/%s generation=%s status=%s",
            event_type,
            meta["namespace"],
            meta["name"],
            meta.get("generation"),
            deployment.get("status"),
        )
        if event_type == "DELETED":
            seen.pop(child, None)
            self.trigger(*key, full=True)
        else:
            seen[child] = _slim(deployment)
            self.trigger(*key, full=False)

    def _drifted(self, key: Key) -> bool:
        """Does a watched Deployment differ from what the last apply left (or is one gone)?"""
        applied = self._applied.get(key)
        if applied is None:
            return True
        seen = self._deployments.get(key, {})
        return any(
            child.startswith("Deployment/")
            and (child not in seen or seen[child]["metadata"].get("generation") != generation)
            for child, generation in applied.items()
        )

    def trigger(self, namespace: str, name: str, full: bool = True) -> None:
        """Reconcile soon; many triggers while one waits become one (full wins)."""
        key = (namespace, name)
        if key in self._queued:
            self._queued[key] = self._queued[key] or full
            return
        self._queued[key] = full
        task = asyncio.create_task(self._triggered(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _triggered(self, key: Key) -> None:
        try:
            await asyncio.sleep(DEBOUNCE_SECONDS)
            async with self._lock(key):
                full = self._queued.pop(key, True) or self._drifted(key)
                body = await asyncio.to_thread(self.deps.kube.get_pipeline, *key)
                if body is None:
                    self._known.discard(key)
                    self._deployments.pop(key, None)
                    self._applied.pop(key, None)
                    return
                if body["metadata"].get("deletionTimestamp"):
                    return
                _log.debug("Running a %s of %s/%s", "reconcile" if full else "refresh", *key)
                if full:
                    outcome = await self._run(body)
                    if outcome.retry:
                        # The pipeline's own handler retries with backoff; a run started by
                        # a child or the resync comes back on its own, no sooner than that.
                        asyncio.get_running_loop().call_later(RETRY_SECONDS, self.trigger, *key)
                else:
                    await self._observe(key, body)
        except Exception:
            self._queued.pop(key, None)
            _log.exception("Reconcile of %s/%s failed", *key)

    async def _observe(self, key: Key, body: dict[str, Any]) -> None:
        outcome = observe(body, self._deployments.get(key, {}), conditions.now_rfc3339())
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
        metrics.STATUS_REFRESHES.inc()

    async def _run(self, body: dict[str, Any]) -> Outcome:
        started = time.monotonic()
        try:
            outcome = await asyncio.to_thread(reconcile, body, self.deps)
        except Exception:
            metrics.RECONCILES.labels("error").inc()
            raise
        finally:
            metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)
        meta = body["metadata"]
        self._applied[(meta["namespace"], meta["name"])] = outcome.applied_generations
        if outcome.status is not None:
            await asyncio.to_thread(
                self.deps.kube.patch_status, meta["namespace"], meta["name"], outcome.status
            )
        for event in outcome.events:
            await asyncio.to_thread(
                self.deps.kube.post_event, body, event.type, event.reason, event.message
            )
        for operation, count in outcome.topic_operations.items():
            if count:
                metrics.TOPIC_OPERATIONS.labels(operation).inc(count)
        result = (
            "invalid"
            if outcome.invalid
            else "kafka_unavailable"
            if outcome.kafka_unavailable
            else "ok"
        )
        metrics.RECONCILES.labels(result).inc()
        return outcome
