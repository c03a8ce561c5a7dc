"""Tailor's images as real pods on the real node: each program starts from its own image, and
a pod reaches the API server (in-cluster config, through the `kubernetes` Service) and Kafka."""

from __future__ import annotations

import json
import textwrap
import uuid

import pytest

from tailor_localenv.processes import wait_for

pytestmark = pytest.mark.slow


def run_pod(kube, real_node, image: str, command: list[str], timeout: float = 120) -> str:
    """Run one pod to completion on the real node; its log. Fails with the pod's status."""
    namespace = f"real-{uuid.uuid4().hex[:8]}"
    real_node.pin_namespace(namespace)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "probe", "namespace": namespace},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "main",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": command,
                }
            ],
        },
    }
    kube.kubectl("apply", "-f", "-", input=json.dumps(pod))

    def finished() -> str | None:
        status = json.loads(kube.kubectl("get", "pod", "probe", "-n", namespace, "-o", "json"))
        phase = status["status"].get("phase")
        return phase if phase in ("Succeeded", "Failed") else None

    try:
        phase = wait_for(finished, timeout, f"pod running {command} in {image} to finish", 0.5)
        node = kube.kubectl(
            "get", "pod", "probe", "-n", namespace, "-o", "jsonpath={.spec.nodeName}"
        )
        log = kube.kubectl("logs", "probe", "-n", namespace)
        assert node == "tailor-real-node"
        assert phase == "Succeeded", f"{command} in {image} failed:\n{log}"
        return log
    finally:
        kube.kubectl("delete", "namespace", namespace, "--wait=false")


# Each image is a clean venv with one extra: importing every module its program can load
# catches a dependency missing from that extra in seconds (the operator image once exited
# with ModuleNotFoundError: msgspec).
IMPORT_ALL = (
    "import importlib, pkgutil, sys\n"
    "for name in sys.argv[1:]:\n"
    "    package = importlib.import_module(name)\n"
    "    for module in pkgutil.walk_packages(getattr(package, '__path__', []), name + '.'):\n"
    "        importlib.import_module(module.name)\n"
    "    print('imported', name)\n"
)


@pytest.mark.parametrize(
    ("image", "program", "modules"),
    [
        ("operator", "tailor-operator", ["tailor_operator"]),
        ("stream_worker", "tailor-stream-worker", ["tailor_pipeline.worker_main"]),
        ("scorer", "tailor-scorer", ["tailor_pipeline.scorer_main", "tailor_pipeline.train"]),
    ],
)
def test_each_image_runs_its_program(kube, real_node, image, program, modules):
    command = f'{program} --help && python -c "$0" {" ".join(modules)}'
    log = run_pod(
        kube, real_node, getattr(real_node.images, image), ["sh", "-c", command, IMPORT_ALL]
    )
    assert f"usage: {program}" in log
    for module in modules:
        assert f"imported {module}" in log


def test_a_pod_reaches_the_api_server_dns_and_kafka(kube, kafka, real_node):
    # The operator image's own client libraries, with the pod's ServiceAccount, through the
    # `kubernetes` ClusterIP (kube-proxy) to the API server on the bridge; names through the
    # cluster DNS; Kafka by the name the examples use.
    script = textwrap.dedent(
        """
        import os, socket
        from kubernetes import client, config
        from confluent_kafka.admin import AdminClient
        config.load_incluster_config()
        print("api", client.VersionApi().get_code().git_version)
        print("via", os.environ["KUBERNETES_SERVICE_HOST"])
        print("dns", socket.gethostbyname("kubernetes.default.svc.cluster.local"))
        admin = AdminClient({"bootstrap.servers": "kafka.kafka.svc:9092"})
        print("kafka brokers", len(admin.list_topics(timeout=20).brokers))
        """
    )
    log = run_pod(kube, real_node, real_node.images.operator, ["python", "-c", script])
    assert "api v1.35" in log
    assert "via 10.0.0.1" in log
    assert "dns 10.0.0.1" in log
    assert "kafka brokers 1" in log
