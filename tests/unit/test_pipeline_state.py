"""The runtime's decisions about one pipeline, without a cluster: which run a trigger
becomes, what is drift, what is a repair, how retries back off."""

from tailor_operator.pipeline_state import PipelineState, slim_deployment

SCORER = "Deployment/shop-scorer"
SERVICE = "Service/shop-scorer"
SETTINGS = "ConfigMap/shop-settings-1a2b"


def applied(markers: dict[str, str] | None = None, generation: int = 1) -> PipelineState:
    state = PipelineState()
    state.applied_run(markers or {SCORER: "g1", SERVICE: "rv7"}, [], generation, False)
    return state


def test_triggers_while_one_is_queued_become_one_run_and_full_wins() -> None:
    state = applied()
    assert state.queue(full=False)
    assert not state.queue(full=False)
    assert not state.take()  # two refreshes: one refresh
    assert state.queue(full=False)
    assert not state.queue(full=True)
    assert not state.queue(full=False)
    assert state.take()  # a full one among them: one full reconcile
    assert state.queued is None


def test_the_first_run_of_a_pipeline_is_full_whatever_asked_for_it() -> None:
    state = PipelineState()
    state.queue(full=False)
    assert state.take()


def test_drift_is_decided_when_the_run_starts_not_at_the_trigger() -> None:
    state = applied()
    state.queue(full=False)  # a Deployment's status changed: a refresh ...
    state.child_changed(SERVICE, "rv9")  # ... and, before it starts, a hand edit
    assert state.take()


def test_our_own_apply_seen_by_the_watch_is_not_drift() -> None:
    state = applied()
    state.child_changed(SCORER, "g1")
    state.child_changed(SERVICE, "rv7")
    assert not state.drifted()
    # A child the last apply did not leave (another operator's, an old ConfigMap) is not
    # ours to judge.
    state.child_changed("ConfigMap/shop-settings-old", "rv1")
    assert not state.drifted()
    state.child_changed(SCORER, "g2")
    assert state.drifted()


def test_present_children_are_what_the_watch_shows_and_what_we_last_applied() -> None:
    state = applied({SCORER: "g1"})  # applied, its watch event still on its way
    state.child_changed(SERVICE, "rv7")
    state.child_changed("HorizontalPodAutoscaler/shop-scorer", "rv2")
    state.child_deleted("HorizontalPodAutoscaler/shop-scorer")
    assert state.present() == {SCORER, SERVICE}
    assert PipelineState().present() == frozenset()  # created after the watches began


def test_children_of_a_pipeline_listed_at_start_are_unknown_until_its_first_apply() -> None:
    state = PipelineState(listed=True)
    state.child_changed(SERVICE, "rv7")  # the watches may not have listed the rest yet
    assert state.present() is None
    state.applied_run({SCORER: "g1"}, [], 1, False)
    assert state.present() == {SCORER}


def test_a_deleted_child_is_reconciled_unless_we_stopped_applying_it() -> None:
    state = applied({SCORER: "g1", SETTINGS: "rv3"})
    state.deployments[SCORER] = {"metadata": {"name": "shop-scorer"}}
    assert state.child_deleted(SCORER)
    assert SCORER not in state.deployments
    assert state.drifted()
    assert not state.child_deleted("ConfigMap/shop-settings-old")
    # Nothing applied yet (the operator just started): every deletion counts.
    assert PipelineState().child_deleted(SETTINGS)


def test_an_unchanged_spec_that_recreates_or_reverts_a_child_reports_a_repair() -> None:
    state = applied()
    repairs = state.applied_run({SCORER: "g2", SERVICE: "rv8"}, [SERVICE], 1, False)
    assert repairs == {SCORER: "reverted a change to", SERVICE: "recreated"}
    # What was just applied is what the watch will show next.
    assert state.seen == {SCORER: "g2", SERVICE: "rv8"}
    assert not state.drifted()
    assert state.applied_run({SCORER: "g2", SERVICE: "rv8"}, [], 1, False) == {}


def test_a_new_spec_a_rollout_or_a_first_apply_repairs_nothing() -> None:
    moved = {SCORER: "g2", SERVICE: "rv8"}
    assert applied().applied_run(moved, [SERVICE], 2, False) == {}  # the spec changed
    assert applied().applied_run(moved, [], 1, on_purpose=True) == {}  # promoted
    assert PipelineState().applied_run(moved, [SCORER, SERVICE], 1, False) == {}
    # A child new in this apply (the canary's) was never ours before: not a repair.
    assert applied().applied_run({**moved, "Deployment/shop-canary": "g1"}, [], 1, False) == {
        SCORER: "reverted a change to",
        SERVICE: "reverted a change to",
    }


def test_retries_count_failures_once_per_scheduled_retry() -> None:
    state = PipelineState()
    assert state.retry_wanted() == 0
    state.retry = object()  # type: ignore[assignment]  # a scheduled retry's handle
    assert state.retry_wanted() is None  # already scheduled: not counted again
    state.retry = None
    assert state.retry_wanted() == 1
    assert state.failures == 2


def test_a_slim_deployment_keeps_what_the_status_reads() -> None:
    deployment = {
        "metadata": {
            "name": "shop-scorer",
            "namespace": "shop",
            "generation": 4,
            "managedFields": [{"manager": "tailor-operator"}] * 50,
            "annotations": {
                "tailor.dev/model-version": "v3",
                "deployment.kubernetes.io/revision": "9",
            },
        },
        "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "scorer"}]}}},
        "status": {"readyReplicas": 2, "observedGeneration": 4},
    }
    assert slim_deployment(deployment) == {
        "metadata": {
            "name": "shop-scorer",
            "namespace": "shop",
            "generation": 4,
            "annotations": {"tailor.dev/model-version": "v3"},
        },
        "spec": {"replicas": 3},
        "status": {"readyReplicas": 2, "observedGeneration": 4},
    }


def pipeline(version: str, phase: str) -> dict[str, object]:
    return {
        "metadata": {
            "name": "shop",
            "resourceVersion": version,
            "managedFields": [{"manager": "kubectl"}],
        },
        "status": {"phase": phase},
    }


def test_a_run_starts_from_the_newest_body_seen_never_an_older_one() -> None:
    state = PipelineState()
    state.saw(pipeline("10", "Pending"))
    # Our status write's response, then the watch's event from before it, late.
    state.saw(pipeline("12", "Ready"))
    state.saw(pipeline("11", "Pending"))
    assert state.body == {
        "metadata": {"name": "shop", "resourceVersion": "12"},
        "status": {"phase": "Ready"},
    }
    state.saw(pipeline("12", "Ready"))  # the watch catches up
    state.saw(pipeline("100", "Degraded"))  # longer is newer, not earlier as text
    assert state.body is not None
    assert state.body["status"] == {"phase": "Degraded"}


def test_a_body_whose_version_is_not_comparable_is_read_again() -> None:
    state = PipelineState()
    state.saw(pipeline("10", "Pending"))
    state.saw(pipeline("0x1f", "Ready"))  # not KEP-5504's form: nothing concluded
    assert state.body is None
    state.saw(pipeline("012", "Ready"))
    assert state.body is None
    state.saw(None)  # our status write found the pipeline gone
    assert state.body is None
