"""What the runtime remembers of one pipeline between runs, and what it decides from that.

Pure: no I/O and no clock, so when a run is full or a refresh, what counts as drift and
what as a repair is unit-tested without a cluster. The runtime keeps one per pipeline and
drops it, timers cancelled, once the pipeline is gone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tailor_operator import naming

# A child's kind/name, e.g. "Deployment/shop-scorer".
ChildKey = str


def inputs(body: Mapping[str, Any]) -> tuple[Any, ...]:
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


def resource_version(body: Mapping[str, Any]) -> int | None:
    """The object's resourceVersion as a number, or None when it is not one. Since
    Kubernetes 1.35 (KEP-5504, "comparable resource versions") the versions of one resource
    are positive integers without leading zeros, ordered as the writes were; from another
    API server nothing is concluded, and the caller reads the object again instead."""
    version = body.get("metadata", {}).get("resourceVersion")
    if not isinstance(version, str) or not version.isdigit() or version.startswith("0"):
        return None
    return int(version)


def slim_pipeline(body: Mapping[str, Any]) -> dict[str, Any]:
    """A pipeline as a run reads it: without managedFields, the bulk of the object, which
    nothing reads."""
    meta = {k: v for k, v in body["metadata"].items() if k != "managedFields"}
    return {**body, "metadata": meta}


def slim_deployment(deployment: Mapping[str, Any]) -> dict[str, Any]:
    """What the status is computed from. A whole Deployment with managedFields is tens of
    KB as Python objects; hundreds of pipelines keep one per component."""
    meta = deployment["metadata"]
    annotations = meta.get("annotations") or {}
    return {
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "generation": meta.get("generation"),
            # What the rollout reads of a scorer Deployment (rollout.observe).
            "annotations": {
                k: v for k, v in annotations.items() if k == naming.MODEL_VERSION_ANNOTATION
            },
        },
        "spec": {"replicas": deployment.get("spec", {}).get("replicas", 1)},
        "status": deployment.get("status", {}),
    }


@dataclass
class PipelineState:
    """One pipeline, as the runtime knows it. ``queued`` and the timers say what is
    scheduled; the rest is what the last runs and the watches left."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # A run is queued, and whether it must be a full reconcile (else a status refresh).
    queued: bool | None = None
    # Listed at start or seen by the pipeline watch: the resync triggers it.
    known: bool = False
    # First seen in a listing (the operator starting), not as created: its children may
    # exist before their own watches have listed them.
    listed: bool = False
    # The inputs() the last full reconcile started from.
    reconciled: tuple[Any, ...] | None = None
    # Child -> change marker our last apply left, and the pipeline generation applied.
    applied: dict[ChildKey, str] | None = None
    applied_for: int | None = None
    # Child -> change marker as the watch last showed it; None once deleted.
    seen: dict[ChildKey, str | None] = field(default_factory=dict)
    # Deployment key -> slim_deployment() as the watch last showed it.
    deployments: dict[ChildKey, dict[str, Any]] = field(default_factory=dict)
    # Component -> slim pods, as last listed while a Deployment was unavailable.
    pods: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # Kafka client settings and the topics the last reconcile found, for the topic check.
    topic_watch: tuple[dict[str, str], frozenset[str]] | None = None
    # The newest pipeline body known: from the watch, or the response to our own status
    # write. A run starts from it instead of reading the pipeline again; None when unknown.
    body: dict[str, Any] | None = None
    # Runs in a row that asked for a retry (the backoff grows with it).
    failures: int = 0
    # The wait before the next pod listing: doubles while the Deployments stay as they are.
    pod_check_wait: float | None = None
    retry: asyncio.TimerHandle | None = None
    rollout_check: asyncio.TimerHandle | None = None
    pod_check: asyncio.TimerHandle | None = None

    def queue(self, full: bool) -> bool:
        """Ask for a run. True when none was queued: the caller schedules one. Otherwise
        the queued run absorbs this one, and is full if either asked for it."""
        if self.queued is not None:
            self.queued = self.queued or full
            return False
        self.queued = full
        return True

    def take(self) -> bool:
        """Start the queued run (under the lock): is it a full reconcile? Decided now, not
        at the trigger, so an event that raced with our own last apply, recorded since,
        is not mistaken for drift, and drift that arrived with a refresh is not missed."""
        full = self.queued is not False
        self.queued = None
        return full or self.applied is None or self.drifted()

    def drifted(self) -> bool:
        """Is a watched child not what our last apply left (deleted, or changed)?"""
        if self.applied is None:
            return False
        applied = self.applied
        return any(
            child in applied and marker != applied[child] for child, marker in self.seen.items()
        )

    def present(self) -> frozenset[ChildKey] | None:
        """Children that exist as far as this operator knows: what the watches last showed,
        and what our last apply left (its watch events may still be on their way). None,
        unknown, before the first apply to a pipeline that was there when the operator
        started: its first run may come before the children's watches listed them (a
        canary to delete after a restart)."""
        if self.applied is None and self.listed:
            return None
        shown = {child for child, marker in self.seen.items() if marker is not None}
        return frozenset(shown | set(self.applied or ()))

    def saw(self, body: Mapping[str, Any] | None) -> None:
        """A newer body, maybe: keep whichever of it and the one held is newer. The watch
        can deliver an event older than the response to our own status write; a run
        started from that would work from a status we already replaced (a rollout step
        taken again). A body whose version cannot be compared is not kept."""
        version = resource_version(body) if body is not None else None
        if body is None or version is None:
            self.body = None
            return
        held = resource_version(self.body) if self.body is not None else None
        if held is None or version >= held:
            self.body = slim_pipeline(body)

    def child_deleted(self, child: ChildKey) -> bool:
        """A child is gone: must the pipeline be reconciled? Not for one our last apply
        did not leave (an old version of the settings that we deleted ourselves)."""
        self.seen[child] = None
        self.deployments.pop(child, None)
        return self.applied is None or child in self.applied

    def child_changed(self, child: ChildKey, marker: str) -> None:
        self.seen[child] = marker

    def applied_run(
        self,
        markers: Mapping[ChildKey, str],
        created: list[ChildKey],
        generation: int | None,
        on_purpose: bool,
    ) -> dict[ChildKey, str]:
        """Record a full reconcile's apply; returns the children it put back (child ->
        "recreated" or "reverted a change to"). With the spec as at the last apply, a child
        created again was deleted by someone, and one whose marker moved had been changed
        by someone: our apply of an unchanged manifest changes nothing. ``on_purpose``: the
        run changed children itself (a promotion, a rollback), nothing to report."""
        repairs: dict[ChildKey, str] = {}
        if self.applied is not None and self.applied_for == generation and not on_purpose:
            for child, marker in markers.items():
                if child not in self.applied:
                    continue
                if child in created:
                    repairs[child] = "recreated"
                elif marker != self.applied[child]:
                    repairs[child] = "reverted a change to"
        self.applied = dict(markers)
        self.applied_for = generation
        # What we just applied is what the watch will show: not drift.
        self.seen = dict(markers)
        return repairs

    def retry_wanted(self) -> int | None:
        """A run asked for a retry: the failures before it (for the backoff), or None when
        one is already scheduled."""
        if self.retry is not None:
            return None
        self.failures += 1
        return self.failures - 1

    def cancel_timers(self) -> None:
        for handle in (self.retry, self.rollout_check, self.pod_check):
            if handle is not None:
                handle.cancel()
        self.retry = self.rollout_check = self.pod_check = None
