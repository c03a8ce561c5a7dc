"""Tailor itself on the local control plane: its CRDs, and the operator as its own process
(``python -m tailor_operator``, as the image runs it), for the tests, benchmarks and demo."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from tailor_localenv.images import REPO_ROOT
from tailor_localenv.processes import ManagedProcess, free_port, http_ok

CRD_DIR = REPO_ROOT / "crds"


def install_crds(kubectl: Sequence[str], crd_dir: Path = CRD_DIR) -> list[str]:
    """Server-side apply every CRD in ``crd_dir`` and wait until each is Established;
    returns their names."""
    files = sorted(crd_dir.glob("*.yaml"))
    if not files:
        return []
    for path in files:
        _run([*kubectl, "apply", "--server-side", "-f", str(path)])
    names = [p.name.removesuffix(".yaml") for p in files]
    _run(
        [
            *kubectl,
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            *[f"crd/{name}" for name in names],
        ]
    )
    return names


def start_operator(
    kubeconfig: str | Path,
    log_dir: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    name: str = "tailor-operator",
    wait: bool = True,
) -> ManagedProcess:
    """Start the operator with ``args`` (namespaces, ``--metrics-port``, ...) and its
    liveness endpoint on a free port; ``env``: TAILOR_* settings over this process's
    environment. ``wait``: until it answers as live (not for one expected to exit)."""
    port = free_port()
    proc = ManagedProcess(
        name,
        [
            sys.executable,
            "-m",
            "tailor_operator",
            f"--liveness=http://127.0.0.1:{port}/healthz",
            *args,
        ],
        log_dir,
        env={**os.environ, "KUBECONFIG": str(kubeconfig), **(env or {})},
    ).start()
    if wait:
        try:
            proc.wait_healthy(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), 60, "live")
        except BaseException:
            proc.stop()  # the error carries its log's tail
            raise
    return proc


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command[-4:])} failed: {result.stderr.strip()}")
