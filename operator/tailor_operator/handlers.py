"""Kopf glue: wires events on pipelines and their children to the reconcile. No logic here."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf
from kubernetes import client, config

from tailor_operator import api, naming
from tailor_operator.adapters.kafka_admin import KafkaAdmins, KafkaUnavailable
from tailor_operator.adapters.kube import KubeAdapter
from tailor_operator.dependencies import Dependencies
from tailor_operator.kafka_topics import delete_topics
from tailor_operator.render import Images
from tailor_operator.runtime import QUICK_THREADS, Runtime, backoff
from tailor_operator.settings import OperatorSettings

PIPELINES = (api.GROUP, api.VERSION, api.PLURAL)
_MANAGED = {"app.kubernetes.io/managed-by": naming.MANAGED_BY}


class NoDiffBase(kopf.DiffBaseStorage):
    """Kopf's record of the last handled state of a pipeline, not kept. Only create and
    update handlers read it, and there are none: the runtime tells changes itself
    (pipeline_state.inputs). Kopf's deletion handler needs no record, and every other event
    is, to Kopf, a creation with no handler."""

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        pass


def _api_client(threads: int) -> client.ApiClient:
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)
    configuration.connection_pool_maxsize = threads
    return client.ApiClient(configuration)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Ours, read once by __main__ and handed over in the memo.
    ours: OperatorSettings = memo.settings
    # Reconciles wait on the API server and Kafka, not the CPU: more threads than cores.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=ours.worker_threads, thread_name_prefix="reconcile")
    )
    settings.persistence.finalizer = naming.FINALIZER
    # Annotations, not status: the status schema is ours, and Kopf's bookkeeping would be
    # pruned from it.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="tailor.dev")
    # Not written to each pipeline: that patch was one more request per created or changed
    # pipeline, and nothing reads it.
    settings.persistence.diffbase_storage = NoDiffBase()
    # Every Event comes from KubeAdapter.post_event: one reporting component and instance,
    # repeats counted. Kopf's own ("Handler failed temporarily", from "kopf") would only
    # repeat what ours say.
    settings.posting.enabled = False
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    memo.runtime = Runtime(
        deps=Dependencies(
            # A connection for each reconcile thread and each of the status writes' threads.
            kube=KubeAdapter(_api_client(ours.worker_threads + QUICK_THREADS)),
            kafka_admin=KafkaAdmins().get,
            images=Images(stream_worker=ours.stream_worker, scorer=ours.scorer),
            settings=ours,
        ),
    )
    # A resync catches what no watch reports: a topic deleted or changed in Kafka, Kafka
    # back after an outage. Not a Kopf timer: those hold a finalizer on every pipeline.
    memo.runtime.start_resync(ours.resync_seconds)
    # Kafka has no watch: one metadata request per cluster tells a deleted topic.
    memo.runtime.start_topic_watch(ours.topic_check_seconds)


@kopf.on.event(*PIPELINES)
async def pipeline_changed(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo.runtime
    runtime.pipeline_seen(type, dict(body))


@kopf.on.cleanup()
async def stop_resync(memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo.runtime
    runtime.stop()


async def _child_changed(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo.runtime
    runtime.child_seen(type, dict(body))


# Every kind of child is watched, so a deletion or a hand edit is repaired at once, not at
# the next resync.
for _group, _version, _plural in (
    ("apps", "v1", "deployments"),
    ("", "v1", "configmaps"),
    ("", "v1", "services"),
    ("autoscaling", "v2", "horizontalpodautoscalers"),
    ("policy", "v1", "poddisruptionbudgets"),
):
    kopf.on.event(_group, _version, _plural, labels=_MANAGED, id=f"watch-{_plural}")(_child_changed)


def _deletes_topics(spec: kopf.Spec, **_: Any) -> bool:
    return bool(spec.get("topics", {}).get("deletionPolicy") == "Delete")


@kopf.on.delete(*PIPELINES, when=_deletes_topics)
async def delete_pipeline_topics(
    body: kopf.Body,
    annotations: kopf.Annotations,
    memo: kopf.Memo,
    retry: int,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """Holds the finalizer only while topics are deleted, and never forever."""
    if annotations.get(naming.RELEASE_FINALIZER_ANNOTATION, "").lower() == "true":
        await _post(
            memo.runtime,
            body,
            "Warning",
            "FinalizerReleased",
            f"{naming.RELEASE_FINALIZER_ANNOTATION} is set: topics left in Kafka",
        )
        return
    runtime: Runtime = memo.runtime
    try:
        failures = await asyncio.to_thread(delete_topics, dict(body), runtime.deps)
    except KafkaUnavailable as exc:
        failures = [str(exc)]
    except Exception as exc:
        # An unreadable Secret or a spec the operator cannot use must not hold the
        # finalizer forever either.
        failures = [f"{type(exc).__name__}: {exc}"]
    if not failures:
        await _post(runtime, body, "Normal", "TopicsDeleted", "Deleted the pipeline's Kafka topics")
        return
    if retry + 1 >= runtime.deps.settings.delete_retries:
        await _post(
            runtime,
            body,
            "Warning",
            "TopicDeletionAbandoned",
            f"Gave up deleting topics after {retry + 1} attempts, they remain in Kafka:"
            f" {'; '.join(failures)}",
        )
        return
    logger.warning("Deleting topics failed (attempt %d): %s", retry + 1, failures)
    raise kopf.TemporaryError("; ".join(failures), delay=backoff(retry))


async def _post(runtime: Runtime, body: kopf.Body, type_: str, reason: str, message: str) -> None:
    await asyncio.to_thread(runtime.deps.kube.post_event, dict(body), type_, reason, message)
