"""The checked-in CRD is exactly what the API models generate, and it is structural."""

from pathlib import Path
from typing import Any

import yaml

from tailor_operator import api, crd_gen

REPO = Path(__file__).resolve().parents[2]


def _walk(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, schema)]
    for name, prop in schema.get("properties", {}).items():
        found += _walk(prop, f"{path}.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        found += _walk(schema["additionalProperties"], f"{path}[*]")
    if "items" in schema:
        found += _walk(schema["items"], f"{path}[]")
    return found


def _root() -> dict[str, Any]:
    return crd_gen.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_checked_in_crds_are_not_stale() -> None:
    for directory in ("crds", "charts/tailor/crds"):
        path = REPO / directory / crd_gen.FILE_NAME
        assert path.read_text() == crd_gen.render(), f"{directory} is stale: run `make crds`"


def test_every_spec_and_status_field_has_a_description() -> None:
    root = _root()
    missing = [
        path
        for part in ("spec", "status")
        for path, node in _walk(root["properties"][part], part)
        if not node.get("description") and not path.endswith("[*]")
    ]
    assert missing == []


def test_schema_is_structural() -> None:
    text = yaml.safe_dump(crd_gen.crd())
    assert "$ref" not in text
    assert "anyOf" not in text
    assert "title:" not in text
    for path, node in _walk(_root()):
        assert "type" in node or node.get("x-kubernetes-int-or-string"), f"{path} has no type"
        assert not ("properties" in node and "additionalProperties" in node), path


def test_int_or_string_quantities_and_defaults() -> None:
    spec = _root()["properties"]["spec"]["properties"]
    cpu = spec["streamWorker"]["properties"]["resources"]["properties"]["requests"]
    assert cpu["additionalProperties"]["x-kubernetes-int-or-string"] is True
    assert cpu["additionalProperties"]["pattern"] == api.QUANTITY_PATTERN
    # Unset partitions keep what exists: no default count that could grow a topic.
    assert spec["topics"]["properties"]["events"]["default"] == {}
    assert spec["topics"]["properties"]["deletionPolicy"]["enum"] == ["Retain", "Delete"]
    sha = spec["scorer"]["properties"]["model"]["properties"]["sha256"]
    assert sha["pattern"] == "^[a-f0-9]{64}$"
