"""Renders the pipeline programs' runtime configuration and the ConfigMaps that carry it.

Each program gets its own settings file (only the section it reads) in an immutable
ConfigMap named by the file's hash, as kustomize's configMapGenerator does: a pod of an old
version that restarts mid-rollout still mounts the settings it was made for, and a change
rolls exactly the programs whose file changed. ConfigMaps no Deployment needs any more are
deleted once every rollout of the pipeline has finished (``reconcile``)."""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from tailor_operator import api, naming
from tailor_operator.resource import Pipeline
from tailor_pipeline.settings import (
    CONFIG_KEY,
    CONFIG_MOUNT,
    FeatureSettings,
    KafkaSettings,
    ModelRef,
    PipelineSettings,
    ScorerSettings,
    TopicNames,
    WorkerSettings,
)

CA_FILE = f"{CONFIG_MOUNT}/kafka-ca/ca.crt"
# Who reads a settings file: the workers, the stable scorers, the canary scorers.
Reader = Literal["stream-worker", "scorer", "scorer-canary"]


def pipeline_settings(pipeline: Pipeline, model: api.ModelSpec | None) -> PipelineSettings:
    """The programs' settings; ``model``: what the scorer serves (a rollout may hold the
    stable scorers on another version than the spec's; see render.Served)."""
    spec = pipeline.spec
    kafka = spec.kafka
    has_ca = kafka.auth_secret_ref is not None and kafka.security_protocol.endswith("SSL")
    return PipelineSettings(
        namespace=pipeline.namespace,
        pipeline=pipeline.name,
        kafka=KafkaSettings(
            bootstrap_servers=kafka.bootstrap_servers,
            security_protocol=kafka.security_protocol,
            sasl_mechanism=kafka.sasl_mechanism,
            ca_file=CA_FILE if has_ca else None,
        ),
        topics=TopicNames(
            events=pipeline.topic_name("events"),
            profiles=pipeline.topic_name("profiles"),
            trending=pipeline.topic_name("trending"),
            decisions=pipeline.topic_name("decisions"),
            dead_letter=pipeline.topic_name("dead-letter"),
        ),
        features=FeatureSettings(
            half_life_s=api.parse_duration(spec.features.half_life),
            recent_items=spec.features.recent_items,
            event_weights=dict(spec.features.event_weights),
            seen_event_types=tuple(spec.features.seen_event_types),
        ),
        worker=WorkerSettings(
            group_id=naming.consumer_group(pipeline.namespace, pipeline.name),
            transaction_interval_ms=spec.stream_worker.transaction_interval_ms,
            transaction_max_events=spec.stream_worker.transaction_max_events,
        ),
        scorer=ScorerSettings(
            http_port=spec.scorer.port,
            model=ModelRef(**model.model_dump()) if model else None,
            default_k=spec.decision.default_k,
            epsilon=spec.decision.exploration.epsilon,
            fallback=spec.decision.fallback,
            degrade_after_ms=spec.scorer.overload.degrade_after_ms,
            shed_after_ms=spec.scorer.overload.shed_after_ms,
        ),
    )


def program_settings(
    pipeline: Pipeline, reader: Reader, model: api.ModelSpec | None = None
) -> PipelineSettings:
    """The settings file of one program: without the other program's section. ``model``:
    what a scorer serves (the workers' file names none)."""
    settings = pipeline_settings(pipeline, model if reader != "stream-worker" else None)
    unread = "scorer" if reader == "stream-worker" else "worker"
    return settings.model_copy(update={unread: None})


def config_json(pipeline: Pipeline, reader: Reader, model: api.ModelSpec | None = None) -> str:
    return program_settings(pipeline, reader, model).model_dump_json(indent=2)


def config_hash(pipeline: Pipeline, reader: Reader, model: api.ModelSpec | None = None) -> str:
    """The hash of a program's settings file: names its ConfigMap and goes on its pod
    template, so a change of what it reads rolls its pods."""
    return hashlib.sha256(config_json(pipeline, reader, model).encode()).hexdigest()[:16]


def config_map_name(pipeline: Pipeline, reader: Reader, model: api.ModelSpec | None = None) -> str:
    return naming.config_map(pipeline.name, reader, config_hash(pipeline, reader, model))


def desired_config_map(
    pipeline: Pipeline, reader: Reader, model: api.ModelSpec | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": config_map_name(pipeline, reader, model),
            "labels": naming.labels(pipeline.name, "config"),
        },
        # Never edited: a new version of the settings is a new ConfigMap.
        "immutable": True,
        "data": {CONFIG_KEY: config_json(pipeline, reader, model)},
    }
