"""The API server itself rejects invalid pipelines, naming the field (CRD schema + CEL)."""

from __future__ import annotations

import subprocess

import pytest
import yaml

GOOD = {
    "apiVersion": "tailor.dev/v1alpha1",
    "kind": "PersonalizationPipeline",
    "metadata": {"name": "shop"},
    "spec": {
        "kafka": {"bootstrapServers": "kafka:9092"},
        "topics": {"events": {"partitions": 6, "replicationFactor": 1}},
        "streamWorker": {"autoscaling": {"minReplicas": 1, "maxReplicas": 6}},
    },
}


def _apply(kube, namespace: str, manifest: dict) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*kube.control_plane.kubectl_command(), "apply", "-n", namespace, "-f", "-"],
        input=yaml.safe_dump(manifest),
        capture_output=True,
        text=True,
        check=False,
    )


def _with(path: str, value: object) -> dict:
    manifest = yaml.safe_load(yaml.safe_dump(GOOD))
    node = manifest
    *parents, leaf = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return manifest


def test_a_valid_pipeline_is_accepted_and_defaulted(kube, crd, namespace):
    result = _apply(kube, namespace, GOOD)
    assert result.returncode == 0, result.stderr
    stored = yaml.safe_load(kube.kubectl("get", "ppl", "shop", "-n", namespace, "-o", "yaml"))
    spec = stored["spec"]
    assert spec["topics"]["deletionPolicy"] == "Retain"
    assert spec["features"] == {
        "halfLife": "30m",
        "recentItems": 50,
        "eventWeights": {"view": 1, "click": 2, "add_to_cart": 4, "purchase": 8},
        "seenEventTypes": ["purchase"],
    }
    assert spec["scorer"]["rollout"]["strategy"] == "Rolling"
    assert spec["streamWorker"]["autoscaling"]["targetCpuUtilization"] == 70


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (
            "spec.streamWorker.autoscaling",
            {"minReplicas": 5, "maxReplicas": 2},
            "spec.streamWorker.autoscaling.minReplicas: Invalid value"
            ": minReplicas must be less than or equal to maxReplicas",
        ),
        (
            "spec.streamWorker.autoscaling",
            {"minReplicas": 1, "maxReplicas": 7},
            "spec.streamWorker.autoscaling.maxReplicas: Invalid value: "
            "streamWorker.autoscaling.maxReplicas must not exceed topics.events.partitions",
        ),
        (
            "spec.scorer.model",
            {"name": "knn", "version": "1", "uri": "file:///m", "sha256": "abc"},
            "spec.scorer.model.sha256: Invalid value",
        ),
        (
            "spec.topics.deletionPolicy",
            "Purge",
            'spec.topics.deletionPolicy: Unsupported value: "Purge"',
        ),
        ("spec.kafka.securityProtocol", "TLS", "spec.kafka.securityProtocol: Unsupported value"),
        ("spec.features.halfLife", "30 minutes", "spec.features.halfLife: Invalid value"),
        ("spec.streamWorker.replicas", -1, "spec.streamWorker.replicas: Invalid value"),
        (
            "spec.scorer.model",
            {"name": "knn", "version": "1", "uri": "s3://bucket/m", "sha256": "a" * 64},
            "spec.scorer.model.uri: Invalid value",
        ),
        # A request's k is at most 100: the default cannot promise more.
        ("spec.decision.defaultK", 101, "spec.decision.defaultK: Invalid value"),
        ("spec.scorer.modle", {}, 'unknown field "spec.scorer.modle"'),
        (
            "spec.scorer.autoscaling",
            {"minReplicas": 5, "maxReplicas": 2},
            "spec.scorer.autoscaling.minReplicas: Invalid value",
        ),
        ("metadata.name", "s" * 41, "metadata.name must be at most 40 characters"),
        (
            "spec.kafka.securityProtocol",
            "SASL_SSL",
            "spec.kafka.authSecretRef: Invalid value: authSecretRef is required with a SASL"
            " securityProtocol",
        ),
        ("spec.features.halfLife", "0s", "spec.features.halfLife: Invalid value"),
        ("spec.features.halfLife", "9" * 400 + "s", "spec.features.halfLife: Invalid value"),
        (
            "spec.scorer.rollout.canary.analysisDuration",
            "1234567890m",
            "spec.scorer.rollout.canary.analysisDuration: Invalid value",
        ),
        ("spec.scorer.podLabels", {"team": "a b"}, "spec.scorer.podLabels.team: Invalid value"),
        ("spec.scorer.podLabels", {"bad key": "x"}, "every key must be a label key"),
        (
            "spec.streamWorker.resources",
            {"requests": {"cpu": "lots"}},
            "spec.streamWorker.resources.requests.cpu: Invalid value",
        ),
        ("spec.scorer.image", "registry/scorer:1 --debug", "spec.scorer.image: Invalid value"),
        (
            "spec.scorer.overload",
            {"degradeAfterMs": 80, "shedAfterMs": 50},
            "spec.scorer.overload.degradeAfterMs: Invalid value",
        ),
        (
            "spec.features",
            {"eventWeights": {"view": 1}, "seenEventTypes": ["purchase"]},
            "spec.features.seenEventTypes: Invalid value: every seenEventTypes entry must be"
            " an event type of eventWeights",
        ),
    ],
)
def test_an_invalid_pipeline_is_rejected_naming_the_field(
    kube, crd, namespace, path, value, expected
):
    result = _apply(kube, namespace, _with(path, value))
    assert result.returncode != 0
    assert expected in result.stderr


@pytest.mark.parametrize(
    ("path", "value"),
    [
        # Documented: the first model rolls out like Rolling; future ones as canaries.
        ("spec.scorer.rollout.strategy", "Canary"),
        ("spec.kafka", {"bootstrapServers": "k:9093", "securityProtocol": "SSL"}),
        ("spec.streamWorker.resources", {"requests": {"cpu": "500m", "memory": "1Gi"}}),
        ("spec.streamWorker.resources", {"limits": {"cpu": 2}}),
        ("spec.scorer.podLabels", {"sidecar.istio.io/inject": "true", "team": ""}),
        ("spec.features.halfLife", "500ms"),
        ("spec.scorer.autoscaling", {"maxReplicas": 6, "queueWaitMs": 2.5}),
        ("spec.features.seenEventTypes", ["view", "purchase"]),
        ("spec.features.seenEventTypes", []),
    ],
)
def test_a_valid_combination_is_accepted(kube, crd, namespace, path, value):
    result = _apply(kube, namespace, _with(path, value))
    assert result.returncode == 0, result.stderr


def test_removing_the_topics_block_keeps_the_partitions_that_exist(kube, crd, namespace):
    assert _apply(kube, namespace, GOOD).returncode == 0
    without = _with("spec.streamWorker", {})
    del without["spec"]["topics"]
    result = _apply(kube, namespace, without)
    assert result.returncode == 0, result.stderr
    stored = yaml.safe_load(kube.kubectl("get", "ppl", "shop", "-n", namespace, "-o", "yaml"))
    # Defaulting once turned this into {partitions: 12}, which grew a 6-partition topic.
    assert "partitions" not in stored["spec"]["topics"]["events"]


def test_partitions_may_only_grow_and_replication_factor_is_immutable(kube, crd, namespace):
    assert _apply(kube, namespace, GOOD).returncode == 0

    grown = _with("spec.topics.events", {"partitions": 8, "replicationFactor": 1})
    assert _apply(kube, namespace, grown).returncode == 0

    shrunk = _with("spec.topics.events", {"partitions": 4, "replicationFactor": 1})
    result = _apply(kube, namespace, shrunk)
    assert result.returncode != 0
    assert "spec.topics.events.partitions: Invalid value" in result.stderr
    assert "partitions may only grow" in result.stderr

    new_rf = _with("spec.topics.events", {"partitions": 8, "replicationFactor": 3})
    result = _apply(kube, namespace, new_rf)
    assert result.returncode != 0
    assert "spec.topics.events.replicationFactor: Invalid value" in result.stderr
    assert "replicationFactor is immutable" in result.stderr


def test_kubectl_explain_describes_nested_fields(kube, crd):
    out = kube.kubectl("explain", "ppl.spec.scorer.rollout")
    assert "How model changes roll out." in out
    assert "strategy" in out
    assert "Rolling: replace scorers with zero unavailable" in out
