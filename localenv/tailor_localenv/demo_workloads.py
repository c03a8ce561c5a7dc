"""Where the demo's stream workers and scorers run: real pods on the real node, or, where
this host cannot run one, local processes standing in for the pods.

Either way the operator renders the same Deployments from the same pipeline; ``RealPods``
leaves them to Kubernetes and reports what it does, ``LocalProcesses`` plays the kubelet:
one process per pod with the pod's command, environment and mounted settings, rolled when
the operator changes the pod template, and the canary started and stopped with its
Deployment."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from tailor_localenv.processes import ManagedProcess, free_port, ready_on

CONFIG_HASH = "tailor.dev/config-hash"
Log = Callable[[str], None]


def kubectl_json(kubectl: list[str], *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [*kubectl, *args, "-o", "json"], check=True, capture_output=True, text=True
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


class Workloads(Protocol):
    """What the demo needs of wherever its workers and scorers run."""

    mode: str

    def start(self) -> str:
        """Once the pipeline is Ready: bring the workloads up; one line saying what runs."""

    def endpoints(self) -> list[str]:
        """Base URLs decisions go to (the scorer Service, or each ready scorer process)."""

    def follow(self, log: Log) -> bool:
        """Catch up with what the operator changed; True when a scorer roll just ended."""

    def describe(self) -> list[str]:
        """Lines for the screen: what runs now."""

    def stop(self) -> None: ...


def _verdict(kubectl: list[str], namespace: str, pipeline: str) -> str:
    body = kubectl_json(kubectl, "get", f"ppl/{pipeline}", "-n", namespace)
    model = body["status"].get("model") or {}
    promoted = model.get("active") == body["spec"]["scorer"]["model"]["version"]
    return "promoted" if promoted else f"rolled back ({model.get('failedReason')})"


class RealPods:
    """The Deployments' pods run on the real node from Tailor's images; decisions go through
    the scorer Service's cluster IP (kube-proxy routes it on this machine)."""

    def __init__(self, kubectl: list[str], namespace: str, pipeline: str, node: str) -> None:
        self.mode = f"real pods on {node}"
        self.kubectl, self.namespace, self.pipeline = kubectl, namespace, pipeline
        self._url = ""
        self._hashes: dict[str, str | None] = {}
        self._rolling: set[str] = set()
        self._canary = False
        self._pods: list[str] = []

    def start(self) -> str:
        service = kubectl_json(
            self.kubectl, "get", "service", f"{self.pipeline}-scorer", "-n", self.namespace
        )["spec"]
        self._url = f"http://{service['clusterIP']}:{service['ports'][0]['port']}"
        self._observe()
        return f"pods Running on the real node; decisions through Service {self._url}"

    def endpoints(self) -> list[str]:
        return [self._url] if self._url else []

    def _observe(self) -> dict[str, dict[str, Any]]:
        items = kubectl_json(self.kubectl, "get", "deployments,pods", "-n", self.namespace)["items"]
        deployments = {d["metadata"]["name"]: d for d in items if d["kind"] == "Deployment"}
        self._pods = [_pod_line(p) for p in items if p["kind"] == "Pod"]
        for name, deployment in deployments.items():
            annotations = deployment["spec"]["template"]["metadata"].get("annotations") or {}
            self._hashes.setdefault(name, annotations.get(CONFIG_HASH))
        return deployments

    def follow(self, log: Log) -> bool:
        deployments = self._observe()
        canary = f"{self.pipeline}-scorer-canary" in deployments
        if canary and not self._canary:
            log("canary Deployment created by the operator: its pod joins the Service")
        elif self._canary and not canary:
            log(f"canary {_verdict(self.kubectl, self.namespace, self.pipeline)}: its pod goes")
        self._canary = canary
        rolled = False
        for component in ("scorer", "stream-worker"):
            name = f"{self.pipeline}-{component}"
            deployment = deployments.get(name)
            if deployment is None:
                continue
            annotations = deployment["spec"]["template"]["metadata"].get("annotations") or {}
            config = annotations.get(CONFIG_HASH)
            if config != self._hashes.get(name):
                self._hashes[name] = config
                self._rolling.add(name)
                log(f"Deployment {name} rolled by the operator: Kubernetes replaces its pods")
            if name in self._rolling and _rolled_out(deployment):
                self._rolling.discard(name)
                log(f"{name}: every pod new and Ready, the old ones drained")
                rolled |= component == "scorer"
        return rolled

    def describe(self) -> list[str]:
        return ["pod                                          ready  status    image", *self._pods]

    def stop(self) -> None:
        """The pods stop with the node."""


def _rolled_out(deployment: dict[str, Any]) -> bool:
    status, spec = deployment.get("status", {}), deployment["spec"]
    want = spec.get("replicas", 1)
    return bool(
        status.get("observedGeneration") == deployment["metadata"]["generation"]
        and status.get("updatedReplicas") == want
        and status.get("readyReplicas") == want
        and status.get("replicas") == want
    )


def _pod_line(pod: dict[str, Any]) -> str:
    statuses = pod.get("status", {}).get("containerStatuses") or [{}]
    ready = sum(1 for s in statuses if s.get("ready"))
    state = next(iter((statuses[0].get("state") or {"pending": {}}).items()))
    status = (state[1] or {}).get("reason") or state[0].capitalize()
    if pod["metadata"].get("deletionTimestamp"):
        status = "Terminating"
    image = pod["spec"]["containers"][0]["image"].rsplit("/", 1)[-1]
    return f"{pod['metadata']['name']:44} {ready}/{len(statuses)}    {status:9} {image}"


class _Component:
    """The local processes standing in for one Deployment's pods."""

    def __init__(self, name: str, namespace: str, work: Path, kubectl: list[str]) -> None:
        self.name, self.namespace, self.work, self.kubectl = name, namespace, work, kubectl
        self.processes: dict[str, tuple[ManagedProcess, int]] = {}
        # Ports of ready processes: where a Service would send requests.
        self.serving: list[int] = []
        self.config_hash: str | None = None
        self.generation = 0

    def deployment(self) -> dict[str, Any]:
        return kubectl_json(self.kubectl, "get", "deployment", self.name, "-n", self.namespace)

    def exists(self) -> bool:
        out = subprocess.run(
            [
                *self.kubectl,
                *("get", "deployment", self.name, "-n", self.namespace, "--ignore-not-found"),
            ],
            capture_output=True,
            text=True,
        )
        return bool(out.stdout.strip())

    def start_like_the_deployment(self, settings_file: Path) -> None:
        """One process per pod of the Deployment, each run as the pod would run it."""
        deployment = self.deployment()
        template = deployment["spec"]["template"]
        container = template["spec"]["containers"][0]
        self.config_hash = template["metadata"]["annotations"].get(CONFIG_HASH)
        selector = deployment["spec"]["selector"]["matchLabels"]
        pods = kubectl_json(
            self.kubectl,
            *("get", "pods", "-n", self.namespace),
            *("-l", ",".join(f"{k}={v}" for k, v in selector.items())),
        )["items"]
        names = sorted(
            p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp")
        )[: deployment["spec"].get("replicas", 1)]
        self.generation += 1
        for pod in names:
            self._start(pod, container, settings_file)

    def _start(self, pod: str, container: dict[str, Any], settings_file: Path) -> None:
        port = free_port()
        # The container's command is a console script of this project: the venv's.
        program = Path(sys.executable).parent / container["args"][0]
        env = {**os.environ, "POD_NAME": pod}  # POD_NAME: the Deployment's fieldRef
        for var in container.get("env", []):
            if "value" in var:
                env[var["name"]] = var["value"]
        # The ConfigMap volume, "mounted": the settings file read back from the ConfigMap.
        env["TAILOR_CONFIG"] = str(settings_file)
        proc = ManagedProcess(
            f"{self.name}-{self.generation}-{pod}",
            [program, *container["args"][1:], f"--http-port={port}"],
            self.work / "logs",
            env=env,
        ).start()
        self.processes[pod] = (proc, port)

    def wait_ready(self, timeout: float = 120) -> None:
        for pod, (proc, port) in list(self.processes.items()):
            proc.wait_healthy(functools.partial(ready_on, port), timeout, f"ready ({pod})")
        self.serving = [port for _, port in self.processes.values()]

    def roll(self, settings_file: Path, surge: bool) -> None:
        """Replace every process with one on the new settings: new before old when
        ``surge`` (the scorer: no moment without a ready replica), else old before new (a
        worker's transactional id is its identity)."""
        old = dict(self.processes)
        self.processes = {}
        if surge:
            self.start_like_the_deployment(settings_file)
            self.wait_ready()  # the old ports leave service here
            time.sleep(0.5)  # requests already sent to them finish
            for proc, _ in old.values():
                proc.stop()
        else:
            for proc, _ in old.values():
                proc.stop()
            self.start_like_the_deployment(settings_file)
            self.wait_ready()

    def stop(self, drain_s: float = 0.0) -> None:
        """Stop every process; with ``drain_s``, first take them out of service and let
        requests in flight finish, as endpoints leave a Service before pods terminate."""
        self.serving = []
        time.sleep(drain_s)
        for proc, _ in self.processes.values():
            proc.stop()
        self.processes = {}


class LocalProcesses:
    """Plays the kubelet with local processes, for hosts that cannot run the real node."""

    def __init__(
        self, kubectl: list[str], namespace: str, pipeline: str, work: Path, why: str
    ) -> None:
        self.mode = f"local processes ({why})"
        self.kubectl, self.namespace, self.pipeline, self.work = kubectl, namespace, pipeline, work
        self.workers, self.scorers, self.canary = (
            _Component(f"{pipeline}-{c}", namespace, work, kubectl)
            for c in ("stream-worker", "scorer", "scorer-canary")
        )
        self._version = 0

    def _settings(self, component: _Component) -> Path:
        """The operator's rendered settings for one Deployment, as the ConfigMap its pods
        mount holds them (each program and version has its own)."""
        volumes = component.deployment()["spec"]["template"]["spec"]["volumes"]
        name = next(v["configMap"]["name"] for v in volumes if v["name"] == "config")
        config = kubectl_json(self.kubectl, "get", "configmap", name, "-n", self.namespace)
        self._version += 1
        path = self.work / f"pipeline-{self._version}.json"
        path.write_text(config["data"]["pipeline.json"])
        return path

    def start(self) -> str:
        for component in (self.workers, self.scorers):
            component.start_like_the_deployment(self._settings(component))
        for component in (self.workers, self.scorers):
            component.wait_ready()
        return (
            f"{len(self.workers.processes)} stream workers and {len(self.scorers.processes)} "
            "scorers ready, running as the operator's Deployments describe them"
        )

    def endpoints(self) -> list[str]:
        """Every ready scorer process, stable and canary: the Service selects both."""
        return [
            f"http://127.0.0.1:{port}"
            for component in (self.scorers, self.canary)
            for port in component.serving
        ]

    def follow(self, log: Log) -> bool:
        self._follow_canary(log)
        rolled = False
        for component, surge in ((self.scorers, True), (self.workers, False)):
            template = component.deployment()["spec"]["template"]
            if template["metadata"]["annotations"].get(CONFIG_HASH) != component.config_hash:
                log(f"Deployment {component.name} rolled by the operator: rolling processes")
                component.roll(self._settings(component), surge)
                log(f"{component.name} rolled")
                rolled |= component is self.scorers
        return rolled

    def _follow_canary(self, log: Log) -> None:
        """Start the canary's process when the operator creates its Deployment, stop it when
        the operator removes it (promoted or rolled back)."""
        exists = self.canary.exists()
        if exists and not self.canary.processes:
            log("canary Deployment created by the operator: starting its process")
            self.canary.start_like_the_deployment(self._settings(self.canary))
            self.canary.wait_ready()
            log("canary serving its share")
        elif not exists and self.canary.processes:
            self.canary.stop(drain_s=0.5)
            verdict = _verdict(self.kubectl, self.namespace, self.pipeline)
            log(f"canary {verdict}: canary process stopped")

    def describe(self) -> list[str]:
        return [f"{c.name}: {len(c.processes)} processes" for c in (self.workers, self.scorers)] + (
            [f"{self.canary.name}: {len(self.canary.processes)}"] if self.canary.processes else []
        )

    def stop(self) -> None:
        for component in (self.workers, self.scorers, self.canary):
            component.stop()
