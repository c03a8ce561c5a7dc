"""A new model under steady decision traffic through the scorer's Service, on real pods: the
canary serves beside the stable scorers, is promoted, the stable scorers roll, and not one
request fails on the way (readiness waits for the model, endpoints drain before a stop)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter

import pytest

from tailor_operator.render.workloads import SCORER_DRAIN_SECONDS
from tailor_pipeline.generator import GeneratorSettings, stream
from tailor_pipeline.train import train, write_model
from tests.e2e.real_pods import (
    get,
    pipeline,
    serve_model,
    start_in_real_pods,
    wait_pipeline_ready,
)
from tests.helpers import wait_for
from tests.integration.test_operator import wait_condition

pytestmark = pytest.mark.slow


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


def test_a_canary_is_promoted_and_rolled_without_one_failed_request(
    kube, kafka, real_node, operator, tmp_path
):
    namespace = start_in_real_pods(
        kube, real_node, operator, "roll", TAILOR_ROLLOUT_CHECK_SECONDS="2"
    )
    history = list(stream(GeneratorSettings(users=200, items=300, days=2)))
    models = tmp_path / "models"
    models.mkdir()
    digests = {
        v: write_model(models / f"{v}.tailor", train(history), "knn", v) for v in ("v1", "v2")
    }
    base = serve_model(kube, namespace, real_node.images.scorer, models).rsplit("/", 1)[0]

    def model(version: str) -> dict[str, str]:
        uri = f"{base}/{version}.tailor"
        return {"name": "knn", "version": version, "uri": uri, "sha256": digests[version]}

    canary = {"replicas": 1, "analysisDuration": "10s", "minSamples": 30}
    scorer = {
        "replicas": 2,
        "model": model("v1"),
        "rollout": {"strategy": "Canary", "canary": canary},
    }
    # The operator runs on the host here: the bridge address, which pods reach too.
    kube.kubectl("apply", "-f", "-", input=pipeline(namespace, kafka, scorer=scorer))
    wait_pipeline_ready(kube, namespace)

    service = get(kube, namespace, "service", "storefront-scorer")["spec"]
    traffic = SteadyTraffic(
        f"http://{service['clusterIP']}:{service['ports'][0]['port']}/v1/decide", 40
    )
    traffic.start()
    try:
        time.sleep(3)
        patch = {"spec": {"scorer": {"model": model("v2")}}}
        kube.kubectl(
            "patch", "ppl", "storefront", "-n", namespace, "--type=merge", "-p", json.dumps(patch)
        )
        wait_condition(kube, namespace, "storefront", "ModelRolledOut", "CanaryAnalysis", 120)
        wait_for(lambda: traffic.served["v2"] > 0, 60, "the canary to answer through the Service")
        wait_condition(kube, namespace, "storefront", "ModelRolledOut", "RolledOut", 240)

        def rolled() -> bool:
            deployment = get(kube, namespace, "deployment", "storefront-scorer")
            status = deployment["status"]
            return (
                status.get("observedGeneration") == deployment["metadata"]["generation"]
                and status.get("updatedReplicas") == status.get("readyReplicas") == 2
                and status.get("replicas") == 2
            )

        wait_for(rolled, 240, "the stable scorers rolled to v2")
        # Old pods keep answering through their preStop drain, then never again.
        time.sleep(SCORER_DRAIN_SECONDS + 3)
        settled = traffic.served["v1"]
        time.sleep(3)
    finally:
        traffic.stop.set()
        traffic.join()
    assert traffic.failures == [], f"{len(traffic.failures)} failed, e.g. {traffic.failures[:5]}"
    assert traffic.served["v1"] > 0
    assert traffic.served["v2"] > 40
    assert traffic.served["v1"] == settled, "v1 still answered after the roll and the drain"
    kube.kubectl("delete", "namespace", namespace, "--wait=false")
