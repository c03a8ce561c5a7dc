"""Renders the pipeline programs' runtime configuration and the ConfigMap that carries it."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from tailor_operator import api, naming
from tailor_operator.resource import Pipeline
from tailor_operator.rollout import Served
from tailor_pipeline import settings as program

CA_FILE = f"{program.CONFIG_MOUNT}/kafka-ca/ca.crt"
# The canary scorers' settings, beside CONFIG_KEY in the same ConfigMap.
CANARY_CONFIG_KEY = "pipeline-canary.json"
# The model a scorer's settings name: "spec" for the spec's (the default), else this one.
ModelChoice = api.ModelSpec | Literal["spec"] | None


def pipeline_settings(pipeline: Pipeline, model: ModelChoice = "spec") -> program.PipelineSettings:
    """The programs' settings; ``model``: what the scorer serves (a rollout may hold the
    stable scorers on another version than the spec's)."""
    spec = pipeline.spec
    kafka = spec.kafka
    if model == "spec":
        model = spec.scorer.model
    has_ca = kafka.auth_secret_ref is not None and kafka.security_protocol.endswith("SSL")
    return program.PipelineSettings(
        namespace=pipeline.namespace,
        pipeline=pipeline.name,
        kafka=program.KafkaSettings(
            bootstrap_servers=kafka.bootstrap_servers,
            security_protocol=kafka.security_protocol,
            sasl_mechanism=kafka.sasl_mechanism,
            ca_file=CA_FILE if has_ca else None,
        ),
        topics=program.TopicNames(
            events=pipeline.topic_name("events"),
            profiles=pipeline.topic_name("profiles"),
            trending=pipeline.topic_name("trending"),
            decisions=pipeline.topic_name("decisions"),
            dead_letter=pipeline.topic_name("dead-letter"),
        ),
        features=program.FeatureSettings(
            half_life_s=api.parse_duration(spec.features.half_life),
            recent_items=spec.features.recent_items,
            event_weights=dict(spec.features.event_weights),
        ),
        worker=program.WorkerSettings(
            group_id=naming.consumer_group(pipeline.namespace, pipeline.name),
            transaction_interval_ms=spec.stream_worker.transaction_interval_ms,
            transaction_max_events=spec.stream_worker.transaction_max_events,
        ),
        scorer=program.ScorerSettings(
            http_port=spec.scorer.port,
            model=program.ModelRef(**model.model_dump()) if model else None,
            default_k=spec.decision.default_k,
            epsilon=spec.decision.exploration.epsilon,
            fallback=spec.decision.fallback,
        ),
    )


def config_json(pipeline: Pipeline, model: ModelChoice = "spec") -> str:
    return pipeline_settings(pipeline, model).model_dump_json(indent=2)


# The sections of the settings a component never reads: changing them must not roll it
# (a new model rolls the scorers, not the stream workers).
_UNREAD: dict[naming.Component, set[str]] = {
    "stream-worker": {"scorer"},
    "scorer": {"worker"},
    "config": set(),
}


def config_hash(
    pipeline: Pipeline,
    component: naming.Component,
    model: ModelChoice = "spec",
) -> str:
    """Goes on a component's pod template, so a change of what it reads rolls its pods."""
    settings = pipeline_settings(pipeline, model)
    read = settings.model_dump(mode="json", exclude=_UNREAD[component])
    return hashlib.sha256(json.dumps(read, sort_keys=True).encode()).hexdigest()[:16]


def desired_config_map(pipeline: Pipeline, served: Served) -> dict[str, Any]:
    data = {program.CONFIG_KEY: config_json(pipeline, served.stable)}
    if served.canary is not None:
        data[CANARY_CONFIG_KEY] = config_json(pipeline, served.canary)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": naming.config_map(pipeline.name),
            "labels": naming.labels(pipeline.name, "config"),
        },
        "data": data,
    }
