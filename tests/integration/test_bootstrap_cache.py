"""The bootstrap rebuilds a damaged cache entry instead of trusting it (real go and mvn)."""

import subprocess
from pathlib import Path

import pytest

from tailor_localenv import bootstrap, cache, versions

pytestmark = pytest.mark.slow


@pytest.fixture
def private_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    # A cache of its own, so damaging it cannot hurt the session's control plane; Go's and
    # Maven's own caches stay shared, which keeps these rebuilds to seconds.
    monkeypatch.setenv("TAILOR_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_truncated_binary_is_rebuilt(private_cache: Path) -> None:
    kind = next(c for c in versions.GO_COMPONENTS if c.name == "kind")
    entry = bootstrap.ensure_go_component(kind)
    binary = entry / "kind"
    good = cache.file_sha256(binary)
    binary.write_bytes(binary.read_bytes()[: 1 << 16])

    assert bootstrap.ensure_go_component(kind) == entry
    assert cache.file_sha256(binary) == good
    out = subprocess.run([binary, "version"], capture_output=True, text=True, check=True)
    assert f"v{versions.KIND_VERSION}" in out.stdout


def test_a_corrupt_jar_is_refetched(private_cache: Path) -> None:
    libs = bootstrap.ensure_kafka()
    jar = next(libs.glob("kafka_2.13-*.jar"))
    good = cache.file_sha256(jar)
    data = bytearray(jar.read_bytes())
    data[len(data) // 2] ^= 0xFF
    jar.write_bytes(bytes(data))

    assert bootstrap.ensure_kafka() == libs
    assert cache.file_sha256(jar) == good


def test_every_tool_reports_its_pinned_version(
    toolchain: bootstrap.Toolchain, tmp_path: Path
) -> None:
    def run(*args: object) -> str:
        return subprocess.run(
            [str(a) for a in args], capture_output=True, text=True, check=True
        ).stdout

    k8s = versions.KUBERNETES_VERSION
    assert f"Kubernetes v{k8s}" in run(toolchain.binary("kube-apiserver"), "--version")
    assert f"v{k8s}" in run(toolchain.binary("kubectl"), "version", "--client")
    assert f"etcd Version: {versions.ETCD_VERSION}" in run(toolchain.binary("etcd"), "--version")
    assert f"v{versions.HELM_VERSION}" in run(toolchain.binary("helm"), "version", "--short")

    # `helm template` (no cluster) assumes the Kubernetes version baked in by its ldflags;
    # charts gate on it with kubeVersion, so it must be ours, not Helm's fallback of 1.20.
    # Helm records major.minor only, so it reports vX.Y.0.
    minor = k8s.rsplit(".", 1)[0]
    chart = tmp_path / "probe"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(
        f"apiVersion: v2\nname: probe\nversion: 0.1.0\nkubeVersion: '>= {minor}.0-0'\n"
    )
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: probe}\n"
        "data: {kube: '{{ .Capabilities.KubeVersion.Version }}'}\n"
    )
    assert f"kube: 'v{minor}.0'" in run(toolchain.binary("helm"), "template", chart)
