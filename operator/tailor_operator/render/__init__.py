"""Pure desired state: a pipeline in, the manifests of its children out (no I/O here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tailor_operator.render.config import (
    config_hash,
    desired_config_map,
    pipeline_settings,
    program_settings,
)
from tailor_operator.render.served import Served
from tailor_operator.render.topics import DesiredTopic, desired_topics, events_partitions
from tailor_operator.render.workloads import (
    Images,
    desired_hpa,
    desired_pdb,
    desired_scorer,
    desired_scorer_canary,
    desired_scorer_service,
    desired_stream_worker,
    replicas_floor,
)
from tailor_operator.resource import Pipeline


@dataclass(frozen=True)
class Child:
    """One object the pipeline owns; ``manifest`` None means it must not exist."""

    api_version: str
    kind: str
    name: str
    manifest: dict[str, Any] | None
    # A Deployment the HPA scales: the least replicas it keeps while the operator hands
    # ``spec.replicas`` over (see KubeAdapter.apply).
    replicas_floor: int | None = None
    # Replace the object when the API server refuses a change of an immutable field (a
    # canary's selector, from before canaries had their own component): it is short-lived.
    recreate_if_immutable: bool = False

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.name}"


def _child(
    api_version: str,
    kind: str,
    name: str,
    manifest: dict[str, Any] | None,
    replicas_floor: int | None = None,
    recreate_if_immutable: bool = False,
) -> Child:
    return Child(api_version, kind, name, manifest, replicas_floor, recreate_if_immutable)


def desired_children(
    pipeline: Pipeline,
    images: Images,
    served: Served | None = None,
    canary_possible: bool = False,
    existing_events: int | None = None,
) -> list[Child]:
    """Every child kind, in apply order (the ConfigMaps before the pods that mount them).
    ``served``: the models of the stable and canary scorers (default: the spec's, no canary).
    ``canary_possible``: a canary may exist (strategy Canary, or one in status), so an absent
    one is deleted; otherwise it is not even looked for (one request less per reconcile).
    ``existing_events``: the partitions the events topic has, if known (the workers' HPA is
    capped by them)."""
    from tailor_operator import naming

    served = served or Served(pipeline.spec.scorer.model)
    partitions = events_partitions(pipeline, existing_events)
    config_maps = [desired_config_map(pipeline, "stream-worker")]
    config_maps.append(desired_config_map(pipeline, "scorer", served.stable))
    if served.canary is not None:
        config_maps.append(desired_config_map(pipeline, "scorer-canary", served.canary))
    children = [
        *(_child("v1", "ConfigMap", cm["metadata"]["name"], cm) for cm in config_maps),
        _child(
            "apps/v1",
            "Deployment",
            naming.stream_worker(pipeline.name),
            desired_stream_worker(pipeline, images),
            replicas_floor(pipeline, "stream-worker", partitions),
        ),
        _child(
            "apps/v1",
            "Deployment",
            naming.scorer(pipeline.name),
            desired_scorer(pipeline, images, served),
            replicas_floor(pipeline, "scorer", partitions),
        ),
        _child("v1", "Service", naming.scorer(pipeline.name), desired_scorer_service(pipeline)),
    ]
    if served.canary is not None or canary_possible:
        children.append(
            _child(
                "apps/v1",
                "Deployment",
                naming.scorer_canary(pipeline.name),
                desired_scorer_canary(pipeline, images, served),
                recreate_if_immutable=True,
            )
        )
    for component in ("stream-worker", "scorer"):
        name = naming.workload(pipeline.name, component)
        hpa = desired_hpa(pipeline, component, partitions)
        children.append(_child("autoscaling/v2", "HorizontalPodAutoscaler", name, hpa))
        children.append(
            _child("policy/v1", "PodDisruptionBudget", name, desired_pdb(pipeline, component))
        )
    return children


__all__ = [
    "Child",
    "DesiredTopic",
    "Images",
    "Served",
    "config_hash",
    "desired_children",
    "desired_topics",
    "pipeline_settings",
    "program_settings",
]
