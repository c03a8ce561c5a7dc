"""The PersonalizationPipeline API (tailor.dev/v1alpha1): the one source of the CRD schema.

Every field has a description (it becomes `kubectl explain`), camelCase aliases match the
YAML, and validation that needs the whole object or its previous version is a CEL rule
(``x-kubernetes-validations``) evaluated by the API server, before the operator sees it.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from tailor_pipeline.settings import MAX_K

GROUP = "tailor.dev"
VERSION = "v1alpha1"
KIND = "PersonalizationPipeline"
PLURAL = "personalizationpipelines"
SINGULAR = "personalizationpipeline"
SHORT_NAMES = ("ppl",)
API_VERSION = f"{GROUP}/{VERSION}"
# What a new events topic gets when its partitions are unset (render.topics uses it).
DEFAULT_EVENTS_PARTITIONS = 12
# The longest child name, <name>-stream-worker, must stay a 63-character DNS label, and the
# pods' generated names need room too.
MAX_NAME_LENGTH = 40

# At most nine digits: a duration is a float of seconds everywhere (a 400-digit one
# overflowed).
DURATION_PATTERN = r"^[0-9]{1,9}(ms|s|m|h|d)$"
POSITIVE_DURATION_PATTERN = r"^[1-9][0-9]{0,8}(ms|s|m|h|d)$"
# resource.Quantity, as Kubernetes' own CRDs write it.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]"
    r"|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
# A label value, and a label key: an optional DNS-subdomain prefix and a name.
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
LABEL_KEY_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$"
)
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

Quantity = int | Annotated[str, Field(pattern=QUANTITY_PATTERN)]


def parse_duration(text: str) -> float:
    """Seconds in a duration like ``30m`` (the units of DURATION_PATTERN)."""
    match = re.fullmatch(DURATION_PATTERN[1:-1], text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 500ms, 30s, 30m, 12h or 7d")
    return int(text[: match.start(1)]) * _DURATION_UNITS[match[1]]


def _cel(rule: str, message: str, field_path: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


class ApiModel(BaseModel):
    """Base of every API object: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


# --- spec: Kafka -----------------------------------------------------------------------------


class SecretReference(ApiModel):
    """A Secret in the pipeline's namespace."""

    name: str = Field(min_length=1, max_length=253, description="Name of the Secret.")


class KafkaSpec(ApiModel):
    """How the operator and the pipeline programs reach Kafka."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "!self.securityProtocol.startsWith('SASL') || has(self.authSecretRef)",
                    "authSecretRef is required with a SASL securityProtocol: the clients would"
                    " connect with an empty user",
                    ".authSecretRef",
                )
            ]
        }
    )

    bootstrap_servers: str = Field(
        min_length=1,
        description="Comma-separated host:port list of Kafka brokers, e.g. kafka.kafka.svc:9092.",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security.protocol of every client Tailor creates."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism, used with the SASL_* protocols."
    )
    auth_secret_ref: SecretReference | None = Field(
        None,
        description=(
            "Secret holding client credentials, never inline in the spec: keys `username` and"
            " `password` for SASL, `ca.crt` for a private CA with SSL."
        ),
    )


# --- spec: topics ----------------------------------------------------------------------------


class TopicSpec(ApiModel):
    """One Kafka topic the pipeline owns."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "!has(oldSelf.partitions) || !has(self.partitions) ||"
                    " self.partitions >= oldSelf.partitions",
                    "partitions may only grow: Kafka cannot remove partitions (unset keeps"
                    " what the topic has)",
                    ".partitions",
                ),
                _cel(
                    "!has(oldSelf.replicationFactor) || !has(self.replicationFactor) ||"
                    " self.replicationFactor == oldSelf.replicationFactor",
                    "replicationFactor is immutable once set (unset keeps what the topic has)",
                    ".replicationFactor",
                ),
            ]
        }
    )

    partitions: int | None = Field(
        None,
        ge=1,
        le=10000,
        description=(
            "Number of partitions; may only grow. Unset: an existing topic keeps its count; a"
            f" new one gets {DEFAULT_EVENTS_PARTITIONS} (events), the events topic's count"
            " (profiles and trending, which also grow with it) or the broker default (others)."
        ),
    )
    replication_factor: int | None = Field(
        None,
        ge=1,
        le=32,
        description="Replicas per partition; immutable once set. Unset: the broker default.",
    )
    retention_ms: int | None = Field(
        None,
        ge=-1,
        description="retention.ms of the topic (-1: keep forever). Unset: the broker default.",
    )
    config: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Further topic configs (e.g. min.insync.replicas). Tailor sets cleanup.policy of"
            " the compacted topics itself."
        ),
    )
    managed: bool = Field(
        True,
        description=(
            "false: Tailor only uses the topic; it creates it if missing but never aligns its"
            " config, adds partitions or deletes it."
        ),
    )


def _topic(description: str) -> Any:
    return Field(
        default_factory=TopicSpec,
        description=description,
        json_schema_extra={"default": {}},
    )


class TopicsSpec(ApiModel):
    """The pipeline's Kafka topics, named <namespace>.<pipeline>.<role>."""

    events: TopicSpec = _topic(
        "Click events from the apps, keyed by user_id; its partitions bound the stream"
        " workers' parallelism."
    )
    profiles: TopicSpec = _topic("User profiles (compacted, keyed by user_id).")
    trending: TopicSpec = _topic("Trending item counts (compacted).")
    decisions: TopicSpec = _topic("Every decision the scorer served, for online quality.")
    dead_letter: TopicSpec = _topic("Events that failed validation, with the reason in headers.")
    deletion_policy: Literal["Retain", "Delete"] = Field(
        "Retain",
        description=(
            "What happens to the topics when the pipeline is deleted: Retain keeps them and"
            " their data, Delete removes them."
        ),
    )


# --- spec: features --------------------------------------------------------------------------

DEFAULT_EVENT_WEIGHTS = {"view": 1.0, "click": 2.0, "add_to_cart": 4.0, "purchase": 8.0}


class FeaturesSpec(ApiModel):
    """How the stream worker turns events into a user profile."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "!has(self.seenEventTypes) || !has(self.eventWeights)"
                    " || self.seenEventTypes.all(t, t in self.eventWeights)",
                    "every seenEventTypes entry must be an event type of eventWeights",
                    ".seenEventTypes",
                )
            ]
        }
    )

    half_life: Annotated[str, Field(pattern=POSITIVE_DURATION_PATTERN)] = Field(
        "30m", description="Half-life of a user's affinities, e.g. 30m or 7d; more than zero."
    )
    recent_items: int = Field(
        50, ge=1, le=1000, description="How many recent items each user's profile keeps."
    )
    event_weights: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS),
        description="Weight of each event type in the affinities; other types are ignored.",
        json_schema_extra={"default": dict(DEFAULT_EVENT_WEIGHTS)},
    )
    seen_event_types: list[
        Annotated[str, Field(min_length=1, max_length=64, description="An event type.")]
    ] = Field(
        default_factory=lambda: ["purchase"],
        max_length=32,
        description="Event types that make an item seen: the scorer never recommends it to"
        " that user again (kept as a 4-byte hash per item, no cap). [purchase] suits a"
        " store; add view where an item is rarely consumed twice (films, articles); [] to"
        " exclude nothing.",
        json_schema_extra={"default": ["purchase"]},
    )


# --- spec: workloads -------------------------------------------------------------------------


class ResourceRequirements(ApiModel):
    """CPU and memory of each container, as in a Pod spec."""

    requests: dict[str, Quantity] = Field(
        default_factory=dict, description="Minimum resources, e.g. {cpu: 500m, memory: 512Mi}."
    )
    limits: dict[str, Quantity] = Field(
        default_factory=dict, description="Maximum resources, e.g. {memory: 1Gi}."
    )


class AutoscalingSpec(ApiModel):
    """A HorizontalPodAutoscaler on CPU; when set it owns the replica count."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "self.minReplicas <= self.maxReplicas",
                    "minReplicas must be less than or equal to maxReplicas",
                    ".minReplicas",
                )
            ]
        }
    )

    min_replicas: int = Field(1, ge=1, le=1000, description="Fewest replicas.")
    max_replicas: int = Field(ge=1, le=1000, description="Most replicas.")
    target_cpu_utilization: int = Field(
        70, ge=1, le=100, description="Average CPU utilization (percent of requests) to hold."
    )
    scale_down_stabilization: Annotated[str, Field(pattern=DURATION_PATTERN)] = Field(
        "5m",
        description="How long load must stay low before replicas are removed, e.g. 5m (the"
        " HPA's scaleDown stabilizationWindowSeconds; at most 1h). Short: follows traffic"
        " closely; long: fewer restarts and, for workers, fewer partition hand-overs.",
    )


class ScorerAutoscalingSpec(AutoscalingSpec):
    """The scorers' HPA: on CPU, and optionally on how long requests wait."""

    queue_wait_ms: float | None = Field(
        None,
        gt=0,
        le=10000,
        description="Also add scorers while their average queue wait (the metric"
        " tailor_scorer_queue_wait_seconds) is above this many ms. Needs a custom-metrics API"
        " serving that pod metric, e.g. prometheus-adapter (see the chart's README).",
    )


class WorkloadSpec(ApiModel):
    """Common settings of a Deployment Tailor runs."""

    image: Annotated[str, Field(pattern=r"^[^\s]+$", max_length=1024)] | None = Field(
        None, description="Container image. Unset: the image matching the operator's version."
    )
    replicas: int = Field(2, ge=0, le=1000, description="Replicas when autoscaling is off.")
    resources: ResourceRequirements | None = Field(
        None, description="Container resources. Unset: a default sized for a small pipeline."
    )
    autoscaling: AutoscalingSpec | None = Field(
        None, description="Scale on CPU with an HPA instead of a fixed replica count."
    )
    pod_labels: dict[str, Annotated[str, Field(pattern=LABEL_VALUE_PATTERN, max_length=63)]] = (
        Field(
            default_factory=dict,
            max_length=64,
            description="Extra labels on the pods (a service mesh, cost reports). Tailor's own"
            " labels win where keys clash; the Deployment's selector never changes.",
            json_schema_extra={
                "x-kubernetes-validations": [
                    _cel(
                        "self.all(k, k.size() <= 316 && k.matches('"
                        + LABEL_KEY_PATTERN.replace("\\", "\\\\")
                        + "'))",
                        "every key must be a label key: an optional DNS-subdomain prefix and '/',"
                        " then at most 63 letters, digits, '-', '_' or '.'",
                    )
                ]
            },
        )
    )


class ModelSpec(ApiModel):
    """A versioned recommendation model artifact."""

    name: str = Field(min_length=1, max_length=63, description="Model family, e.g. item-knn.")
    version: str = Field(
        min_length=1, max_length=63, description="Version, e.g. 2026-11-20; shown in status."
    )
    uri: Annotated[str, Field(pattern=r"^(https?|file)://[^\s]+$")] = Field(
        max_length=2048,
        description="Where the scorer downloads the artifact: an https://, http:// or file:// URI.",
    )
    sha256: Annotated[str, Field(pattern=r"^[a-f0-9]{64}$")] = Field(
        description="sha256 of the artifact, 64 lowercase hex characters; verified before use."
    )


class CanarySpec(ApiModel):
    """How a canary is judged before it is promoted (see the operator's DESIGN.md)."""

    replicas: int = Field(
        1,
        ge=1,
        le=100,
        description="Replicas of the canary Deployment. The Service spreads requests over"
        " stable and canary pods alike, so the canary's share is replicas / (stable + canary).",
    )
    analysis_duration: Annotated[str, Field(pattern=DURATION_PATTERN)] = Field(
        "10m",
        description="How long the canary serves beside stable before it can pass, e.g. 10m."
        " A failing check rolls back as soon as it has minSamples, without waiting.",
    )
    min_samples: int = Field(
        1000,
        ge=10,
        description="Fewest requests (and decisions showing items, for the click-through"
        " comparison, on each of canary and stable) before a check can pass or fail.",
    )
    max_error_rate: float = Field(
        0.01, ge=0, le=1, description="Highest share of failed requests the canary may have."
    )
    max_p99_latency_ms: float = Field(
        25, gt=0, description="Highest p99 decision latency the canary may have."
    )
    min_ctr_ratio: float = Field(
        0.95,
        ge=0,
        description="Lowest canary click-through rate as a fraction of stable's; the canary"
        " fails only when it is below with 95% confidence.",
    )
    attribution_window: Annotated[str, Field(pattern=DURATION_PATTERN)] = Field(
        "5m",
        description="A click counts for a decision when it follows it within this long and"
        " is on one of the items it showed.",
    )


class RolloutSpec(ApiModel):
    """How a new model reaches the scorers."""

    strategy: Literal["Rolling", "Canary"] = Field(
        "Rolling",
        description=(
            "Rolling: replace scorers with zero unavailable. Canary: serve the new model"
            " beside stable and promote it only when it passes analysis. A canary needs a"
            " stable model to be judged against: the first model a pipeline gets rolls out"
            " like Rolling, and removing scorer.model withdraws a running canary and rolls"
            " the scorers to trending-only ranking."
        ),
    )
    canary: CanarySpec = Field(
        default_factory=CanarySpec,
        description="Canary settings (strategy Canary).",
        json_schema_extra={"default": {}},
    )
    auto_rollback: bool = Field(
        True,
        description="Roll back to the previous model when a rollout fails or stalls. false:"
        " a failed canary keeps serving beside stable until the spec changes.",
    )
    progress_deadline_seconds: int = Field(
        600,
        ge=30,
        description="Rolling: a rollout not finished after this long has failed. Canary: a"
        " canary still short of samples this long after its analysis window has stalled.",
    )


class StreamWorkerSpec(WorkloadSpec):
    """The stream worker: events in, profiles and trending out, exactly-once."""

    transaction_interval_ms: int = Field(
        100,
        ge=1,
        le=60000,
        description="While events are waiting, commit a Kafka transaction at least this "
        "often. A worker that has caught up commits as soon as it has processed what "
        "arrived, so a click is not held back to the next interval.",
    )
    transaction_max_events: int = Field(
        20000,
        ge=1,
        le=1000000,
        description="Commit a transaction after this many events: what one transaction "
        "holds, and replays if it aborts.",
    )


class OverloadSpec(ApiModel):
    """What a scorer does when requests come faster than it can rank them. The signal is
    how long a request arriving now waits for the scorer (its event loop's lateness)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    # has(): the API server also checks the rule against the default {}.
                    "!has(self.degradeAfterMs) || !has(self.shedAfterMs) ||"
                    " self.degradeAfterMs < self.shedAfterMs",
                    "degradeAfterMs must be below shedAfterMs",
                    ".degradeAfterMs",
                )
            ]
        }
    )

    degrade_after_ms: float = Field(
        3.0,
        gt=0,
        le=10000,
        description="A request that waited this long for the scorer is answered from trending"
        " or popular items (reason: degraded) instead of ranked: cheap, so the queue stops"
        " growing. While requests keep waiting this long, a growing share of all of them is.",
    )
    shed_after_ms: float = Field(
        50.0,
        gt=0,
        le=60000,
        description="A request that waited this long is refused: 503 with Retry-After (so is"
        " a growing share once degrading every request is not enough). A client may ask for"
        " less with the X-Tailor-Deadline-Ms header.",
    )


class ScorerSpec(WorkloadSpec):
    """The scorer: HTTP decisions from live profiles and the model."""

    replicas: int = Field(2, ge=0, le=1000, description="Replicas when autoscaling is off.")
    port: int = Field(8080, ge=1024, le=65535, description="HTTP port of the scorer Service.")
    autoscaling: ScorerAutoscalingSpec | None = Field(
        None, description="Scale on CPU (and the queue wait) with an HPA instead of a fixed count."
    )
    model: ModelSpec | None = Field(
        None, description="The model to serve. Unset: rank by trending and popularity only."
    )
    rollout: RolloutSpec = Field(
        default_factory=RolloutSpec,
        description="How model changes roll out.",
        json_schema_extra={"default": {}},
    )
    overload: OverloadSpec = Field(
        default_factory=OverloadSpec,
        description="Graceful overload: degraded answers, then 503s, instead of a queue.",
        json_schema_extra={"default": {}},
    )


class ExplorationSpec(ApiModel):
    """Exploration of items the model would not pick."""

    epsilon: float = Field(
        0.05, ge=0, le=1, description="Share of decisions that include one exploratory item."
    )


class DecisionSpec(ApiModel):
    """Defaults of every decision the scorer makes."""

    default_k: int = Field(
        10,
        ge=1,
        le=MAX_K,
        description=f"Items returned when a request names no k (a request's k: 1 to {MAX_K}).",
    )
    exploration: ExplorationSpec = Field(
        default_factory=ExplorationSpec,
        description="Epsilon exploration.",
        json_schema_extra={"default": {}},
    )
    fallback: Literal["popular", "trending"] = Field(
        "popular",
        description="What users with little or no recent activity lean on: popular (this"
        " week's most popular items, counted live by the stream workers) or trending (what"
        " is clicked in the last hours). The more fresh activity a user has, the less it"
        " weighs; a first visit gets it alone. popular is the better default: it wins on"
        " first visits in bench/quality.py.",
    )


class PipelineSpec(ApiModel):
    """Desired state of a personalization pipeline."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "!has(self.streamWorker.autoscaling) || !has(self.topics.events.partitions) ||"
                    " self.streamWorker.autoscaling.maxReplicas <= self.topics.events.partitions",
                    "streamWorker.autoscaling.maxReplicas must not exceed"
                    " topics.events.partitions: a worker beyond the partition count idles",
                    ".streamWorker.autoscaling.maxReplicas",
                ),
            ]
        }
    )

    suspend: bool = Field(
        False, description="true: scale workers and scorers to zero, keep topics and state."
    )
    kafka: KafkaSpec = Field(description="The Kafka cluster the pipeline runs on.")
    topics: TopicsSpec = Field(
        default_factory=TopicsSpec, description="Kafka topics.", json_schema_extra={"default": {}}
    )
    features: FeaturesSpec = Field(
        default_factory=FeaturesSpec,
        description="Profile features.",
        json_schema_extra={"default": {}},
    )
    stream_worker: StreamWorkerSpec = Field(
        default_factory=StreamWorkerSpec,
        description="The stream worker Deployment.",
        json_schema_extra={"default": {}},
    )
    scorer: ScorerSpec = Field(
        default_factory=ScorerSpec,
        description="The scorer Deployment and Service.",
        json_schema_extra={"default": {}},
    )
    decision: DecisionSpec = Field(
        default_factory=DecisionSpec,
        description="Decision defaults.",
        json_schema_extra={"default": {}},
    )


# --- status ----------------------------------------------------------------------------------


class Condition(ApiModel):
    """An observation of one aspect of the pipeline (Kubernetes API conventions)."""

    type: str = Field(description="Ready, TopicsReady, StreamWorkerAvailable, and so on.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason for the last transition.")
    message: str = Field("", description="Human-readable details.")
    last_transition_time: str = Field(description="When status last changed (RFC 3339).")
    observed_generation: int = Field(0, description="The generation this was computed from.")


class TopicStatus(ApiModel):
    """What Kafka reports for one topic."""

    name: str = Field(description="Kafka topic name.")
    partitions: int = Field(0, description="Partitions the topic has.")
    replication_factor: int = Field(0, description="Replicas per partition.")


class WorkloadStatus(ApiModel):
    """Replica counts of a Deployment."""

    replicas: int = Field(0, description="Desired replicas.")
    ready_replicas: int = Field(0, description="Ready replicas.")


class ModelStatus(ApiModel):
    """Which model versions serve, and the state of the last rollout (it survives an
    operator restart here)."""

    active: str | None = Field(None, description="Version the stable scorers serve.")
    active_ref: ModelSpec | None = Field(
        None,
        description="The full reference of active: stable scorers keep serving it while a"
        " canary runs and after a rollback, whatever the spec says.",
    )
    previous: str | None = Field(None, description="Version served before active.")
    canary: str | None = Field(None, description="Version under canary analysis.")
    canary_started: str | None = Field(
        None, description="When the canary's analysis began (RFC 3339)."
    )
    analysis: str | None = Field(
        None, description="The last canary analysis: requests, errors, p99, CTR of each arm."
    )
    failed: str | None = Field(None, description="Last version that failed its rollout.")
    failed_reason: str | None = Field(None, description="Why failed was rolled back.")
    retry_token: str | None = Field(
        None, description="The last tailor.dev/retry-rollout annotation value acted on."
    )
    rolling_out: str | None = Field(
        None, description="Version being rolled out to the scorers, until all serve it."
    )
    rollout_started: str | None = Field(None, description="When the last rollout began (RFC 3339).")
    rollout_finished: str | None = Field(
        None, description="When the last rollout completed: every scorer serves active."
    )


class PipelineStatus(ApiModel):
    """Observed state of a personalization pipeline."""

    observed_generation: int = Field(0, description="The generation last reconciled.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, TopicsReady, StreamWorkerAvailable, ScorerAvailable, Degraded.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    )
    topics: dict[str, TopicStatus] = Field(
        default_factory=dict, description="Topics by role (events, profiles, ...)."
    )
    stream_worker: WorkloadStatus | None = Field(None, description="Stream worker replicas.")
    scorer: WorkloadStatus | None = Field(None, description="Scorer replicas.")
    model: ModelStatus | None = Field(None, description="Model versions.")
    scorer_endpoint: str | None = Field(None, description="In-cluster URL of the scorer.")
