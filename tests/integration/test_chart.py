"""The Helm chart against the real API server: install, upgrade, least privilege."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import REPO
from tests.integration.test_operator import apply, condition, minimal, wait_condition, wait_ready

CHART = REPO / "charts" / "tailor"
pytestmark = pytest.mark.kube


def helm(kube, toolchain, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(toolchain.binary("helm")), f"--kubeconfig={kube.kubeconfig}", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stderr}")
    return result


@pytest.fixture
def release_namespace(kube):
    name = f"tailor-{uuid.uuid4().hex[:6]}"
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_lint_template_and_a_typo_in_values_fails_clearly(kube, toolchain):
    for extra in ([], ["--set", "watch.namespaces={a,b}", "--set", "networkPolicy.enabled=true"]):
        helm(kube, toolchain, "lint", "--strict", str(CHART), *extra)
    rendered = helm(kube, toolchain, "template", "t", str(CHART), "-n", "tailor-system").stdout
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(rendered) if d)
    assert kinds.count("ClusterRole") == 2  # the pipelines' (cluster-wide) and discovery's
    typo = helm(kube, toolchain, "template", "t", str(CHART), "--set", "replicas=3", check=False)
    assert typo.returncode != 0
    assert "additional properties 'replicas' not allowed" in typo.stderr


def test_the_chart_works_as_a_subchart_with_overrides(kube, toolchain):
    """Values a parent chart or a platform sets: global, names, an OpenShift-style security
    context without fixed ids; and what two replicas need: a PDB and a readiness probe."""
    # Helm merges values into the defaults: null removes a key.
    openshift = ["podSecurityContext.runAsUser=null", "podSecurityContext.runAsGroup=null"]
    openshift += ["podSecurityContext.fsGroup=null"]
    rendered = helm(
        kube,
        toolchain,
        "template",
        "shop",
        str(CHART),
        "-n",
        "tailor-system",
        *("--set", "global.imageRegistry=registry.example"),
        *("--set", "fullnameOverride=personalization"),
        *("--set", ",".join(openshift)),
    ).stdout
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(rendered) if d}
    deployment = docs[("Deployment", "personalization")]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    pdb = docs[("PodDisruptionBudget", "personalization")]
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    named = helm(kube, toolchain, "template", "shop", str(CHART), "--set", "nameOverride=ops")
    assert "name: shop-ops\n" in named.stdout
    single = helm(kube, toolchain, "template", "shop", str(CHART), "--set", "replicaCount=1")
    assert "PodDisruptionBudget" not in single.stdout


def test_install_and_upgrade_run_the_operator_pods(kube, crd, toolchain, release_namespace):
    ns = release_namespace
    # What the chart renders is accepted by the API server as it is.
    rendered = helm(kube, toolchain, "template", "tailor", str(CHART), "-n", ns).stdout
    kube.kubectl("create", "namespace", ns)
    kube.kubectl("apply", "--dry-run=server", "-n", ns, "-f", "-", input=rendered)

    helm(kube, toolchain, "install", "tailor", str(CHART), "-n", ns, "--wait", "--timeout=120s")
    pods = json.loads(
        kube.kubectl(
            "get", "pods", "-n", ns, "-l", "app.kubernetes.io/name=tailor-operator", "-o", "json"
        )
    )["items"]
    assert len(pods) == 2
    assert all(p["status"]["phase"] == "Running" for p in pods)
    spec = pods[0]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True

    helm(
        kube,
        toolchain,
        "upgrade",
        "tailor",
        str(CHART),
        "-n",
        ns,
        "--set",
        "replicaCount=3",
        "--wait",
        "--timeout=120s",
    )
    deployment = json.loads(kube.kubectl("get", "deployment/tailor", "-n", ns, "-o", "json"))
    assert deployment["status"]["readyReplicas"] == 3
    helm(kube, toolchain, "uninstall", "tailor", "-n", ns, "--wait")


def service_account_kubeconfig(kube, ns: str, path: Path) -> str:
    """A kubeconfig that authenticates as the chart's ServiceAccount (a bound token)."""
    token = kube.kubectl("create", "token", "tailor", "-n", ns, "--duration=1h").strip()
    admin = yaml.safe_load(Path(kube.kubeconfig).read_text())
    cluster = admin["clusters"][0]
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [cluster],
                "users": [{"name": "tailor", "user": {"token": token}}],
                "contexts": [
                    {"name": "tailor", "context": {"cluster": cluster["name"], "user": "tailor"}}
                ],
                "current-context": "tailor",
            }
        )
    )
    return str(path)


def test_the_operator_works_with_exactly_the_charts_rbac(
    kube, kafka, crd, toolchain, operator, namespace, release_namespace, tmp_path
):
    ns = release_namespace
    # The chart's ServiceAccount and RBAC, scoped to one namespace; no operator pods: the
    # operator under test runs here, authenticated as that ServiceAccount.
    helm(
        kube,
        toolchain,
        "install",
        "tailor",
        str(CHART),
        "-n",
        ns,
        "--create-namespace",
        "--set",
        "replicaCount=0",
        "--set",
        f"watch.namespaces={{{namespace}}}",
    )
    config = service_account_kubeconfig(kube, ns, tmp_path / "sa.kubeconfig")
    operator.start(
        namespace,
        kubeconfig=config,
        extra=("--leader-election", f"--leader-election-namespace={ns}"),
    )
    apply(kube, namespace, minimal(kafka))
    wait_ready(kube, namespace, "storefront")

    user = f"system:serviceaccount:{ns}:tailor"
    can = lambda *args: kube.kubectl("auth", "can-i", *args, f"--as={user}", check=False).strip()  # noqa: E731
    assert can("create", "deployments", "-n", namespace) == "yes"
    assert can("create", "deployments", "-n", "default") == "no"
    assert can("list", "secrets", "-n", namespace) == "no"
    assert can("delete", "namespaces") == "no"

    # Take one verb away: the next pipeline says exactly what it may not do.
    role = json.loads(kube.kubectl("get", "role/tailor", "-n", namespace, "-o", "json"))
    for rule in role["rules"]:
        if rule["resources"] == ["deployments"]:
            rule["verbs"].remove("create")
    kube.kubectl("apply", "-f", "-", input=json.dumps(role))
    second = minimal(kafka)
    second["metadata"]["name"] = "second"
    apply(kube, namespace, second)
    ready = wait_condition(kube, namespace, "second", "Ready", "Forbidden")
    assert "deployments" in ready["message"]
    assert user in ready["message"]
    assert condition(kube, namespace, "second", "Degraded")["status"] == "True"
    helm(kube, toolchain, "uninstall", "tailor", "-n", ns)
