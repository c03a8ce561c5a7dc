"""A reconcile that cannot go on says why in status and one Warning Event, never raises."""

from __future__ import annotations

from typing import Any

import pytest

from tailor_operator.dependencies import Dependencies
from tailor_operator.reconcile import reconcile
from tailor_operator.render import Images


class Unreachable:
    """Neither the API server nor Kafka may be touched before the spec is known good."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"touched {name} for a spec that cannot be rendered")


def body(**features: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "shop", "name": "storefront", "uid": "u", "generation": 4},
        "spec": {"kafka": {"bootstrapServers": "kafka:9092"}, "features": features},
    }


@pytest.mark.parametrize(
    "half_life",
    [
        "0s",  # the programs refuse a zero half-life
        "9" * 400 + "d",  # overflowed a float
    ],
)
def test_a_spec_that_cannot_be_rendered_is_invalid_with_the_field(half_life: str) -> None:
    deps = Dependencies(
        kube=Unreachable(),  # type: ignore[arg-type]
        kafka_admin=Unreachable(),  # type: ignore[arg-type]
        images=Images(stream_worker="w:1", scorer="s:1"),
    )
    outcome = reconcile(body(halfLife=half_life), deps)
    assert outcome.invalid is not None
    assert "halfLife" in outcome.invalid or "half_life" in outcome.invalid
    assert outcome.status is not None
    ready = next(c for c in outcome.status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert outcome.status["observedGeneration"] == 4
    assert [(e.type, e.reason) for e in outcome.events] == [("Warning", "InvalidSpec")]
