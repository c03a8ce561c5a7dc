"""Each extra alone, installed from the project the way a user or an image build installs it,
into a clean venv: every module its programs can load imports, and each program answers
--help. A dependency missing from an extra fails here in seconds, not in a pod."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.e2e.test_real_node import IMPORT_ALL
from tests.integration.conftest import REPO

UV = Path(sys.executable).with_name("uv")


def run(*args: str | Path) -> str:
    done = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, f"{' '.join(map(str, args))}:\n{done.stdout}{done.stderr}"
    return done.stdout


def install(tmp_path: Path, extra: str, *flags: str) -> Path:
    """A new venv with the project and ``extra`` alone; its path."""
    assert UV.exists(), f"{UV} is missing: `make venv` installs it with the dev extra"
    venv = tmp_path / "venv"
    run(UV, "venv", "--quiet", "--python", sys.executable, venv)
    # Not editable: the wheel is what an image holds.
    run(
        UV,
        "pip",
        "install",
        "--quiet",
        "--python",
        venv / "bin" / "python",
        *flags,
        f"{REPO}[{extra}]",
    )
    return venv


@pytest.mark.parametrize(
    ("extra", "programs", "modules"),
    [
        ("operator", ["tailor-operator"], ["tailor_operator"]),
        ("worker", ["tailor-stream-worker"], ["tailor_pipeline.worker_main"]),
        (
            "scorer",
            ["tailor-scorer", "tailor-train"],
            ["tailor_pipeline.scorer_main", "tailor_pipeline.train"],
        ),
    ],
)
def test_each_extra_alone_runs_its_programs(extra, programs, modules, tmp_path):
    venv = install(tmp_path, extra)
    # What the image build does next: keep only this image's programs.
    prune = REPO / "pipeline_images" / "requirements.py"
    run(sys.executable, prune, "prune", extra, venv, REPO / "pyproject.toml")
    assert sorted(p.name for p in (venv / "bin").glob("tailor-*")) == sorted(programs)
    out = run(venv / "bin" / "python", "-c", IMPORT_ALL, *modules)
    assert out.split() == [word for m in modules for word in ("imported", m)]
    gone = subprocess.run(
        [venv / "bin" / "python", "-c", "import tailor_localenv"], capture_output=True, check=False
    )
    assert gone.returncode != 0, "the local environment must not ship in an image"
    for program in programs:
        assert "usage:" in run(venv / "bin" / program, "--help")
        assert run(venv / "bin" / program, "--version").startswith(f"{program} 0.")


# Sends one request the way every write does, to a closed port on loopback.
ONE_API_CALL = """
from kubernetes import client
from tailor_operator.adapters.kube import KubeAdapter
configuration = client.Configuration()
configuration.host = "http://127.0.0.1:9"
configuration.retries = 0
try:
    KubeAdapter(client.ApiClient(configuration)).get_pipeline("default", "storefront")
except Exception as exc:
    print(type(exc).__module__, type(exc).__name__)
"""


def test_the_oldest_dependencies_the_operator_allows_make_its_api_calls(tmp_path):
    """The floors in pyproject.toml are true: built with the oldest setuptools it names, and
    with every direct dependency at the lowest version it allows, the operator's Kubernetes
    adapter gets as far as the network."""
    # The build backend at its floor too: it must read the project's metadata.
    (backend,) = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
    constraints = tmp_path / "build-constraints.txt"
    constraints.write_text(backend.replace(">=", "=="))
    venv = install(
        tmp_path,
        "operator",
        *("--resolution", "lowest-direct", "--build-constraint", str(constraints)),
    )
    out = run(venv / "bin" / "python", "-c", ONE_API_CALL)
    assert out.startswith("urllib3.exceptions"), out
