"""Names and labels of everything a pipeline owns: the only place they are spelled."""

from __future__ import annotations

from typing import Literal

MANAGED_BY = "tailor"
PIPELINE_LABEL = "tailor.dev/pipeline"
COMPONENT_LABEL = "app.kubernetes.io/component"
FIELD_MANAGER = "tailor-operator"
# Holds a Deployment's replicas while its new HPA takes them over from FIELD_MANAGER.
REPLICAS_HANDOVER_MANAGER = "tailor-replicas-handover"
FINALIZER = "tailor.dev/topics"
CONFIG_HASH_ANNOTATION = "tailor.dev/config-hash"
# On a scorer Deployment: the model version its pod template serves.
MODEL_VERSION_ANNOTATION = "tailor.dev/model-version"
MANAGED_ANNOTATION = "tailor.dev/managed"
RELEASE_FINALIZER_ANNOTATION = "tailor.dev/release-finalizer"
# Set to a new value (any string, e.g. a timestamp) to roll out a version that failed again.
RETRY_ROLLOUT_ANNOTATION = "tailor.dev/retry-rollout"
APP_NAME_LABEL = "app.kubernetes.io/name"
# On canary scorer pods, whose component is CANARY_COMPONENT.
TRACK_LABEL = "tailor.dev/track"
# The canary scorers' component label: not "scorer", so the stable Deployment's selector,
# its PDB and its HPA never count canary pods.
CANARY_COMPONENT = "scorer-canary"

# The two programs, each a Deployment (with its HPA and PDB).
Workload = Literal["stream-worker", "scorer"]
# What a child belongs to, as its component label says: a workload, or the settings.
Component = Workload | Literal["config"]
TopicRole = Literal["events", "profiles", "trending", "decisions", "dead-letter"]
TOPIC_ROLES: tuple[TopicRole, ...] = ("events", "profiles", "trending", "decisions", "dead-letter")
COMPACTED_ROLES: frozenset[TopicRole] = frozenset({"profiles", "trending"})


def labels(pipeline: str, component: Component) -> dict[str, str]:
    """Labels of every child. Never app.kubernetes.io/instance: Argo CD uses that label to
    track its own resources and would prune children copied from the pipeline's."""
    return {
        APP_NAME_LABEL: f"tailor-{component}",
        COMPONENT_LABEL: component,
        "app.kubernetes.io/part-of": "tailor",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        PIPELINE_LABEL: pipeline,
    }


def selector(pipeline: str, component: Component) -> dict[str, str]:
    """The immutable subset of labels a Deployment selects its pods by."""
    return {PIPELINE_LABEL: pipeline, COMPONENT_LABEL: component}


def canary_labels(pipeline: str) -> dict[str, str]:
    """Labels of the canary scorers: the same program (app name) as the stable ones, its
    own component and track."""
    return {**labels(pipeline, "scorer"), COMPONENT_LABEL: CANARY_COMPONENT, TRACK_LABEL: "canary"}


def canary_selector(pipeline: str) -> dict[str, str]:
    return {PIPELINE_LABEL: pipeline, COMPONENT_LABEL: CANARY_COMPONENT}


def scorer_service_selector(pipeline: str) -> dict[str, str]:
    """What the scorer Service selects: every scorer pod of the pipeline, stable and canary
    (the app name both carry; the stable pods had it before canaries got their own
    component, so changing to it never left the Service without endpoints)."""
    return {PIPELINE_LABEL: pipeline, APP_NAME_LABEL: "tailor-scorer"}


def config_map(pipeline: str, reader: str, digest: str) -> str:
    """One version of one program's settings (``reader``: stream-worker, scorer or
    scorer-canary; ``digest``: the hash of the file)."""
    return f"{pipeline}-{reader}-config-{digest[:10]}"


def stream_worker(pipeline: str) -> str:
    return f"{pipeline}-stream-worker"


def scorer(pipeline: str) -> str:
    return f"{pipeline}-scorer"


def scorer_canary(pipeline: str) -> str:
    return f"{pipeline}-scorer-canary"


def workload(pipeline: str, component: Workload) -> str:
    """The Deployment (and its HPA and PDB) of a component."""
    return stream_worker(pipeline) if component == "stream-worker" else scorer(pipeline)


def topic(namespace: str, pipeline: str, role: TopicRole) -> str:
    # Namespace and name are DNS labels, so the result only holds [a-z0-9.-]: a valid topic.
    return f"{namespace}.{pipeline}.{role}"


def consumer_group(namespace: str, pipeline: str) -> str:
    return f"{namespace}.{pipeline}.stream-worker"


def scorer_endpoint(namespace: str, pipeline: str, port: int) -> str:
    return f"http://{scorer(pipeline)}.{namespace}.svc:{port}"
