"""The shell scripts for Docker users parse, and say what they need when it is missing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = ["hack/build-images.sh", "hack/kind-e2e.sh"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_parses_and_its_help_names_docker(script):
    subprocess.run(["bash", "-n", str(REPO / script)], check=True)
    help_text = subprocess.run(
        ["bash", str(REPO / script), "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "docker" in help_text.lower()


@pytest.mark.parametrize("script", SCRIPTS)
def test_without_docker_it_stops_with_one_clear_line(script, tmp_path):
    # A PATH with bash and coreutils but no docker.
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    if any((Path(p) / "docker").exists() for p in env["PATH"].split(":")):
        env["PATH"] = str(tmp_path)  # nothing at all: the script must still say why
        (tmp_path / "bash").symlink_to("/bin/bash")
    result = subprocess.run(
        ["/bin/bash", str(REPO / script)], capture_output=True, text=True, env=env, cwd=REPO
    )
    assert result.returncode != 0
    assert "docker" in result.stderr.lower()
    assert result.stderr.count("\n") == 1, result.stderr
