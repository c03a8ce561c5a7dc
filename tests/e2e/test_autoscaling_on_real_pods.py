"""The scorer's HPA on real CPU (metrics-server reading the real node's kubelet): it scales
up under decision load and back down after it, and the operator leaves it alone meanwhile."""

from __future__ import annotations

import json
import time

import pytest

from tailor_localenv.processes import wait_for
from tests.e2e.real_pods import (
    SteadyTraffic,
    decide_url,
    get,
    pipeline,
    start_in_real_pods,
    wait_pipeline_ready,
)

pytestmark = pytest.mark.slow


def cpu_utilization(hpa: dict) -> int | None:
    """The scorers' CPU as the HPA last saw it, in percent of their request."""
    for metric in hpa["status"].get("currentMetrics") or []:
        if metric.get("type") == "Resource":
            return metric["resource"]["current"].get("averageUtilization")
    return None


def test_the_scorer_scales_on_real_cpu_and_back(kube, kafka, real_node, operator):
    # No resync in the test's time: every full reconcile in the log had another cause.
    namespace = start_in_real_pods(kube, real_node, operator, "hpa", resync_seconds=3600)
    log = operator.processes[-1].log_path
    autoscaling = {
        "minReplicas": 1,
        "maxReplicas": 3,
        # 100 decisions/s, each on a new connection, cost a scorer about 50m and an idle one
        # about 8m: 30% of 100m is under the first with room to spare and far over the second.
        "targetCpuUtilization": 30,
        "scaleDownStabilization": "20s",
    }
    scorer = {"autoscaling": autoscaling, "resources": {"requests": {"cpu": "100m"}}}
    kube.kubectl("apply", "-f", "-", input=pipeline(namespace, kafka, scorer=scorer))
    wait_pipeline_ready(kube, namespace)

    shown: list[int | None] = []

    def hpa() -> dict:
        """The HPA; its CPU figure is printed when it changes, for a failure's output."""
        current = get(kube, namespace, "hpa", "storefront-scorer")
        if not shown or shown[-1] != cpu_utilization(current):
            shown.append(cpu_utilization(current))
            print(f"{time.strftime('%X')} HPA: CPU at {shown[-1]}% of request")  # noqa: T201
        return current

    wait_for(lambda: cpu_utilization(hpa()) is not None, 90, "metrics-server to report CPU")
    reconciles = f"Running a reconcile of {namespace}/storefront"
    before = log.read_text().count(reconciles)
    traffic = SteadyTraffic(decide_url(kube, namespace), 100)
    traffic.start()
    try:
        wait_for(
            lambda: hpa()["status"].get("desiredReplicas", 1) >= 2,
            120,
            "the HPA to scale the scorer up under load",
        )
        wait_for(
            lambda: (
                get(kube, namespace, "deployment", "storefront-scorer")["status"].get(
                    "readyReplicas", 0
                )
                >= 2
            ),
            120,
            "a second scorer Ready",
        )
    finally:
        traffic.stop.set()
        traffic.join()
    assert traffic.failures == [], traffic.failures[:5]
    wait_for(
        lambda: hpa()["status"].get("desiredReplicas") == 1,
        150,
        "the HPA to scale the scorer back down once the load stopped",
    )
    # The HPA's own changes to replicas and its status are not drift to repair: they
    # refresh the status, and cause no full reconcile.
    assert log.read_text().count(reconciles) == before
    repaired = json.loads(
        kube.kubectl(
            "get", "events", "-n", namespace, "--field-selector=reason=Repaired", "-o", "json"
        )
    )["items"]
    assert repaired == [], [e["message"] for e in repaired]
    kube.kubectl("delete", "namespace", namespace, "--wait=false")
