"""A real Kubernetes control plane: etcd, apiserver, controllers, scheduler, KWOK.

Everything listens on 127.0.0.1, except the API server when a real node runs beside it: then
it listens on the node's bridge address (``address``), where pods reach it through the
``kubernetes`` Service as they would in any cluster.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import ssl
import tempfile
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from tailor_localenv import pki as pki_mod
from tailor_localenv.bootstrap import Toolchain, locate
from tailor_localenv.processes import ManagedProcess, StartError, free_port, http_get, http_ok
from tailor_localenv.progress import duration, say

# A shared 2-core machine: give each step room, a cold apiserver alone can take ~20 s.
START_TIMEOUT = 120.0
SERVICE_CIDR = "10.0.0.0/24"
POD_CIDR = "10.244.0.0/16"


def _node_manifest(name: str) -> dict[str, Any]:
    # No kwok.x-k8s.io/node NoSchedule taint: pods of unmodified charts must schedule here.
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/role": "agent",
                "type": "kwok",
            },
        },
        "status": {
            "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
            "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"},
        },
    }


@dataclass
class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler + KWOK with fake nodes.

    ``start()`` returns once the API server is ready, the nodes are Ready and the ``default``
    ServiceAccount exists, i.e. once a Deployment applied now gets Running pods.
    """

    nodes: int = 2
    # Where the API server listens; a real node's pods need a non-loopback address.
    address: str = "127.0.0.1"
    toolchain: Toolchain | None = None
    run_dir: Path | None = None
    keep_run_dir: bool = False
    processes: list[ManagedProcess] = field(default_factory=list)
    api_port: int = 0
    kubeconfig: Path = Path()
    _owns_run_dir: bool = False

    # --- paths and clients -------------------------------------------------------------------

    @property
    def server(self) -> str:
        return f"https://{self.address}:{self.api_port}"

    @property
    def log_dir(self) -> Path:
        assert self.run_dir is not None
        return self.run_dir / "logs"

    def binary(self, name: str) -> Path:
        assert self.toolchain is not None
        return self.toolchain.binary(name)

    def kubectl_command(self) -> list[str]:
        """The argv prefix of a kubectl talking to this control plane."""
        return [str(self.binary("kubectl")), f"--kubeconfig={self.kubeconfig}"]

    def api_client(self) -> Any:
        """A ``kubernetes.client.ApiClient`` authenticated as the admin."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def _ssl_context(self, client_cert: bool = True) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        if client_cert:
            ctx.load_cert_chain(str(self.pki.admin_cert), str(self.pki.admin_key))
        return ctx

    def get_json(self, path: str) -> Any:
        """GET a path of the API server as the admin (no client library needed)."""
        status, body = http_get(self.server + path, self._ssl_context(), timeout=5)
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}: {body[:200]!r}")
        return json.loads(body)

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> ControlPlane:
        started = time.monotonic()
        self.toolchain = self.toolchain or locate()
        if self.run_dir is None:
            self.run_dir = Path(tempfile.mkdtemp(prefix="tailor-kube-"))
            self._owns_run_dir = True
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.pki = pki_mod.generate(self.run_dir / "pki", (self.address,))
        try:
            self._start_etcd()
            self._start_apiserver()
            self._start_controllers()
            self._start_kwok()
            self._create_nodes()
            self._wait_cluster_usable()
        except BaseException:
            self.stop()
            raise
        say(
            f"kubernetes: control plane ready at {self.server} in "
            f"{duration(time.monotonic() - started)} (kubeconfig {self.kubeconfig})"
        )
        return self

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()
        if self._owns_run_dir and not self.keep_run_dir and self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, name: str, args: list[str]) -> ManagedProcess:
        proc = ManagedProcess(name, [str(self.binary(name)), *args], self.log_dir).start()
        self.processes.append(proc)
        return proc

    @property
    def _loopback(self) -> bool:
        return ipaddress.ip_address(self.address).is_loopback

    def _https_ok(self, port: int, path: str, client_cert: bool = True) -> bool:
        return http_ok(f"https://127.0.0.1:{port}{path}", self._ssl_context(client_cert))

    def _start_etcd(self) -> None:
        assert self.run_dir is not None
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        proc = self._spawn(
            "etcd",
            [
                f"--data-dir={self.run_dir / 'etcd'}",
                "--name=tailor",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=tailor=http://127.0.0.1:{peer}",
                # Throwaway data: fsync only slows a shared disk down (envtest does the same).
                "--unsafe-no-fsync=true",
                "--log-level=warn",
                "--quota-backend-bytes=2147483648",
            ],
        )

        # /health answers 503 with {"health":"false"} until the member has a leader.
        took = proc.wait_healthy(lambda: http_ok(f"{self.etcd_url}/health"), START_TIMEOUT)
        say(f"kubernetes: etcd healthy on {self.etcd_url} ({duration(took)})")

    def _start_apiserver(self) -> None:
        assert self.run_dir is not None
        p = self.pki
        self.api_port = free_port()
        proc = self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers={self.etcd_url}",
                f"--bind-address={self.address}",
                # Without it and without a default route the apiserver refuses to start.
                f"--advertise-address={self.address}",
                f"--secure-port={self.api_port}",
                f"--cert-dir={self.run_dir / 'apiserver-certs'}",
                f"--tls-cert-file={p.admin_cert}",
                f"--tls-private-key-file={p.admin_key}",
                f"--client-ca-file={p.ca_cert}",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={p.sa_pub}",
                f"--service-account-signing-key-file={p.sa_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                "--allow-privileged=true",
                # A namespace annotated with a node selector and default tolerations puts its
                # pods on the real node (real_node.pin_namespace); every other pod stays on
                # the KWOK nodes, as the real node is tainted.
                "--enable-admission-plugins=PodNodeSelector,PodTolerationRestriction",
                # Logs, exec and port-forward go through the kubelet, which checks this client.
                f"--kubelet-client-certificate={p.admin_cert}",
                f"--kubelet-client-key={p.admin_key}",
                "--kubelet-preferred-address-types=InternalIP",
                # The aggregation layer, for metrics-server on the real node (metrics.k8s.io):
                # the API server proxies with the admin certificate and passes the user on in
                # headers that metrics-server trusts because our CA signed that certificate.
                f"--requestheader-client-ca-file={p.ca_cert}",
                # Same CA as client certificates: only the proxy's own may set the headers.
                f"--requestheader-allowed-names={pki_mod.ADMIN_COMMON_NAME}",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={p.admin_cert}",
                f"--proxy-client-key-file={p.admin_key}",
                "--enable-aggregator-routing=true",
                # On loopback the lease reconciler would publish 127.0.0.1 as the `kubernetes`
                # Service endpoint, which the API rejects; nothing in-cluster needs it then.
                f"--endpoint-reconciler-type={'none' if self._loopback else 'lease'}",
                "--profiling=false",
                "--v=1",
            ],
        )
        self.kubeconfig = pki_mod.write_kubeconfig(
            self.run_dir / "admin.kubeconfig", self.server, p
        )
        took = proc.wait_healthy(
            lambda: http_ok(f"{self.server}/readyz", self._ssl_context()),
            START_TIMEOUT,
            "ready (/readyz)",
        )
        say(
            f"kubernetes: kube-apiserver v{self._server_version()} ready on {self.server} "
            f"({duration(took)})"
        )

    def _server_version(self) -> str:
        return str(self.get_json("/version")["gitVersion"]).lstrip("v")

    def _start_controllers(self) -> None:
        p = self.pki
        common = [
            f"--kubeconfig={self.kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--tls-cert-file={p.admin_cert}",
            f"--tls-private-key-file={p.admin_key}",
            "--leader-elect=false",
            "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
        ]
        kcm_port, sched_port = free_port(), free_port()
        kcm = self._spawn(
            "kube-controller-manager",
            [
                *common,
                f"--secure-port={kcm_port}",
                f"--root-ca-file={p.ca_cert}",
                f"--service-account-private-key-file={p.sa_key}",
                f"--cluster-signing-cert-file={p.ca_cert}",
                f"--cluster-signing-key-file={p.ca_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--use-service-account-credentials=true",
                # React to KWOK nodes quickly, and evict from lost ones quickly in tests.
                "--node-monitor-grace-period=40s",
                "--horizontal-pod-autoscaler-sync-period=5s",
                # client-go's default of 20 requests/s caps pod creation at ~5/s, so a test
                # that applies 50 pipelines would measure this limit instead of Tailor.
                "--kube-api-qps=200",
                "--kube-api-burst=400",
                "--concurrent-replicaset-syncs=10",
                "--concurrent-deployment-syncs=10",
            ],
        )
        sched = self._spawn(
            "kube-scheduler",
            [
                *common,
                f"--secure-port={sched_port}",
                "--kube-api-qps=200",
                "--kube-api-burst=400",
            ],
        )
        for proc, port in ((kcm, kcm_port), (sched, sched_port)):
            took = proc.wait_healthy(
                lambda port=port: self._https_ok(port, "/healthz", client_cert=False),  # type: ignore[misc]
                START_TIMEOUT,
                "healthy (/healthz)",
            )
            say(f"kubernetes: {proc.name} healthy ({duration(took)})")

    def _start_kwok(self) -> None:
        assert self.run_dir is not None
        stages = self.run_dir / "kwok-stages.yaml"
        stages.write_text(
            resources.files("tailor_localenv").joinpath("kwok-stages.yaml").read_text()
        )
        port = free_port()
        proc = self._spawn(
            "kwok",
            [
                f"--kubeconfig={self.kubeconfig}",
                f"--config={stages}",
                # Only its own fake nodes: a real node beside them runs its pods for real.
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                f"--server-address=127.0.0.1:{port}",
                f"--cidr={POD_CIDR}",
                "--node-ip=10.0.0.2",
                "--node-lease-duration-seconds=40",
            ],
        )

        took = proc.wait_healthy(
            lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), START_TIMEOUT, "healthy (/healthz)"
        )
        say(f"kubernetes: kwok healthy ({duration(took)})")

    def _create_nodes(self) -> None:
        from kubernetes import client

        with self.api_client() as api:
            core = client.CoreV1Api(api)
            for index in range(self.nodes):
                core.create_node(_node_manifest(f"kwok-node-{index}"))

    def _wait_cluster_usable(self) -> None:
        apiserver = self.processes[1]

        def nodes_ready() -> bool:
            nodes = self.get_json("/api/v1/nodes")["items"]
            ready = [
                n
                for n in nodes
                if any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in n.get("status", {}).get("conditions", [])
                )
            ]
            return len(ready) >= self.nodes

        def default_service_account() -> bool:
            # Pods are refused until the token controller created it.
            self.get_json("/api/v1/namespaces/default/serviceaccounts/default")
            return True

        took = apiserver.wait_healthy(
            nodes_ready, START_TIMEOUT, f"showing {self.nodes} Ready nodes"
        )
        say(f"kubernetes: {self.nodes} KWOK nodes Ready ({duration(took)})")
        apiserver.wait_healthy(
            default_service_account, START_TIMEOUT, "serving the default ServiceAccount"
        )

    def dump_logs(self, lines: int = 40) -> str:
        """The tail of every component's log, for a failing test's report."""
        return "\n".join(
            f"----- {p.name} ({p.log_path}) -----\n{p.log_tail(lines)}" for p in self.processes
        )


__all__ = ["ControlPlane", "StartError"]
