"""Fixtures over the real API server shared by the integration tests."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tailor_localenv.processes import ManagedProcess, free_port, http_ok

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
    kube.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    kube.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/personalizationpipelines.tailor.dev",
    )
    return "personalizationpipelines.tailor.dev"


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
        port = free_port()
        proc = ManagedProcess(
            f"tailor-operator-{len(self.processes)}",
            [
                sys.executable,
                "-m",
                "tailor_operator",
                *[f"--namespace={ns}" for ns in namespaces],
                f"--liveness=http://127.0.0.1:{port}/healthz",
                "--metrics-port=0",
                "--verbose",
                *extra,
            ],
            self.log_dir,
            env={
                **os.environ,
                "KUBECONFIG": kubeconfig or self.kube.kubeconfig,
                "TAILOR_RESYNC_SECONDS": str(resync_seconds),
                "TAILOR_DELETE_RETRIES": "3",
                **(env or {}),
            },
        ).start()
        self.processes.append(proc)
        if wait:
            proc.wait_healthy(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), 60, "live")
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
