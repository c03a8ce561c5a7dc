"""What the runtime counts as a change of a pipeline, and how long it waits to retry."""

import copy

from tailor_operator.pipeline_state import inputs
from tailor_operator.runtime import backoff

PIPELINE = {
    "metadata": {
        "namespace": "shop",
        "name": "storefront",
        "uid": "u-1",
        "generation": 3,
        "labels": {"team": "growth"},
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}"},
    },
    "spec": {"kafka": {"bootstrapServers": "kafka:9092"}},
    "status": {"observedGeneration": 2},
}


def changed(edit) -> bool:
    body = copy.deepcopy(PIPELINE)
    edit(body)
    return inputs(body) != inputs(PIPELINE)


def test_status_writes_and_kubectls_bookkeeping_are_not_changes() -> None:
    assert not changed(lambda b: b["status"].update(observedGeneration=3))
    assert not changed(
        lambda b: b["metadata"]["annotations"].update(
            {"kubectl.kubernetes.io/last-applied-configuration": "{changed}"}
        )
    )
    assert not changed(lambda b: b["metadata"].update(resourceVersion="99"))


def test_a_new_spec_label_annotation_or_object_is_a_change() -> None:
    assert changed(lambda b: b["metadata"].update(generation=4))
    assert changed(lambda b: b["metadata"]["labels"].update(team="search"))
    assert changed(lambda b: b["metadata"]["annotations"].update({"tailor.dev/managed": "false"}))
    # Deleted and created again under the same name between two events.
    assert changed(lambda b: b["metadata"].update(uid="u-2"))


def test_retries_back_off_to_a_minute() -> None:
    assert [backoff(n) for n in range(7)] == [2, 4, 8, 16, 32, 60, 60]
