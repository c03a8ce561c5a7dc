"""What only real pods show: a container that cannot start is reported with the kubelet's
own reason, not as a pipeline that is merely slow to become available."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.integration.test_operator import condition, wait_condition

pytestmark = pytest.mark.slow
SMALL = {"requests": {"cpu": "50m", "memory": "96Mi"}}


def test_an_image_that_cannot_be_had_is_pods_failing_with_the_kubelets_reason(
    kube, kafka, real_node, operator
):
    namespace = f"fail-{uuid.uuid4().hex[:6]}"
    real_node.pin_namespace(namespace)
    operator.start(namespace)
    manifest = {
        "apiVersion": "tailor.dev/v1alpha1",
        "kind": "PersonalizationPipeline",
        "metadata": {"name": "storefront", "namespace": namespace},
        "spec": {
            "kafka": {"bootstrapServers": kafka},
            "topics": {"events": {"partitions": 1, "replicationFactor": 1}},
            # Never built: the node may not fetch it from anywhere (no registry is reached).
            "streamWorker": {
                "image": "tailor.local/stream-worker:no-such-tag",
                "replicas": 1,
                "resources": SMALL,
            },
            "scorer": {"image": real_node.images.scorer, "replicas": 1, "resources": SMALL},
        },
    }
    kube.kubectl("apply", "-f", "-", input=json.dumps(manifest))
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
