"""The local control plane is a real Kubernetes: scheduling, KWOK pods, garbage collection."""

from __future__ import annotations

import json

from kubernetes import client

from tailor_localenv.processes import wait_for

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
      - name: web
        image: registry.example/web:1.0
        readinessProbe: {{httpGet: {{path: /readyz, port: 8080}}}}
"""


def test_server_reports_the_pinned_version(kube, toolchain):
    from tailor_localenv.versions import KUBERNETES_VERSION

    versions = json.loads(kube.kubectl("version", "-o", "json"))
    assert versions["serverVersion"]["gitVersion"] == f"v{KUBERNETES_VERSION}"
    assert versions["clientVersion"]["gitVersion"] == f"v{KUBERNETES_VERSION}"


def test_deployment_applied_with_kubectl_gets_ready_pods_on_kwok_nodes(kube, namespace):
    name = "web"
    kube.kubectl("apply", "-f", "-", input=DEPLOYMENT.format(name=name, namespace=namespace))
    kube.kubectl("rollout", "status", f"deployment/{name}", "-n", namespace, "--timeout=90s")

    apps = client.AppsV1Api(kube.api)
    deployment = apps.read_namespaced_deployment(name, namespace)
    assert deployment.status.ready_replicas == 3
    assert deployment.status.available_replicas == 3

    core = client.CoreV1Api(kube.api)
    kwok_nodes = {
        n.metadata.name
        for n in core.list_node().items
        if n.metadata.annotations.get("kwok.x-k8s.io/node") == "fake"
    }
    assert len(kwok_nodes) >= 2
    pods = core.list_namespaced_pod(namespace, label_selector=f"app={name}").items
    assert len(pods) == 3
    for pod in pods:
        assert pod.spec.node_name in kwok_nodes, "the scheduler bound the pod to a KWOK node"
        assert pod.status.phase == "Running"
        ready = {c.type: c.status for c in pod.status.conditions}
        assert ready["Ready"] == "True"


def test_deleting_an_owner_garbage_collects_what_it_owns(kube, namespace):
    core = client.CoreV1Api(kube.api)
    owner = core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "owner"}, "data": {"role": "owner"}}
    )
    core.create_namespaced_config_map(
        namespace,
        {
            "metadata": {
                "name": "owned",
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "name": "owner",
                        "uid": owner.metadata.uid,
                    }
                ],
            },
            "data": {"role": "owned"},
        },
    )
    bystander = core.create_namespaced_config_map(namespace, {"metadata": {"name": "bystander"}})

    core.delete_namespaced_config_map("owner", namespace)

    def owned_is_gone():
        names = {cm.metadata.name for cm in core.list_namespaced_config_map(namespace).items}
        return "owned" not in names

    wait_for(owned_is_gone, 60, "the garbage collector to delete the owned ConfigMap")
    still_there = core.read_namespaced_config_map("bystander", namespace)
    assert still_there.metadata.uid == bystander.metadata.uid


def test_default_service_account_and_root_ca_exist_in_new_namespaces(kube, namespace):
    core = client.CoreV1Api(kube.api)
    wait_for(
        lambda: any(
            sa.metadata.name == "default"
            for sa in core.list_namespaced_service_account(namespace).items
        ),
        30,
        "the default ServiceAccount",
    )
    wait_for(
        lambda: any(
            cm.metadata.name == "kube-root-ca.crt"
            for cm in core.list_namespaced_config_map(namespace).items
        ),
        30,
        "the kube-root-ca.crt ConfigMap",
    )
