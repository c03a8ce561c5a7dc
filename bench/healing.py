"""Self-healing benchmark: children deleted and restored, and a failed canary rolled back.

    python bench/healing.py [--quick]

Runs the real local control plane (KWOK nodes) and Kafka broker and the operator as its own
process. Repairs: with N pipelines Ready (10 with --quick, 40 without), children are deleted
one after the other, cycling through the scorer Deployment, its Service and HPA, the
ConfigMap and the stream worker's PodDisruptionBudget, each timed until the operator has
created a new one (new uid); at least 20 (60 without --quick). Rollback: one more pipeline
serves model v1 with strategy Canary; v2 goes into the spec, and once its canary runs, what
scorers failing 20% of v2's requests would log is written to the decisions topic. rollback_s
runs from that moment (a failed canary becomes detectable) until the canary Deployment and
its pods are gone and the stable scorers serve alone. Topics: a pipeline's profiles topic is
deleted in Kafka (3 times, 6 without --quick) and timed until it exists again. Prints one
JSON object: repair_p50_s, repair_p95_s, repair_max_s, repairs, repair_p50_s_by_kind,
rollback_s, rollback_detect_s, topic_recreate_s (median) and topic_recreate_max_s, and the
operator's TAILOR_ROLLOUT_CHECK_SECONDS (how often a running canary is judged).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient
from kubernetes import client
from measure import percentile, seconds_to_recreate

from tailor_localenv.kafka import KafkaBroker
from tailor_localenv.kube import ControlPlane
from tailor_localenv.pipelines import serve_traffic
from tailor_localenv.tailor import install_crds, start_operator

TINY = {"requests": {"cpu": "10m", "memory": "16Mi"}}
NAMESPACE = "heal"
MODEL = {"name": "knn", "uri": "file:///m", "sha256": "a" * 64}


def pipeline(name: str, bootstrap: str, **scorer: Any) -> dict[str, Any]:
    return {
        "apiVersion": "tailor.dev/v1alpha1",
        "kind": "PersonalizationPipeline",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "kafka": {"bootstrapServers": bootstrap},
            "topics": {"events": {"partitions": 1, "replicationFactor": 1}},
            "streamWorker": {"replicas": 1, "resources": TINY},
            "scorer": {
                "resources": TINY,
                "autoscaling": {"minReplicas": 1, "maxReplicas": 2},
                **scorer,
            },
        },
    }


def uid_of(read: Callable[[], Any]) -> Callable[[], str | None]:
    def uid() -> str | None:
        try:
            return str(read().metadata.uid)
        except client.exceptions.ApiException as exc:
            if exc.status != 404:
                raise
            return None

    return uid


def children(api: client.ApiClient, name: str) -> dict[str, tuple[Callable[[], Any], ...]]:
    """Per kind: (read, delete) of one child of pipeline ``name``."""
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    hpa, policy = client.AutoscalingV2Api(api), client.PolicyV1Api(api)
    scorer, worker = f"{name}-scorer", f"{name}-stream-worker"
    ns = NAMESPACE

    def settings_map() -> str:
        """The settings ConfigMap the scorers mount (one per program and version)."""
        volumes = apps.read_namespaced_deployment(scorer, ns).spec.template.spec.volumes
        return str(next(v.config_map.name for v in volumes if v.name == "config"))

    return {
        "Deployment": (
            lambda: apps.read_namespaced_deployment(scorer, ns),
            lambda: apps.delete_namespaced_deployment(scorer, ns),
        ),
        "Service": (
            lambda: core.read_namespaced_service(scorer, ns),
            lambda: core.delete_namespaced_service(scorer, ns),
        ),
        "HorizontalPodAutoscaler": (
            lambda: hpa.read_namespaced_horizontal_pod_autoscaler(scorer, ns),
            lambda: hpa.delete_namespaced_horizontal_pod_autoscaler(scorer, ns),
        ),
        "ConfigMap": (
            lambda: core.read_namespaced_config_map(settings_map(), ns),
            lambda: core.delete_namespaced_config_map(settings_map(), ns),
        ),
        "PodDisruptionBudget": (
            lambda: policy.read_namespaced_pod_disruption_budget(worker, ns),
            lambda: policy.delete_namespaced_pod_disruption_budget(worker, ns),
        ),
    }


def measure_repairs(api: client.ApiClient, pipelines: int, repairs: int) -> dict[str, Any]:
    by_kind: dict[str, list[float]] = defaultdict(list)
    for i in range(repairs):
        kinds = children(api, f"p{i % pipelines:03d}")
        kind = list(kinds)[i % len(kinds)]
        read, delete = kinds[kind]
        by_kind[kind].append(seconds_to_recreate(uid_of(read), delete))
    every = [s for times in by_kind.values() for s in times]
    return {
        "repairs": len(every),
        "repair_p50_s": round(statistics.median(every), 3),
        "repair_p95_s": round(percentile(every, 0.95), 3),
        "repair_max_s": round(max(every), 3),
        "repair_p50_s_by_kind": {k: round(statistics.median(v), 3) for k, v in by_kind.items()},
    }


def measure_topic_recreation(bootstrap: str, pipelines: int, times: int) -> dict[str, Any]:
    """A pipeline's profiles topic deleted in Kafka, timed until it exists again (the
    operator's per-cluster topic check, not its 60 s resync, has to notice)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    took = []
    for i in range(times):
        topic = f"{NAMESPACE}.p{i % pipelines:03d}.profiles"
        admin.delete_topics([topic])[topic].result(timeout=30)
        started = time.monotonic()
        while topic in admin.list_topics(timeout=10).topics:
            time.sleep(0.05)  # the deletion itself takes a moment to show in metadata
        while topic not in admin.list_topics(timeout=10).topics:
            if time.monotonic() - started > 120:
                raise RuntimeError(f"{topic} was not recreated within 120 s")
            time.sleep(0.1)
        took.append(time.monotonic() - started)
    return {
        "topic_recreate_s": round(statistics.median(took), 2),
        "topic_recreate_max_s": round(max(took), 2),
        "topic_recreations": len(took),
    }


def measure_rollback(api: client.ApiClient, kubectl: list[str], bootstrap: str) -> dict[str, Any]:
    custom, apps = client.CustomObjectsApi(api), client.AppsV1Api(api)
    core = client.CoreV1Api(api)
    rollout = {
        "strategy": "Canary",
        # A long window: only a failure can end this canary.
        "canary": {"analysisDuration": "1h", "minSamples": 100},
    }

    def apply(version: str) -> None:
        manifest = pipeline("canary", bootstrap, model={**MODEL, "version": version})
        manifest["spec"]["scorer"]["rollout"] = rollout
        subprocess.run(
            [*kubectl, "apply", "-f", "-"],
            input=json.dumps(manifest),
            text=True,
            check=True,
            capture_output=True,
        )

    def model() -> dict[str, Any]:
        obj = custom.get_namespaced_custom_object(
            "tailor.dev", "v1alpha1", NAMESPACE, "personalizationpipelines", "canary"
        )
        return obj.get("status", {}).get("model") or {}

    def wait(check: Callable[[], bool], what: str, timeout: float = 120) -> float:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out waiting for {what}")
            time.sleep(0.02)
        return time.monotonic()

    canary_uid = uid_of(lambda: apps.read_namespaced_deployment("canary-scorer-canary", NAMESPACE))
    apply("v1")
    wait(lambda: model().get("active") == "v1", "v1 active")
    apply("v2")
    wait(lambda: canary_uid() is not None, "the canary Deployment")
    serve_traffic(bootstrap, NAMESPACE, "canary", ("v1", 300, {}), ("v2", 300, {"error_rate": 0.2}))
    bad = time.monotonic()
    detected = wait(lambda: model().get("failed") == "v2", "the rollback")
    wait(lambda: canary_uid() is None, "the canary Deployment to go")
    alone = wait(
        lambda: (
            not core.list_namespaced_pod(NAMESPACE, label_selector="tailor.dev/track=canary").items
        ),
        "the canary pods to go",
    )
    print(f"rolled back: {model().get('failedReason')}", file=sys.stderr)
    return {
        "rollback_s": round(alone - bad, 3),
        "rollback_detect_s": round(detected - bad, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 pipelines, 20 repairs")
    args = parser.parse_args()
    pipelines, repairs = (10, 20) if args.quick else (40, 60)
    check_seconds = os.environ.get("TAILOR_ROLLOUT_CHECK_SECONDS", "5")

    work = Path(tempfile.mkdtemp(prefix="tailor-bench-"))
    with ControlPlane(nodes=4) as control_plane, KafkaBroker() as broker:
        kubectl = control_plane.kubectl_command()
        install_crds(kubectl)
        subprocess.run(
            [*kubectl, "create", "namespace", NAMESPACE], check=True, capture_output=True
        )
        operator = start_operator(
            control_plane.kubeconfig,
            work,
            f"--namespace={NAMESPACE}",
            "--metrics-port=0",
            env={"TAILOR_ROLLOUT_CHECK_SECONDS": check_seconds},
        )
        try:
            manifests = [pipeline(f"p{i:03d}", broker.bootstrap_servers) for i in range(pipelines)]
            subprocess.run(
                [*kubectl, "apply", "-f", "-"],
                input=json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests}),
                text=True,
                check=True,
                capture_output=True,
            )
            subprocess.run(
                [
                    *kubectl,
                    "wait",
                    "--for=condition=Ready",
                    "ppl",
                    "--all",
                    "-n",
                    NAMESPACE,
                    "--timeout=300s",
                ],
                check=True,
                capture_output=True,
            )
            with control_plane.api_client() as api:
                result = measure_repairs(api, pipelines, repairs)
                result.update(measure_rollback(api, kubectl, broker.bootstrap_servers))
            recreations = 3 if args.quick else 6
            result.update(
                measure_topic_recreation(broker.bootstrap_servers, pipelines, recreations)
            )
        finally:
            operator.stop()
    print(
        json.dumps(
            {
                "benchmark": "healing",
                "pipelines": pipelines,
                **result,
                "rollout_check_seconds": float(check_seconds),
                "host": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
            },
            separators=(",", ":"),
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
