"""The pinned versions and build recipes of every component the local environment runs."""

from __future__ import annotations

import functools
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

HACK_DIR = Path(__file__).resolve().parents[2] / "hack"
GO_DIR = HACK_DIR / "go"
KAFKA_POM = HACK_DIR / "kafka" / "pom.xml"

# Bump together with hack/go/pin-kubernetes.sh, which rewrites hack/go/k8s/go.mod.
KUBERNETES_VERSION = "1.35.4"
ETCD_VERSION = "3.6.16"
KWOK_VERSION = "0.7.0"
HELM_VERSION = "3.20.2"
KIND_VERSION = "0.31.0"
CNI_PLUGINS_VERSION = "1.9.0"
COREDNS_VERSION = "1.14.0"
METRICS_SERVER_VERSION = "0.8.0"
# The fixed-rate HTTP load generator of bench/scorer.py.
VEGETA_VERSION = "12.13.0"
# Checks and unit-tests the alerting rules the chart ships (charts/tailor/files/alerts.yaml).
PROMETHEUS_VERSION = "3.16.0"
# The pod sandbox program of the real node (hack/go/pause); bump when its source changes.
PAUSE_VERSION = "1"


@functools.cache
def kafka_version() -> str:
    """The broker version: the pom is the one place it is written. Read when first asked,
    never at import, so the CLI starts (``--help``) where hack/ is not beside it."""
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ET.parse(KAFKA_POM).find("m:properties/m:kafka.version", ns)
    if node is None or not node.text:
        raise RuntimeError(f"{KAFKA_POM}: <properties><kafka.version> is missing")
    return node.text.strip()


# Bump when a recipe changes in a way the pinned files do not show (flags, layout),
# so every cache entry built by the old recipe is rebuilt.
RECIPE_REVISION = 1


def _kubernetes_ldflags() -> list[str]:
    # Mirrors kubernetes' hack/lib/version.sh: without these the binaries report
    # v0.0.0-master, which breaks Helm's kubeVersion checks and kubectl's skew warnings.
    major, minor, _ = KUBERNETES_VERSION.split(".")
    flags: list[str] = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion=v{KUBERNETES_VERSION}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
        ]
    return flags


def _helm_ldflags() -> list[str]:
    # Helm's Makefile sets these; without them `helm template` assumes Kubernetes 1.20.
    major, minor, _ = KUBERNETES_VERSION.split(".")
    flags = [f"-X helm.sh/helm/v3/internal/version.version=v{HELM_VERSION}"]
    for pkg in ("helm.sh/helm/v3/pkg/lint/rules", "helm.sh/helm/v3/pkg/chartutil"):
        flags += [f"-X {pkg}.k8sVersionMajor={major}", f"-X {pkg}.k8sVersionMinor={minor}"]
    return flags


@dataclass(frozen=True)
class GoComponent:
    """A set of commands built with `go build` from one wrapper module under hack/go/."""

    name: str
    version: str
    module_dir: Path
    # import path -> name of the binary it produces
    commands: dict[str, str]
    ldflags: list[str] = field(default_factory=list)
    # Only users with Docker run it; it is built so their path stays one command.
    optional: bool = False

    def recipe(self) -> bytes:
        """Everything that decides the bytes of the build, for the cache key."""
        parts = [
            f"revision={RECIPE_REVISION}",
            f"version={self.version}",
            f"commands={sorted(self.commands.items())}",
            f"ldflags={self.ldflags}",
        ]
        blob = "\n".join(parts).encode()
        # go.mod and go.sum pin the dependencies; .go files are the module's own source
        # (tools.go, or a whole program such as pause).
        for path in sorted(self.module_dir.iterdir()):
            if path.name in ("go.mod", "go.sum") or path.suffix == ".go":
                blob += b"\0" + path.name.encode() + b"\0" + path.read_bytes()
        return blob


GO_COMPONENTS: tuple[GoComponent, ...] = (
    GoComponent(
        name="kubernetes",
        version=KUBERNETES_VERSION,
        module_dir=GO_DIR / "k8s",
        commands={
            "k8s.io/kubernetes/cmd/kube-apiserver": "kube-apiserver",
            "k8s.io/kubernetes/cmd/kube-controller-manager": "kube-controller-manager",
            "k8s.io/kubernetes/cmd/kube-scheduler": "kube-scheduler",
            "k8s.io/kubernetes/cmd/kubectl": "kubectl",
            # The real node (real_node.py): pods that run Tailor's images in containers.
            "k8s.io/kubernetes/cmd/kubelet": "kubelet",
            "k8s.io/kubernetes/cmd/kube-proxy": "kube-proxy",
        },
        ldflags=_kubernetes_ldflags(),
    ),
    GoComponent(
        name="etcd",
        version=ETCD_VERSION,
        module_dir=GO_DIR / "etcd",
        commands={"go.etcd.io/etcd/server/v3": "etcd"},
    ),
    GoComponent(
        name="kwok",
        version=KWOK_VERSION,
        module_dir=GO_DIR / "kwok",
        commands={"sigs.k8s.io/kwok/cmd/kwok": "kwok"},
    ),
    GoComponent(
        name="helm",
        version=HELM_VERSION,
        module_dir=GO_DIR / "helm",
        commands={"helm.sh/helm/v3/cmd/helm": "helm"},
        ldflags=_helm_ldflags(),
    ),
    GoComponent(
        name="cni-plugins",
        version=CNI_PLUGINS_VERSION,
        module_dir=GO_DIR / "cni",
        commands={
            f"github.com/containernetworking/plugins/plugins/{path}": path.rsplit("/", 1)[1]
            for path in ("main/bridge", "main/loopback", "ipam/host-local", "meta/portmap")
        },
    ),
    GoComponent(
        name="coredns",
        version=COREDNS_VERSION,
        module_dir=GO_DIR / "coredns",
        commands={"tailor.dev/hack/coredns": "coredns"},
    ),
    GoComponent(
        name="metrics-server",
        version=METRICS_SERVER_VERSION,
        module_dir=GO_DIR / "metrics-server",
        commands={"sigs.k8s.io/metrics-server/cmd/metrics-server": "metrics-server"},
    ),
    GoComponent(
        name="vegeta",
        version=VEGETA_VERSION,
        module_dir=GO_DIR / "vegeta",
        commands={"github.com/tsenart/vegeta/v12": "vegeta"},
    ),
    GoComponent(
        name="promtool",
        version=PROMETHEUS_VERSION,
        module_dir=GO_DIR / "promtool",
        commands={"github.com/prometheus/prometheus/cmd/promtool": "promtool"},
    ),
    GoComponent(
        name="pause",
        version=PAUSE_VERSION,
        module_dir=GO_DIR / "pause",
        commands={"tailor.dev/hack/pause": "pause"},
    ),
    GoComponent(
        name="kind",
        version=KIND_VERSION,
        module_dir=GO_DIR / "kind",
        commands={"sigs.k8s.io/kind": "kind"},
        optional=True,
    ),
)


def kafka_recipe() -> bytes:
    """Everything that decides which jars the Kafka cache entry holds."""
    return (
        f"revision={RECIPE_REVISION}\nversion={kafka_version()}\n".encode() + KAFKA_POM.read_bytes()
    )
