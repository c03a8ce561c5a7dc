"""What the operator does when something outside its spec goes wrong, against the real API
server and Kafka: every failure lands in a condition and one counted Event, nothing is
retried for ever, and an unset partition count never grows a topic."""

from __future__ import annotations

import base64
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka.admin import AdminClient, NewTopic

from tailor_localenv.processes import wait_for
from tests.integration.test_operator import (
    apply,
    condition,
    get,
    minimal,
    topics,
    wait_condition,
    wait_ready,
)


def pipeline_events(kube, namespace: str, reason: str | None = None) -> list[dict[str, Any]]:
    events = [
        e
        for e in get(kube, namespace, "events")["items"]
        if e["involvedObject"]["kind"] == "PersonalizationPipeline"
    ]
    return [e for e in events if reason is None or e["reason"] == reason]


def test_an_apply_the_api_server_refuses_is_a_condition_and_one_counted_event(
    kube, kafka, operator, namespace
):
    """A ValidatingAdmissionPolicy (as a platform team might write) refuses the scorer
    Service with 422: the pipeline says so, with the server's message, and heals when the
    policy goes."""
    name = f"deny-services-{namespace}"
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["services"],
                    }
                ]
            },
            "validations": [
                {
                    "expression": "false",
                    "message": "Services need a ticket here",
                    "reason": "Invalid",
                }
            ],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
            },
        },
    }
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([policy, binding]))
    try:
        # The policy takes a moment to be enforced: wait until a Service is refused.
        probe = [*kube.control_plane.kubectl_command(), "create", "service", "clusterip"]
        probe += ["probe", "--tcp=80", "-n", namespace, "--dry-run=server"]
        wait_for(
            lambda: (
                "Services need a ticket"
                in subprocess.run(probe, capture_output=True, text=True, check=False).stderr
            ),
            30,
            "the admission policy to be enforced",
        )
        operator.start(namespace, resync_seconds=2)
        apply(kube, namespace, minimal(kafka))
        ready = wait_condition(kube, namespace, "storefront", "Ready", "ApplyFailed")
        assert ready["status"] == "False"
        assert "Service/storefront-scorer" in ready["message"]
        assert "Services need a ticket here" in ready["message"]
        degraded = condition(kube, namespace, "storefront", "Degraded")
        assert (degraded["status"], degraded["reason"]) == ("True", "ApplyFailed")
        # Retried with backoff, and every retry counted on one Event, not a new one each.
        wait_for(
            lambda: [e for e in pipeline_events(kube, namespace, "ApplyFailed") if e["count"] >= 2],
            60,
            "a repeated ApplyFailed Event",
        )
        failed = pipeline_events(kube, namespace, "ApplyFailed")
        assert len(failed) == 1, failed
        assert failed[0]["type"] == "Warning"
        assert failed[0]["reportingComponent"] == "tailor-operator"
    finally:
        kube.kubectl("delete", "validatingadmissionpolicybinding", name, "--ignore-not-found")
        kube.kubectl("delete", "validatingadmissionpolicy", name, "--ignore-not-found")
    wait_ready(kube, namespace, "storefront")
    # Every Event on the pipeline is the operator's: none from Kopf ("kopf", instance "dev").
    sources = {
        (e["reportingComponent"], e["source"].get("component"))
        for e in pipeline_events(kube, namespace)
    }
    assert sources == {("tailor-operator", "tailor-operator")}


def test_an_unreadable_kafka_secret_is_a_condition_and_deletion_still_finishes(
    kube, kafka, operator, namespace
):
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "kafka-client"},
        # Not UTF-8: the operator cannot build a Kafka client from it.
        "data": {"username": base64.b64encode(b"\xff\xfe\xfa").decode(), "password": ""},
    }
    apply(kube, namespace, secret)
    operator.start(namespace)
    manifest = minimal(kafka)
    manifest["spec"]["kafka"]["authSecretRef"] = {"name": "kafka-client"}
    manifest["spec"]["topics"]["deletionPolicy"] = "Delete"
    apply(kube, namespace, manifest)
    topics_ready = wait_condition(kube, namespace, "storefront", "TopicsReady", "KafkaClientError")
    assert "Secret" in topics_ready["message"]
    assert "'username' is not UTF-8" in topics_ready["message"]
    assert condition(kube, namespace, "storefront", "Ready")["status"] == "False"
    assert pipeline_events(kube, namespace, "KafkaClientError")

    started = time.monotonic()
    kube.kubectl("delete", "ppl/storefront", "-n", namespace, "--timeout=90s")
    # Three attempts (TAILOR_DELETE_RETRIES in the fixture) with 2 s and 4 s backoff.
    assert time.monotonic() - started < 60
    abandoned = pipeline_events(kube, namespace, "TopicDeletionAbandoned")
    assert abandoned
    assert "is not UTF-8" in abandoned[0]["message"]


def test_pods_that_cannot_be_created_or_scheduled_say_why_at_once(kube, kafka, operator, namespace):
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "no-pods"},
        "spec": {"hard": {"pods": "0"}},
    }
    apply(kube, namespace, quota)
    operator.start(namespace)
    manifest = minimal(kafka)
    # And the scorer could not be placed on any node even without the quota.
    manifest["spec"]["scorer"] = {"resources": {"requests": {"cpu": "1000"}}}
    apply(kube, namespace, manifest)
    worker = wait_condition(
        kube, namespace, "storefront", "StreamWorkerAvailable", "PodsFailing", 30
    )
    assert "FailedCreate" in worker["message"]
    assert "exceeded quota" in worker["message"]

    kube.kubectl("delete", "resourcequota", "no-pods", "-n", namespace)
    scorer = wait_for(
        lambda: (
            "Unschedulable"
            in (c := condition(kube, namespace, "storefront", "ScorerAvailable")).get("message", "")
            and c
        ),
        60,
        "the scheduler's reason in ScorerAvailable",
    )
    assert scorer["reason"] == "PodsFailing"
    assert "Insufficient cpu" in scorer["message"]


def test_an_unset_partition_count_keeps_the_topic_and_caps_the_workers(
    kube, kafka, operator, namespace
):
    """The events topic exists with 3 partitions (made by hand, or before the spec's
    topics block was removed): nothing grows it, and the workers' HPA stops at 3."""
    events = f"{namespace}.storefront.events"
    admin = AdminClient({"bootstrap.servers": kafka})
    admin.create_topics([NewTopic(events, num_partitions=3, replication_factor=1)])[events].result(
        timeout=10
    )
    operator.start(namespace)
    manifest = minimal(kafka)
    del manifest["spec"]["topics"]
    manifest["spec"]["streamWorker"] = {"autoscaling": {"minReplicas": 1, "maxReplicas": 10}}
    apply(kube, namespace, manifest)
    wait_ready(kube, namespace, "storefront")
    found = topics(kafka)
    assert len(found[events].partitions) == 3
    # Profiles and trending follow the events topic they are keyed like.
    assert len(found[f"{namespace}.storefront.profiles"].partitions) == 3
    assert get(kube, namespace, "hpa/storefront-stream-worker")["spec"]["maxReplicas"] == 3
    status = get(kube, namespace, "ppl/storefront")["status"]
    assert status["topics"]["events"]["partitions"] == 3


def test_the_operator_exits_with_one_line_when_it_cannot_start(
    kube, crd, operator, namespace, tmp_path
):
    missing = operator.start(namespace, wait=False, kubeconfig=str(tmp_path / "nowhere"))
    wait_for(lambda: missing.exit_code is not None, 30, "the operator without credentials to exit")
    assert missing.exit_code == 1
    assert "Cannot start: no Kubernetes credentials" in missing.log_tail(5)

    # A knob it cannot use stops it before it talks to anyone, naming the variable.
    misset = operator.start(namespace, wait=False, env={"TAILOR_RESYNC_SECONDS": "0"})
    wait_for(lambda: misset.exit_code is not None, 30, "the misconfigured operator to exit")
    assert misset.exit_code == 1
    assert "Cannot start: TAILOR_RESYNC_SECONDS='0': Input should be greater than 0" in (
        misset.log_tail(5)
    )

    # A ServiceAccount nobody granted anything: authenticated, but not allowed.
    kube.kubectl("create", "serviceaccount", "nobody", "-n", namespace)
    token = kube.kubectl("create", "token", "nobody", "-n", namespace).strip()
    config = yaml.safe_load(Path(kube.kubeconfig).read_text())
    for user in config["users"]:
        user["user"] = {"token": token}
    unprivileged = tmp_path / "nobody.kubeconfig"
    unprivileged.write_text(yaml.safe_dump(config))
    forbidden = operator.start(namespace, wait=False, kubeconfig=str(unprivileged))
    wait_for(lambda: forbidden.exit_code is not None, 30, "the forbidden operator to exit")
    assert forbidden.exit_code == 1
    assert (
        f"Cannot start: not allowed to list personalizationpipelines.tailor.dev in {namespace}"
        in forbidden.log_tail(5)
    )
