"""The README's demo, headless: on real pods where the host can run them (what `make demo`
does here), and as local processes (the fallback, what a host without root gets)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tailor_localenv.demo import NAMESPACE, Options, run_demo

pytestmark = pytest.mark.slow


def check(summary: dict[str, Any]) -> None:
    assert summary["ready"]
    assert summary["events_produced"] > 1000
    assert summary["decisions"] > 100
    assert summary["decision_errors"] == 0, (
        f"requests failed, e.g. during the scorer roll: {summary['decision_error_kinds']}"
    )
    # A click made 1 s earlier is in the profile every later decision is computed from.
    assert summary["clicks_checked"] >= 3
    assert summary["clicks_reflected_after_1s"] == summary["clicks_checked"], summary[
        "clicks_missed"
    ]
    # The spec's model is what the scorers serve, after the update rolled out.
    assert summary["model_version_spec"] == "2026-11-v2"
    assert summary["last_model_version_served"] == summary["model_version_spec"]
    assert set(summary["model_versions_served"]) == {"2026-11-v1", "2026-11-v2"}
    # The new model went through a canary judged on the real scorers' decision log.
    assert summary["canary_analysis"].startswith("canary ")
    assert summary["model_rolled_out"] == "True RolledOut: serving 2026-11-v2"


def test_the_demo_on_real_pods(local_environment, kube, tmp_path: Path) -> None:
    summary = run_demo(
        # Pods start, a canary is judged and two scorers roll with drains: more time than
        # local processes need.
        Options(headless=True, duration=100, update_after=15, work_dir=tmp_path),
        environment=local_environment,
    )
    print(json.dumps(summary, indent=2))  # noqa: T201 - the report of a failure shows it
    assert summary["mode"] == "real pods"
    check(summary)
    pods = json.loads(kube.kubectl("get", "pods", "-n", NAMESPACE, "-o", "json"))["items"]
    assert pods
    for pod in pods:
        assert pod["spec"]["nodeName"] == "tailor-real-node"
        assert pod["spec"]["containers"][0]["image"] in {
            local_environment.node.images.stream_worker,
            local_environment.node.images.scorer,
        }
    kube.kubectl("delete", "namespace", NAMESPACE, "--wait=false")


@pytest.mark.kube
@pytest.mark.kafka
def test_the_demo_as_local_processes(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            *("-m", "tailor_localenv.cli", "demo", "--headless", "--local-processes"),
            # Clicks flow all the way through (200/s): room for canary, promotion and roll.
            "--duration=55",
            "--update-after=12",
            f"--work-dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    print(json.dumps(summary, indent=2))  # noqa: T201 - the report of a failure shows it
    assert summary["mode"] == "local processes"
    check(summary)
