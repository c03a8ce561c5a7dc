"""What goes into each image's venv, from pyproject.toml: run by pipeline_images/Dockerfile.

    python requirements.py EXTRA [PYPROJECT]   print the requirements of the project and
                                               one extra, one per line
    python requirements.py prune EXTRA VENV    leave in VENV only the programs that image
                                               runs: the other console scripts and the
                                               local environment (tests and the demo) go

The image build installs the requirements in a layer that depends on pyproject.toml and
constraints.txt alone, before Tailor's own wheel (``pip install --no-deps``), so a code
change does not reinstall them. The wheel holds every Tailor program; each image keeps
only its own, so ``tailor-localenv`` or ``tailor-operator`` in a scorer image cannot
mislead anyone.
"""

import shutil
import sys
import tomllib
from pathlib import Path

# The programs each image runs (by the extra it installs).
IMAGE_PROGRAMS = {
    "operator": ["tailor-operator"],
    "worker": ["tailor-stream-worker"],
    "scorer": ["tailor-scorer", "tailor-train"],
}
# Packages of the wheel no image runs.
NOT_SHIPPED = ["tailor_localenv"]


def requirements(extra: str, path: str) -> None:
    with open(path, "rb") as f:
        project = tomllib.load(f)["project"]
    if extra not in project["optional-dependencies"]:
        sys.exit(f"requirements.py: no extra {extra!r} in {path}")
    lines = [*project["dependencies"], *project["optional-dependencies"][extra]]
    sys.stdout.write("\n".join(lines) + "\n")


def prune(extra: str, venv: Path, pyproject: str) -> None:
    with open(pyproject, "rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    keep = IMAGE_PROGRAMS[extra]
    for name in scripts:
        if name not in keep:
            (venv / "bin" / name).unlink(missing_ok=True)
    for site in venv.glob("lib/python*/site-packages"):
        for package in NOT_SHIPPED:
            shutil.rmtree(site / package, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1] == "prune":
        pyproject = sys.argv[4] if len(sys.argv) > 4 else "/src/pyproject.toml"
        prune(sys.argv[2], Path(sys.argv[3]), pyproject)
    else:
        requirements(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "/src/pyproject.toml")
