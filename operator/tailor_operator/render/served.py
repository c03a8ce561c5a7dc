"""What the scorer Deployments serve: the input of rendering a rollout's state."""

from __future__ import annotations

from dataclasses import dataclass

from tailor_operator import api


@dataclass(frozen=True)
class Served:
    """The model of the stable scorer Deployment, and of the canary one (None: no canary).
    ``rollout.served`` decides it from the spec and the model status."""

    stable: api.ModelSpec | None
    canary: api.ModelSpec | None = None
