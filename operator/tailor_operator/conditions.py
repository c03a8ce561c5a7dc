"""Status conditions per the Kubernetes API conventions, kept by one pure function."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from enum import StrEnum
from typing import Literal

from tailor_operator.api import Condition

__all__ = ["Condition", "Reason", "get", "now_rfc3339", "set_condition"]

Status = Literal["True", "False", "Unknown"]

READY = "Ready"
TOPICS_READY = "TopicsReady"
STREAM_WORKER_AVAILABLE = "StreamWorkerAvailable"
SCORER_AVAILABLE = "ScorerAvailable"
DEGRADED = "Degraded"
MODEL_ROLLED_OUT = "ModelRolledOut"
CONDITION_TYPES = (
    READY,
    TOPICS_READY,
    STREAM_WORKER_AVAILABLE,
    SCORER_AVAILABLE,
    DEGRADED,
    MODEL_ROLLED_OUT,
)


class Reason(StrEnum):
    INVALID_SPEC = "InvalidSpec"
    TOPICS_READY = "TopicsReady"
    TOPICS_UNMANAGED = "TopicsUnmanaged"
    KAFKA_UNAVAILABLE = "KafkaUnavailable"
    TOPIC_ERROR = "TopicError"
    DEPLOYMENT_AVAILABLE = "DeploymentAvailable"
    DEPLOYMENT_PROGRESSING = "DeploymentProgressing"
    DEPLOYMENT_FAILED = "DeploymentFailed"
    SUSPENDED = "Suspended"
    ALL_COMPONENTS_READY = "AllComponentsReady"
    COMPONENTS_NOT_READY = "ComponentsNotReady"
    AS_EXPECTED = "AsExpected"
    COMPONENT_FAILING = "ComponentFailing"
    FORBIDDEN = "Forbidden"
    APPLY_FAILED = "ApplyFailed"
    KAFKA_CLIENT_ERROR = "KafkaClientError"
    TOPIC_RECREATED = "TopicRecreated"
    PODS_FAILING = "PodsFailing"
    ROLLED_OUT = "RolledOut"
    ROLLING_OUT = "RollingOut"
    CANARY_STARTED = "CanaryStarted"
    CANARY_ANALYSIS = "CanaryAnalysis"
    CANARY_PROMOTED = "CanaryPromoted"
    CANARY_FAILED = "CanaryFailed"
    ROLLED_BACK = "RolledBack"


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: Sequence[Condition],
    type_: str,
    status: Status,
    reason: str,
    message: str,
    generation: int,
    now: str,
) -> list[Condition]:
    """Replace one condition, keeping lastTransitionTime unless the status changed."""
    previous = next((c for c in conditions if c.type == type_), None)
    transition = now
    if previous is not None and previous.status == status:
        transition = previous.last_transition_time
    updated = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=transition,
        observed_generation=generation,
    )
    others = [c for c in conditions if c.type != type_]
    return sorted([*others, updated], key=_order)


def _order(condition: Condition) -> tuple[int, str]:
    try:
        return CONDITION_TYPES.index(condition.type), condition.type
    except ValueError:
        return len(CONDITION_TYPES), condition.type


def seconds_between(earlier: str, later: str) -> float:
    """Seconds from one RFC 3339 time to another."""
    parse = datetime.datetime.fromisoformat
    return (parse(later) - parse(earlier)).total_seconds()


def age_seconds(condition: Condition, now: str) -> float:
    """Seconds since the condition last changed status, as of ``now`` (RFC 3339)."""
    return seconds_between(condition.last_transition_time, now)


def get(conditions: Sequence[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)
