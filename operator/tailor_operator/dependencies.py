"""What a reconcile works with: the adapters, the images, the operator's settings, a clock."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from tailor_operator import conditions
from tailor_operator.adapters.decision_log import DecisionLogs
from tailor_operator.adapters.kafka_admin import KafkaAdmin
from tailor_operator.adapters.kube import KubeAdapter
from tailor_operator.render import Images
from tailor_operator.settings import OperatorSettings


@dataclass(frozen=True)
class Dependencies:
    kube: KubeAdapter
    kafka_admin: Callable[[Mapping[str, str]], KafkaAdmin]
    images: Images
    decision_logs: DecisionLogs = field(default_factory=DecisionLogs)
    settings: OperatorSettings = field(default_factory=OperatorSettings)
    now: Callable[[], str] = conditions.now_rfc3339
