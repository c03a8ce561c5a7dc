"""The README's demo, headless: operator-rendered configuration end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.kube, pytest.mark.kafka]


def test_headless_demo_serves_fresh_decisions_and_rolls_a_new_model(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tailor_localenv.cli",
            "demo",
            "--headless",
            # Clicks flow all the way through (200/s): room for canary, promotion and roll.
            "--duration=55",
            "--update-after=12",
            f"--work-dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads(result.stdout[result.stdout.index("{") :])

    assert summary["ready"]
    assert summary["events_produced"] > 1000
    assert summary["decisions"] > 100
    assert summary["decision_errors"] == 0, "a request failed, e.g. during the scorer roll"
    # A click made 1 s earlier is in the profile every later decision is computed from.
    assert summary["clicks_checked"] >= 3
    assert summary["clicks_reflected_after_1s"] == summary["clicks_checked"]
    # The spec's model is what the scorers serve, after the update rolled out.
    assert summary["model_version_spec"] == "2026-11-v2"
    assert summary["last_model_version_served"] == summary["model_version_spec"]
    assert set(summary["model_versions_served"]) == {"2026-11-v1", "2026-11-v2"}
    # The new model went through a canary judged on the real scorers' decision log.
    assert summary["canary_analysis"].startswith("canary ")
    assert summary["model_rolled_out"] == "True RolledOut: serving 2026-11-v2"
