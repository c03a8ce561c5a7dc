"""A model whose checksum is wrong, rolled out under decision traffic on real pods: the new
scorer exits saying why, `kubectl describe ppl` shows that reason, and the old scorer keeps
answering every request."""

from __future__ import annotations

import json

import pytest

from tailor_localenv.processes import wait_for
from tailor_pipeline.generator import GeneratorSettings, stream
from tailor_pipeline.train import train, write_model
from tests.e2e.real_pods import (
    SteadyTraffic,
    decide_url,
    pipeline,
    serve_model,
    start_in_real_pods,
    wait_pipeline_ready,
)

pytestmark = pytest.mark.slow


def test_a_refused_model_is_named_in_the_status_while_the_old_scorer_serves(
    kube, kafka, real_node, operator, tmp_path
):
    namespace = start_in_real_pods(kube, real_node, operator, "badmodel")
    path = tmp_path / "model.tailor"
    digest = write_model(
        path, train(list(stream(GeneratorSettings(users=100, items=200, days=1)))), "knn", "v1"
    )
    uri = serve_model(kube, namespace, real_node.images.scorer, path)
    good = {"name": "knn", "version": "v1", "uri": uri, "sha256": digest}
    kube.kubectl("apply", "-f", "-", input=pipeline(namespace, kafka, scorer={"model": good}))
    wait_pipeline_ready(kube, namespace)

    traffic = SteadyTraffic(decide_url(kube, namespace), 20)
    traffic.start()
    try:
        bad = {**good, "version": "v2", "sha256": "0" * 64}
        patch = {"spec": {"scorer": {"model": bad}}}
        kube.kubectl(
            "patch", "ppl", "storefront", "-n", namespace, "--type=merge", "-p", json.dumps(patch)
        )

        def described() -> str:
            return kube.kubectl("describe", "ppl", "storefront", "-n", namespace)

        wait_for(
            lambda: "model refused: knn v2" in described(),
            150,
            "the refusal in `kubectl describe ppl`",
        )
    finally:
        traffic.stop.set()
        traffic.join()
    text = described()
    assert "sha256" in text, text
    assert traffic.failures == [], f"{len(traffic.failures)} failed, e.g. {traffic.failures[:5]}"
    assert set(traffic.served) == {"v1"}, traffic.served
    assert traffic.served["v1"] > 0
    kube.kubectl("delete", "namespace", namespace, "--wait=false")
