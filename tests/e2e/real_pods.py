"""What the e2e tests on the real node share: a namespace of real pods with an operator, a
pipeline manifest, a model server inside the cluster."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

# Real pods share two cores: request little so that every test's pods fit at once.
SMALL = {"requests": {"cpu": "50m", "memory": "96Mi"}}


def get(kube, namespace: str, *what: str) -> Any:
    return json.loads(kube.kubectl("get", *what, "-n", namespace, "-o", "json"))


def serve_model(kube, namespace: str, image: str, model: Path) -> str:
    """An HTTP server pod inside the cluster serving ``model`` (a file, or a folder of
    them); the URL of ``model`` through the server's Service name."""
    files = sorted(model.iterdir()) if model.is_dir() else [model]
    name = "model.tailor" if model.is_file() else ""
    kube.kubectl(
        "create",
        "configmap",
        "model",
        "-n",
        namespace,
        *[f"--from-file={name or f.name}={f}" for f in files],
    )
    labels = {"app": "model-server"}
    manifests = [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "model-server", "namespace": namespace, "labels": labels},
            "spec": {
                "containers": [
                    {
                        "name": "http",
                        "image": image,
                        "imagePullPolicy": "Never",
                        "command": ["python", "-m", "http.server", "8000", "-d", "/models"],
                        "ports": [{"containerPort": 8000}],
                        "readinessProbe": {"tcpSocket": {"port": 8000}, "periodSeconds": 1},
                        "volumeMounts": [{"name": "models", "mountPath": "/models"}],
                        "resources": SMALL,
                    }
                ],
                "volumes": [{"name": "models", "configMap": {"name": "model"}}],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "model-server", "namespace": namespace},
            "spec": {"selector": labels, "ports": [{"port": 8000}]},
        },
    ]
    for manifest in manifests:
        kube.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    kube.kubectl(
        "wait", "-n", namespace, "--for=condition=Ready", "pod/model-server", "--timeout=120s"
    )
    return f"http://model-server.{namespace}.svc:8000/{name}"


def start_in_real_pods(
    kube, real_node, operator, prefix: str, resync_seconds: float = 5.0, **env: str
) -> str:
    """A fresh namespace whose pods run on the real node, watched by an operator process
    that deploys the locally built images; its name."""
    namespace = f"{prefix}-{uuid.uuid4().hex[:6]}"
    real_node.pin_namespace(namespace)
    operator.start(
        namespace,
        resync_seconds=resync_seconds,
        env={
            "TAILOR_STREAM_WORKER_IMAGE": real_node.images.stream_worker,
            "TAILOR_SCORER_IMAGE": real_node.images.scorer,
            **env,
        },
    )
    return namespace


def pipeline(namespace: str, kafka: str, partitions: int = 1, **spec: dict[str, Any]) -> str:
    """A small pipeline "storefront" as JSON; ``spec`` entries are merged into its blocks."""
    manifest: dict[str, Any] = {
        "apiVersion": "tailor.dev/v1alpha1",
        "kind": "PersonalizationPipeline",
        "metadata": {"name": "storefront", "namespace": namespace},
        "spec": {
            "kafka": {"bootstrapServers": kafka},
            "topics": {"events": {"partitions": partitions, "replicationFactor": 1}},
            "streamWorker": {"replicas": 1, "resources": SMALL},
            "scorer": {"replicas": 1, "resources": SMALL},
        },
    }
    for block, fields in spec.items():
        manifest["spec"].setdefault(block, {}).update(fields)
    return json.dumps(manifest)


def wait_pipeline_ready(kube, namespace: str) -> None:
    kube.kubectl(
        "wait", "-n", namespace, "--for=condition=Ready", "ppl/storefront", "--timeout=110s"
    )
