"""The demo: the whole pipeline on one machine, driven by the operator.

1. The local control plane and Kafka start (built into the cache on the first run).
2. The CRD is installed, the operator starts, a model is trained from a generated history,
   and examples/01-minimal.yaml (the storefront pipeline) is applied with that model.
3. Once the pipeline is Ready, the stream workers and scorers run as local processes with
   exactly what the operator rendered: the settings from its ConfigMap, the command and
   environment from its Deployments, one process per pod (pod names as instance ids).
4. A generated click stream flows in; decisions are requested; the terminal shows the
   pipeline's status, events/s, freshness (click to profile in the scorer), decision
   latency and a few users' top items changing as they click.
5. Half-way (or after 40 s interactively) a new model version is written into the spec.
   The pipeline's rollout strategy is Canary: the operator starts a canary scorer
   Deployment with the new model beside the stable one, the demo starts its process and
   sends it its share of requests (as the Service would), and the operator judges it from
   the decisions the real scorers log and the clicks that follow. Once it passes, the
   operator promotes it: the canary goes and the stable scorer Deployment rolls; new scorer
   processes with the new settings start before the old ones stop.

``--headless --duration N`` runs the same for N seconds and prints a JSON summary.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import msgspec
import yaml
from confluent_kafka import Producer

from tailor_localenv import bootstrap as bootstrap_mod
from tailor_localenv import cache
from tailor_localenv.environment import side_by_side
from tailor_localenv.kafka import KafkaBroker
from tailor_localenv.kube import ControlPlane
from tailor_localenv.processes import ManagedProcess, free_port, http_get, ready_on
from tailor_localenv.progress import say
from tailor_pipeline import events
from tailor_pipeline.events import ClickEvent
from tailor_pipeline.generator import DAY_MS, GeneratorSettings, stream
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
NAMESPACE = "tailor-demo"
PIPELINE = "storefront"


def _clicks(seed: int, days: int, start_ms: int) -> Iterator[ClickEvent]:
    """The demo store: 400 shoppers, 600 items in 12 categories."""
    return stream(
        GeneratorSettings(
            seed=seed, days=days, start_ms=start_ms, users=400, items=600, categories=12
        )
    )


def live_clicks() -> Iterator[ClickEvent]:
    """The live stream, without end: one generated day after another (a single day, about
    5,400 events, ran dry after 27 s at 200/s and the demo's traffic stopped)."""
    return itertools.chain.from_iterable(
        _clicks(seed=seed, days=1, start_ms=0) for seed in itertools.count(2)
    )


@dataclass
class Options:
    headless: bool = False
    duration: float = 0.0  # 0: until Ctrl-C
    rate: int = 200  # events per second
    update_after: float | None = None  # seconds; None: half the duration, or 40 s
    work_dir: Path | None = None  # None: $TAILOR_CACHE/demo (wiped at start)


@dataclass
class Stats:
    produced: int = 0
    decisions: int = 0
    errors: int = 0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=5000))
    freshness: list[float] = field(default_factory=list)
    clicks_checked: int = 0
    clicks_reflected: int = 0
    versions_served: dict[str, int] = field(default_factory=dict)
    tracked: dict[str, dict[str, Any]] = field(default_factory=dict)
    log: deque[str] = field(default_factory=lambda: deque(maxlen=12))


class Component:
    """The local processes standing in for one Deployment's pods."""

    def __init__(self, name: str, work: Path, kubectl: list[str]) -> None:
        self.name = name
        self.work = work
        self.kubectl = kubectl
        self.processes: dict[str, tuple[ManagedProcess, int]] = {}
        # Ports of ready processes: where a Service would send requests.
        self.serving: list[int] = []
        self.config_hash: str | None = None
        self.generation = 0

    def deployment(self) -> dict[str, Any]:
        return _kubectl_json(self.kubectl, "get", "deployment", self.name, "-n", NAMESPACE)

    def exists(self) -> bool:
        out = subprocess.run(
            [*self.kubectl, "get", "deployment", self.name, "-n", NAMESPACE, "--ignore-not-found"],
            capture_output=True,
            text=True,
        )
        return bool(out.stdout.strip())

    def ports(self) -> list[int]:
        return list(self.serving)

    def start_like_the_deployment(self, settings_file: Path) -> None:
        """One process per pod of the Deployment, each run as the pod would run it."""
        deployment = self.deployment()
        template = deployment["spec"]["template"]
        container = template["spec"]["containers"][0]
        self.config_hash = template["metadata"]["annotations"].get("tailor.dev/config-hash")
        pods = _kubectl_json(
            self.kubectl,
            "get",
            "pods",
            "-n",
            NAMESPACE,
            "-l",
            ",".join(f"{k}={v}" for k, v in deployment["spec"]["selector"]["matchLabels"].items()),
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
        worker's transactional id and group membership are its identity)."""
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


def _kubectl_json(kubectl: list[str], *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [*kubectl, *args, "-o", "json"], check=True, capture_output=True, text=True
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def _model(path: Path, history: list[ClickEvent], version: str) -> dict[str, str]:
    digest = write_model(path, train(history), "item-knn", version)
    return {"name": "item-knn", "version": version, "uri": f"file://{path}", "sha256": digest}


def _read_settings(kubectl: list[str], work: Path, tag: str, key: str = "pipeline.json") -> Path:
    """The operator's rendered settings, as its ConfigMap holds them (``key``: the stable
    scorers' and workers' file, or the canary's)."""
    config = _kubectl_json(kubectl, "get", "configmap", f"{PIPELINE}-config", "-n", NAMESPACE)
    path = work / f"pipeline-{tag}.json"
    path.write_text(config["data"][key])
    return path


class Traffic:
    """Clicks in, decisions out, and the measurements the screen and the summary show."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        scorers: list[Component],
        options: Options,
        history: list[ClickEvent],
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.scorers = scorers
        self.options = options
        self.stats = Stats()
        self.stop = threading.Event()
        self._producer = Producer(
            {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5}
        )
        counts: dict[str, int] = {}
        for e in history:
            counts[e.user_id] = counts.get(e.user_id, 0) + 1
        self.tracked = sorted(counts, key=lambda u: -counts[u])[:3]
        self.items = sorted({e.item_id for e in history})
        self.categories = {e.item_id: e.category for e in history}
        self.users = sorted(counts)

    def produce(self, event: ClickEvent) -> None:
        self._producer.produce(self.topic, key=event.user_id, value=events.encode(event))
        self._producer.poll(0)
        self.stats.produced += 1

    def run_clicks(self) -> None:
        live = live_clicks()
        period = 1.0 / self.options.rate
        next_at = time.monotonic()
        for event in live:
            if self.stop.is_set():
                break
            self.produce(msgspec.structs.replace(event, ts=int(time.time() * 1000)))
            next_at += period
            time.sleep(max(0.0, next_at - time.monotonic()))
        self._producer.flush(10)

    def ports(self) -> list[int]:
        """Every ready scorer process, stable and canary: the Service selects both."""
        return [port for component in self.scorers for port in component.ports()]

    def decide(self, user: str) -> dict[str, Any] | None:
        ports = self.ports()
        if not ports:
            return None
        port = random.choice(ports)
        started = time.perf_counter()
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request(
                "POST",
                "/v1/decide",
                json.dumps({"user_id": user, "k": 5}),
                {"Content-Type": "application/json"},
            )
            response = connection.getresponse()
            body: dict[str, Any] = json.loads(response.read())
            connection.close()
        except (OSError, ValueError):
            self.stats.errors += 1
            return None
        if response.status != 200:
            self.stats.errors += 1
            return None
        self.stats.latencies.append(time.perf_counter() - started)
        self.stats.decisions += 1
        version = body.get("model_version") or "none"
        self.stats.versions_served[version] = self.stats.versions_served.get(version, 0) + 1
        return body

    def run_decisions(self) -> None:
        while not self.stop.is_set():
            self.decide(random.choice(self.users))
            time.sleep(0.02)

    def run_tracked(self) -> None:
        """Every few seconds a tracked user clicks something new; 1 s later the decision
        must already build on it."""
        rng = random.Random(3)
        while not self.stop.wait(2.5):
            user = rng.choice(self.tracked)
            item = rng.choice(self.items)
            clicked = time.monotonic()
            click_ms = int(time.time() * 1000)
            self.produce(
                ClickEvent(
                    user_id=user,
                    item_id=item,
                    type="add_to_cart",
                    ts=click_ms,
                    category=self.categories[item],
                )
            )
            self._producer.flush(5)
            seen_at = self._wait_profile(user, item, clicked + 5)
            if seen_at is not None:
                self.stats.freshness.append(seen_at - clicked)
            time.sleep(max(0.0, clicked + 1.0 - time.monotonic()))
            asked_ms = time.time() * 1000
            body = self.decide(user)
            if body is None:
                continue
            # The decision reflects the click when the profile it was computed from is at
            # least as new as the click (its newest event: this click or a later one).
            age = body.get("profile_age_ms")
            self.stats.clicks_checked += 1
            if age is not None and asked_ms - age >= click_ms - 50:
                self.stats.clicks_reflected += 1
            self.stats.tracked[user] = {
                "clicked": item,
                "top": [i["item_id"] for i in body["items"]],
                "model": body.get("model_version"),
            }

    def _wait_profile(self, user: str, item: str, deadline: float) -> float | None:
        while time.monotonic() < deadline and not self.stop.is_set():
            ports = self.ports()
            if ports:
                with contextlib.suppress(OSError, ValueError):
                    code, body = http_get(f"http://127.0.0.1:{ports[0]}/v1/users/{user}/profile")
                    if code == 200 and json.loads(body)[0][-1:] == [item]:
                        return time.monotonic()
            time.sleep(0.02)
        return None


def _ms(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def _frame(kubectl: list[str], traffic: Traffic, elapsed: float, rate: float) -> str:
    status = subprocess.run(
        [*kubectl, "get", "ppl", "-n", NAMESPACE], capture_output=True, text=True
    ).stdout
    s = traffic.stats
    latencies = list(s.latencies)
    lines = [
        f"Tailor demo - {elapsed:5.0f}s - Ctrl-C stops everything\n",
        status.rstrip(),
        "",
        f"events in       {rate:8.0f} /s   ({s.produced} total)",
        f"freshness       p50 {_ms(s.freshness, 0.5)} ms   p99 {_ms(s.freshness, 0.99)} ms"
        "   (click -> profile in the scorer)",
        f"decisions       {s.decisions} ({s.errors} errors)   p50 {_ms(latencies, 0.5)} ms"
        f"   p99 {_ms(latencies, 0.99)} ms",
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


def run(options: Options) -> int:
    toolchain = bootstrap_mod.locate()
    work = options.work_dir or cache.cache_root() / "demo"
    if work.exists():
        shutil.rmtree(work)
    (work / "models").mkdir(parents=True)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    control_plane = ControlPlane(toolchain=toolchain, run_dir=work / "kube")
    broker = KafkaBroker(toolchain=toolchain, run_dir=work / "kafka")
    components: list[Component] = []
    operator: ManagedProcess | None = None
    traffic: Traffic | None = None
    summary: dict[str, Any] = {}
    with side_by_side(control_plane, broker):
        try:
            kubectl = control_plane.kubectl_command()
            env_file = work / "env.sh"
            env_file.write_text(
                f"export KUBECONFIG={control_plane.kubeconfig}\n"
                f"export TAILOR_KAFKA_BOOTSTRAP={broker.bootstrap_servers}\n"
                f"export PATH={control_plane.binary('kubectl').parent}:$PATH\n"
            )
            say(
                f"in another terminal: source {env_file};"
                f" kubectl get ppl,deploy,pods -n {NAMESPACE}"
            )
            subprocess.run(
                [*kubectl, "apply", "--server-side", "-f", str(REPO_ROOT / "crds")],
                check=True,
                capture_output=True,
            )
            subprocess.run(
                [
                    *kubectl,
                    "wait",
                    "--for=condition=Established",
                    "--timeout=60s",
                    "crd/personalizationpipelines.tailor.dev",
                ],
                check=True,
                capture_output=True,
            )
            subprocess.run(
                [*kubectl, "create", "namespace", NAMESPACE], check=True, capture_output=True
            )
            operator = ManagedProcess(
                "tailor-operator",
                [
                    sys.executable,
                    "-m",
                    "tailor_operator",
                    "-n",
                    NAMESPACE,
                    "--liveness=off",
                    "--metrics-port=0",
                    *(["--verbose"] if os.environ.get("TAILOR_DEMO_VERBOSE") else []),
                ],
                work / "logs",
                env={**os.environ, "KUBECONFIG": str(control_plane.kubeconfig)},
            ).start()
            say("operator started; training the model from a generated history")

            now = int(time.time() * 1000)
            history = list(_clicks(seed=1, days=2, start_ms=now - 2 * DAY_MS))
            model_v1 = _model(work / "models" / "v1.tailor", history, "2026-11-v1")
            model_v2 = _model(
                work / "models" / "v2.tailor", history[len(history) // 3 :], "2026-11-v2"
            )
            manifest = yaml.safe_load((REPO_ROOT / "examples" / "01-minimal.yaml").read_text())
            manifest["spec"]["kafka"]["bootstrapServers"] = broker.bootstrap_servers
            manifest["spec"].setdefault("scorer", {})["model"] = model_v1
            # New models go through a canary; the demo's short run judges it in 10 s.
            manifest["spec"]["scorer"]["rollout"] = CANARY
            subprocess.run(
                [*kubectl, "apply", "-n", NAMESPACE, "-f", "-"],
                input=yaml.safe_dump(manifest),
                text=True,
                check=True,
                capture_output=True,
            )
            say(
                f"applied examples/01-minimal.yaml as {NAMESPACE}/{PIPELINE} with model "
                f"{model_v1['version']}; waiting for Ready"
            )
            started = time.monotonic()
            subprocess.run(
                [
                    *kubectl,
                    "wait",
                    "--for=condition=Ready",
                    f"ppl/{PIPELINE}",
                    "-n",
                    NAMESPACE,
                    "--timeout=180s",
                ],
                check=True,
                capture_output=True,
            )
            say(f"pipeline Ready in {time.monotonic() - started:.1f}s")
            summary["pipeline_ready_s"] = round(time.monotonic() - started, 1)

            settings_file = _read_settings(kubectl, work, "1")
            topic = json.loads(settings_file.read_text())["topics"]["events"]
            history_producer = Producer(
                {
                    "bootstrap.servers": broker.bootstrap_servers,
                    "enable.idempotence": True,
                    "linger.ms": 20,
                }
            )
            for event in history:
                history_producer.produce(topic, key=event.user_id, value=events.encode(event))
                history_producer.poll(0)
            history_producer.flush(30)
            say(f"loaded {len(history)} historical events into {topic}")

            workers = Component(f"{PIPELINE}-stream-worker", work, kubectl)
            scorers = Component(f"{PIPELINE}-scorer", work, kubectl)
            canary = Component(f"{PIPELINE}-scorer-canary", work, kubectl)
            components = [workers, scorers, canary]
            for component in (workers, scorers):
                component.start_like_the_deployment(settings_file)
            for component in (workers, scorers):
                component.wait_ready()
            say(
                f"{len(workers.processes)} stream workers and {len(scorers.processes)} scorers "
                "ready, running as the operator's Deployments describe them"
            )

            traffic = Traffic(broker.bootstrap_servers, topic, [scorers, canary], options, history)
            threads = [
                threading.Thread(target=t, daemon=True)
                for t in (traffic.run_clicks, traffic.run_decisions, traffic.run_tracked)
            ]
            for thread in threads:
                thread.start()

            update_after = options.update_after
            if update_after is None:
                update_after = options.duration / 2 if options.duration else 40.0
            t0 = time.monotonic()
            updated_at: float | None = None
            rolled_at: float | None = None
            last_produced, last_tick = 0, t0
            rate = 0.0
            settings_version = 1
            while not stop.is_set():
                elapsed = time.monotonic() - t0
                if options.duration and elapsed >= options.duration:
                    break
                if updated_at is None and elapsed >= update_after:
                    patch = {"spec": {"scorer": {"model": model_v2}}}
                    subprocess.run(
                        [
                            *kubectl,
                            "patch",
                            f"ppl/{PIPELINE}",
                            "-n",
                            NAMESPACE,
                            "--type=merge",
                            "-p",
                            json.dumps(patch),
                        ],
                        check=True,
                        capture_output=True,
                    )
                    updated_at = time.monotonic()
                    traffic.stats.log.append(
                        f"{elapsed:5.0f}s  spec.scorer.model -> {model_v2['version']}"
                        " (kubectl patch)"
                    )
                settings_version = _follow_canary(
                    canary, kubectl, work, settings_version, traffic, t0
                )
                for component, surge in ((scorers, True), (workers, False)):
                    template = component.deployment()["spec"]["template"]
                    new_hash = template["metadata"]["annotations"].get("tailor.dev/config-hash")
                    if new_hash != component.config_hash:
                        settings_version += 1
                        new_settings = _read_settings(kubectl, work, str(settings_version))
                        traffic.stats.log.append(
                            f"{elapsed:5.0f}s  Deployment {component.name} "
                            "rolled by the operator: rolling local processes"
                        )
                        component.roll(new_settings, surge)
                        if component is scorers and updated_at is not None:
                            rolled_at = time.monotonic()
                        traffic.stats.log.append(
                            f"{time.monotonic() - t0:5.0f}s  {component.name} rolled"
                        )
                now_tick = time.monotonic()
                rate = (traffic.stats.produced - last_produced) / max(now_tick - last_tick, 1e-6)
                last_produced, last_tick = traffic.stats.produced, now_tick
                if not options.headless:
                    print("\x1b[2J\x1b[H" + _frame(kubectl, traffic, elapsed, rate), flush=True)
                stop.wait(1.0)

            spec = _kubectl_json(kubectl, "get", f"ppl/{PIPELINE}", "-n", NAMESPACE)
            s = traffic.stats
            latencies = list(s.latencies)
            summary.update(
                {
                    "duration_s": round(time.monotonic() - t0, 1),
                    "events_produced": s.produced,
                    "decisions": s.decisions,
                    "decision_errors": s.errors,
                    "decision_latency_p50_ms": _ms(latencies, 0.5),
                    "decision_latency_p99_ms": _ms(latencies, 0.99),
                    "freshness_p50_ms": _ms(s.freshness, 0.5),
                    "freshness_p99_ms": _ms(s.freshness, 0.99),
                    "clicks_checked": s.clicks_checked,
                    "clicks_reflected_after_1s": s.clicks_reflected,
                    "model_version_spec": spec["spec"]["scorer"]["model"]["version"],
                    "model_versions_served": s.versions_served,
                    "last_model_version_served": _last_version(traffic),
                    "canary_analysis": (spec.get("status", {}).get("model") or {}).get("analysis"),
                    "model_rolled_out": next(
                        (
                            f"{c['status']} {c['reason']}: {c['message']}"
                            for c in spec.get("status", {}).get("conditions", [])
                            if c["type"] == "ModelRolledOut"
                        ),
                        None,
                    ),
                    "model_update_rolled_out_s": (
                        round(rolled_at - updated_at, 1) if rolled_at and updated_at else None
                    ),
                    "timeline": list(s.log),
                    "ready": any(
                        c["type"] == "Ready" and c["status"] == "True"
                        for c in spec.get("status", {}).get("conditions", [])
                    ),
                }
            )
            if options.headless:
                print(json.dumps(summary, indent=2), flush=True)
            else:
                say("stopping")
            return 0
        finally:
            # Everything that talks to Kafka and the API server stops before they do.
            if traffic is not None:
                traffic.stop.set()
            for component in components:
                component.stop()
            if operator is not None:
                operator.stop()


def _follow_canary(
    canary: Component, kubectl: list[str], work: Path, version: int, traffic: Traffic, t0: float
) -> int:
    """Start the canary's process when the operator creates its Deployment, stop it when
    the operator removes it (promoted or rolled back). Returns the settings version."""
    exists = canary.exists()
    elapsed = time.monotonic() - t0
    if exists and not canary.processes:
        version += 1
        settings = _read_settings(kubectl, work, str(version), "pipeline-canary.json")
        traffic.stats.log.append(
            f"{elapsed:5.0f}s  canary Deployment created by the operator: starting it"
        )
        canary.start_like_the_deployment(settings)
        canary.wait_ready()
        traffic.stats.log.append(f"{time.monotonic() - t0:5.0f}s  canary serving its share")
    elif not exists and canary.processes:
        canary.stop(drain_s=0.5)
        pipeline = _kubectl_json(kubectl, "get", f"ppl/{PIPELINE}", "-n", NAMESPACE)
        model = pipeline["status"].get("model") or {}
        promoted = model.get("active") == pipeline["spec"]["scorer"]["model"]["version"]
        verdict = "promoted" if promoted else f"rolled back ({model.get('failedReason')})"
        traffic.stats.log.append(f"{elapsed:5.0f}s  canary {verdict}: canary process stopped")
    return version


def _last_version(traffic: Traffic) -> str | None:
    body = traffic.decide(traffic.users[0])
    return body.get("model_version") if body else None
