"""Conditions follow the API conventions; availability is read from a Deployment object."""

from tailor_operator.availability import deployment_availability, pods_wanted
from tailor_operator.conditions import set_condition


def test_last_transition_time_moves_only_on_a_status_change() -> None:
    first = set_condition([], "Ready", "False", "Waiting", "a", 1, "T1")
    same = set_condition(first, "Ready", "False", "StillWaiting", "b", 2, "T2")
    assert same[0].last_transition_time == "T1"
    assert (same[0].reason, same[0].message, same[0].observed_generation) == (
        "StillWaiting",
        "b",
        2,
    )
    flipped = set_condition(same, "Ready", "True", "Done", "", 2, "T3")
    assert flipped[0].last_transition_time == "T3"


def test_conditions_keep_a_stable_order() -> None:
    conds = []
    for type_ in ("Degraded", "ScorerAvailable", "Ready", "TopicsReady"):
        conds = set_condition(conds, type_, "True", "R", "", 1, "T")
    assert [c.type for c in conds] == ["Ready", "TopicsReady", "ScorerAvailable", "Degraded"]


def deployment(replicas: int = 2, ready: int = 2, generation: int = 1, observed: int = 1, **cond):
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": observed,
            "readyReplicas": ready,
            "updatedReplicas": ready,
            "availableReplicas": ready,
            "conditions": [{"type": "Progressing", **cond}] if cond else [],
        },
    }


def test_a_rolled_out_deployment_is_available() -> None:
    assert deployment_availability(deployment()).status == "True"


def test_an_unobserved_generation_is_not_available_yet() -> None:
    result = deployment_availability(deployment(generation=2, observed=1))
    assert result.status == "False"
    assert result.reason == "DeploymentProgressing"


def test_pods_are_wanted_only_while_a_deployment_is_unavailable() -> None:
    """The operator lists pods (why a component fails) only then, never for a healthy one."""
    assert not pods_wanted([deployment(), deployment(replicas=0, ready=0)])
    assert pods_wanted([deployment(), deployment(ready=1)])
    assert pods_wanted([deployment(generation=2)])


def test_a_stuck_rollout_is_failing() -> None:
    result = deployment_availability(
        deployment(ready=0, reason="ProgressDeadlineExceeded", message="timed out")
    )
    assert (result.status, result.reason, result.failing) == ("False", "DeploymentFailed", True)


def test_zero_replicas_is_suspended_and_available() -> None:
    result = deployment_availability(deployment(replicas=0, ready=0))
    assert (result.status, result.reason) == ("True", "Suspended")


def test_missing_deployment() -> None:
    assert deployment_availability(None).status == "False"


def test_a_recreated_topic_keeps_degraded_for_ten_minutes() -> None:
    from tailor_operator import api
    from tailor_operator.conditions import get
    from tailor_operator.resource import Pipeline
    from tailor_operator.status import compute_status

    pipeline = Pipeline.from_body(
        {
            "metadata": {"namespace": "n", "name": "p", "uid": "u", "generation": 1},
            "spec": {"kafka": {"bootstrapServers": "k:9092"}, "topics": {"events": {}}},
        }
    )
    alarm = set_condition(
        [], "Degraded", "True", "TopicRecreated", "n.p.events recreated", 1, "2026-01-01T10:00:00Z"
    )
    previous = api.PipelineStatus(conditions=alarm)
    topics = set_condition([], "TopicsReady", "True", "TopicsReady", "ok", 1, "x")[0]
    ready = {f"Deployment/p-{c}": deployment() for c in ("stream-worker", "scorer")}

    def degraded(now: str):
        status = compute_status(pipeline, previous, 1, topics, {}, ready, now)
        return get(status.conditions, "Degraded")

    assert degraded("2026-01-01T10:09:00Z").reason == "TopicRecreated"
    later = degraded("2026-01-01T10:11:00Z")
    assert (later.status, later.reason) == ("False", "AsExpected")


def pod(name: str, ready: bool = False, waiting: str | None = None, since: str = "T", **extra):
    from tailor_operator.availability import slim_pod

    state = {"waiting": {"reason": waiting}} if waiting else {"running": {}}
    return slim_pod(
        {
            "metadata": {"name": name},
            "status": {
                "phase": "Running",
                "conditions": [
                    {"type": "Ready", "status": str(ready), "lastTransitionTime": since}
                ],
                "containerStatuses": [{"state": state, "restartCount": 4, **extra}],
            },
        }
    )


def test_a_crash_looping_pod_is_failing_with_its_reason_and_last_exit() -> None:
    crashing = pod(
        "scorer-1",
        waiting="CrashLoopBackOff",
        lastState={"terminated": {"exitCode": 1, "message": "model refused"}},
    )
    now = "2026-01-01T10:00:00Z"
    a = deployment_availability(deployment(ready=1), [crashing, pod("scorer-0", True)], now)
    assert (a.status, a.reason, a.failing) == ("False", "PodsFailing", True)
    assert "scorer-1: CrashLoopBackOff (4 restarts), last exit 1: model refused" in a.message


def test_a_log_tail_as_termination_message_is_cut_to_its_last_line() -> None:
    # FallbackToLogsOnError: a crash's message is the end of its log, a traceback.
    tail = "Traceback (most recent call last):\n  File x\nValueError: bad weight\n"
    crashing = pod(
        "scorer-1",
        waiting="CrashLoopBackOff",
        lastState={"terminated": {"exitCode": 1, "message": tail}},
    )
    a = deployment_availability(deployment(ready=0), [crashing], "2026-01-01T10:00:00Z")
    assert a.message.endswith("last exit 1: ValueError: bad weight"), a.message


def test_a_new_pod_crash_looping_beside_a_ready_old_one_is_failing() -> None:
    # One replica: the old pod is ready and available, the new one (updated) crash-loops.
    rolling = deployment(replicas=1, ready=1)
    rolling["status"]["replicas"] = 2
    crashing = pod(
        "scorer-new",
        waiting="CrashLoopBackOff",
        lastState={"terminated": {"exitCode": 3, "message": "model refused: knn v2: sha256"}},
    )
    a = deployment_availability(rolling, [crashing, pod("scorer-old", True)], "2026-01-01T10:00Z")
    assert (a.status, a.reason) == ("False", "PodsFailing")
    assert "last exit 3: model refused: knn v2: sha256" in a.message


def test_an_unready_pod_fails_only_after_the_grace_period() -> None:
    from tailor_operator import availability

    since = "2026-01-01T10:00:00Z"
    unready = pod("worker-0", since=since)
    early = deployment_availability(deployment(ready=1), [unready], "2026-01-01T10:00:30Z")
    assert (early.reason, early.failing) == ("DeploymentProgressing", False)
    late_time = f"2026-01-01T10:{int(availability.UNREADY_SECONDS // 60) + 1:02d}:00Z"
    late = deployment_availability(deployment(ready=1), [unready], late_time)
    assert (late.reason, late.failing) == ("PodsFailing", True)
    assert "running but not ready" in late.message
    # The grace period is the operator's setting (TAILOR_UNREADY_SECONDS), passed in.
    impatient = deployment_availability(
        deployment(ready=1), [unready], "2026-01-01T10:00:31Z", unready_seconds=30
    )
    assert impatient.failing


def test_pods_the_replica_set_cannot_create_show_its_reason_at_once() -> None:
    blocked = deployment(ready=0)
    blocked["status"]["conditions"].append(
        {
            "type": "ReplicaFailure",
            "status": "True",
            "reason": "FailedCreate",
            "message": 'pods "scorer-abc" is forbidden: exceeded quota: pods',
        }
    )
    a = deployment_availability(blocked, [], "2026-01-01T10:00:00Z")
    assert (a.status, a.reason, a.failing) == ("False", "PodsFailing", True)
    assert 'FailedCreate: pods "scorer-abc" is forbidden: exceeded quota' in a.message


def test_an_unschedulable_pod_shows_the_schedulers_reason_at_once() -> None:
    from tailor_operator.availability import slim_pod

    pending = slim_pod(
        {
            "metadata": {"name": "scorer-0"},
            "status": {
                "phase": "Pending",
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": "0/3 nodes are available: 3 Insufficient cpu.",
                    }
                ],
            },
        }
    )
    a = deployment_availability(deployment(ready=0), [pending], "2026-01-01T10:00:00Z")
    assert (a.reason, a.failing) == ("PodsFailing", True)
    assert "scorer-0: Unschedulable: 0/3 nodes are available: 3 Insufficient cpu." in a.message
