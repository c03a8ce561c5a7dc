"""Drift is a change to a field Tailor owns, read from managedFields; not a new generation."""

from __future__ import annotations

import copy
from typing import Any

from tailor_operator.ownership import change_marker, owns_replicas

OURS: dict[str, Any] = {
    "f:spec": {
        "f:replicas": {},
        "f:template": {"f:spec": {"f:containers": {'k:{"name":"scorer"}': {"f:image": {}}}}},
    }
}


def deployment(
    ours: dict[str, Any] | None,
    generation: int = 1,
    applied_at: str = "2026-12-02T07:00:00Z",
    **others: Any,
) -> dict[str, Any]:
    managed = [
        {"manager": manager, "operation": "Update", "fieldsV1": fields}
        for manager, fields in others.items()
    ]
    if ours is not None:
        managed.append(
            {
                "manager": "tailor-operator",
                "operation": "Apply",
                "time": applied_at,
                "fieldsV1": ours,
            }
        )
        # The same manager's status writes are another entry, never the marker.
        managed.append(
            {
                "manager": "tailor-operator",
                "operation": "Apply",
                "subresource": "status",
                "fieldsV1": {"f:status": {"f:generation": generation}},
            }
        )
    return {"metadata": {"generation": generation, "managedFields": managed}}


def test_an_hpa_scaling_or_a_restart_is_not_a_change_to_what_tailor_owns() -> None:
    applied = deployment(OURS)
    # The HPA changed replicas (Tailor handed them over), and `kubectl rollout restart`
    # added a pod template annotation: new generations, the same fields of Tailor's.
    without_replicas = copy.deepcopy(OURS)
    del without_replicas["f:spec"]["f:replicas"]
    scaled = deployment(
        without_replicas,
        generation=7,
        **{"kube-controller-manager": {"f:spec": {"f:replicas": {}}}},
    )
    assert change_marker(scaled) == change_marker(deployment(without_replicas))
    restarted = deployment(
        OURS,
        generation=2,
        kubectl={"f:spec": {"f:template": {"f:metadata": {"f:annotations": {}}}}},
    )
    assert change_marker(restarted) == change_marker(applied)


def test_another_writer_changing_a_field_tailor_owns_moves_the_marker() -> None:
    # `kubectl set image` takes the image field out of Tailor's set.
    edited = copy.deepcopy(OURS)
    del edited["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"scorer"}']["f:image"]
    assert change_marker(deployment(edited)) != change_marker(deployment(OURS))
    assert change_marker(deployment(None)) != change_marker(deployment(OURS))


def test_an_apply_that_put_a_change_back_moves_the_marker() -> None:
    # The same fields as before the edit, but Tailor's apply changed a value: a new time.
    before = deployment(OURS)
    reverted = deployment(OURS, generation=3, applied_at="2026-12-02T07:00:09Z")
    assert change_marker(reverted) != change_marker(before)


def test_replicas_ownership_is_read_from_tailors_apply_entry() -> None:
    assert owns_replicas(deployment(OURS))
    assert not owns_replicas(
        deployment({"f:spec": {}}, **{"kube-controller-manager": {"f:spec": {"f:replicas": {}}}})
    )
    assert not owns_replicas({"metadata": {}})
