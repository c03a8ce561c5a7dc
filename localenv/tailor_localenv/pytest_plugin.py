"""pytest fixtures over the real local environment: ``toolchain``, ``kube``, ``kafka`` and
``real_node``.

Session-scoped: one control plane and one broker per test run. When the selected tests need
both, the broker's JVM starts while the control plane boots. When a selected test needs the
real node, both listen on the node's pod bridge (pods reach them there) and the node starts
beside them; a host that cannot run containers fails those tests with the reason under CI
(``CI`` set) and skips them with it elsewhere. A test that uses a fixture gets the matching
marker (``kube``/``kafka``/``real_node``) automatically, so ``-m "not real_node"`` deselects
it; a failing test's report carries the tail of every component's log. A missing cache is an
error that says how to build it, never a skip."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tailor_localenv import real_node as real_node_mod
from tailor_localenv.bootstrap import Toolchain
from tailor_localenv.environment import LocalEnvironment
from tailor_localenv.kube import ControlPlane
from tailor_localenv.real_node import RealNode

_ENV = pytest.StashKey["LocalEnvironment"]()
_FIXTURE_MARKERS = {"kube": "kube", "kafka": "kafka", "real_node": "real_node"}


@dataclass
class KubeEnv:
    """What a test needs to talk to the real API server."""

    control_plane: ControlPlane
    api: Any  # kubernetes.client.ApiClient

    @property
    def kubeconfig(self) -> str:
        return str(self.control_plane.kubeconfig)

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        """Run kubectl against this cluster; raises with kubectl's stderr on failure."""
        result = subprocess.run(
            [*self.control_plane.kubectl_command(), *args],
            input=input,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
        return result.stdout


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_ENV] = LocalEnvironment()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    env = config.stash[_ENV]
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        for fixture, marker in _FIXTURE_MARKERS.items():
            if fixture in fixtures:
                item.add_marker(marker)
        env.needs_kube |= "kube" in fixtures
        env.needs_kafka |= "kafka" in fixtures
        env.needs_real_node |= "real_node" in fixtures


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, Any]:
    report = yield
    if report.failed and _FIXTURE_MARKERS.keys() & set(getattr(item, "fixturenames", ())):
        for title, text in item.config.stash[_ENV].logs():
            report.sections.append((title, text))
    return report


def pytest_unconfigure(config: pytest.Config) -> None:
    config.stash[_ENV].stop()


@pytest.fixture(scope="session")
def toolchain(pytestconfig: pytest.Config) -> Toolchain:
    """The verified binaries and jars; fails (does not skip) when the cache is not built."""
    return pytestconfig.stash[_ENV]._toolchain()


@pytest.fixture(scope="session")
def kube(pytestconfig: pytest.Config, toolchain: Toolchain) -> Iterator[KubeEnv]:
    """A real control plane: etcd, kube-apiserver, controller-manager, scheduler, KWOK nodes."""
    control_plane = pytestconfig.stash[_ENV].kube()
    with control_plane.api_client() as api:
        yield KubeEnv(control_plane=control_plane, api=api)


@pytest.fixture(scope="session")
def kafka(pytestconfig: pytest.Config, toolchain: Toolchain) -> str:
    """The bootstrap servers of a real Kafka broker (KRaft, transactions enabled)."""
    return pytestconfig.stash[_ENV].kafka().bootstrap_servers


@pytest.fixture(scope="session")
def real_node(pytestconfig: pytest.Config, kube: KubeEnv) -> RealNode:
    """A real kubelet node (containerd, runc, CNI bridge, kube-proxy) beside ``kube``, with
    Tailor's images built here and imported. Pods of a namespace pinned with
    ``real_node.pin_namespace(ns)`` run on it."""
    reason = real_node_mod.host_support()
    if reason is not None:
        message = f"cannot run a real node on this host: {reason}"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return pytestconfig.stash[_ENV].real_node()


@pytest.fixture(scope="session")
def local_environment(
    pytestconfig: pytest.Config, kube: KubeEnv, kafka: str, real_node: RealNode
) -> LocalEnvironment:
    """The session's whole environment (control plane, broker, real node) as one object, for
    code that takes one, like the demo."""
    return pytestconfig.stash[_ENV]
