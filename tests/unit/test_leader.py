"""Who may take the operator's Lease, decided from the Lease alone."""

import datetime

from tailor_operator.leader import lease_decision

NOW = datetime.datetime(2026, 11, 25, 12, 0, 0, tzinfo=datetime.UTC)


def lease(holder: str | None, renewed_seconds_ago: float, duration: int = 15) -> dict:
    renewed = NOW - datetime.timedelta(seconds=renewed_seconds_ago)
    return {
        "holderIdentity": holder,
        "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "leaseDurationSeconds": duration,
    }


def test_the_holder_renews() -> None:
    assert lease_decision(lease("a", 3), "a", NOW) == "renew"


def test_a_live_lease_of_another_replica_is_waited_on() -> None:
    assert lease_decision(lease("b", 3), "a", NOW) == "wait"


def test_an_expired_lease_is_taken() -> None:
    assert lease_decision(lease("b", 16), "a", NOW) == "acquire"


def test_a_released_lease_is_taken() -> None:
    assert lease_decision(lease(None, 0), "a", NOW) == "acquire"
    assert lease_decision({}, "a", NOW) == "acquire"
