"""Renders the stream-worker and scorer Deployments, the scorer Service, HPAs and PDBs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from tailor_operator import api, naming
from tailor_operator.render.config import Reader, config_hash, config_map_name
from tailor_operator.render.served import Served
from tailor_operator.resource import Pipeline
from tailor_pipeline.settings import (
    CONFIG_ENV,
    CONFIG_KEY,
    CONFIG_MOUNT,
)

WORKER_HTTP_PORT = 8081
NON_ROOT_UID = 65532
DEFAULT_RESOURCES = {
    "stream-worker": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
    "scorer": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
}


@dataclass(frozen=True)
class Images:
    """Images used when a pipeline names none: the ones built with this operator."""

    stream_worker: str
    scorer: str


def _workload(pipeline: Pipeline, component: naming.Workload) -> api.WorkloadSpec:
    spec = pipeline.spec
    return spec.stream_worker if component == "stream-worker" else spec.scorer


def _autoscaled(pipeline: Pipeline, component: naming.Workload) -> bool:
    # Suspended pipelines drop their HPAs: an HPA cannot hold a Deployment at zero.
    return _workload(pipeline, component).autoscaling is not None and not pipeline.spec.suspend


def _resources(workload: api.WorkloadSpec, component: naming.Workload) -> dict[str, Any]:
    if workload.resources is None:
        return DEFAULT_RESOURCES[component]
    return workload.resources.model_dump(exclude_defaults=True)


def _env(pipeline: Pipeline, config_key: str) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": CONFIG_ENV, "value": f"{CONFIG_MOUNT}/{config_key}"},
        # Static group membership and logs name the pod, so a restart keeps its partitions.
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    secret = pipeline.spec.kafka.auth_secret_ref
    if secret is not None and pipeline.spec.kafka.security_protocol.startswith("SASL"):
        for var, key in (
            ("TAILOR_KAFKA_USERNAME", "username"),
            ("TAILOR_KAFKA_PASSWORD", "password"),
        ):
            env.append(
                {"name": var, "valueFrom": {"secretKeyRef": {"name": secret.name, "key": key}}}
            )
    return env


def _volumes(
    pipeline: Pipeline, config_map: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": config_map}},
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    kafka = pipeline.spec.kafka
    if kafka.auth_secret_ref is not None and kafka.security_protocol.endswith("SSL"):
        volumes.append(
            {
                "name": "kafka-ca",
                "secret": {
                    "secretName": kafka.auth_secret_ref.name,
                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                    "optional": True,
                },
            }
        )
        mounts.append(
            {"name": "kafka-ca", "mountPath": f"{CONFIG_MOUNT}/kafka-ca", "readOnly": True}
        )
    return volumes, mounts


def _probe(path: str, port: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 2,
    }


@dataclass(frozen=True)
class _Identity:
    """Who a Deployment's pods are: its name, labels and pod selector, the settings file
    they mount (with the model it names, for a scorer), and how many (None: the HPA's)."""

    name: str
    labels: dict[str, str]
    selector: dict[str, str]
    reader: Reader
    replicas: int | None
    model: api.ModelSpec | None = None


def _own_identity(pipeline: Pipeline, component: naming.Workload) -> _Identity:
    """A workload's own Deployment: named, labelled and scaled as the spec says."""
    workload = _workload(pipeline, component)
    replicas: int | None = workload.replicas
    if pipeline.spec.suspend:
        replicas = 0
    elif _autoscaled(pipeline, component):
        # With an HPA the operator leaves replicas alone, so it and the HPA (and a GitOps
        # tool diffing the spec) never fight over the field.
        replicas = None
    return _Identity(
        naming.workload(pipeline.name, component),
        naming.labels(pipeline.name, component),
        naming.selector(pipeline.name, component),
        component,
        replicas,
    )


def _deployment(
    pipeline: Pipeline,
    component: naming.Workload,
    identity: _Identity,
    image: str,
    args: list[str],
    port: int,
    strategy: dict[str, Any],
    container_extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    workload = _workload(pipeline, component)
    reader, model = identity.reader, identity.model
    volumes, mounts = _volumes(pipeline, config_map_name(pipeline, reader, model))
    spec: dict[str, Any] = {
        "selector": {"matchLabels": identity.selector},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": strategy},
        "revisionHistoryLimit": 5,
        "template": {
            "metadata": {
                "labels": {**workload.pod_labels, **identity.labels},
                "annotations": {
                    naming.CONFIG_HASH_ANNOTATION: config_hash(pipeline, reader, model)
                },
            },
            "spec": {
                "automountServiceAccountToken": False,
                "terminationGracePeriodSeconds": 30,
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": NON_ROOT_UID,
                    "runAsGroup": NON_ROOT_UID,
                    "fsGroup": NON_ROOT_UID,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [
                    {
                        "name": component,
                        "image": workload.image or image,
                        "args": args,
                        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
                        "env": _env(pipeline, CONFIG_KEY),
                        "resources": _resources(workload, component),
                        "volumeMounts": mounts,
                        "livenessProbe": _probe("/healthz", "http", 10, 3),
                        "readinessProbe": _probe("/readyz", "http", 5, 2),
                        # A program that gives up writes why to the termination message;
                        # one that crashes leaves its last log lines there instead.
                        "terminationMessagePolicy": "FallbackToLogsOnError",
                        **(container_extra or {}),
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True,
                            "privileged": False,
                            "capabilities": {"drop": ["ALL"]},
                        },
                    }
                ],
                "volumes": volumes,
            },
        },
    }
    if identity.replicas is not None:
        spec["replicas"] = identity.replicas
    metadata: dict[str, Any] = {"name": identity.name, "labels": identity.labels}
    if model is not None:
        # On the Deployment, not its pods (no roll): with a finished rollout of the current
        # generation it says which model every pod serves (rollout.Observed).
        metadata["annotations"] = {naming.MODEL_VERSION_ANNOTATION: model.version}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": spec}


def desired_stream_worker(pipeline: Pipeline, images: Images) -> dict[str, Any]:
    return _deployment(
        pipeline,
        "stream-worker",
        _own_identity(pipeline, "stream-worker"),
        images.stream_worker,
        ["tailor-stream-worker"],
        WORKER_HTTP_PORT,
        # No surge: a worker beyond the partition count would only idle, and each restart
        # hands its partitions over once instead of twice.
        {"maxSurge": 0, "maxUnavailable": 1},
    )


# A scorer serves HTTP only once its model is downloaded, verified and loaded: the
# liveness probe starts after this much time at most, so a slow download is not a crash loop.
SCORER_STARTUP_SECONDS = 600
# How long a stopping scorer keeps serving: Service endpoints (kube-proxy rules on every
# node) drop it in that time, so no request is sent to a process that has stopped.
SCORER_DRAIN_SECONDS = 5


def _scorer(pipeline: Pipeline, images: Images, identity: _Identity) -> dict[str, Any]:
    startup = _probe("/healthz", "http", 2, SCORER_STARTUP_SECONDS // 2)
    return _deployment(
        pipeline,
        "scorer",
        identity,
        images.scorer,
        ["tailor-scorer"],
        pipeline.spec.scorer.port,
        # Decisions must keep flowing during a model rollout: never fewer ready scorers.
        {"maxSurge": 1, "maxUnavailable": 0},
        {
            "startupProbe": startup,
            # The kubelet's own sleep action: no shell or sleep binary needed in the image.
            "lifecycle": {"preStop": {"sleep": {"seconds": SCORER_DRAIN_SECONDS}}},
        },
    )


def desired_scorer(pipeline: Pipeline, images: Images, served: Served) -> dict[str, Any]:
    identity = dataclasses.replace(_own_identity(pipeline, "scorer"), model=served.stable)
    return _scorer(pipeline, images, identity)


def desired_scorer_canary(
    pipeline: Pipeline, images: Images, served: Served
) -> dict[str, Any] | None:
    """The canary scorers: the stable scorers' pods with the canary's model and their own
    component label. The Service selects both tracks by app name, so canary pods take a
    share of requests in proportion to their replicas; the stable Deployment, its PDB and
    its HPA select by component and never count them. None: no canary must exist."""
    if served.canary is None:
        return None
    replicas = 0 if pipeline.spec.suspend else pipeline.spec.scorer.rollout.canary.replicas
    identity = _Identity(
        naming.scorer_canary(pipeline.name),
        naming.canary_labels(pipeline.name),
        naming.canary_selector(pipeline.name),
        "scorer-canary",
        replicas,
        served.canary,
    )
    return _scorer(pipeline, images, identity)


def desired_scorer_service(pipeline: Pipeline) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": naming.scorer(pipeline.name),
            "labels": naming.labels(pipeline.name, "scorer"),
        },
        "spec": {
            "type": "ClusterIP",
            "selector": naming.scorer_service_selector(pipeline.name),
            "ports": [
                {
                    "name": "http",
                    "port": pipeline.spec.scorer.port,
                    "targetPort": "http",
                    "protocol": "TCP",
                }
            ],
        },
    }


def _hpa_metrics(autoscaling: api.AutoscalingSpec) -> list[dict[str, Any]]:
    metrics: list[dict[str, Any]] = [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {
                    "type": "Utilization",
                    "averageUtilization": autoscaling.target_cpu_utilization,
                },
            },
        }
    ]
    if isinstance(autoscaling, api.ScorerAutoscalingSpec) and autoscaling.queue_wait_ms:
        wait_ms = autoscaling.queue_wait_ms
        # A pod metric from the custom-metrics API, in seconds: "2m" is 2 ms.
        metrics.append(
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": "tailor_scorer_queue_wait_seconds"},
                    "target": {"type": "AverageValue", "averageValue": f"{wait_ms:g}m"},
                },
            }
        )
    return metrics


def _hpa_behavior(autoscaling: api.AutoscalingSpec) -> dict[str, Any]:
    # Scale up fast on a traffic spike, scale down slowly: a flapping worker count would
    # rebalance partitions over and over.
    return {
        "scaleUp": {
            "stabilizationWindowSeconds": 0,
            "selectPolicy": "Max",
            "policies": [
                {"type": "Percent", "value": 100, "periodSeconds": 15},
                {"type": "Pods", "value": 4, "periodSeconds": 15},
            ],
        },
        "scaleDown": {
            # The HPA API caps the window at one hour.
            "stabilizationWindowSeconds": min(
                int(api.parse_duration(autoscaling.scale_down_stabilization)), 3600
            ),
            "selectPolicy": "Min",
            "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}],
        },
    }


def _replica_bounds(
    pipeline: Pipeline, component: naming.Workload, events_partitions: int
) -> tuple[int, int] | None:
    """The HPA's (min, max); None when autoscaling is off or the pipeline is suspended.
    ``events_partitions``: what the events topic has or is about to have; a worker beyond
    it would idle."""
    autoscaling = _workload(pipeline, component).autoscaling
    if autoscaling is None or not _autoscaled(pipeline, component):
        return None
    max_replicas = autoscaling.max_replicas
    if component == "stream-worker":
        max_replicas = min(max_replicas, events_partitions)
    return min(autoscaling.min_replicas, max_replicas), max_replicas


def replicas_floor(
    pipeline: Pipeline, component: naming.Workload, events_partitions: int
) -> int | None:
    """With an HPA: the least replicas the Deployment keeps when the HPA takes it over."""
    bounds = _replica_bounds(pipeline, component, events_partitions)
    return None if bounds is None else bounds[0]


def desired_hpa(
    pipeline: Pipeline, component: naming.Workload, events_partitions: int
) -> dict[str, Any] | None:
    """None when autoscaling is off or the pipeline is suspended: the HPA must not exist."""
    bounds = _replica_bounds(pipeline, component, events_partitions)
    if bounds is None:
        return None
    target = naming.workload(pipeline.name, component)
    min_replicas, max_replicas = bounds
    autoscaling = _workload(pipeline, component).autoscaling
    assert autoscaling is not None
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": target, "labels": naming.labels(pipeline.name, component)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "minReplicas": min_replicas,
            "maxReplicas": max_replicas,
            "metrics": _hpa_metrics(autoscaling),
            "behavior": _hpa_behavior(autoscaling),
        },
    }


def desired_pdb(pipeline: Pipeline, component: naming.Workload) -> dict[str, Any]:
    name = naming.workload(pipeline.name, component)
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "labels": naming.labels(pipeline.name, component)},
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": naming.selector(pipeline.name, component)},
            # Evict crash-looping pods even when the budget is spent, or a drain would hang.
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }
