"""The pipeline's Kubernetes children: apply or delete each, and say what changed."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException

from tailor_operator import naming
from tailor_operator.adapters.kube import api_message
from tailor_operator.availability import settled
from tailor_operator.dependencies import Dependencies
from tailor_operator.kube_events import Event
from tailor_operator.render import Child, desired_children
from tailor_operator.resource import Pipeline

_log = logging.getLogger("tailor.reconcile")


class ChildRefused(Exception):
    """The API server refused to apply one child."""

    def __init__(self, child: str, exc: ApiException) -> None:
        super().__init__(f"{child}: {api_message(exc)}")
        self.child = child
        self.status = exc.status
        self.message = api_message(exc)


def apply_children(
    pipeline: Pipeline,
    children: list[Child],
    deps: Dependencies,
    events: list[Event],
    created: list[str],
    present: Collection[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Apply or delete every child; returns the stored objects by child key and adds the
    ones it created to ``created``. ``present``: the children known to exist (None:
    unknown); one that must not exist is looked up only if it is among them."""
    stored: dict[str, dict[str, Any]] = {}
    deleted: list[str] = []
    for child in children:
        if child.manifest is None:
            # Each lookup is a request, every reconcile, for what is almost always absent
            # (an HPA of a pipeline without autoscaling).
            if present is not None and child.key not in present:
                continue
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


def recap_worker_hpa(
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


def delete_stale_settings(
    pipeline: Pipeline, stored: Mapping[str, Mapping[str, Any]], deps: Dependencies
) -> None:
    """Once every Deployment has rolled out, no restart can need an old version of the
    settings: delete the ConfigMaps this apply did not keep."""
    if not settled(stored.values()):
        return
    keep = {key.split("/", 1)[1] for key in stored if key.startswith("ConfigMap/")}
    try:
        deps.kube.delete_stale_config_maps(pipeline, keep)
    except ApiException as exc:  # tidying up: the next settled reconcile tries again
        _log.warning("Could not delete old settings of %s: %s", pipeline.name, exc.reason)
