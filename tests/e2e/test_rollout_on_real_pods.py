"""A new model under steady decision traffic through the scorer's Service, on real pods: the
canary serves beside the stable scorers, is promoted, the stable scorers roll, and not one
request fails on the way (readiness waits for the model, endpoints drain before a stop)."""

from __future__ import annotations

import json
import time

import pytest

from tailor_localenv.processes import wait_for
from tailor_operator.render.workloads import SCORER_DRAIN_SECONDS
from tailor_pipeline.generator import GeneratorSettings, stream
from tailor_pipeline.train import train, write_model
from tests.e2e.real_pods import (
    SteadyTraffic,
    decide_url,
    get,
    pipeline,
    serve_model,
    start_in_real_pods,
    wait_pipeline_ready,
)
from tests.integration.test_operator import wait_condition

pytestmark = pytest.mark.slow


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

    traffic = SteadyTraffic(decide_url(kube, namespace), 40)
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
