"""Fixtures over the real API server shared by the integration tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tailor_localenv.processes import ManagedProcess
from tailor_localenv.tailor import install_crds, start_operator

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def namespace(kube) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(kube.api).create_namespace({"metadata": {"name": name}})
    yield name
    client.CoreV1Api(kube.api).delete_namespace(name)


@pytest.fixture(scope="session")
def crd(kube) -> str:
    """The checked-in CRD, installed and Established."""
    (name,) = install_crds(kube.control_plane.kubectl_command())
    return name


@dataclass
class OperatorRunner:
    """Starts the operator the way production does: its own process, watching namespaces."""

    kube: Any
    log_dir: Path
    processes: list[ManagedProcess] = field(default_factory=list)

    def start(
        self,
        *namespaces: str,
        resync_seconds: float = 5.0,
        extra: tuple[str, ...] = (),
        wait: bool = True,
        kubeconfig: str | None = None,
        env: dict[str, str] | None = None,
    ) -> ManagedProcess:
        proc = start_operator(
            kubeconfig or self.kube.kubeconfig,
            self.log_dir,
            *[f"--namespace={ns}" for ns in namespaces],
            "--metrics-port=0",
            "--verbose",
            *extra,
            env={
                "TAILOR_RESYNC_SECONDS": str(resync_seconds),
                "TAILOR_DELETE_RETRIES": "3",
                **(env or {}),
            },
            name=f"tailor-operator-{len(self.processes)}",
            wait=wait,
        )
        self.processes.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.processes:
            proc.stop()

    def logs(self) -> str:
        return "\n".join(f"----- {p.name} -----\n{p.log_tail(80)}" for p in self.processes)


_RUNNER = pytest.StashKey[OperatorRunner]()


@pytest.fixture
def operator(kube, crd, request, tmp_path) -> Iterator[OperatorRunner]:
    """Call ``operator.start(namespace)``; every operator started is stopped afterwards and
    its log is attached to a failing test's report."""
    runner = OperatorRunner(kube, tmp_path / "operator-logs")
    request.node.stash[_RUNNER] = runner
    yield runner
    runner.stop_all()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report = yield
    runner = item.stash.get(_RUNNER, None)
    if report.failed and runner is not None:
        report.sections.append(("operator log", runner.logs()))
    return report


def read_example(name: str, bootstrap: str) -> dict[str, Any]:
    """An examples/ manifest pointed at the local broker."""
    manifest = yaml.safe_load((REPO / "examples" / name).read_text())
    manifest["spec"]["kafka"]["bootstrapServers"] = bootstrap
    return manifest
