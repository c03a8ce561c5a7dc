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
MANAGED_ANNOTATION = "tailor.dev/managed"
RELEASE_FINALIZER_ANNOTATION = "tailor.dev/release-finalizer"
# Set to a new value (any string, e.g. a timestamp) to roll out a version that failed again.
RETRY_ROLLOUT_ANNOTATION = "tailor.dev/retry-rollout"
# On canary scorer pods, beside the component label the Service selects by.
TRACK_LABEL = "tailor.dev/track"

Component = Literal["stream-worker", "scorer", "config"]
TopicRole = Literal["events", "profiles", "trending", "decisions", "dead-letter"]
TOPIC_ROLES: tuple[TopicRole, ...] = ("events", "profiles", "trending", "decisions", "dead-letter")
COMPACTED_ROLES: frozenset[TopicRole] = frozenset({"profiles", "trending"})


def labels(pipeline: str, component: Component) -> dict[str, str]:
    """Labels of every child. Never app.kubernetes.io/instance: Argo CD uses that label to
    track its own resources and would prune children copied from the pipeline's."""
    return {
        "app.kubernetes.io/name": f"tailor-{component}",
        COMPONENT_LABEL: component,
        "app.kubernetes.io/part-of": "tailor",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        PIPELINE_LABEL: pipeline,
    }


def selector(pipeline: str, component: Component) -> dict[str, str]:
    """The immutable subset of labels a Deployment selects its pods by."""
    return {PIPELINE_LABEL: pipeline, COMPONENT_LABEL: component}


def config_map(pipeline: str) -> str:
    return f"{pipeline}-config"


def stream_worker(pipeline: str) -> str:
    return f"{pipeline}-stream-worker"


def scorer(pipeline: str) -> str:
    return f"{pipeline}-scorer"


def scorer_canary(pipeline: str) -> str:
    return f"{pipeline}-scorer-canary"


def workload(pipeline: str, component: Component) -> str:
    """The Deployment (and its HPA and PDB) of a component."""
    return stream_worker(pipeline) if component == "stream-worker" else scorer(pipeline)


def topic(namespace: str, pipeline: str, role: TopicRole) -> str:
    # Namespace and name are DNS labels, so the result only holds [a-z0-9.-]: a valid topic.
    return f"{namespace}.{pipeline}.{role}"


def consumer_group(namespace: str, pipeline: str) -> str:
    return f"{namespace}.{pipeline}.stream-worker"


def scorer_endpoint(namespace: str, pipeline: str, port: int) -> str:
    return f"http://{scorer(pipeline)}.{namespace}.svc:{port}"
