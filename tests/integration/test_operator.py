"""The operator, as its own process, against the real API server and the real Kafka broker."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from tailor_localenv.kafka import KafkaBroker
from tailor_localenv.processes import free_port, http_get, wait_for
from tests.integration.conftest import REPO, read_example

ROLES = ("events", "profiles", "trending", "decisions", "dead-letter")


def apply(kube, namespace: str, manifest: dict[str, Any]) -> None:
    kube.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(manifest))


def get(kube, namespace: str, what: str, *flags: str) -> dict[str, Any]:
    return json.loads(kube.kubectl("get", what, "-n", namespace, "-o", "json", *flags))


def mounted_config_name(kube, namespace: str, deployment: str) -> str:
    """The settings ConfigMap a Deployment's pods mount (one per program and version)."""
    spec = get(kube, namespace, f"deployment/{deployment}")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    return str(volumes["config"]["configMap"]["name"])


def mounted_config(kube, namespace: str, deployment: str) -> dict[str, Any]:
    return get(kube, namespace, f"configmap/{mounted_config_name(kube, namespace, deployment)}")


def wait_ready(kube, namespace: str, name: str, timeout: int = 120) -> None:
    kube.kubectl(
        "wait", "--for=condition=Ready", f"ppl/{name}", "-n", namespace, f"--timeout={timeout}s"
    )


def condition(kube, namespace: str, name: str, type_: str) -> dict[str, Any]:
    status = get(kube, namespace, f"ppl/{name}").get("status", {})
    return next((c for c in status.get("conditions", []) if c["type"] == type_), {})


def wait_condition(
    kube, namespace: str, name: str, type_: str, reason: str, timeout: float = 60
) -> dict[str, Any]:
    """Wait until the pipeline's condition ``type_`` has ``reason``; returns it."""
    return wait_for(
        lambda: (c := condition(kube, namespace, name, type_)) and c["reason"] == reason and c,
        timeout,
        f"{type_} with reason {reason}",
    )


def topics(bootstrap: str) -> dict[str, Any]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return admin.list_topics(timeout=10).topics


def topic_config(bootstrap: str, name: str) -> dict[str, str]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(ResourceType.TOPIC, name)
    entries = admin.describe_configs([resource])[resource].result(timeout=10)
    return {k: v.value for k, v in entries.items()}


def minimal(kafka: str, **spec_changes: Any) -> dict[str, Any]:
    manifest = read_example("01-minimal.yaml", kafka)
    manifest["spec"].update(spec_changes)
    return manifest


@pytest.mark.parametrize("example", sorted(p.name for p in (REPO / "examples").glob("*.yaml")))
def test_every_example_becomes_ready(kube, kafka, operator, namespace, example):
    manifest = read_example(example, kafka)
    name = manifest["metadata"]["name"]
    operator.start(namespace)
    apply(kube, namespace, manifest)
    wait_ready(kube, namespace, name)

    ppl = get(kube, namespace, f"ppl/{name}")
    status = ppl["status"]
    assert status["observedGeneration"] == ppl["metadata"]["generation"]
    expected = {
        "Ready": "True",
        "TopicsReady": "True",
        "StreamWorkerAvailable": "True",
        "ScorerAvailable": "True",
        "Degraded": "False",
    }
    model = manifest["spec"].get("scorer", {}).get("model")
    if model:
        expected["ModelRolledOut"] = "True"
        assert status["model"]["active"] == model["version"]
    # Ready can come a status refresh before ModelRolledOut: both are computed together.
    assert {c["type"]: c["status"] for c in status["conditions"]} == expected
    assert status["scorerEndpoint"] == f"http://{name}-scorer.{namespace}.svc:8080"

    in_kafka = topics(kafka)
    for role in ROLES:
        topic = f"{namespace}.{name}.{role}"
        assert topic in in_kafka, f"{topic} was not created"
        assert status["topics"][role]["name"] == topic
    events_partitions = manifest["spec"]["topics"]["events"]["partitions"]
    assert len(in_kafka[f"{namespace}.{name}.events"].partitions) == events_partitions
    assert len(in_kafka[f"{namespace}.{name}.profiles"].partitions) == events_partitions
    assert topic_config(kafka, f"{namespace}.{name}.profiles")["cleanup.policy"] == "compact"
    assert topic_config(kafka, f"{namespace}.{name}.events")["cleanup.policy"] == "delete"

    children = get(kube, namespace, "deployments,services,configmaps,hpa,pdb")["items"]
    owned = [c for c in children if c["metadata"].get("ownerReferences")]
    kinds = sorted(f"{c['kind']}/{c['metadata']['name']}" for c in owned)
    autoscaled = "autoscaling" in manifest["spec"].get("streamWorker", {})
    expected = [
        f"ConfigMap/{mounted_config_name(kube, namespace, f'{name}-scorer')}",
        f"ConfigMap/{mounted_config_name(kube, namespace, f'{name}-stream-worker')}",
        f"Deployment/{name}-scorer",
        f"Deployment/{name}-stream-worker",
        *([f"HorizontalPodAutoscaler/{name}-scorer"] if autoscaled else []),
        *([f"HorizontalPodAutoscaler/{name}-stream-worker"] if autoscaled else []),
        f"PodDisruptionBudget/{name}-scorer",
        f"PodDisruptionBudget/{name}-stream-worker",
        f"Service/{name}-scorer",
    ]
    assert kinds == expected
    for child in owned:
        labels = child["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "tailor"
        assert labels["tailor.dev/pipeline"] == name
        assert "app.kubernetes.io/instance" not in labels
        (owner,) = child["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
            "PersonalizationPipeline",
            name,
            ppl["metadata"]["uid"],
            True,
        )

    events = get(kube, namespace, "events")["items"]
    mine = [e for e in events if e["involvedObject"]["name"] == name]
    # One Event for what a new pipeline got: its children and its topics.
    (created,) = [e for e in mine if e["reason"] == "Created"]
    assert f"Deployment/{name}-scorer" in created["message"]
    assert f"; Kafka topics reconciled: {len(ROLES)} create" in created["message"]
    assert "TopicsReconciled" not in {e["reason"] for e in mine}


def test_autoscaled_replicas_belong_to_the_hpa(kube, kafka, operator, namespace):
    metrics_port = free_port()
    operator.start(namespace, extra=(f"--metrics-port={metrics_port}",))
    manifest = read_example("02-full.yaml", kafka)
    apply(kube, namespace, manifest)
    wait_ready(kube, namespace, "frontpage")
    deployment = get(kube, namespace, "deployment/frontpage-stream-worker", "--show-managed-fields")
    ours = [m for m in deployment["metadata"]["managedFields"] if m["manager"] == "tailor-operator"]
    assert ours, "the operator did not apply the Deployment"
    assert all("f:replicas" not in m["fieldsV1"].get("f:spec", {}) for m in ours)
    hpa = get(kube, namespace, "hpa/frontpage-stream-worker")
    assert hpa["spec"]["maxReplicas"] == 12  # capped at the events partitions
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300

    status, body = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
    assert status == 200
    metrics = body.decode()
    assert 'tailor_reconciles_total{result="ok"}' in metrics
    assert 'tailor_topic_operations_total{operation="create"} 5.0' in metrics
    assert "tailor_reconcile_duration_seconds_count" in metrics


def test_updates_are_applied_and_roll_pods_only_on_config_change(kube, kafka, operator, namespace):
    operator.start(namespace)
    apply(kube, namespace, minimal(kafka))
    wait_ready(kube, namespace, "storefront")
    before = get(kube, namespace, "deployment/storefront-scorer")
    hash_before = before["spec"]["template"]["metadata"]["annotations"]["tailor.dev/config-hash"]

    manifest = minimal(kafka)
    manifest["spec"]["topics"]["events"]["partitions"] = 8
    manifest["spec"]["scorer"] = {"replicas": 3}
    manifest["spec"]["features"] = {"halfLife": "2h"}
    apply(kube, namespace, manifest)

    def rolled() -> bool:
        d = get(kube, namespace, "deployment/storefront-scorer")
        annotations = d["spec"]["template"]["metadata"]["annotations"]
        return d["spec"]["replicas"] == 3 and annotations["tailor.dev/config-hash"] != hash_before

    wait_for(rolled, 30, "the scorer to take 3 replicas and the new config hash")
    config = mounted_config(kube, namespace, "storefront-scorer")
    assert json.loads(config["data"]["pipeline.json"])["features"]["half_life_s"] == 7200
    wait_for(
        lambda: all(
            len(topics(kafka)[f"{namespace}.storefront.{role}"].partitions) == 8
            for role in ("events", "profiles", "trending")
        ),
        30,
        "events, profiles and trending to grow to 8 partitions",
    )
    wait_ready(kube, namespace, "storefront")

    # Re-applying the same manifest changes nothing: no spec or status writes.
    for deployment in ("storefront-scorer", "storefront-stream-worker"):
        kube.kubectl("rollout", "status", f"deployment/{deployment}", "-n", namespace)
    time.sleep(2)  # let the last pod transitions reach the pipeline's status
    # The previous settings go once the operator sees the rollout settled: part of
    # converging, so wait for it before counting writes.
    mounted = {
        mounted_config_name(kube, namespace, d)
        for d in ("storefront-scorer", "storefront-stream-worker")
    }

    def only_mounted_settings() -> bool:
        names = {c["metadata"]["name"] for c in get(kube, namespace, "configmaps")["items"]}
        return {n for n in names if "-config-" in n} == mounted

    wait_for(only_mounted_settings, 30, "the previous settings to be deleted")
    before = writes(kube, namespace)
    apply(kube, namespace, manifest)
    time.sleep(7)  # more than one resync period of the operator under test
    assert writes(kube, namespace) == before


def writes(kube, namespace: str) -> dict[str, object]:
    """What changes when anyone writes: the pipeline's resourceVersion, and each child's
    generation and the time of the operator's last apply."""
    objects = get(
        kube, namespace, "deployments,services,configmaps,pdb,ppl", "--show-managed-fields"
    )["items"]
    seen: dict[str, object] = {}
    for obj in objects:
        meta = obj["metadata"]
        key = f"{obj['kind']}/{meta['name']}"
        if obj["kind"] == "PersonalizationPipeline":
            seen[key] = meta["resourceVersion"]
        else:
            applied = [
                m["time"] for m in meta["managedFields"] if m["manager"] == "tailor-operator"
            ]
            seen[key] = (meta.get("generation"), applied)
    return seen


def test_suspend_scales_to_zero_and_keeps_topics(kube, kafka, operator, namespace):
    operator.start(namespace)
    manifest = minimal(kafka)
    manifest["spec"]["scorer"] = {"autoscaling": {"minReplicas": 2, "maxReplicas": 4}}
    apply(kube, namespace, manifest)
    wait_ready(kube, namespace, "storefront")
    assert get(kube, namespace, "hpa")["items"]

    apply(kube, namespace, minimal(kafka, suspend=True, scorer=manifest["spec"]["scorer"]))
    wait_for(
        lambda: all(
            d["spec"]["replicas"] == 0 and not d["status"].get("replicas")
            for d in get(kube, namespace, "deployments")["items"]
        ),
        30,
        "both Deployments at zero",
    )
    assert get(kube, namespace, "hpa")["items"] == []
    assert f"{namespace}.storefront.events" in topics(kafka)

    apply(kube, namespace, manifest)
    wait_ready(kube, namespace, "storefront")
    assert len(get(kube, namespace, "hpa")["items"]) == 1


def test_an_impossible_topic_request_reports_kafkas_reason(kube, kafka, operator, namespace):
    operator.start(namespace)
    manifest = minimal(kafka)
    manifest["spec"]["topics"]["events"]["replicationFactor"] = 3
    apply(kube, namespace, manifest)
    found = wait_for(
        lambda: condition(kube, namespace, "storefront", "TopicsReady"),
        30,
        "TopicsReady",
    )
    assert found["status"] == "False"
    assert found["reason"] == "TopicError"
    assert "INVALID_REPLICATION_FACTOR" in found["message"]
    assert condition(kube, namespace, "storefront", "Ready")["status"] == "False"


def test_operator_killed_mid_reconcile_converges_without_duplicates(
    kube, kafka, operator, namespace
):
    first = operator.start(namespace)
    apply(kube, namespace, read_example("02-full.yaml", kafka))
    # Kill it as soon as it started writing children, before it could finish.
    wait_for(lambda: get(kube, namespace, "configmaps,deployments")["items"], 30, "the first child")
    first.kill()
    assert not first.alive()
    operator.start(namespace)
    wait_ready(kube, namespace, "frontpage")
    deployments = get(kube, namespace, "deployments")["items"]
    assert sorted(d["metadata"]["name"] for d in deployments) == [
        "frontpage-scorer",
        "frontpage-stream-worker",
    ]
    for d in deployments:
        replica_sets = [
            rs
            for rs in get(kube, namespace, "replicasets")["items"]
            if rs["metadata"]["ownerReferences"][0]["uid"] == d["metadata"]["uid"]
        ]
        assert len(replica_sets) == 1, "a restart must not roll the pods"


@pytest.mark.parametrize("policy", ["Delete", "Retain"])
def test_deletion_follows_the_policy(kube, kafka, operator, namespace, policy):
    operator.start(namespace)
    manifest = minimal(kafka)
    manifest["spec"]["topics"]["deletionPolicy"] = policy
    apply(kube, namespace, manifest)
    wait_ready(kube, namespace, "storefront")
    finalizers = get(kube, namespace, "ppl/storefront")["metadata"].get("finalizers", [])
    assert ("tailor.dev/topics" in finalizers) == (policy == "Delete")

    kube.kubectl("delete", "ppl/storefront", "-n", namespace, "--timeout=60s")
    names = {f"{namespace}.storefront.{role}" for role in ROLES}
    if policy == "Delete":
        wait_for(lambda: not names & set(topics(kafka)), 30, "the topics to be deleted")
        # Kopf's info-level Events were never posted: this one goes through the operator's.
        deleted = [
            e for e in get(kube, namespace, "events")["items"] if e["reason"] == "TopicsDeleted"
        ]
        assert len(deleted) == 1
        assert deleted[0]["reportingComponent"] == "tailor-operator"
    else:
        assert names <= set(topics(kafka))
    wait_for(
        lambda: (
            not get(
                kube, namespace, "deployments,configmaps,services,pdb", "-l", "tailor.dev/pipeline"
            )["items"]
        ),
        60,
        "garbage collection of the children",
    )


@pytest.fixture
def kafka_gone(kube, operator, namespace) -> Iterator[None]:
    """A Ready pipeline with deletionPolicy Delete whose own Kafka broker then halts."""
    broker = KafkaBroker().start()
    try:
        operator.start(namespace)
        manifest = minimal(broker.bootstrap_servers)
        manifest["spec"]["topics"]["deletionPolicy"] = "Delete"
        apply(kube, namespace, manifest)
        wait_ready(kube, namespace, "storefront")
        broker.halt()
        yield
    finally:
        broker.stop()


def test_finalizer_is_released_when_kafka_is_gone(kube, namespace, kafka_gone):
    started = time.monotonic()
    kube.kubectl("delete", "ppl/storefront", "-n", namespace, "--timeout=120s")
    # Three attempts with 2 s and 4 s backoff, each waiting for Kafka's timeout.
    assert time.monotonic() - started < 110
    reasons = {e["reason"] for e in get(kube, namespace, "events")["items"]}
    assert "TopicDeletionAbandoned" in reasons


def test_the_release_annotation_frees_the_finalizer_at_once(kube, namespace, kafka_gone):
    started = time.monotonic()
    kube.kubectl("delete", "ppl/storefront", "-n", namespace, "--wait=false")
    kube.kubectl("annotate", "ppl/storefront", "-n", namespace, "tailor.dev/release-finalizer=true")
    wait_for(
        lambda: kube.kubectl("get", "ppl", "-n", namespace, "-o", "name").strip() == "",
        60,
        "the pipeline to be gone",
    )
    # Without the annotation five attempts take over a minute (see the test above).
    assert time.monotonic() - started < 35
    reasons = {e["reason"] for e in get(kube, namespace, "events")["items"]}
    assert "FinalizerReleased" in reasons
    assert "TopicDeletionAbandoned" not in reasons


def test_kafka_outage_shows_in_status_and_heals(kube, operator, namespace):
    broker = KafkaBroker().start()
    try:
        operator.start(namespace, resync_seconds=3)
        apply(kube, namespace, minimal(broker.bootstrap_servers))
        wait_ready(kube, namespace, "storefront")

        broker.halt()
        down = wait_for(
            lambda: (
                (c := condition(kube, namespace, "storefront", "TopicsReady"))
                and c["status"] == "False"
                and c
            ),
            60,
            "TopicsReady=False",
        )
        assert down["reason"] == "KafkaUnavailable"
        assert broker.bootstrap_servers in down["message"]
        assert condition(kube, namespace, "storefront", "Ready")["status"] == "False"
        # Nothing was deleted while Kafka was away.
        assert len(get(kube, namespace, "deployments")["items"]) == 2

        broker.restart()
        wait_ready(kube, namespace, "storefront", timeout=90)
    finally:
        broker.stop()


def lease_holder(kube, namespace: str) -> str | None:
    lease = get(kube, namespace, "lease/tailor-operator")
    return lease["spec"].get("holderIdentity")


def test_two_replicas_one_leader_and_failover(kube, kafka, operator, namespace):
    args = (
        "--leader-election",
        f"--leader-election-namespace={namespace}",
        "--lease-seconds=6",
    )
    first = operator.start(namespace, extra=args)
    wait_for(lambda: lease_holder(kube, namespace), 30, "a lease holder")
    second = operator.start(namespace, extra=args)
    holder = lease_holder(kube, namespace)
    assert holder is not None
    assert holder.endswith(f"-{first.pid}")

    apply(kube, namespace, minimal(kafka))
    wait_ready(kube, namespace, "storefront")
    time.sleep(2)
    assert "Waiting for the lease" in second.log_path.read_text()
    assert "storefront" not in second.log_path.read_text(), "the standby reconciled"

    first.kill()
    wait_for(
        lambda: (h := lease_holder(kube, namespace)) and h.endswith(f"-{second.pid}"),
        30,
        "the standby to take the lease",
    )
    manifest = minimal(kafka)
    manifest["spec"]["scorer"] = {"replicas": 3}
    apply(kube, namespace, manifest)
    wait_for(
        lambda: get(kube, namespace, "deployment/storefront-scorer")["spec"]["replicas"] == 3,
        30,
        "the new leader to apply the change",
    )


def test_a_clean_shutdown_hands_the_lease_over_at_once(kube, operator, namespace):
    args = (
        "--leader-election",
        f"--leader-election-namespace={namespace}",
        "--lease-seconds=60",
    )
    first = operator.start(namespace, extra=args)
    wait_for(lambda: lease_holder(kube, namespace), 30, "a lease holder")
    second = operator.start(namespace, extra=args)
    first.stop(grace=20)
    assert "Released the lease" in first.log_path.read_text()
    # Far sooner than the 60 s lease would expire on its own.
    wait_for(
        lambda: (h := lease_holder(kube, namespace)) and h.endswith(f"-{second.pid}"),
        25,
        "the standby to take the released lease",
    )


def test_a_stop_just_after_winning_the_lease_still_stops_and_releases_it(kube, operator, namespace):
    # SIGTERM can land between winning the Lease and Kopf taking over the signals; a replica
    # must not lose it there and run on until the kubelet kills it, holding the Lease.
    args = ("--leader-election", f"--leader-election-namespace={namespace}", "--lease-seconds=60")
    proc = operator.start(namespace, extra=args, wait=False)
    wait_for(
        lambda: "acquired the lease" in proc.log_path.read_text(), 30, "the lease", interval=0.002
    )
    started = time.monotonic()
    proc.stop(grace=20)
    assert time.monotonic() - started < 15, "SIGTERM was ignored"
    assert "Released the lease" in proc.log_path.read_text()
    assert not lease_holder(kube, namespace)


def test_deleted_and_edited_children_are_repaired_from_the_watch(kube, kafka, operator, namespace):
    metrics_port = free_port()
    # A resync far away: only the watches can explain a repair within seconds.
    proc = operator.start(namespace, resync_seconds=600, extra=(f"--metrics-port={metrics_port}",))
    apply(kube, namespace, read_example("02-full.yaml", kafka))
    wait_ready(kube, namespace, "frontpage")
    hpa = get(kube, namespace, "hpa/frontpage-scorer")
    pdb = get(kube, namespace, "pdb/frontpage-scorer")
    config_name = mounted_config_name(kube, namespace, "frontpage-scorer")
    config = get(kube, namespace, f"configmap/{config_name}")["data"]
    service_uid = get(kube, namespace, "service/frontpage-scorer")["metadata"]["uid"]
    image = get(kube, namespace, "deployment/frontpage-scorer")["spec"]["template"]["spec"][
        "containers"
    ][0]["image"]

    # A reconcile that finds nothing changed reports no repair (an unchanged apply writes
    # nothing): an annotation makes the operator run one without a new generation.
    handled = f"Reconciled {namespace}/frontpage ("
    runs = proc.log_path.read_text().count(handled)
    kube.kubectl("annotate", "ppl/frontpage", "-n", namespace, "example.com/touched=1")
    wait_for(lambda: proc.log_path.read_text().count(handled) > runs, 30, "a no-op reconcile")
    time.sleep(1)  # its Events, if any, are posted right after
    assert "Repaired" not in kube.kubectl("get", "events", "-n", namespace)

    kube.kubectl(
        "set", "image", "deployment/frontpage-scorer", "*=example.com/evil:1", "-n", namespace
    )
    kube.kubectl("delete", "service/frontpage-scorer", f"configmap/{config_name}", "-n", namespace)
    # A label edit changes no generation, but it changes a field Tailor applied.
    kube.kubectl(
        "label",
        "deployment/frontpage-stream-worker",
        "app.kubernetes.io/component=evil",
        "--overwrite",
        "-n",
        namespace,
    )
    kube.kubectl(
        "patch",
        "hpa/frontpage-scorer",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec": {"maxReplicas": 99}}',
    )
    kube.kubectl(
        "patch",
        "pdb/frontpage-scorer",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec": {"maxUnavailable": 7}}',
    )

    def repaired() -> bool:
        service = kube.kubectl("get", "service", "-n", namespace, "-o", "json")
        services = json.loads(service)["items"]
        return (
            any(
                s["metadata"]["name"] == "frontpage-scorer" and s["metadata"]["uid"] != service_uid
                for s in services
            )
            and get(kube, namespace, f"configmap/{config_name}")["data"] == config
            if config_name in kube.kubectl("get", "configmap", "-n", namespace)
            else False
        ) and (
            get(kube, namespace, "hpa/frontpage-scorer")["spec"]["maxReplicas"]
            == hpa["spec"]["maxReplicas"]
            and get(kube, namespace, "pdb/frontpage-scorer")["spec"] == pdb["spec"]
            and get(kube, namespace, "deployment/frontpage-scorer")["spec"]["template"]["spec"][
                "containers"
            ][0]["image"]
            == image
            and get(kube, namespace, "deployment/frontpage-stream-worker")["metadata"]["labels"][
                "app.kubernetes.io/component"
            ]
            == "stream-worker"
        )

    # 30 s is far below the 600 s resync: only the watches can have done it (0.6 s here).
    wait_for(repaired, 30, "every child repaired", interval=0.1)
    events = get(kube, namespace, "events")["items"]
    repairs = " ".join(e["message"] for e in events if e["reason"] == "Repaired")
    for child in (
        "Deployment/frontpage-stream-worker",
        "Service/frontpage-scorer",
        f"ConfigMap/{config_name}",
        "HorizontalPodAutoscaler/frontpage-scorer",
        "PodDisruptionBudget/frontpage-scorer",
    ):
        assert child in repairs, repairs
    _, body = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
    assert 'tailor_repairs_total{kind="Service"}' in body.decode()


def test_autoscaling_takes_replicas_over_without_a_drop_or_a_fight(
    kube, kafka, operator, namespace
):
    """Turning autoscaling on for a running scorer keeps the replicas it had (server-side
    apply would reset a field the operator stops applying to its default of 1), and the
    HPA's later changes to replicas are neither reverted nor reported as repairs."""
    proc = operator.start(namespace, resync_seconds=600)
    apply(kube, namespace, minimal(kafka, scorer={"replicas": 3}))
    wait_ready(kube, namespace, "storefront")

    def replicas() -> int:
        return int(get(kube, namespace, "deployment/storefront-scorer")["spec"]["replicas"])

    assert replicas() == 3
    autoscaled = minimal(kafka, scorer={"replicas": 3, "autoscaling": {"maxReplicas": 5}})
    apply(kube, namespace, autoscaled)
    wait_for(
        lambda: "storefront-scorer" in kube.kubectl("get", "hpa", "-n", namespace),
        30,
        "the scorer's HPA",
    )
    wait_ready(kube, namespace, "storefront")
    # minReplicas is 1 and the HPA has no CPU metrics here, so nothing but a reset by the
    # apply could take the scorer below 3.
    assert replicas() == 3
    managers = {
        entry["manager"]
        for entry in get(kube, namespace, "deployment/storefront-scorer", "--show-managed-fields")[
            "metadata"
        ]["managedFields"]
        if "f:replicas" in entry.get("fieldsV1", {}).get("f:spec", {})
    }
    assert "tailor-operator" not in managers, managers

    # What the HPA does when it scales: a change through the scale subresource.
    kube.kubectl("scale", "deployment/storefront-scorer", "--replicas=4", "-n", namespace)
    handled = f"Reconciled {namespace}/storefront ("
    runs = proc.log_path.read_text().count(handled)
    kube.kubectl("annotate", "ppl/storefront", "-n", namespace, "example.com/touched=1")
    wait_for(lambda: proc.log_path.read_text().count(handled) > runs, 30, "a full reconcile")
    time.sleep(1)  # its Events, if any, are posted right after
    assert replicas() == 4
    assert "Repaired" not in kube.kubectl("get", "events", "-n", namespace)


def test_a_directory_applied_twice_converges_once(kube, kafka, operator, namespace, tmp_path):
    """The GitOps path: `kubectl apply -f DIR` of every example; the second apply of the same
    directory writes nothing (no spec, no status, no child churn)."""
    directory = tmp_path / "pipelines"
    directory.mkdir()
    names = []
    for example in sorted((REPO / "examples").glob("*.yaml")):
        manifest = read_example(example.name, kafka)
        names.append(manifest["metadata"]["name"])
        (directory / example.name).write_text(yaml.safe_dump(manifest))
    operator.start(namespace)
    kube.kubectl("apply", "-n", namespace, "-f", str(directory))
    for name in names:
        kube.kubectl(
            "wait", "--for=condition=Ready", f"ppl/{name}", "-n", namespace, "--timeout=120s"
        )
    # Let everything settle first (pods starting, the HPAs taking their Deployments to
    # minReplicas): nothing written for 8 s.
    before, quiet_since = writes(kube, namespace), time.monotonic()
    deadline = time.monotonic() + 90
    while time.monotonic() - quiet_since < 8:
        assert time.monotonic() < deadline, "the pipelines never settled"
        time.sleep(1)
        current = writes(kube, namespace)
        if current != before:
            before, quiet_since = current, time.monotonic()
    out = kube.kubectl("apply", "-n", namespace, "-f", str(directory))
    assert out.count("unchanged") == len(names)
    time.sleep(7)  # more than one resync period of the operator under test
    assert writes(kube, namespace) == before


def test_a_topic_deleted_behind_the_operators_back_is_recreated_and_reported(
    kube, kafka, operator, namespace
):
    # A resync far away: the operator's watch on the cluster's topics must notice.
    operator.start(namespace, resync_seconds=600)
    apply(kube, namespace, minimal(kafka))
    wait_ready(kube, namespace, "storefront")
    victim = f"{namespace}.storefront.profiles"
    admin = AdminClient({"bootstrap.servers": kafka})
    admin.delete_topics([victim])[victim].result(timeout=30)

    degraded = wait_condition(kube, namespace, "storefront", "Degraded", "TopicRecreated", 15)
    assert degraded["status"] == "True"
    assert victim in degraded["message"]
    assert "gone" in degraded["message"]
    assert victim in topics(kafka)
    assert topic_config(kafka, victim)["cleanup.policy"] == "compact"
    events = get(kube, namespace, "events")["items"]
    assert any(e["reason"] == "TopicRecreated" and e["type"] == "Warning" for e in events)
    # Serving goes on: the pipeline stays Ready while the alarm is up.
    time.sleep(3)
    assert condition(kube, namespace, "storefront", "Ready")["status"] == "True"
    assert condition(kube, namespace, "storefront", "Degraded")["reason"] == "TopicRecreated"


def test_a_crash_looping_scorer_shows_its_reason_and_recovers(kube, kafka, operator, namespace):
    operator.start(namespace)
    manifest = minimal(kafka)
    # KWOK plays a crash loop for pods with this label (localenv/tailor_localenv/kwok-stages.yaml).
    manifest["spec"]["scorer"] = {"podLabels": {"sim.tailor.dev/mode": "crashloop"}}
    apply(kube, namespace, manifest)
    failing = wait_condition(kube, namespace, "storefront", "ScorerAvailable", "PodsFailing")
    assert failing["status"] == "False"
    assert "CrashLoopBackOff (5 restarts)" in failing["message"]
    assert "simulated crash" in failing["message"]
    degraded = condition(kube, namespace, "storefront", "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "ComponentFailing")
    assert "scorer:" in degraded["message"]
    assert condition(kube, namespace, "storefront", "StreamWorkerAvailable")["status"] == "True"
    # The operator leaves the Deployment controller alone: no replicas or pods touched.
    assert get(kube, namespace, "deployment/storefront-scorer")["spec"]["replicas"] == 2

    apply(kube, namespace, minimal(kafka))  # the fix: a healthy scorer again
    wait_ready(kube, namespace, "storefront")
    assert condition(kube, namespace, "storefront", "Degraded")["status"] == "False"


def test_a_new_model_rolls_the_scorers_with_no_unavailable_replica(
    kube, kafka, operator, namespace
):
    def with_model(version: str) -> dict[str, Any]:
        manifest = minimal(kafka)
        manifest["spec"]["scorer"] = {
            "model": {"name": "knn", "version": version, "uri": "file:///m", "sha256": "a" * 64}
        }
        return manifest

    operator.start(namespace)
    apply(kube, namespace, with_model("v1"))
    wait_ready(kube, namespace, "storefront")
    worker_template = get(kube, namespace, "deployment/storefront-stream-worker")["spec"][
        "template"
    ]
    scorer = get(kube, namespace, "deployment/storefront-scorer")
    assert scorer["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert get(kube, namespace, "ppl/storefront")["status"]["model"]["active"] == "v1"

    apply(kube, namespace, with_model("v2"))
    rolling = wait_for(
        lambda: (
            (m := get(kube, namespace, "ppl/storefront")["status"].get("model", {}))
            and (
                m.get("rolling_out") == "v2"
                or m.get("rollingOut") == "v2"
                or m.get("active") == "v2"
            )
            and m
        ),
        30,
        "the rollout of v2 to start",
    )
    assert rolling.get("rolloutStarted")
    done = wait_for(
        lambda: (
            (m := get(kube, namespace, "ppl/storefront")["status"]["model"])
            and m.get("active") == "v2"
            and m
        ),
        60,
        "v2 to be active",
    )
    assert done["previous"] == "v1"
    assert done["rolloutStarted"] <= done["rolloutFinished"]
    assert "rollingOut" not in done or done["rollingOut"] is None
    rolled = condition(kube, namespace, "storefront", "ModelRolledOut")
    assert (rolled["status"], rolled["reason"], rolled["message"]) == (
        "True",
        "RolledOut",
        "serving v2",
    )
    # A new model rolls the scorers only.
    after = get(kube, namespace, "deployment/storefront-stream-worker")["spec"]["template"]
    assert after == worker_template
