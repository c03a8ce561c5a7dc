"""The pipeline object as the operator sees it: identity, generation and a validated spec."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tailor_operator import api, naming


@dataclass(frozen=True)
class Pipeline:
    namespace: str
    name: str
    uid: str
    generation: int
    spec: api.PipelineSpec
    annotations: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Pipeline:
        """Parse a PersonalizationPipeline object; raises pydantic.ValidationError."""
        meta = body["metadata"]
        return cls(
            namespace=meta["namespace"],
            name=meta["name"],
            uid=meta["uid"],
            generation=int(meta.get("generation", 0)),
            spec=api.PipelineSpec.model_validate(body.get("spec") or {}),
            annotations=dict(meta.get("annotations") or {}),
        )

    def owner_reference(self) -> dict[str, Any]:
        return {
            "apiVersion": api.API_VERSION,
            "kind": api.KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def topic_name(self, role: naming.TopicRole) -> str:
        return naming.topic(self.namespace, self.name, role)

    @property
    def topics_unmanaged(self) -> bool:
        """The pipeline-wide opt-out: annotation tailor.dev/managed: "false"."""
        return self.annotations.get(naming.MANAGED_ANNOTATION, "").lower() == "false"
