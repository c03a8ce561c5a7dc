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

``--headless --duration N`` runs the same for N seconds and prints a JSON summary.
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
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import yaml
from confluent_kafka import Producer

from tailor_localenv import cache
from tailor_localenv import real_node as real_node_mod
from tailor_localenv.demo_traffic import Traffic, demo_clicks, ms
from tailor_localenv.demo_workloads import LocalProcesses, RealPods, Workloads, kubectl_json
from tailor_localenv.environment import LocalEnvironment
from tailor_localenv.images import Images
from tailor_localenv.kube import ControlPlane
from tailor_localenv.processes import ManagedProcess, free_port
from tailor_localenv.progress import say
from tailor_localenv.tailor import install_crds, start_operator
from tailor_pipeline import events
from tailor_pipeline.events import ClickEvent
from tailor_pipeline.generator import DAY_MS
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


def _model(path: Path, history: list[ClickEvent], version: str, uri: str) -> dict[str, str]:
    digest = write_model(path, train(history), "item-knn", version)
    return {"name": "item-knn", "version": version, "uri": uri, "sha256": digest}


def _frame(
    kubectl: list[str], traffic: Traffic, workloads: Workloads, elapsed: float, rate: float
) -> str:
    status = subprocess.run(
        [*kubectl, "get", "ppl", "-n", NAMESPACE], capture_output=True, text=True
    ).stdout
    s = traffic.stats
    latencies = list(s.latencies)
    lines = [
        f"Tailor demo - {elapsed:5.0f}s - workers and scorers as {workloads.mode}"
        " - Ctrl-C stops everything\n",
        status.rstrip(),
        "",
        *workloads.describe(),
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


def _start_operator(
    control_plane: ControlPlane, work: Path, images: Images | None
) -> ManagedProcess:
    env = {}
    if images is not None:
        env["TAILOR_STREAM_WORKER_IMAGE"] = images.stream_worker
        env["TAILOR_SCORER_IMAGE"] = images.scorer
    return start_operator(
        control_plane.kubeconfig,
        work / "logs",
        *("-n", NAMESPACE, "--metrics-port=0"),
        *(["--verbose"] if os.environ.get("TAILOR_DEMO_VERBOSE") else []),
        env=env,
        wait=False,
    )


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
    stop = stop or threading.Event()
    why_not_pods = "--local-processes" if options.local_processes else real_node_mod.host_support()
    env = environment or LocalEnvironment(
        needs_kube=True, needs_kafka=True, needs_real_node=why_not_pods is None, run_dir=work
    )
    operator: ManagedProcess | None = None
    models: _ModelServer | None = None
    workloads: Workloads | None = None
    traffic: Traffic | None = None
    try:
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
            real_node_mod.expose_host_service(
                control_plane,
                NAMESPACE,
                "models",
                env.network.gateway,
                [("http", MODEL_PORT, models.port, "TCP")],
            )
            # After the Service's own apply of the namespace, which would drop the pin.
            node.pin_namespace(NAMESPACE)
        else:
            _kubectl(kubectl, "create", "namespace", NAMESPACE)
        operator = _start_operator(control_plane, work, node.images if node else None)
        say("operator started; training the model from a generated history")

        now = int(time.time() * 1000)
        history = list(demo_clicks(seed=1, days=2, start_ms=now - 2 * DAY_MS))

        def model(version: str, events_used: list[ClickEvent]) -> dict[str, str]:
            path = work / "models" / f"{version}.tailor"
            uri = (
                f"http://models.{NAMESPACE}.svc:{MODEL_PORT}/{path.name}"
                if node is not None
                else f"file://{path}"
            )
            return _model(path, events_used, version, uri)

        model_v1 = model("2026-11-v1", history)
        model_v2 = model("2026-11-v2", history[len(history) // 3 :])
        manifest = yaml.safe_load((REPO_ROOT / "examples" / "01-minimal.yaml").read_text())
        spec = manifest["spec"]
        spec["kafka"]["bootstrapServers"] = broker.bootstrap_servers
        # New models go through a canary; the demo's short run judges it in 10 s.
        spec["scorer"] = {"model": model_v1, "rollout": CANARY}
        if node is not None:
            spec["scorer"]["resources"] = POD_RESOURCES
            spec["streamWorker"] = {"resources": POD_RESOURCES}
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
        summary: dict[str, Any] = {
            "mode": "real pods" if node is not None else "local processes",
            "pipeline_ready_s": round(time.monotonic() - started, 1),
        }
        say(f"pipeline Ready in {summary['pipeline_ready_s']}s")

        pipeline = kubectl_json(kubectl, "get", "ppl", PIPELINE, "-n", NAMESPACE)
        topic = pipeline["status"]["topics"]["events"]["name"]
        history_producer = Producer(
            {"bootstrap.servers": broker.bootstrap_servers, "enable.idempotence": True}
        )
        for event in history:
            history_producer.produce(topic, key=event.user_id, value=events.encode(event))
            history_producer.poll(0)
        history_producer.flush(30)
        say(f"loaded {len(history)} historical events into {topic}")

        workloads = (
            RealPods(kubectl, NAMESPACE, PIPELINE, real_node_mod.NODE_NAME)
            if node is not None
            else LocalProcesses(kubectl, NAMESPACE, PIPELINE, work, str(why_not_pods))
        )
        say(workloads.start())
        traffic = Traffic(
            broker.bootstrap_servers, topic, workloads.endpoints, options.rate, history
        )
        traffic.start()
        summary.update(_drive(options, kubectl, traffic, workloads, model_v2, stop))
        return summary
    finally:
        # Everything that talks to Kafka and the API server stops before they do.
        if traffic is not None:
            traffic.finish()
        if workloads is not None:
            workloads.stop()
        if operator is not None:
            operator.stop()
        if models is not None:
            models.stop()
        if environment is None:
            env.stop()


def _drive(
    options: Options,
    kubectl: list[str],
    traffic: Traffic,
    workloads: Workloads,
    new_model: dict[str, str],
    stop: threading.Event,
) -> dict[str, Any]:
    """The screen, the model update half-way, and the summary once the time is up."""
    update_after = options.update_after
    if update_after is None:
        update_after = options.duration / 2 if options.duration else 40.0
    t0 = time.monotonic()

    def log(message: str) -> None:
        traffic.stats.log.append(f"{time.monotonic() - t0:5.0f}s  {message}")

    updated_at: float | None = None
    rolled_at: float | None = None
    last_produced, last_tick = 0, t0
    while not stop.is_set():
        elapsed = time.monotonic() - t0
        if options.duration and elapsed >= options.duration:
            break
        if updated_at is None and elapsed >= update_after:
            patch = json.dumps({"spec": {"scorer": {"model": new_model}}})
            _kubectl(
                kubectl, "patch", f"ppl/{PIPELINE}", "-n", NAMESPACE, "--type=merge", "-p", patch
            )
            updated_at = time.monotonic()
            log(f"spec.scorer.model -> {new_model['version']} (kubectl patch)")
        if workloads.follow(log) and updated_at is not None:
            rolled_at = time.monotonic()
        now_tick = time.monotonic()
        rate = (traffic.stats.produced - last_produced) / max(now_tick - last_tick, 1e-6)
        last_produced, last_tick = traffic.stats.produced, now_tick
        if not options.headless:
            print("\x1b[2J\x1b[H" + _frame(kubectl, traffic, workloads, elapsed, rate), flush=True)
        stop.wait(1.0)

    pipeline = kubectl_json(kubectl, "get", f"ppl/{PIPELINE}", "-n", NAMESPACE)
    status = pipeline.get("status", {})
    conditions = {c["type"]: c for c in status.get("conditions", [])}
    rolled_out = conditions.get("ModelRolledOut")
    s = traffic.stats
    latencies = list(s.latencies)
    return {
        "duration_s": round(time.monotonic() - t0, 1),
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
        "last_model_version_served": traffic.last_version(),
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
