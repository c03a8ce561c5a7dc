"""The demo: the whole pipeline on one machine, driven by the operator.

1. The local control plane and Kafka start (built into the cache on the first run) and,
   where this host can run containers, the real node with Tailor's images.
2. The CRD is installed, the operator starts, a model is trained from a generated history,
   and examples/01-minimal.yaml (the storefront pipeline) is applied with that model.
3. The operator creates the topics and the Deployments. On the real node their pods run the
   built images; the scorers download the model over HTTP from inside the cluster (a
   Service in front of a server on this machine's pod bridge). Where the host cannot run
   the node, local processes stand in for the pods (``demo_workloads.LocalProcesses``), and
   the screen says so and why.
4. A generated click stream flows in; decisions are requested through the scorer Service;
   the terminal shows the pipeline's status, the pods, events/s, freshness (click to
   profile in the scorer), decision latency and a few users' top items as they click.
5. Half-way (or after 40 s interactively) a new model version is written into the spec.
   The pipeline's rollout strategy is Canary: the operator starts a canary scorer beside
   the stable ones, judges it from the decisions the scorers log and the clicks that follow,
   then promotes it, and the stable scorers roll with no failed request.

``--headless --duration N`` runs the same for N seconds (longer if the model rollout is
still going then, by at most ``--settle`` seconds) and prints a JSON summary.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import yaml
from confluent_kafka import Producer

from tailor_localenv import cache
from tailor_localenv import real_node as real_node_mod
from tailor_localenv.demo_traffic import Traffic, demo_store, ms
from tailor_localenv.demo_workloads import LocalProcesses, RealPods, Workloads, kubectl_json
from tailor_localenv.environment import LocalEnvironment
from tailor_localenv.processes import free_port
from tailor_localenv.progress import say
from tailor_localenv.real_node import RealNode
from tailor_localenv.tailor import install_crds, start_operator
from tailor_pipeline import events
from tailor_pipeline.events import ClickEvent
from tailor_pipeline.train import train, write_model

REPO_ROOT = Path(__file__).resolve().parents[2]
CANARY = {
    "strategy": "Canary",
    "canary": {
        "replicas": 1,
        "analysisDuration": "10s",
        "minSamples": 100,
        # Everything (control plane, Kafka, operator, workers, three scorers, the load) shares
        # this machine's cores while clicks flow: p99 is tens of ms here, over the 25 ms a
        # storefront's dedicated scorers are held to. Error rate and CTR still decide.
        "maxP99LatencyMs": 250,
    },
}
# Real pods share this machine's cores with everything else: they request little, so the
# stable, surge and canary pods all fit.
POD_RESOURCES = {"requests": {"cpu": "100m", "memory": "128Mi"}}
NAMESPACE = "tailor-demo"
PIPELINE = "storefront"
MODEL_PORT = 8000


@dataclass
class Options:
    headless: bool = False
    duration: float = 0.0  # 0: until Ctrl-C
    rate: int = 200  # events per second
    update_after: float | None = None  # seconds; None: half the duration, or 40 s
    work_dir: Path | None = None  # None: $TAILOR_CACHE/demo (wiped at start)
    local_processes: bool = False  # stand-ins for the pods even where the real node runs
    settle_s: float = 120.0  # after ``duration``: the longest wait for a rollout to end


def run(options: Options) -> int:
    """`tailor-localenv demo`: its own environment, stopped by Ctrl-C or ``duration``."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    summary = run_demo(options, stop=stop)
    if options.headless:
        print(json.dumps(summary, indent=2), flush=True)
    else:
        say("stopping")
    return 0


class _ModelServer:
    """The model files over HTTP on the pod bridge, behind a Service, as an artifact store
    inside the cluster would serve them to the scorer pods."""

    def __init__(self, directory: Path, address: str) -> None:
        handler = functools.partial(_QuietFiles, directory=str(directory))
        self.server = http.server.ThreadingHTTPServer((address, free_port()), handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Requests would scribble over the screen."""


def _kubectl(kubectl: list[str], *args: str, input: str | None = None) -> None:
    subprocess.run([*kubectl, *args], input=input, text=True, check=True, capture_output=True)


@dataclass
class _Cluster:
    """Stage 1: the control plane and Kafka, the operator watching the demo's namespace,
    and where pods run: the real node, or nothing (local processes will stand in, ``why``)."""

    kubectl: list[str]
    bootstrap: str
    node: RealNode | None
    why_not_pods: str | None

    def model_uri(self, path: Path) -> str:
        """Where the scorers fetch a model file: the in-cluster Service for real pods."""
        if self.node is not None:
            return f"http://models.{NAMESPACE}.svc:{MODEL_PORT}/{path.name}"
        return f"file://{path}"


def _start_cluster(
    env: LocalEnvironment, work: Path, why_not_pods: str | None, cleanup: ExitStack
) -> _Cluster:
    control_plane, broker = env.kube(), env.kafka()
    node = env.real_node() if why_not_pods is None else None
    if why_not_pods is not None:
        say(f"workers and scorers run as local processes: {why_not_pods}")
    kubectl = control_plane.kubectl_command()
    env_file = work / "env.sh"
    env_file.write_text(
        f"export KUBECONFIG={control_plane.kubeconfig}\n"
        f"export TAILOR_KAFKA_BOOTSTRAP={broker.bootstrap_servers}\n"
        f"export PATH={control_plane.binary('kubectl').parent}:$PATH\n"
    )
    say(f"in another terminal: source {env_file}; kubectl get ppl,deploy,pods -n {NAMESPACE}")
    install_crds(kubectl)
    if node is not None:
        assert env.network is not None
        models = _ModelServer(work / "models", env.network.gateway)
        cleanup.callback(models.stop)
        real_node_mod.expose_host_service(
            control_plane,
            NAMESPACE,
            "models",
            env.network.gateway,
            [("http", MODEL_PORT, models.port, "TCP")],
        )
        # After the Service's own apply of the namespace, which would drop the pin.
        node.pin_namespace(NAMESPACE)
        images = {
            "TAILOR_STREAM_WORKER_IMAGE": node.images.stream_worker,
            "TAILOR_SCORER_IMAGE": node.images.scorer,
        }
    else:
        _kubectl(kubectl, "create", "namespace", NAMESPACE)
        images = {}
    operator = start_operator(
        control_plane.kubeconfig,
        work / "logs",
        *("-n", NAMESPACE, "--metrics-port=0"),
        *(["--verbose"] if os.environ.get("TAILOR_DEMO_VERBOSE") else []),
        env=images,
        wait=False,
    )
    cleanup.callback(operator.stop)
    return _Cluster(kubectl, broker.bootstrap_servers, node, why_not_pods)


@dataclass
class _Pipeline:
    """Stage 2's result: the storefront pipeline Ready, its events topic holding the
    history the models were trained from, and the model the update will roll out."""

    ready_s: float
    topic: str
    history: list[ClickEvent]
    live: Iterator[ClickEvent]
    new_model: dict[str, str]


def _apply_pipeline(cluster: _Cluster, work: Path) -> _Pipeline:
    say("operator started; training the model from a generated history")
    history, live = demo_store(int(time.time() * 1000), history_days=2)

    def model(version: str, events_used: list[ClickEvent]) -> dict[str, str]:
        path = work / "models" / f"{version}.tailor"
        digest = write_model(path, train(events_used), "item-knn", version)
        uri = cluster.model_uri(path)
        return {"name": "item-knn", "version": version, "uri": uri, "sha256": digest}

    # The update is the retrain a store runs daily: the older half of the history (about
    # its first day) gave v1, all of it gives v2.
    model_v1 = model("2026-11-v1", history[: len(history) // 2])
    model_v2 = model("2026-11-v2", history)
    manifest = yaml.safe_load((REPO_ROOT / "examples" / "01-minimal.yaml").read_text())
    spec = manifest["spec"]
    spec["kafka"]["bootstrapServers"] = cluster.bootstrap
    # New models go through a canary; the demo's short run judges it in 10 s.
    spec["scorer"] = {"model": model_v1, "rollout": CANARY}
    if cluster.node is not None:
        spec["scorer"]["resources"] = POD_RESOURCES
        spec["streamWorker"] = {"resources": POD_RESOURCES}
    kubectl = cluster.kubectl
    _kubectl(kubectl, "apply", "-n", NAMESPACE, "-f", "-", input=yaml.safe_dump(manifest))
    say(
        f"applied examples/01-minimal.yaml as {NAMESPACE}/{PIPELINE} with model "
        f"{model_v1['version']}; waiting for Ready"
    )
    started = time.monotonic()
    _kubectl(
        kubectl,
        *("wait", "--for=condition=Ready", f"ppl/{PIPELINE}", "-n", NAMESPACE),
        "--timeout=240s",
    )
    ready_s = round(time.monotonic() - started, 1)
    say(f"pipeline Ready in {ready_s}s")

    pipeline = kubectl_json(kubectl, "get", "ppl", PIPELINE, "-n", NAMESPACE)
    topic = pipeline["status"]["topics"]["events"]["name"]
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "enable.idempotence": True})
    for event in history:
        producer.produce(topic, key=event.user_id, value=events.encode(event))
        producer.poll(0)
    producer.flush(30)
    say(f"loaded {len(history)} historical events into {topic}")
    return _Pipeline(ready_s, topic, history, live, model_v2)


def _start_load(
    cluster: _Cluster, pipeline: _Pipeline, options: Options, work: Path, cleanup: ExitStack
) -> tuple[Workloads, Traffic]:
    """Stage 3: the workers and scorers (the real node's pods, or local processes playing
    the kubelet), then live clicks and decision requests."""
    workloads: Workloads = (
        RealPods(cluster.kubectl, NAMESPACE, PIPELINE, real_node_mod.NODE_NAME)
        if cluster.node is not None
        else LocalProcesses(cluster.kubectl, NAMESPACE, PIPELINE, work, str(cluster.why_not_pods))
    )
    cleanup.callback(workloads.stop)
    say(workloads.start())
    traffic = Traffic(
        cluster.bootstrap,
        pipeline.topic,
        workloads.endpoints,
        options.rate,
        pipeline.history,
        pipeline.live,
    )
    cleanup.callback(traffic.finish)  # before the workloads and the broker stop
    traffic.start()
    return workloads, traffic


def run_demo(
    options: Options,
    environment: LocalEnvironment | None = None,
    stop: threading.Event | None = None,
) -> dict[str, Any]:
    """Run the demo; its summary. ``environment``: one already running (the tests'), else
    the demo starts its own under the work directory and stops it at the end."""
    work = options.work_dir or cache.cache_root() / "demo"
    if work.exists():
        shutil.rmtree(work)
    (work / "models").mkdir(parents=True)
    why_not_pods = "--local-processes" if options.local_processes else real_node_mod.host_support()
    # Everything that talks to Kafka and the API server stops before they do: the callbacks
    # run last-registered first.
    with ExitStack() as cleanup:
        if environment is None:
            environment = LocalEnvironment(
                needs_kube=True,
                needs_kafka=True,
                needs_real_node=why_not_pods is None,
                run_dir=work,
            )
            cleanup.callback(environment.stop)
        cluster = _start_cluster(environment, work, why_not_pods, cleanup)
        pipeline = _apply_pipeline(cluster, work)
        workloads, traffic = _start_load(cluster, pipeline, options, work, cleanup)
        summary: dict[str, Any] = {
            "mode": "real pods" if cluster.node is not None else "local processes",
            "pipeline_ready_s": pipeline.ready_s,
        }
        screen = _Screen(options, cluster.kubectl, traffic, workloads)
        summary.update(screen.run(pipeline.new_model, stop or threading.Event()))
        return summary


class _Screen:
    """Stage 4: the screen (or, headless, nothing) once a second, the model update at
    ``update_after``, and the summary when the time is up. A rollout still going then is
    waited for (up to ``settle_s``): the summary reports how it ended, not where it was."""

    def __init__(
        self, options: Options, kubectl: list[str], traffic: Traffic, workloads: Workloads
    ) -> None:
        self.options, self.kubectl, self.traffic, self.workloads = (
            options,
            kubectl,
            traffic,
            workloads,
        )
        self.t0 = time.monotonic()
        self.updated_at: float | None = None
        self.rolled_at: float | None = None

    def log(self, message: str) -> None:
        self.traffic.stats.log.append(f"{time.monotonic() - self.t0:5.0f}s  {message}")

    def run(self, new_model: dict[str, str], stop: threading.Event) -> dict[str, Any]:
        options = self.options
        update_after = options.update_after
        if update_after is None:
            update_after = options.duration / 2 if options.duration else 40.0
        settling = False
        last_produced, last_tick = 0, self.t0
        while not stop.is_set():
            elapsed = time.monotonic() - self.t0
            if options.duration and elapsed >= options.duration:
                if not self._rollout_going() or elapsed >= options.duration + options.settle_s:
                    break
                if not settling:
                    settling = True
                    self.log(
                        f"time is up, the rollout is not: waiting up to {options.settle_s:.0f}s"
                    )
            if self.updated_at is None and elapsed >= update_after:
                patch = json.dumps({"spec": {"scorer": {"model": new_model}}})
                _kubectl(
                    self.kubectl,
                    *("patch", f"ppl/{PIPELINE}", "-n", NAMESPACE, "--type=merge", "-p", patch),
                )
                self.updated_at = time.monotonic()
                self.log(f"spec.scorer.model -> {new_model['version']} (kubectl patch)")
            if self.workloads.follow(self.log) and self.updated_at is not None:
                self.rolled_at = time.monotonic()
            now = time.monotonic()
            rate = (self.traffic.stats.produced - last_produced) / max(now - last_tick, 1e-6)
            last_produced, last_tick = self.traffic.stats.produced, now
            if not options.headless:
                print("\x1b[2J\x1b[H" + self._frame(elapsed, rate), flush=True)
            stop.wait(1.0)
        return self._summary()

    def _rollout_going(self) -> bool:
        """Updated, and neither have the scorers rolled onto the new model nor has the
        operator rolled it back."""
        if self.updated_at is None or self.rolled_at is not None:
            return False
        return self._conditions().get("ModelRolledOut", {}).get("reason") != "RolledBack"

    def _pipeline(self) -> dict[str, Any]:
        return kubectl_json(self.kubectl, "get", f"ppl/{PIPELINE}", "-n", NAMESPACE)

    def _conditions(self, pipeline: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
        status = (pipeline or self._pipeline()).get("status", {})
        return {c["type"]: c for c in status.get("conditions", [])}

    def _frame(self, elapsed: float, rate: float) -> str:
        status = subprocess.run(
            [*self.kubectl, "get", "ppl", "-n", NAMESPACE], capture_output=True, text=True
        ).stdout
        s = self.traffic.stats
        latencies = list(s.latencies)
        lines = [
            f"Tailor demo - {elapsed:5.0f}s - workers and scorers as {self.workloads.mode}"
            " - Ctrl-C stops everything\n",
            status.rstrip(),
            "",
            *self.workloads.describe(),
            "",
            f"events in       {rate:8.0f} /s   ({s.produced} total)",
            f"freshness       p50 {ms(s.freshness, 0.5)} ms   p99 {ms(s.freshness, 0.99)} ms"
            "   (click -> profile in the scorer)",
            f"decisions       {s.decisions} ({s.errors} errors)   p50 {ms(latencies, 0.5)} ms"
            f"   p99 {ms(latencies, 0.99)} ms",
            f"model served    {s.versions_served}",
            "",
            "user            just added to cart   model        top items now",
        ]
        for user, seen in sorted(s.tracked.items()):
            lines.append(
                f"{user:15} {seen['clicked']:20} {seen['model'] or '-':12} {', '.join(seen['top'])}"
            )
        lines += ["", *s.log]
        return "\n".join(lines)

    def _summary(self) -> dict[str, Any]:
        pipeline = self._pipeline()
        status = pipeline.get("status", {})
        conditions = self._conditions(pipeline)
        rolled_out = conditions.get("ModelRolledOut")
        s = self.traffic.stats
        latencies = list(s.latencies)
        updated_at, rolled_at = self.updated_at, self.rolled_at
        return {
            "duration_s": round(time.monotonic() - self.t0, 1),
            "events_produced": s.produced,
            "decisions": s.decisions,
            "decision_errors": s.errors,
            "decision_error_kinds": s.error_kinds,
            "decisions_degraded": s.degraded,
            "decision_latency_p50_ms": ms(latencies, 0.5),
            "decision_latency_p99_ms": ms(latencies, 0.99),
            "freshness_p50_ms": ms(s.freshness, 0.5),
            "freshness_p99_ms": ms(s.freshness, 0.99),
            "clicks_checked": s.clicks_checked,
            "clicks_reflected_after_1s": s.clicks_reflected,
            "clicks_missed": s.clicks_missed,
            "model_version_spec": pipeline["spec"]["scorer"]["model"]["version"],
            "model_versions_served": s.versions_served,
            "last_model_version_served": self.traffic.last_version(),
            "canary_analysis": (status.get("model") or {}).get("analysis"),
            "model_rolled_out": (
                f"{rolled_out['status']} {rolled_out['reason']}: {rolled_out['message']}"
                if rolled_out
                else None
            ),
            "model_update_rolled_out_s": (
                round(rolled_at - updated_at, 1) if rolled_at and updated_at else None
            ),
            "timeline": list(s.log),
            "ready": conditions.get("Ready", {}).get("status") == "True",
        }
