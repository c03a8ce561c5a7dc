"""Runs reconciles: one at a time per pipeline, coalesced, off the event loop."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tailor_operator import metrics
from tailor_operator.reconcile import Dependencies, Outcome, reconcile

Key = tuple[str, str]
EventPoster = Callable[[dict[str, Any], str, str, str], None]

_log = logging.getLogger("tailor.runtime")


@dataclass
class Runtime:
    """Shared by every handler through Kopf's memo."""

    deps: Dependencies
    post_event: EventPoster
    _locks: dict[Key, asyncio.Lock] = field(default_factory=dict)
    _queued: set[Key] = field(default_factory=set)
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

    def trigger(self, namespace: str, name: str) -> None:
        """Reconcile soon (a child changed); many triggers while one waits become one."""
        key = (namespace, name)
        if key in self._queued:
            return
        self._queued.add(key)
        task = asyncio.create_task(self._triggered(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _triggered(self, key: Key) -> None:
        try:
            async with self._lock(key):
                self._queued.discard(key)
                body = await asyncio.to_thread(self.deps.kube.get_pipeline, *key)
                if body is None:
                    self._known.discard(key)
                    return
                if body["metadata"].get("deletionTimestamp"):
                    return
                await self._run(body)
        except Exception:
            self._queued.discard(key)
            _log.exception("Reconcile of %s/%s failed", *key)

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
        if outcome.status is not None:
            await asyncio.to_thread(
                self.deps.kube.patch_status, meta["namespace"], meta["name"], outcome.status
            )
        for event in outcome.events:
            self.post_event(body, event.type, event.reason, event.message)
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
