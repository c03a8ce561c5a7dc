"""What only real pods show: a container that cannot start is reported with the kubelet's
own reason, not as a pipeline that is merely slow to become available."""

from __future__ import annotations

import pytest

from tests.e2e.real_pods import pipeline, start_in_real_pods
from tests.integration.test_operator import condition, wait_condition

pytestmark = pytest.mark.slow


def test_an_image_that_cannot_be_had_is_pods_failing_with_the_kubelets_reason(
    kube, kafka, real_node, operator
):
    namespace = start_in_real_pods(kube, real_node, operator, "fail")
    # Never built: the node may not fetch it from anywhere (no registry is reached).
    missing = {"image": "tailor.local/stream-worker:no-such-tag"}
    kube.kubectl("apply", "-f", "-", input=pipeline(namespace, kafka, streamWorker=missing))
    failing = wait_condition(
        kube, namespace, "storefront", "StreamWorkerAvailable", "PodsFailing", timeout=120
    )
    assert any(r in failing["message"] for r in ("ErrImagePull", "ImagePullBackOff")), failing
    assert condition(kube, namespace, "storefront", "Degraded")["status"] == "True"
    # The scorer's pods, from an image that exists, run for real meanwhile.
    scorer = wait_condition(
        kube, namespace, "storefront", "ScorerAvailable", "DeploymentAvailable", 120
    )
    assert scorer["status"] == "True"
    kube.kubectl("delete", "namespace", namespace, "--wait=false")
