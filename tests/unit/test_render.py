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


def test_defaults_render_every_child_but_the_hpas() -> None:
    rendered = children(pipeline())
    assert {k for k, v in rendered.items() if v is not None} == {
        "ConfigMap/storefront-config",
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
        streamWorker={"autoscaling": {"minReplicas": 2, "maxReplicas": 4}},
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
    assert config_hash(base, "scorer") != config_hash(with_model, "scorer")
    assert config_hash(base, "stream-worker") == config_hash(with_model, "stream-worker")
    faster = pipeline(streamWorker={"transactionIntervalMs": 50})
    assert config_hash(base, "stream-worker") != config_hash(faster, "stream-worker")
    assert config_hash(base, "scorer") == config_hash(faster, "scorer")


def test_configmap_holds_the_programs_settings() -> None:
    p = pipeline(
        features={"halfLife": "2h"},
        scorer={
            "model": {
                "name": "knn",
                "version": "v2",
                "uri": "file:///m",
                "sha256": "a" * 64,
            }
        },
    )
    config_map = children(p)["ConfigMap/storefront-config"]
    assert config_map is not None
    settings = PipelineSettings.model_validate_json(config_map["data"]["pipeline.json"])
    assert settings.features.half_life_s == 7200
    assert settings.topics.events == "shop.storefront.events"
    assert settings.topics.dead_letter == "shop.storefront.dead-letter"
    assert settings.worker.group_id == "shop.storefront.stream-worker"
    assert settings.scorer.model is not None
    assert settings.scorer.model.version == "v2"
    assert json.loads(config_map["data"]["pipeline.json"])["schema_version"] == 1


def test_sasl_credentials_come_from_the_secret_never_the_configmap() -> None:
    p = pipeline(
        kafka={
            "bootstrapServers": "kafka:9093",
            "securityProtocol": "SASL_SSL",
            "authSecretRef": {"name": "kafka-client"},
        }
    )
    rendered = children(p)
    config_map = rendered["ConfigMap/storefront-config"]
    assert config_map is not None
    assert "password" not in config_map["data"]["pipeline.json"]
    worker = rendered["Deployment/storefront-stream-worker"]
    assert worker is not None
    env = {e["name"]: e for e in worker["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["TAILOR_KAFKA_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "kafka-client",
        "key": "password",
    }


def test_topics_are_named_and_compacted_where_keyed_state_lives() -> None:
    topics = {t.role: t for t in desired_topics(pipeline(topics={"events": {"partitions": 8}}))}
    assert topics["events"].name == "shop.storefront.events"
    assert topics["profiles"].partitions == 8
    assert topics["trending"].config["cleanup.policy"] == "compact"
    assert topics["events"].config["cleanup.policy"] == "delete"
    assert topics["decisions"].partitions is None  # broker default


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
