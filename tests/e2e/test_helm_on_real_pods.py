"""What a user does, on real pods: `helm install` the chart with the locally built operator
image, apply a pipeline, produce clicks, ask the scorer's Service for decisions, then
`kubectl delete ppl` and `helm uninstall`, with nothing left running."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pytest

from tailor_localenv.pipelines import produce_all
from tailor_localenv.processes import wait_for
from tailor_pipeline import events
from tailor_pipeline.generator import GeneratorSettings, stream
from tailor_pipeline.train import TrainingSettings, train, write_model
from tests.e2e.real_pods import get, pipeline, serve_model
from tests.integration.test_chart import CHART, helm

pytestmark = pytest.mark.slow


def decide(url: str, user: str) -> dict[str, Any]:
    body = json.dumps({"user_id": user, "k": 5}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def test_helm_install_to_decisions_on_real_pods(kube, kafka, real_node, toolchain, tmp_path):
    images = real_node.images
    system, shop = "tailor-system-e2e", "shop-e2e"
    for namespace in (system, shop):
        real_node.pin_namespace(namespace)
    repository, tag = images.operator.rsplit(":", 1)
    helm(
        kube,
        toolchain,
        "install",
        "tailor",
        str(CHART),
        "-n",
        system,
        f"--set=image.repository={repository}",
        f"--set=image.tag={tag}",
        "--set=image.pullPolicy=Never",
        f"--set=pipelineImages.streamWorker={images.stream_worker}",
        f"--set=pipelineImages.scorer={images.scorer}",
        "--set=replicaCount=1",
        "--set=operator.resyncSeconds=10",
        "--wait",
        "--timeout=180s",
    )
    operator = get(kube, system, "pods", "-l", "app.kubernetes.io/name=tailor-operator")
    (pod,) = operator["items"]
    assert pod["spec"]["nodeName"] == "tailor-real-node"
    assert pod["spec"]["containers"][0]["image"] == images.operator

    history = list(stream(GeneratorSettings(users=200, items=300, days=2)))
    model = tmp_path / "model.tailor"
    digest = write_model(model, train(history, settings=TrainingSettings()), "item-knn", "v1")
    uri = serve_model(kube, shop, images.scorer, model)

    ref = {"name": "item-knn", "version": "v1", "uri": uri, "sha256": digest}
    # As in the examples: the broker by its Service name, resolved by cluster DNS.
    manifest = pipeline(shop, "kafka.kafka.svc:9092", 2, scorer={"model": ref})
    kube.kubectl("apply", "-f", "-", input=manifest)
    kube.kubectl("wait", "-n", shop, "--for=condition=Ready", "ppl/storefront", "--timeout=110s")

    pods = get(kube, shop, "pods", "-l", "app.kubernetes.io/managed-by=tailor")["items"]
    running = {
        p["spec"]["containers"][0]["image"]
        for p in pods
        if p["spec"]["nodeName"] == "tailor-real-node" and p["status"]["phase"] == "Running"
    }
    assert running == {images.stream_worker, images.scorer}

    # A click produced to the events topic shows in the next decision, asked of the Service.
    service = get(kube, shop, "service", "storefront-scorer")["spec"]
    url = f"http://{service['clusterIP']}:{service['ports'][0]['port']}/v1/decide"
    item = history[-1].item_id
    click = events.ClickEvent(
        user_id="e2e-user", item_id=item, type="add_to_cart", ts=int(time.time() * 1000)
    )
    topic = get(kube, shop, "ppl", "storefront")["status"]["topics"]["events"]["name"]
    produce_all(kafka, topic, [("e2e-user", events.encode(click))])

    def reflects_the_click() -> dict[str, Any] | None:
        answer = decide(url, "e2e-user")
        return answer if any(item in i["reason"] for i in answer["items"]) else None

    answer = wait_for(reflects_the_click, 60, f"a decision for e2e-user that reflects {item}")
    assert answer["model_version"] == "v1"

    kube.kubectl("delete", "ppl", "storefront", "-n", shop, "--timeout=120s")
    wait_for(
        lambda: not get(kube, shop, "pods", "-l", "app.kubernetes.io/managed-by=tailor")["items"],
        120,
        "the pipeline's pods to be gone",
    )
    helm(kube, toolchain, "uninstall", "tailor", "-n", system, "--wait", "--timeout=120s")
    wait_for(lambda: not get(kube, system, "pods")["items"], 120, "the operator's pods to be gone")
    for namespace in (system, shop):
        kube.kubectl("delete", "namespace", namespace, "--wait=false")
