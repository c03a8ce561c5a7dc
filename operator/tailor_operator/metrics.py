"""Prometheus metrics of the operator (served on --metrics-port)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter("tailor_reconciles_total", "Reconciles of a pipeline, by result.", ["result"])
RECONCILE_SECONDS = Histogram(
    "tailor_reconcile_duration_seconds",
    "Wall time of one reconcile.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
TOPIC_OPERATIONS = Counter(
    "tailor_topic_operations_total", "Kafka topic operations, by kind.", ["operation"]
)
STATUS_REFRESHES = Counter(
    "tailor_status_refreshes_total", "Status-only refreshes after a child's status changed."
)
REPAIRS = Counter(
    "tailor_repairs_total",
    "Children recreated or reverted after someone else deleted or changed them, by kind.",
    ["kind"],
)
ROLLOUTS = Counter(
    "tailor_rollouts_total",
    "Model rollout steps: canary_started, promoted, rolled_back, canary_failed.",
    ["result"],
)
PIPELINE_READY = Gauge(
    "tailor_pipeline_ready",
    "1 while a pipeline's Ready condition is True, else 0 (alerts: charts/tailor/monitoring).",
    ["namespace", "pipeline"],
)
