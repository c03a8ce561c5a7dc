"""Who may take the operator's Lease: decided from the Lease record and how long, on the
candidate's own clock, it has stayed the same."""

import datetime
from types import SimpleNamespace
from typing import Any

from kubernetes.client.exceptions import ApiException

from tailor_operator.leader import LeaseElector, lease_decision


def lease(holder: str | None, renew_time: str = "2026-11-25T12:00:00.000000Z") -> dict[str, Any]:
    return {"holderIdentity": holder, "renewTime": renew_time, "leaseDurationSeconds": 15}


def test_the_holder_renews() -> None:
    assert lease_decision(lease("a"), "a", 100.0) == "renew"


def test_a_lease_renewed_recently_is_waited_on() -> None:
    assert lease_decision(lease("b"), "a", 3.0) == "wait"


def test_a_lease_unchanged_for_its_duration_is_taken() -> None:
    assert lease_decision(lease("b"), "a", 15.0) == "acquire"


def test_a_released_lease_is_taken() -> None:
    assert lease_decision(lease(None), "a", 0.0) == "acquire"
    assert lease_decision({}, "a", 0.0) == "acquire"


class FakeLeases:
    """The Lease as another replica keeps it: it renews by writing its own wall-clock time."""

    def __init__(self, renew_time: str) -> None:
        self.spec = {"holder_identity": "b", "renew_time": renew_time, "acquire_time": None}
        self.patched: list[dict[str, Any]] = []

    def read_namespaced_lease(self, name: str, namespace: str) -> Any:
        spec = dict(self.spec, lease_duration_seconds=15, lease_transitions=0)
        return SimpleNamespace(
            spec=SimpleNamespace(to_dict=lambda: spec),
            metadata=SimpleNamespace(resource_version="1"),
        )

    def patch_namespaced_lease(self, name: str, namespace: str, body: dict[str, Any]) -> None:
        self.patched.append(body)

    def create_namespaced_lease(self, namespace: str, body: dict[str, Any]) -> None:
        raise ApiException(status=409)


def test_a_live_leader_whose_clock_lags_by_an_hour_keeps_its_lease() -> None:
    """The holder's renewTime is an hour behind the standby's wall clock, but it keeps
    changing: the standby must wait (comparing renewTime with its own clock would not)."""
    an_hour_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
    leases = FakeLeases(an_hour_ago.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    local = [0.0]
    elector = LeaseElector(leases, "ns", "tailor", "a", clock=lambda: local[0])  # type: ignore[arg-type]
    for second in range(0, 60, 5):
        local[0] = float(second)
        leases.spec["renew_time"] = (an_hour_ago + datetime.timedelta(seconds=second)).isoformat()
        assert not elector.try_hold()
    assert leases.patched == []


def test_a_leader_that_stopped_renewing_loses_its_lease_after_its_duration() -> None:
    leases = FakeLeases("2026-11-25T12:00:00.000000Z")
    local = [1000.0]
    elector = LeaseElector(leases, "ns", "tailor", "a", clock=lambda: local[0])  # type: ignore[arg-type]
    assert not elector.try_hold()  # first sight: the record may be fresh, wait a duration
    local[0] += 14.0
    assert not elector.try_hold()
    local[0] += 1.0
    assert elector.try_hold()
    assert leases.patched[-1]["spec"]["holderIdentity"] == "a"
