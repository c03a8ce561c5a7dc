"""Runtime configuration of the stream worker and the scorer: one typed model, two readers.

The operator renders this model into one immutable ConfigMap per program and version (key
``pipeline.json``, each holding only the section its program reads), and each program loads
it from the mounted file. Credentials never appear here: they come from the
environment (``TAILOR_KAFKA_USERNAME``, ``TAILOR_KAFKA_PASSWORD``), filled from a Secret.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION: Literal[1] = 1
CONFIG_KEY = "pipeline.json"
CONFIG_ENV = "TAILOR_CONFIG"
CONFIG_MOUNT = "/etc/tailor"


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaSettings(_Settings):
    bootstrap_servers: str
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    ca_file: str | None = None

    def client_config(self, environ: dict[str, str] | None = None) -> dict[str, str]:
        """librdkafka settings of any client of this cluster, credentials from the environment."""
        env = os.environ if environ is None else environ
        config = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        if self.security_protocol.startswith("SASL"):
            config["sasl.mechanism"] = self.sasl_mechanism
            config["sasl.username"] = env.get("TAILOR_KAFKA_USERNAME", "")
            config["sasl.password"] = env.get("TAILOR_KAFKA_PASSWORD", "")
        if self.ca_file and self.security_protocol.endswith("SSL"):
            config["ssl.ca.location"] = self.ca_file
        return config


class TopicNames(_Settings):
    events: str
    profiles: str
    trending: str
    decisions: str
    dead_letter: str


class FeatureSettings(_Settings):
    half_life_s: float = Field(gt=0)
    recent_items: int = Field(ge=1)
    event_weights: dict[str, float]
    # Bounds that keep a user's memory constant however much they click.
    max_items: int = Field(default=200, ge=1)
    max_categories: int = Field(default=50, ge=1)
    max_purchased: int = Field(default=100, ge=0)
    # Events of these types put their item in the profile's seen set (never recommended).
    seen_event_types: tuple[str, ...] = ("purchase",)
    trending_half_life_s: float = Field(default=3600.0, gt=0)
    trending_max_items: int = Field(default=1000, ge=1)
    # Trending's long memory: what is popular this week (Trending.popular).
    popular_half_life_s: float = Field(default=7 * 86400.0, gt=0)


class WorkerSettings(_Settings):
    group_id: str
    transaction_interval_ms: int = Field(ge=1)
    transaction_max_events: int = Field(ge=1)
    http_port: int = 8081
    # A partition's trending state is written at most this often (it is a few KB).
    trending_interval_ms: int = Field(default=1000, ge=1)
    # A static member that vanished keeps its partitions this long (a restarting pod gets
    # them back without a rebalance); also how long a dead worker's partitions stall.
    session_timeout_ms: int = Field(default=15000, ge=1000)
    # An open transaction of a killed worker blocks read_committed readers of its
    # partitions until the broker aborts it after this long (or the worker restarts).
    transaction_timeout_ms: int = Field(default=15000, ge=1000)


class ModelRef(_Settings):
    name: str
    version: str
    uri: str
    sha256: str


# The most items one decision returns: a request's k and the pipeline's default alike.
MAX_K = 100


class ScorerSettings(_Settings):
    http_port: int = 8080
    model: ModelRef | None = None
    default_k: int = Field(ge=1, le=MAX_K)
    epsilon: float = Field(ge=0, le=1)
    # What users with little or no evidence lean on (ranking.RankingSettings.fallback).
    fallback: Literal["popular", "trending"] = "popular"
    # Never recommend what the user has seen (features.seen_event_types: by default what
    # they bought; consumables may want False).
    exclude_seen: bool = True
    # Overload protection (tailor_pipeline.admission): while requests wait this long for
    # the scorer, a growing share of them is answered from trending or popular items ...
    degrade_after_ms: float = Field(default=3.0, gt=0)
    # ... and while they wait this long, every one is refused with 503 and Retry-After.
    shed_after_ms: float = Field(default=50.0, gt=0)


class PipelineSettings(_Settings):
    """Everything a pipeline program needs to know, rendered by the operator."""

    schema_version: Literal[1] = SCHEMA_VERSION
    namespace: str
    pipeline: str
    kafka: KafkaSettings
    topics: TopicNames
    features: FeatureSettings
    # A program's file holds its own section, not the other's: a change to the scorers'
    # settings (a new model) must not change the workers' file, which would roll them.
    worker: WorkerSettings | None = None
    scorer: ScorerSettings | None = None

    def worker_settings(self) -> WorkerSettings:
        if self.worker is None:
            raise ValueError("these settings have no `worker` section (a scorer's file?)")
        return self.worker

    def scorer_settings(self) -> ScorerSettings:
        if self.scorer is None:
            raise ValueError("these settings have no `scorer` section (a worker's file?)")
        return self.scorer

    @classmethod
    def load(cls, path: str | Path | None = None) -> PipelineSettings:
        """Read the file at ``path``, else at $TAILOR_CONFIG, else the ConfigMap mount."""
        where = Path(path or os.environ.get(CONFIG_ENV) or f"{CONFIG_MOUNT}/{CONFIG_KEY}")
        return cls.model_validate_json(where.read_bytes())
