"""Rendering is pure: a pipeline in, the manifests of its children out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tailor_operator import api
from tailor_operator.render import Images, config_hash, desired_children, desired_topics
from tailor_operator.resource import Pipeline
from tailor_pipeline.settings import PipelineSettings

IMAGES = Images(stream_worker="registry.test/worker:1", scorer="registry.test/scorer:1")


def pipeline(annotations: dict[str, str] | None = None, **spec: Any) -> Pipeline:
    body = {
        "metadata": {
            "namespace": "shop",
            "name": "storefront",
            "uid": "u-1",
            "generation": 3,
            "annotations": annotations or {},
        },
        "spec": {"kafka": {"bootstrapServers": "kafka:9092"}, **spec},
    }
    return Pipeline.from_body(body)


def children(p: Pipeline) -> dict[str, dict[str, Any] | None]:
    return {c.key: c.manifest for c in desired_children(p, IMAGES)}


def mounted_config(rendered: dict[str, dict[str, Any] | None], deployment: str) -> dict[str, Any]:
    """The ConfigMap a Deployment's pods mount."""
    manifest = rendered[f"Deployment/{deployment}"]
    assert manifest is not None
    volumes = {v["name"]: v for v in manifest["spec"]["template"]["spec"]["volumes"]}
    config_map = rendered[f"ConfigMap/{volumes['config']['configMap']['name']}"]
    assert config_map is not None
    return config_map


def test_defaults_render_every_child_but_the_hpas() -> None:
    p = pipeline()
    rendered = children(p)
    worker_config = (
        f"ConfigMap/storefront-stream-worker-config-{config_hash(p, 'stream-worker')[:10]}"
    )
    scorer_config = f"ConfigMap/storefront-scorer-config-{config_hash(p, 'scorer')[:10]}"
    assert {k for k, v in rendered.items() if v is not None} == {
        worker_config,
        scorer_config,
        "Deployment/storefront-stream-worker",
        "Deployment/storefront-scorer",
        "Service/storefront-scorer",
        "PodDisruptionBudget/storefront-stream-worker",
        "PodDisruptionBudget/storefront-scorer",
    }
    assert rendered["HorizontalPodAutoscaler/storefront-scorer"] is None


def test_children_carry_the_labels_and_never_argo_cds_instance_label() -> None:
    for manifest in children(pipeline()).values():
        if manifest is None:
            continue
        labels = manifest["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "tailor"
        assert labels["tailor.dev/pipeline"] == "storefront"
        assert "app.kubernetes.io/instance" not in labels


def test_pods_are_hardened_and_probed() -> None:
    deployment = children(pipeline())["Deployment/storefront-scorer"]
    assert deployment is not None
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # A model download may take minutes: the startup probe holds liveness off that long,
    # and a stopping scorer keeps serving while Service endpoints drop it.
    startup = container["startupProbe"]
    assert startup["httpGet"]["path"] == "/healthz"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600
    assert container["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}
    assert pod["terminationGracePeriodSeconds"] > 5
    assert container["resources"]["requests"]["cpu"] == "500m"
    assert container["image"] == "registry.test/scorer:1"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_autoscaling_leaves_replicas_to_the_hpa_and_caps_workers_at_partitions() -> None:
    p = pipeline(
        topics={"events": {"partitions": 4}},
        streamWorker={"autoscaling": {"minReplicas": 2, "maxReplicas": 10}},
    )
    rendered = children(p)
    worker = rendered["Deployment/storefront-stream-worker"]
    assert worker is not None
    assert "replicas" not in worker["spec"]
    hpa = rendered["HorizontalPodAutoscaler/storefront-stream-worker"]
    assert hpa is not None
    assert hpa["spec"]["maxReplicas"] == 4
    assert hpa["spec"]["scaleTargetRef"]["name"] == "storefront-stream-worker"
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300


def worker_hpa_max(p: Pipeline, existing_events: int | None) -> int:
    children = desired_children(p, IMAGES, existing_events=existing_events)
    hpa = next(c for c in children if c.key == "HorizontalPodAutoscaler/storefront-stream-worker")
    assert hpa.manifest is not None
    return int(hpa.manifest["spec"]["maxReplicas"])


def test_the_workers_hpa_is_capped_by_the_partitions_the_events_topic_really_has() -> None:
    unset = pipeline(streamWorker={"autoscaling": {"maxReplicas": 20}})
    assert worker_hpa_max(unset, existing_events=3) == 3
    assert worker_hpa_max(unset, existing_events=None) == 12  # what a new topic gets
    # The spec asks for more than exist: the topic is about to grow to it.
    grown = pipeline(
        topics={"events": {"partitions": 6}}, streamWorker={"autoscaling": {"maxReplicas": 20}}
    )
    assert worker_hpa_max(grown, existing_events=3) == 6
    # Kafka cannot shrink: more exist than the spec names, and all of them have owners.
    assert worker_hpa_max(grown, existing_events=8) == 8
    # The scorer has no partitions to respect.
    scorer = pipeline(scorer={"autoscaling": {"maxReplicas": 20}})
    hpa = next(
        c
        for c in desired_children(scorer, IMAGES, existing_events=2)
        if c.key == "HorizontalPodAutoscaler/storefront-scorer"
    )
    assert hpa.manifest is not None
    assert hpa.manifest["spec"]["maxReplicas"] == 20


def test_an_autoscaled_deployment_names_the_floor_its_hpa_takes_it_over_at() -> None:
    p = pipeline(
        topics={"events": {"partitions": 2}},
        streamWorker={"autoscaling": {"minReplicas": 3, "maxReplicas": 6}},
        scorer={"replicas": 4, "autoscaling": {"minReplicas": 2, "maxReplicas": 5}},
    )
    floors = {c.key: c.replicas_floor for c in desired_children(p, IMAGES)}
    # The worker's minimum is capped by its partitions, like its HPA's.
    assert floors["Deployment/storefront-stream-worker"] == 2
    assert floors["Deployment/storefront-scorer"] == 2
    assert floors["Service/storefront-scorer"] is None
    plain = {c.key: c.replicas_floor for c in desired_children(pipeline(), IMAGES)}
    assert plain["Deployment/storefront-scorer"] is None
    suspended = pipeline(suspend=True, scorer={"autoscaling": {"maxReplicas": 5}})
    assert {c.replicas_floor for c in desired_children(suspended, IMAGES)} == {None}


def test_the_scale_down_window_is_a_knob_capped_at_the_hpa_limit() -> None:
    for given, seconds in (("20s", 20), ("2h", 3600)):
        autoscaling = {"maxReplicas": 3, "scaleDownStabilization": given}
        hpa = children(pipeline(scorer={"autoscaling": autoscaling}))[
            "HorizontalPodAutoscaler/storefront-scorer"
        ]
        assert hpa is not None
        assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == seconds


def test_suspend_scales_to_zero_and_drops_hpas() -> None:
    p = pipeline(suspend=True, scorer={"autoscaling": {"maxReplicas": 5}})
    rendered = children(p)
    for name in ("storefront-stream-worker", "storefront-scorer"):
        deployment = rendered[f"Deployment/{name}"]
        assert deployment is not None
        assert deployment["spec"]["replicas"] == 0
        assert rendered[f"HorizontalPodAutoscaler/{name}"] is None


def test_config_change_changes_the_pod_template_hash_and_replicas_do_not() -> None:
    base = pipeline()
    for component in ("stream-worker", "scorer"):
        assert config_hash(base, component) == config_hash(
            pipeline(scorer={"replicas": 7}), component
        )
        assert config_hash(base, component) != config_hash(
            pipeline(features={"halfLife": "1h"}), component
        )
    # A new model rolls the scorers only; a new transaction interval the workers only.
    model = {"name": "knn", "version": "v2", "uri": "file:///m", "sha256": "a" * 64}
    with_model = pipeline(scorer={"model": model})
    assert config_hash(base, "scorer") != config_hash(
        with_model, "scorer", with_model.spec.scorer.model
    )
    assert config_hash(base, "stream-worker") == config_hash(with_model, "stream-worker")
    faster = pipeline(streamWorker={"transactionIntervalMs": 50})
    assert config_hash(base, "stream-worker") != config_hash(faster, "stream-worker")
    assert config_hash(base, "scorer") == config_hash(faster, "scorer")


def test_configmap_holds_the_programs_settings() -> None:
    p = pipeline(
        features={"halfLife": "2h", "seenEventTypes": ["view", "purchase"]},
        scorer={
            "model": {
                "name": "knn",
                "version": "v2",
                "uri": "file:///m",
                "sha256": "a" * 64,
            }
        },
    )
    rendered = children(p)
    worker_map = mounted_config(rendered, "storefront-stream-worker")
    scorer_map = mounted_config(rendered, "storefront-scorer")
    for config_map in (worker_map, scorer_map):
        # Never edited in place: a new version of the settings is a new ConfigMap.
        assert config_map["immutable"] is True
        assert json.loads(config_map["data"]["pipeline.json"])["schema_version"] == 1
    worker = PipelineSettings.model_validate_json(worker_map["data"]["pipeline.json"])
    assert worker.features.half_life_s == 7200
    assert worker.features.seen_event_types == ("view", "purchase")
    assert worker.topics.events == "shop.storefront.events"
    assert worker.topics.dead_letter == "shop.storefront.dead-letter"
    assert worker.worker_settings().group_id == "shop.storefront.stream-worker"
    assert worker.scorer is None  # each program's file holds its own section only
    scorer = PipelineSettings.model_validate_json(scorer_map["data"]["pipeline.json"])
    assert scorer.worker is None
    model = scorer.scorer_settings().model
    assert model is not None
    assert model.version == "v2"
    assert scorer.features.seen_event_types == ("view", "purchase")
    assert scorer.scorer_settings().fallback == "popular"


def test_a_new_model_is_a_new_scorer_configmap_and_leaves_the_workers_alone() -> None:
    def model(version: str) -> dict[str, Any]:
        return {"name": "knn", "version": version, "uri": "file:///m", "sha256": "a" * 64}

    v1, v2 = (
        children(pipeline(scorer={"model": model("v1")})),
        children(pipeline(scorer={"model": model("v2")})),
    )
    assert mounted_config(v1, "storefront-stream-worker") == mounted_config(
        v2, "storefront-stream-worker"
    )
    old, new = mounted_config(v1, "storefront-scorer"), mounted_config(v2, "storefront-scorer")
    assert old["metadata"]["name"] != new["metadata"]["name"]


def test_sasl_credentials_come_from_the_secret_never_the_configmap() -> None:
    p = pipeline(
        kafka={
            "bootstrapServers": "kafka:9093",
            "securityProtocol": "SASL_SSL",
            "authSecretRef": {"name": "kafka-client"},
        }
    )
    rendered = children(p)
    for deployment in ("storefront-stream-worker", "storefront-scorer"):
        assert "password" not in mounted_config(rendered, deployment)["data"]["pipeline.json"]
    worker = rendered["Deployment/storefront-stream-worker"]
    assert worker is not None
    env = {e["name"]: e for e in worker["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["TAILOR_KAFKA_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "kafka-client",
        "key": "password",
    }


def test_topics_are_named_and_compacted_where_keyed_state_lives() -> None:
    p = pipeline(topics={"events": {"partitions": 8}})
    assert {t.role: t for t in desired_topics(p)}["profiles"].create_partitions == 8
    topics = {t.role: t for t in desired_topics(p, existing_events=8)}
    assert topics["events"].name == "shop.storefront.events"
    assert topics["profiles"].partitions == 8
    assert topics["trending"].config["cleanup.policy"] == "compact"
    assert topics["events"].config["cleanup.policy"] == "delete"
    assert topics["decisions"].partitions is None  # broker default


def test_an_unset_partition_count_keeps_what_exists_and_only_a_new_topic_gets_a_default() -> None:
    unset = pipeline()
    new = {t.role: t for t in desired_topics(unset, existing_events=None)}
    assert (new["events"].partitions, new["events"].create_partitions) == (None, 12)
    # Profiles are created like events, but never grown from a guess.
    assert (new["profiles"].partitions, new["profiles"].create_partitions) == (None, 12)
    assert (new["decisions"].partitions, new["decisions"].create_partitions) == (None, None)
    existing = {t.role: t for t in desired_topics(unset, existing_events=2)}
    assert existing["events"].partitions is None  # two stay two
    assert existing["profiles"].partitions == 2
    assert existing["trending"].partitions == 2


def test_the_pipeline_annotation_unmanages_every_topic() -> None:
    topics = desired_topics(pipeline(annotations={"tailor.dev/managed": "false"}))
    assert not any(t.managed for t in topics)


def test_an_invalid_spec_is_refused_by_the_model() -> None:
    with pytest.raises(ValueError, match="sha256"):
        pipeline(scorer={"model": {"name": "m", "version": "1", "uri": "u", "sha256": "xyz"}})
    with pytest.raises(ValueError, match=r"halfLife|half_life"):
        api.PipelineSpec.model_validate(
            {"kafka": {"bootstrapServers": "k:9092"}, "features": {"halfLife": "soon"}}
        )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("30s", 30), ("30m", 1800), ("12h", 43200), ("7d", 604800)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert api.parse_duration(text) == seconds


def test_the_scorers_hpa_can_also_scale_on_the_queue_wait() -> None:
    p = pipeline(scorer={"autoscaling": {"maxReplicas": 8, "queueWaitMs": 2.5}})
    hpa = children(p)["HorizontalPodAutoscaler/storefront-scorer"]
    assert hpa is not None
    pods = [m["pods"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert pods == [
        {
            "metric": {"name": "tailor_scorer_queue_wait_seconds"},
            "target": {"type": "AverageValue", "averageValue": "2.5m"},
        }
    ]
    plain = children(pipeline(scorer={"autoscaling": {"maxReplicas": 8}}))
    cpu_only = plain["HorizontalPodAutoscaler/storefront-scorer"]
    assert cpu_only is not None
    assert [m["type"] for m in cpu_only["spec"]["metrics"]] == ["Resource"]
