"""Writes the CRD from the pydantic API models: `python -m tailor_operator.crd_gen DIR...`
(`make crds` writes crds/ and the Helm chart's charts/tailor/crds/)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from tailor_operator import api

HEADER = "# Generated from operator/tailor_operator/api.py by `make crds`. Do not edit by hand.\n"
FILE_NAME = f"{api.PLURAL}.{api.GROUP}.yaml"

# Keys of JSON Schema that a Kubernetes structural schema does not take.
_DROPPED = {"title", "additionalProperties"}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    """Inline every $ref (structural schemas may not contain references) and map the
    JSON Schema that pydantic writes onto the OpenAPI v3 subset the API server accepts."""
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "anyOf" in node:
        options = node.pop("anyOf")
        non_null = [o for o in options if o.get("type") != "null"]
        if len(non_null) < len(options):
            node["nullable"] = True
        if sorted(o.get("type", "") for o in non_null) == ["integer", "string"]:
            node["x-kubernetes-int-or-string"] = True
            # A pattern on the string form (a Quantity's) holds for the strings only.
            pattern = next((o["pattern"] for o in non_null if "pattern" in o), None)
            if pattern is not None:
                node["pattern"] = pattern
        elif len(non_null) == 1:
            node = {**non_null[0], **node}
        else:
            raise ValueError(f"unsupported union in the API models: {options}")
        if node.get("default", ...) is None:
            del node["default"]
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[1]]
        # Siblings of a $ref (the field's description, default) win over the model's own.
        node = {**target, **node}
    if "exclusiveMinimum" in node and not isinstance(node["exclusiveMinimum"], bool):
        node["minimum"], node["exclusiveMinimum"] = node["exclusiveMinimum"], True
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED and not (key == "additionalProperties" and isinstance(value, dict)):
            continue
        if key == "properties":
            out[key] = {name: _resolve(prop, defs) for name, prop in value.items()}
        else:
            out[key] = _resolve(value, defs)
    if (
        out.get("type") == "object"
        and "properties" not in out
        and "additionalProperties" not in out
    ):
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def openapi_schema(model: type[api.ApiModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return dict(_resolve(raw, defs))


def _condition_column(condition: str) -> str:
    return f'.status.conditions[?(@.type=="{condition}")].status'


def crd() -> dict[str, Any]:
    spec = openapi_schema(api.PipelineSpec)
    status = openapi_schema(api.PipelineStatus)
    root = {
        "type": "object",
        "description": (
            "A real-time personalization pipeline: Kafka topics, a stream worker that keeps"
            " user profiles, and a scorer that ranks items for each user, run by Tailor."
        ),
        "required": ["spec"],
        "x-kubernetes-validations": [
            {
                # Children are named <name>-stream-worker etc. and must stay DNS labels.
                "rule": f"size(self.metadata.name) <= {api.MAX_NAME_LENGTH}",
                "message": f"metadata.name must be at most {api.MAX_NAME_LENGTH} characters",
            }
        ],
        "properties": {
            "apiVersion": {
                "type": "string",
                "description": "The API version, tailor.dev/v1alpha1.",
            },
            "kind": {"type": "string", "description": "PersonalizationPipeline."},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{api.PLURAL}.{api.GROUP}",
            "labels": {"app.kubernetes.io/part-of": "tailor"},
        },
        "spec": {
            "group": api.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": api.KIND,
                "listKind": f"{api.KIND}List",
                "plural": api.PLURAL,
                "singular": api.SINGULAR,
                "shortNames": list(api.SHORT_NAMES),
                "categories": ["tailor", "all"],
            },
            "versions": [
                {
                    "name": api.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Ready", "type": "string", "jsonPath": _condition_column("Ready")},
                        {"name": "Model", "type": "string", "jsonPath": ".status.model.active"},
                        {
                            "name": "Workers",
                            "type": "integer",
                            "jsonPath": ".status.streamWorker.readyReplicas",
                        },
                        {
                            "name": "Scorers",
                            "type": "integer",
                            "jsonPath": ".status.scorer.readyReplicas",
                        },
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


def render() -> str:
    return HEADER + yaml.safe_dump(crd(), sort_keys=False, width=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "directories", type=Path, nargs="+", help="where to write the CRD (e.g. crds)"
    )
    parser.add_argument("--check", action="store_true", help="fail if a file is stale")
    args = parser.parse_args(argv)
    text = render()
    stale = 0
    for directory in args.directories:
        path: Path = directory / FILE_NAME
        if args.check:
            if not path.is_file() or path.read_text() != text:
                print(f"{path} is stale: run `make crds`", file=sys.stderr)
                stale = 1
            continue
        directory.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    return stale


if __name__ == "__main__":
    raise SystemExit(main())
