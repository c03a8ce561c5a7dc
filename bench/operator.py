"""Operator benchmark: apply N pipelines at once, time each one to Ready, measure the operator.

    python bench/operator.py [--quick] [--sizes 1,50,200]

Runs the real local control plane (KWOK nodes) and Kafka broker, starts the operator as its
own process, and for each size creates N pipelines in a fresh namespace in one burst. A watch
on the pipelines records when each one's Ready condition turns True. Prints one JSON object:
{"runs": [{"pipelines", "apply_to_ready_p50_s", "apply_to_ready_p95_s", "operator_rss_mb",
"operator_peak_rss_mb", "total_s", "floor_p95_s", "ratio_to_floor", ...}, ...],
"repairs": {...}, "host": {...}}. The floor (``operator_floor.py``), measured first for each
size with no operator running: the same children and topics made directly by one client,
waited on for the same readiness; ``ratio_to_floor`` is the operator's p95 over the floor's.
``api_requests_per_pipeline`` and ``floor_api_requests_per_pipeline``: what the API server
answered from the burst until the last pipeline was ready, per pipeline (every client's:
the controllers' and KWOK's alike in both), so the difference is the operator's own.
"repairs": with
the largest run's pipelines in place, the scorer Services of 20 of them are deleted one by
one and each is timed until the operator has recreated it. Each pipeline runs one stream
worker and one scorer replica, with 1-partition topics, so the cluster, not the benchmark,
stays small on a 2-core machine. A warm-up pipeline runs first and is not reported.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from measure import cpu_seconds, histogram, percentile, rss_mb, seconds_to_recreate
from operator_floor import api_requests, run_floor

from tailor_localenv.kafka import KafkaBroker
from tailor_localenv.kube import ControlPlane
from tailor_localenv.processes import free_port, http_get
from tailor_localenv.tailor import install_crds, start_operator
from tailor_operator.adapters.kafka_admin import KafkaAdmin

TINY = {"requests": {"cpu": "10m", "memory": "16Mi"}}


def pipeline(name: str, bootstrap: str) -> dict[str, Any]:
    return {
        "apiVersion": "tailor.dev/v1alpha1",
        "kind": "PersonalizationPipeline",
        "metadata": {"name": name},
        "spec": {
            "kafka": {"bootstrapServers": bootstrap},
            "topics": {"events": {"partitions": 1, "replicationFactor": 1}},
            # Tiny requests: KWOK pods use nothing, and the scheduler must not run out of
            # (fake) CPU before the operator is measured.
            "streamWorker": {"replicas": 1, "resources": TINY},
            "scorer": {"replicas": 1, "resources": TINY},
        },
    }


def reconcile_stats(metrics_port: int) -> tuple[float, float]:
    """(reconciles so far, seconds spent in them) from the operator's /metrics."""
    _, body = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
    count, total, _ = histogram(body.decode(), "tailor_reconcile_duration_seconds")
    return count, total


def run_size(
    api: client.ApiClient, bootstrap: str, count: int, operator_pid: int, metrics_port: int
) -> tuple[str, dict[str, Any]]:
    namespace = f"bench-{count}-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    core.create_namespace({"metadata": {"name": namespace}})
    applied: dict[str, float] = {}
    ready: dict[str, float] = {}
    done = threading.Event()

    def see(obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        conditions = obj.get("status", {}).get("conditions", [])
        if name not in ready and any(
            c["type"] == "Ready" and c["status"] == "True" for c in conditions
        ):
            ready[name] = time.monotonic()

    def watch_ready() -> None:
        # The API server may end a watch at any time: list, then watch from there, again.
        args = ("tailor.dev", "v1alpha1", namespace, "personalizationpipelines")
        deadline = time.monotonic() + 600
        while len(ready) < count and time.monotonic() < deadline:
            listing = custom.list_namespaced_custom_object(*args)
            for obj in listing["items"]:
                see(obj)
            stream = watch.Watch()
            try:
                for event in stream.stream(
                    custom.list_namespaced_custom_object,
                    *args,
                    resource_version=listing["metadata"]["resourceVersion"],
                    timeout_seconds=60,
                ):
                    see(event["object"])
                    if len(ready) == count:
                        stream.stop()
            except client.exceptions.ApiException:
                continue
        done.set()

    watcher = threading.Thread(target=watch_ready, daemon=True)
    watcher.start()
    time.sleep(0.5)  # the watch is open before the first create

    def create(name: str) -> None:
        applied[name] = time.monotonic()
        custom.create_namespaced_custom_object(
            "tailor.dev",
            "v1alpha1",
            namespace,
            "personalizationpipelines",
            pipeline(name, bootstrap),
        )

    reconciles_before, seconds_before = reconcile_stats(metrics_port)
    cpu_before = cpu_seconds(operator_pid)
    requests_before = api_requests(api)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(create, [f"p{i:03d}" for i in range(count)]))
    done.wait(660)
    if len(ready) < count:
        raise SystemExit(f"only {len(ready)}/{count} pipelines became Ready within 600 s")
    total = time.monotonic() - started
    requests = api_requests(api) - requests_before
    latencies = [ready[n] - applied[n] for n in applied]
    slowest = sorted(applied, key=lambda n: ready[n] - applied[n])[-3:]
    print(f"slowest in {namespace}: {slowest}", file=sys.stderr)
    current, peak = rss_mb(operator_pid)
    reconciles, seconds = reconcile_stats(metrics_port)
    reconciles -= reconciles_before
    return namespace, {
        "pipelines": count,
        "apply_to_ready_p50_s": round(statistics.median(latencies), 3),
        "apply_to_ready_p95_s": round(percentile(latencies, 0.95), 3),
        "apply_to_ready_max_s": round(max(latencies), 3),
        "operator_rss_mb": round(current, 1),
        "operator_peak_rss_mb": round(peak, 1),
        "total_s": round(total, 2),
        "operator_cpu_s": round(cpu_seconds(operator_pid) - cpu_before, 2),
        "reconciles": int(reconciles),
        "reconcile_mean_ms": round(1000 * (seconds - seconds_before) / max(reconciles, 1), 1),
        # The pipelines' own creates included; beside the floor's, what the operator adds.
        "api_requests_per_pipeline": round(requests / count, 1),
    }


def measure_repairs(api: client.ApiClient, namespace: str, count: int) -> dict[str, Any]:
    """Delete the scorer Service of ``count`` pipelines, one after the other, and time each
    until a new one exists (the operator's watch-driven repair)."""
    core = client.CoreV1Api(api)
    latencies = []
    for i in range(count):
        name = f"p{i:03d}-scorer"
        latencies.append(
            seconds_to_recreate(
                lambda name=name: _service_uid(core, namespace, name),
                lambda name=name: core.delete_namespaced_service(name, namespace),
            )
        )
    return {
        "children_deleted": count,
        "repair_p50_s": round(statistics.median(latencies), 3),
        "repair_p95_s": round(percentile(latencies, 0.95), 3),
        "repair_max_s": round(max(latencies), 3),
    }


def _service_uid(core: client.CoreV1Api, namespace: str, name: str) -> str | None:
    try:
        return str(core.read_namespaced_service(name, namespace).metadata.uid)
    except client.exceptions.ApiException as exc:
        if exc.status != 404:
            raise
        return None


def measure_floors(
    control_plane: ControlPlane, bootstrap: str, sizes: list[int]
) -> dict[int, dict[str, Any]]:
    """The floor of each size (operator_floor.py), before the operator runs, so that
    nothing acts on the floor's objects."""
    admin = KafkaAdmin({"bootstrap.servers": bootstrap})
    floors = {}
    with control_plane.api_client() as api:

        def spec_of(name: str) -> dict[str, Any]:
            return pipeline(name, bootstrap)

        # One first, not reported, as for the operator: first topic creations are slow.
        run_floor(api, spec_of, 1, admin)
        for size in sizes:
            floor = run_floor(api, spec_of, size, admin)
            print(f"floor of {size}: {floor}", file=sys.stderr)
            floors[size] = floor
    return floors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sizes 1 and 50 only")
    parser.add_argument("--sizes", help="comma-separated pipeline counts (default 1,50,200)")
    args = parser.parse_args()
    sizes = [int(s) for s in (args.sizes or ("1,50" if args.quick else "1,50,200")).split(",")]

    work = Path(tempfile.mkdtemp(prefix="tailor-bench-"))
    # Two pods per pipeline, pipelines of every run kept: KWOK nodes take 110 pods each, and
    # pods beyond that stay Pending.
    pods = 2 * (1 + sum(sizes))
    nodes = max(4, math.ceil(pods / 100) + 1)
    with ControlPlane(nodes=nodes) as control_plane, KafkaBroker() as broker:
        control_plane_kubectl = control_plane.kubectl_command()
        install_crds(control_plane_kubectl)
        floors = measure_floors(control_plane, broker.bootstrap_servers, sizes)
        metrics_port = free_port()
        operator = start_operator(
            control_plane.kubeconfig,
            work,
            "--all-namespaces",
            f"--metrics-port={metrics_port}",
            *(["--verbose"] if os.environ.get("TAILOR_BENCH_VERBOSE") else []),
        )
        try:
            assert operator.pid is not None
            with control_plane.api_client() as api:
                # One pipeline first, not reported: the broker's and the operator's first
                # topic creation pays one-time costs (controller warm-up, client connections).
                run_size(api, broker.bootstrap_servers, 1, operator.pid, metrics_port)
                measured = [
                    run_size(api, broker.bootstrap_servers, n, operator.pid, metrics_port)
                    for n in sizes
                ]
                runs = [{**result, **floors[result["pipelines"]]} for _, result in measured]
                for run in runs:
                    run["ratio_to_floor"] = round(
                        run["apply_to_ready_p95_s"] / run["floor_p95_s"], 2
                    )
                # Repairs with every pipeline of the largest run in place.
                namespace, largest = max(measured, key=lambda m: m[1]["pipelines"])
                repairs = measure_repairs(api, namespace, min(20, largest["pipelines"]))
        finally:
            operator.stop()
    print(
        json.dumps(
            {
                "benchmark": "operator",
                "runs": runs,
                "repairs": repairs,
                "host": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
            },
            separators=(",", ":"),
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
