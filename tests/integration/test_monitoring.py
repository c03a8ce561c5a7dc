"""The chart's monitoring: alerts checked and unit-tested by promtool, a dashboard whose
queries parse and name only metrics Tailor exports, and the objects the chart renders."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

import tailor_operator.metrics
import tailor_pipeline.scorer
import tailor_pipeline.worker
from tests.integration.test_chart import CHART, helm

FILES = CHART / "files"
# Imported for the metrics they register.
_EXPORTERS = (tailor_operator.metrics, tailor_pipeline.scorer, tailor_pipeline.worker)
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
}


def exported_metrics() -> set[str]:
    """Every series name Tailor's operator, workers and scorers can expose."""
    names = set()
    for family in REGISTRY.collect():
        if family.name.startswith("tailor_"):
            names |= {family.name + suffix for suffix in _SUFFIXES[family.type]}
    return names


def metrics_in(expr: str) -> set[str]:
    return set(re.findall(r"\btailor_[a-z0-9_]+\b", expr))


def promtool(toolchain, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(toolchain.binary("promtool")), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def dashboard_exprs() -> list[str]:
    dashboard = json.loads((FILES / "grafana-dashboard.json").read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def test_the_alerts_are_valid_and_fire_on_what_they_are_for(toolchain):
    checked = promtool(toolchain, "check", "rules", FILES / "alerts.yaml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool(toolchain, "test", "rules", FILES / "alerts_test.yaml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    rules = yaml.safe_load((FILES / "alerts.yaml").read_text())["groups"][0]["rules"]
    unknown = {m for r in rules for m in metrics_in(r["expr"])} - exported_metrics()
    assert not unknown, f"alerts on metrics nothing exports: {unknown}"


def test_the_dashboard_queries_parse_and_name_only_exported_metrics(toolchain, tmp_path):
    exprs = dashboard_exprs()
    assert len(exprs) >= 10
    unknown = {m for e in exprs for m in metrics_in(e)} - exported_metrics()
    assert not unknown, f"panels on metrics nothing exports: {unknown}"
    # Grafana's variables as Grafana would fill them in, then PromQL's own parser.
    filled = [e.replace("$__rate_interval", "2m").replace("$namespace", ".*") for e in exprs]
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:panel:{n}", "expr": e} for n, e in enumerate(filled)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump(rules))
    checked = promtool(toolchain, "check", "rules", path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.kube
def test_the_chart_renders_monitoring_only_where_its_crds_exist(kube, toolchain):
    crds = ("monitoring.coreos.com/v1/PodMonitor", "monitoring.coreos.com/v1/PrometheusRule")
    enabled = [
        *("--set", "monitoring.podMonitor.enabled=true"),
        *("--set", "monitoring.prometheusRule.enabled=true"),
        *("--set", "monitoring.grafanaDashboard.enabled=true"),
        *("--set", "watch.namespaces={shop}"),
    ]
    api_versions = [f"--api-versions={c}" for c in crds]
    rendered = helm(kube, toolchain, "template", "t", str(CHART), *enabled, *api_versions).stdout
    docs = {d["kind"]: d for d in yaml.safe_load_all(rendered) if d}
    pod_monitor = docs["PodMonitor"]["spec"]
    assert pod_monitor["namespaceSelector"] == {"matchNames": ["shop"]}
    assert pod_monitor["podMetricsEndpoints"][0]["port"] == "http"
    alerts = yaml.safe_load((FILES / "alerts.yaml").read_text())
    assert docs["PrometheusRule"]["spec"] == alerts
    dashboard = json.loads(docs["ConfigMap"]["data"]["tailor.json"])
    assert dashboard["uid"] == "tailor-overview"
    missing = helm(kube, toolchain, "template", "t", str(CHART), *enabled, check=False)
    assert missing.returncode != 0
    assert "monitoring.podMonitor.enabled needs the Prometheus Operator's PodMonitor CRD" in (
        missing.stderr
    )
