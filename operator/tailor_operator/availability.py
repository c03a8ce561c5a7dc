"""Is a Deployment available, starting or failing? Pure: from the stored Deployment and,
while it is not available, its pods (slim_pod), as the operator last listed them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tailor_operator import conditions
from tailor_operator.conditions import Reason

# A running pod that is still unready after this long is failing, not starting
# (OperatorSettings.unready_seconds).
UNREADY_SECONDS = 120.0


@dataclass(frozen=True)
class Availability:
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


def _failing_pods(pods: Sequence[Mapping[str, Any]], now: str, unready_seconds: float) -> list[str]:
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
            if unready >= unready_seconds:
                found.append(f"{pod['name']}: running but not ready for {unready:.0f}s")
    return found


def deployment_availability(
    deployment: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]] = (),
    now: str | None = None,
    unready_seconds: float = UNREADY_SECONDS,
) -> Availability:
    """Is a Deployment fully rolled out and ready? Pure, from the stored object and, when it
    is not, from its pods (slim_pod): a crash loop or a long unready pod is failing."""
    if deployment is None:
        return Availability("False", Reason.DEPLOYMENT_PROGRESSING, "not created yet", False, 0, 0)
    spec = deployment.get("spec", {})
    status = deployment.get("status", {})
    desired = int(spec.get("replicas", 1))
    ready = int(status.get("readyReplicas", 0))
    updated = int(status.get("updatedReplicas", 0))
    available = int(status.get("availableReplicas", 0))
    by_type = {c["type"]: c for c in status.get("conditions", [])}
    progressing = by_type.get("Progressing", {})
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        return Availability(
            "False",
            Reason.DEPLOYMENT_FAILED,
            progressing.get("message", "progress deadline exceeded"),
            True,
            desired,
            ready,
        )
    if desired == 0:
        return Availability("True", Reason.SUSPENDED, "scaled to zero", False, 0, 0)
    # The ReplicaSet cannot create pods (quota, admission, an invalid pod): the Deployment
    # controller copies its FailedCreate here at once, long before the progress deadline.
    replica_failure = by_type.get("ReplicaFailure", {})
    if replica_failure.get("status") == "True":
        return Availability(
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
        return Availability(
            "True",
            Reason.DEPLOYMENT_AVAILABLE,
            f"{ready}/{desired} replicas ready",
            False,
            desired,
            ready,
        )
    broken = _failing_pods(pods, now, unready_seconds) if now is not None else []
    if broken:
        return Availability(
            "False",
            Reason.PODS_FAILING,
            f"{ready}/{desired} replicas ready; " + "; ".join(broken[:3]),
            True,
            desired,
            ready,
        )
    return Availability(
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


def settled(stored: Iterable[Mapping[str, Any]]) -> bool:
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
