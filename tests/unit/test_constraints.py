"""constraints.txt pins every dependency, and the venv the tests run in is the one it pins."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]


def pins() -> dict[str, str]:
    """Name -> version pinned for this interpreter (a pin may differ by Python version)."""
    found = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            if requirement.marker is not None and not requirement.marker.evaluate():
                continue
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", line
            found[canonicalize_name(requirement.name)] = specifier.version
    return found


def test_every_direct_dependency_is_pinned_within_what_pyproject_allows() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pinned = pins()
    wanted = [*project["dependencies"]]
    for requirements in project["optional-dependencies"].values():
        wanted += [r for r in requirements if not r.startswith("tailor[")]
    stale = []
    for text in wanted:
        requirement = Requirement(text)
        version = pinned.get(canonicalize_name(requirement.name))
        if version is None or not requirement.specifier.contains(version, prereleases=True):
            stale.append(f"{text} (pinned: {version})")
    assert not stale, f"constraints.txt is stale, run `make lock`: {stale}"


def test_the_installed_libraries_are_the_pinned_ones() -> None:
    pinned = pins()
    differ = []
    for dist in importlib.metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        if name in pinned and dist.version != pinned[name]:
            differ.append(f"{name} {dist.version} (pinned {pinned[name]})")
    assert not differ, f"this venv was not installed with -c constraints.txt: {differ}"
