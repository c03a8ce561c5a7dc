"""The operator benchmark's floor: the same pipelines' children made without an operator.

For N pipelines, one client does what the operator's reconciles must do, as directly as the
APIs allow: the children the operator's own renderer produces (ConfigMap, Deployments,
Service, HPA, PDB) server-side applied from 8 threads, each thread taking whole pipelines;
every pipeline's topics created in one admin request for all of them, then described until
each exists, as the operator's TopicsReady needs. A pipeline counts as ready when its topics
exist and both its Deployments are available by the operator's own rule
(``deployment_availability``), seen through a watch. Every pipeline's time runs from the
start of the burst, when all of them were asked for at once, as the operator's run creates
all its pipelines at once and times each from its create. No custom resource is created, so
no operator acts on these objects; they and the topics are deleted once measured.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client, watch
from measure import percentile

from tailor_operator import naming
from tailor_operator.adapters.kafka_admin import KafkaAdmin, TopicOperationFailed
from tailor_operator.availability import deployment_availability
from tailor_operator.render import Child, Images, desired_children, desired_topics
from tailor_operator.resource import Pipeline
from tailor_operator.settings import OperatorSettings
from tailor_operator.topic_plan import TopicPlan

THREADS = 8
DEADLINE_S = 600.0


def _apply(api: client.ApiClient, namespace: str, child: Child) -> None:
    """Server-side apply, as the operator's KubeAdapter does (its field manager, forced)."""
    assert child.manifest is not None
    prefix = "/api/v1" if child.api_version == "v1" else f"/apis/{child.api_version}"
    path = f"{prefix}/namespaces/{namespace}/{child.kind.lower()}s/{child.name}"
    manifest = {**child.manifest, "metadata": {**child.manifest["metadata"]}}
    manifest["metadata"]["namespace"] = namespace
    _, url, headers, _, _ = api.param_serialize(
        method="PATCH",
        resource_path=path,
        query_params=[("fieldManager", naming.FIELD_MANAGER), ("force", "true")],
        header_params={
            "Content-Type": "application/apply-patch+yaml",
            "Accept": "application/json",
        },
        auth_settings=["BearerToken"],
    )
    response = api.call_api("PATCH", url, header_params=headers, body=manifest)
    response.read()
    if response.status >= 300:
        raise SystemExit(f"floor: applying {child.key} failed: {response.status}")


def api_requests(api: client.ApiClient) -> float:
    """Requests the API server has answered so far, from its own ``apiserver_request_total``
    (every client's: the controllers and KWOK count too, alike for the floor and the
    operator; watches are connections, not requests, and are left out)."""
    _, url, headers, _, _ = api.param_serialize(
        method="GET", resource_path="/metrics", auth_settings=["BearerToken"]
    )
    response = api.call_api("GET", url, header_params=headers)
    text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("apiserver_request_total{") and 'verb="WATCH"' not in line
    )


class _Deployments:
    """Which Deployments of a namespace are available, with when each first was."""

    def __init__(self, api: client.ApiClient, namespace: str, expected: int) -> None:
        self._apps = client.AppsV1Api(api)
        self._namespace = namespace
        self._expected = expected
        self.available: dict[str, float] = {}
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _see(self, deployment: dict[str, Any]) -> None:
        name = deployment["metadata"]["name"]
        if name not in self.available and deployment_availability(deployment).status == "True":
            self.available[name] = time.monotonic()
            if len(self.available) == self._expected:
                self.done.set()

    def _watch(self) -> None:
        # Raw dicts (the operator reads the same JSON); list, then watch from there, again.
        deadline = time.monotonic() + DEADLINE_S
        list_ = self._apps.list_namespaced_deployment
        while not self.done.is_set() and time.monotonic() < deadline:
            listing = list_(self._namespace, _preload_content=False)
            body = _json(listing)
            for item in body["items"]:
                self._see(item)
            stream = watch.Watch()
            try:
                for event in stream.stream(
                    list_,
                    self._namespace,
                    resource_version=body["metadata"]["resourceVersion"],
                    timeout_seconds=60,
                    _preload_content=False,
                ):
                    self._see(event["raw_object"])
                    if self.done.is_set():
                        stream.stop()
            except client.exceptions.ApiException:
                continue


def _json(response: Any) -> dict[str, Any]:
    return dict(json.loads(response.data))


def _create_topics(admin: KafkaAdmin, pipelines: list[Pipeline]) -> float:
    """Every pipeline's topics in one request, then described until all exist; the time
    they all did."""
    desired = [t for p in pipelines for t in desired_topics(p)]
    failures = admin.execute(TopicPlan(create=desired))
    if failures:
        raise SystemExit(f"floor: topic creation failed: {failures[:3]}")
    names = [t.name for t in desired]
    deadline = time.monotonic() + DEADLINE_S
    while True:
        try:
            if len(admin.describe(names)) == len(names):
                return time.monotonic()
        except TopicOperationFailed:
            pass  # a topic's metadata still settling: ask again
        if time.monotonic() > deadline:
            raise SystemExit("floor: topics not all visible within the deadline")
        time.sleep(0.05)


def _delete_namespace(api: client.ApiClient, namespace: str) -> None:
    """Delete the floor's objects and wait until they are gone: the local control plane's
    Service range (a /24) cannot hold the floor's Services and the operator's runs at once,
    and nothing of the floor may be left to compete with the operator."""
    core = client.CoreV1Api(api)
    core.delete_namespace(namespace)
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        try:
            core.read_namespace(namespace)
        except client.exceptions.ApiException as exc:
            if exc.status == 404:
                return
            raise
        time.sleep(0.5)
    raise SystemExit(f"floor: namespace {namespace} not deleted within {DEADLINE_S:.0f} s")


def run_floor(
    api: client.ApiClient,
    spec_of: Callable[[str], dict[str, Any]],
    count: int,
    admin: KafkaAdmin,
) -> dict[str, Any]:
    """``spec_of(name)``: the pipeline manifest the operator's run uses for that name."""
    namespace = f"floor-{count}-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})
    pipelines = [
        Pipeline.from_body(
            {
                **spec_of(name),
                "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4())},
            }
        )
        for name in (f"p{i:03d}" for i in range(count))
    ]
    # The images the operator renders by default (its settings with no TAILOR_* set).
    defaults = OperatorSettings()
    images = Images(stream_worker=defaults.stream_worker, scorer=defaults.scorer)
    rendered = {p.name: desired_children(p, images) for p in pipelines}
    workloads = {p.name: (naming.stream_worker(p.name), naming.scorer(p.name)) for p in pipelines}
    deployments = _Deployments(api, namespace, 2 * count)
    deployments.start()
    time.sleep(0.5)  # the watch is open before the first apply

    def apply_pipeline(pipeline: Pipeline) -> None:
        for child in rendered[pipeline.name]:
            if child.manifest is not None:
                _apply(api, namespace, child)

    requests_before = api_requests(api)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=THREADS + 1) as pool:
        topics = pool.submit(_create_topics, admin, pipelines)
        list(pool.map(apply_pipeline, pipelines))
        topics_ready = topics.result()
    if not deployments.done.wait(DEADLINE_S):
        raise SystemExit(
            f"floor: only {len(deployments.available)}/{2 * count} Deployments available"
        )
    requests = api_requests(api) - requests_before
    latencies = [
        max(topics_ready, *(deployments.available[d] for d in workloads[p.name])) - started
        for p in pipelines
    ]
    _delete_namespace(api, namespace)
    failures = admin.delete([t.name for p in pipelines for t in desired_topics(p)])
    if failures:
        raise SystemExit(f"floor: deleting its topics failed: {failures[:3]}")
    return {
        "floor_p50_s": round(statistics.median(latencies), 3),
        "floor_p95_s": round(percentile(latencies, 0.95), 3),
        "floor_topics_s": round(topics_ready - started, 3),
        "floor_total_s": round(time.monotonic() - started, 2),
        "floor_api_requests_per_pipeline": round(requests / count, 1),
    }
