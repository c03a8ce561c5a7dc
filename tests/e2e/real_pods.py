"""What the e2e tests on the real node share: a namespace of real pods with an operator, a
pipeline manifest, a model server inside the cluster, steady decision traffic."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from tailor_localenv.processes import wait_for

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


def decide_url(kube, namespace: str) -> str:
    """The scorer Service's decide endpoint at its cluster IP (kube-proxy routes it here)."""
    service = get(kube, namespace, "service", "storefront-scorer")["spec"]
    return f"http://{service['clusterIP']}:{service['ports'][0]['port']}/v1/decide"


class SteadyTraffic(threading.Thread):
    """Decisions at a fixed rate through the Service; counts answers by model and failures."""

    def __init__(self, url: str, rate: float) -> None:
        super().__init__(daemon=True)
        self.url, self.period = url, 1.0 / rate
        self.stop = threading.Event()
        self.served: Counter[str] = Counter()
        self.failures: list[str] = []

    def start(self) -> None:
        """Once the Service answers: a pod turns Ready (and the pipeline with it) a moment
        before kube-proxy routes its Service to it, which no status shows."""
        wait_for(self._answers, 30, f"{self.url} to answer")
        super().start()

    def _answers(self) -> bool:
        body = json.dumps({"user_id": "u0", "k": 1}).encode()
        request = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def run(self) -> None:
        next_at, n = time.monotonic(), 0
        while not self.stop.is_set():
            n += 1
            body = json.dumps({"user_id": f"u{n % 50}", "k": 5}).encode()
            request = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    self.served[json.loads(response.read())["model_version"]] += 1
            except (urllib.error.URLError, OSError) as exc:
                self.failures.append(f"{time.strftime('%X')} {exc}")
            next_at += self.period
            time.sleep(max(0.0, next_at - time.monotonic()))
