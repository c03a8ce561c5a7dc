"""The operator's own knobs: one model, read from the environment once at start.

Each field is set by ``TAILOR_<FIELD NAME IN CAPITALS>`` (the chart sets them from its
values), e.g. ``TAILOR_RESYNC_SECONDS=30``. Nothing reads the environment at import: the
entry points build one ``OperatorSettings`` and pass it down, so the pure code that uses a
knob (how long an unready pod is "starting") is tested with any value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tailor_operator.availability import UNREADY_SECONDS

PREFIX = "TAILOR_"


class OperatorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    image_tag: str = Field("0.1.0", description="tag of the default program images")
    stream_worker_image: str = Field(
        "", description="the stream worker's image; default ghcr.io/tailor-dev/stream-worker:TAG"
    )
    scorer_image: str = Field("", description="the scorer's image; default ...scorer:TAG")
    resync_seconds: float = Field(
        60.0, gt=0, description="every pipeline is reconciled at least this often"
    )
    topic_check_seconds: float = Field(
        3.0,
        gt=0,
        description="how often each Kafka cluster is asked (one metadata request) whether a"
        " pipeline's topic was deleted",
    )
    rollout_check_seconds: float = Field(
        5.0, gt=0, description="how often a running canary or rolling update is looked at"
    )
    pod_check_seconds: float = Field(
        5.0,
        gt=0,
        description="first wait before a pipeline's pods are listed while a Deployment is"
        " unavailable (doubles to a minute while nothing moves)",
    )
    unready_seconds: float = Field(
        UNREADY_SECONDS,
        gt=0,
        description="a running pod unready for this long is failing, not starting",
    )
    worker_threads: int = Field(
        16, ge=1, description="reconciles that may wait on the API server and Kafka at once"
    )
    preflight_seconds: float = Field(
        30.0, ge=0, description="how long an unreachable API server is waited for at start"
    )
    delete_retries: int = Field(
        5,
        ge=1,
        description="attempts at deleting a pipeline's topics before its finalizer is released"
        " anyway",
    )

    @property
    def stream_worker(self) -> str:
        return self.stream_worker_image or f"ghcr.io/tailor-dev/stream-worker:{self.image_tag}"

    @property
    def scorer(self) -> str:
        return self.scorer_image or f"ghcr.io/tailor-dev/scorer:{self.image_tag}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OperatorSettings:
        """From ``TAILOR_*`` variables; a bad value raises ValueError naming the variable
        and what is wrong with it."""
        environ = os.environ if environ is None else environ
        try:
            return cls.model_validate(
                {
                    name: environ[PREFIX + name.upper()]
                    for name in cls.model_fields
                    if PREFIX + name.upper() in environ
                }
            )
        except ValidationError as exc:
            raise ValueError(
                "; ".join(
                    f"{PREFIX}{'.'.join(map(str, e['loc'])).upper()}={e['input']!r}: {e['msg']}"
                    for e in exc.errors()
                )
            ) from None
