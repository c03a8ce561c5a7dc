"""A real node beside the control plane: containerd with runc, a CNI bridge, kubelet, kube-proxy.

KWOK nodes make every pod Ready without running it; this node runs containers from Tailor's
images (``images.py``), so what a pod must prove (probes, startup, the Service routing,
in-cluster config) is proven for real. It is tainted (``tailor.dev/real-node``): ordinary
pods stay on the KWOK nodes, and a namespace opts in with ``pin_namespace`` (the API server's
PodNodeSelector and PodTolerationRestriction admission plugins then place all its pods here).

The pod network is a Linux bridge on this machine only (``tailorN``, 10.88.N.0/24). Pods
reach each other, Services (kube-proxy, iptables mode) and the host's bridge address, where
the API server and Kafka listen; nothing is routed or NATed off the machine, and a mangle
rule drops any forwarded packet that would leave or enter the bridge from elsewhere.

Containers outlive a SIGKILLed test run (containerd's shims are daemons): the next node
started from the same cache cleans them up (the kubelet kills pods it does not know).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tailor_localenv import cache
from tailor_localenv.bootstrap import Toolchain, locate
from tailor_localenv.images import ImageBuilder, Images
from tailor_localenv.kube import ControlPlane
from tailor_localenv.processes import ManagedProcess, StartError, free_port, http_ok
from tailor_localenv.progress import duration, say

NODE_NAME = "tailor-real-node"
NODE_LABEL = "tailor.dev/node"
TAINT_KEY = "tailor.dev/real-node"
CLUSTER_DNS = "10.0.0.10"
# Port 9 (discard) on loopback: nothing listens, so a registry connection is refused at once.
NO_PULL_PROXY = "http://127.0.0.1:9"
START_TIMEOUT = 120.0
# The Debian packages the node runs (the bootstrap installs them as root).
APT_PACKAGES = {
    "containerd": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "iptables": "iptables",
    "ip": "iproute2",
    "buildah": "buildah",
    "mmdebstrap": "mmdebstrap",
}


class RealNodeUnavailable(RuntimeError):
    """This host cannot run containers; the message is the one line that says why."""


def cgroup_version() -> int | None:
    """1 or 2, as mounted at /sys/fs/cgroup; None when neither is usable."""
    root = Path("/sys/fs/cgroup")
    if (root / "cgroup.controllers").exists():
        return 2
    if all((root / c).is_dir() for c in ("cpu", "cpuacct", "cpuset", "memory")):
        return 1
    return None


def host_support() -> str | None:
    """Why this host cannot run the real node, or None when it can."""
    if os.geteuid() != 0:
        return "the real node needs root (containerd, the kubelet and the pod network)"
    for tool, package in APT_PACKAGES.items():
        if not shutil.which(tool):
            return f"{tool} not found: apt-get install {package} (make bootstrap does, as root)"
    if not Path("/proc/self/ns/net").exists() or not Path("/proc/self/ns/mnt").exists():
        return "this kernel has no network or mount namespaces: containers cannot run"
    if cgroup_version() is None:
        return "no usable cgroup hierarchy at /sys/fs/cgroup (need v2, or v1 cpu/cpuset/memory)"
    return None


def require_host_support() -> None:
    reason = host_support()
    if reason:
        raise RealNodeUnavailable(f"cannot run a real node on this host: {reason}")


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise StartError(f"`{' '.join(args)}` failed: {result.stderr.strip()[-500:]}")
    return result


def _sysctl(path: str, value: str) -> None:
    Path("/proc/sys", path).write_text(value)


@dataclass
class PodNetwork:
    """The bridge pods attach to, with the host's address on it (the gateway)."""

    index: int

    @property
    def bridge(self) -> str:
        return f"tailor{self.index}"

    @property
    def subnet(self) -> str:
        return f"10.88.{self.index}.0/24"

    @property
    def gateway(self) -> str:
        return f"10.88.{self.index}.1"

    def _confine_rules(self) -> list[list[str]]:
        comment = ["-m", "comment", "--comment", "tailor: pods stay on this machine"]
        return [
            ["-i", self.bridge, "!", "-o", self.bridge, *comment, "-j", "DROP"],
            ["-o", self.bridge, "!", "-i", self.bridge, *comment, "-j", "DROP"],
        ]

    @classmethod
    def create(cls) -> PodNetwork:
        taken = {p.name for p in Path("/sys/class/net").iterdir()}
        index = next(i for i in range(256) if f"tailor{i}" not in taken)
        network = cls(index)
        _run("ip", "link", "add", network.bridge, "type", "bridge")
        try:
            _run("ip", "addr", "add", f"{network.gateway}/24", "dev", network.bridge)
            _run("ip", "link", "set", network.bridge, "up")
            # Pod -> Service -> pod is routed through the host; bridged traffic must pass
            # kube-proxy's rules too.
            _sysctl("net/ipv4/ip_forward", "1")
            if Path("/proc/sys/net/bridge/bridge-nf-call-iptables").exists():
                _sysctl("net/bridge/bridge-nf-call-iptables", "1")
            # mangle runs before filter, where kube-proxy accepts what it marked.
            for rule in network._confine_rules():
                _run("iptables", "-w", "-t", "mangle", "-I", "FORWARD", *rule)
        except BaseException:
            network.delete()
            raise
        return network

    def delete(self) -> None:
        for rule in self._confine_rules():
            _run("iptables", "-w", "-t", "mangle", "-D", "FORWARD", *rule, check=False)
        _run("ip", "link", "del", self.bridge, check=False)

    def cni_config(self, ipam_dir: Path) -> dict[str, Any]:
        return {
            "cniVersion": "1.0.0",
            "name": "tailor-pods",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": True,
                    # No NAT: nothing off this machine is to be reached.
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": str(ipam_dir),
                        "ranges": [[{"subnet": self.subnet, "gateway": self.gateway}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }


def containerd_root() -> Path:
    """containerd's image store lives in the cache, so images are imported once."""
    return cache.cache_root() / "node" / "containerd"


@dataclass
class RealNode:
    """containerd + kubelet + kube-proxy registered with ``control_plane`` as NODE_NAME.

    The control plane must listen on ``network.gateway`` (``ControlPlane(address=...)``).
    """

    control_plane: ControlPlane
    network: PodNetwork
    images: Images
    builder: ImageBuilder
    toolchain: Toolchain | None = None
    run_dir: Path | None = None
    processes: list[ManagedProcess] = field(default_factory=list)
    _lock: IO[str] | None = None

    @property
    def socket(self) -> Path:
        assert self.run_dir is not None
        return self.run_dir / "containerd" / "containerd.sock"

    def ctr_command(self) -> list[str]:
        return ["ctr", f"--address={self.socket}", "--namespace=k8s.io"]

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run(*self.ctr_command(), *args, check=check)

    def start(self) -> RealNode:
        require_host_support()
        started = time.monotonic()
        self.toolchain = self.toolchain or locate()
        if self.run_dir is None:
            self.run_dir = Path(tempfile.mkdtemp(prefix="tailor-node-"))
        try:
            self._lock_store()
            self._start_containerd()
            self.builder.import_into(self.images.all(), self.ctr_command())
            self._start_kubelet()
            self._start_kube_proxy()
            self._start_cluster_dns()
            self._start_metrics_server()
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        say(f"node: {NODE_NAME} Ready in {duration(time.monotonic() - started)}")
        return self

    # --- containerd ----------------------------------------------------------------------

    def _lock_store(self) -> None:
        root = containerd_root()
        root.mkdir(parents=True, exist_ok=True)
        self._lock = (root.parent / "containerd.lock").open("w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StartError(
                f"another real node uses {root}: stop it, or give this run its own TAILOR_CACHE"
            ) from None

    def _start_containerd(self) -> None:
        assert self.run_dir is not None
        assert self.toolchain is not None
        base = self.run_dir / "containerd"
        cni_conf, cni_bin = self.run_dir / "cni" / "net.d", self.run_dir / "cni" / "bin"
        cni_conf.mkdir(parents=True)
        cni_bin.mkdir(parents=True)
        for plugin in ("bridge", "loopback", "host-local", "portmap"):
            (cni_bin / plugin).symlink_to(self.toolchain.binary(plugin))
        (cni_conf / "10-tailor.conflist").write_text(
            json.dumps(self.network.cni_config(self.run_dir / "cni" / "ipam"), indent=2)
        )
        cri = '[plugins."io.containerd.grpc.v1.cri"]'
        config = base / "config.toml"
        base.mkdir(parents=True, exist_ok=True)
        config.write_text(
            "version = 2\n"
            f'root = "{containerd_root()}"\n'
            f'state = "{base / "state"}"\n'
            'disabled_plugins = ["io.containerd.snapshotter.v1.aufs", '
            '"io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", '
            '"io.containerd.snapshotter.v1.devmapper"]\n'
            f'[grpc]\n  address = "{self.socket}"\n'
            f"{cri}\n"
            # Built from hack/go/pause and imported by images.py: nothing is pulled.
            f'  sandbox_image = "{self.images.pause}"\n'
            # Without CAP_SYS_RESOURCE (some VMs' root lacks it) no process may lower its
            # OOM score: the kubelet's -998 for sandboxes makes runc fail at `create`.
            f"  restrict_oom_score_adj = {'false' if _may_lower_oom_score() else 'true'}\n"
            f"{cri[:-1]}.cni]\n"
            f'  bin_dir = "{cni_bin}"\n  conf_dir = "{cni_conf}"\n'
            f"{cri[:-1]}.containerd]\n"
            '  snapshotter = "overlayfs"\n  default_runtime_name = "runc"\n'
            f"{cri[:-1]}.containerd.runtimes.runc]\n"
            '  runtime_type = "io.containerd.runc.v2"\n'
            f"{cri[:-1]}.containerd.runtimes.runc.options]\n"
            # No systemd on these hosts: the kubelet manages cgroups with cgroupfs too.
            "  SystemdCgroup = false\n"
        )
        # Every image comes from images.py; a missing one must fail at once, never become a
        # pull from a registry off this machine: registry connections go to a closed port
        # on loopback (a proxy is dialled before any name is resolved).
        no_pulls = dict.fromkeys(
            ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"), NO_PULL_PROXY
        )
        env = {k: v for k, v in os.environ.items() if k.upper() != "NO_PROXY"}
        took = self._spawn(
            "containerd",
            ["containerd", f"--config={config}"],
            lambda: self.ctr("version", check=False).returncode == 0,
            "serving",
            env={**env, **no_pulls},
        )
        say(f"node: containerd {_containerd_version()} serving ({duration(took)})")

    # --- kubelet -------------------------------------------------------------------------

    def _start_kubelet(self) -> None:
        assert self.run_dir is not None
        cp = self.control_plane
        kubelet_dir = self.run_dir / "kubelet"
        kubelet_dir.mkdir()
        resolv = self.run_dir / "resolv.conf"
        # Pods resolve through cluster DNS only: the host's resolvers are off this machine.
        resolv.write_text("")
        healthz = free_port()
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": self.network.gateway,
            "port": free_port(),
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": healthz,
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(cp.pki.ca_cert)},
            },
            "authorization": {"mode": "Webhook"},
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "cgroupDriver": "cgroupfs",
            # Kubernetes 1.35 refuses cgroup v1 unless told; these hosts may only have v1.
            "failCgroupV1": cgroup_version() != 1,
            "failSwapOn": False,
            # Leave the kubelet's own OOM score alone (-999 needs CAP_SYS_RESOURCE).
            "oomScoreAdj": 0,
            "clusterDNS": [CLUSTER_DNS],
            "clusterDomain": "cluster.local",
            "resolvConf": str(resolv),
            # A shared build machine's disk is often fuller than the defaults allow.
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "serializeImagePulls": False,
            "registerWithTaints": [{"key": TAINT_KEY, "value": "true", "effect": "NoSchedule"}],
            "maxPods": 110,
            "syncFrequency": "10s",
            "fileCheckFrequency": "10s",
            "nodeStatusUpdateFrequency": "5s",
            "shutdownGracePeriod": "0s",
            "kubeAPIQPS": 100,
            "kubeAPIBurst": 200,
        }
        path = kubelet_dir / "config.yaml"
        path.write_text(json.dumps(config, indent=2))
        took = self._spawn(
            "kubelet",
            [
                str(self._binary("kubelet")),
                f"--config={path}",
                f"--kubeconfig={cp.kubeconfig}",
                f"--root-dir={kubelet_dir / 'root'}",
                f"--cert-dir={kubelet_dir / 'pki'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={self.network.gateway}",
                f"--node-labels={NODE_LABEL}=real",
                "--v=1",
            ],
            lambda: http_ok(f"http://127.0.0.1:{healthz}/healthz"),
            "healthy (/healthz)",
        )
        say(f"node: kubelet healthy ({duration(took)})")

    def _start_kube_proxy(self) -> None:
        assert self.run_dir is not None
        healthz, metrics = free_port(), free_port()
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.control_plane.kubeconfig)},
            "mode": "iptables",
            "hostnameOverride": NODE_NAME,
            "clusterCIDR": self.network.subnet,
            "bindAddress": self.network.gateway,
            "healthzBindAddress": f"127.0.0.1:{healthz}",
            "metricsBindAddress": f"127.0.0.1:{metrics}",
            # Replies from a Service's pod must come back through the host, not straight
            # over the bridge to a client that expects the Service's address.
            "iptables": {"masqueradeAll": True, "syncPeriod": "10s", "minSyncPeriod": "0s"},
            # Leave the host's conntrack table size alone.
            "conntrack": {"maxPerCore": 0},
        }
        path = self.run_dir / "kube-proxy.yaml"
        path.write_text(json.dumps(config, indent=2))
        took = self._spawn(
            "kube-proxy",
            [str(self._binary("kube-proxy")), f"--config={path}", "--v=1"],
            lambda: http_ok(f"http://127.0.0.1:{healthz}/healthz"),
            "healthy (/healthz)",
        )
        say(f"node: kube-proxy healthy ({duration(took)})")

    def _start_cluster_dns(self) -> None:
        """CoreDNS on the host's bridge address, behind the `kube-dns` Service at
        CLUSTER_DNS (the kubelet's clusterDNS), as kube-dns is in any cluster."""
        assert self.run_dir is not None
        port, health, ready = free_port(), free_port(), free_port()
        corefile = self.run_dir / "Corefile"
        corefile.write_text(
            f".:{port} {{\n"
            f"    bind {self.network.gateway}\n"
            "    errors\n"
            f"    health 127.0.0.1:{health}\n"
            f"    ready 127.0.0.1:{ready}\n"
            "    kubernetes cluster.local in-addr.arpa ip6.arpa {\n"
            f"        kubeconfig {self.control_plane.kubeconfig}\n"
            "        pods insecure\n"
            "        fallthrough in-addr.arpa ip6.arpa\n"
            "    }\n"
            "    cache 30\n"
            "}\n"
        )
        took = self._spawn(
            "coredns",
            [str(self._binary("coredns")), f"-conf={corefile}"],
            lambda: http_ok(f"http://127.0.0.1:{ready}/ready"),
            "ready (/ready)",
        )
        expose_host_service(
            self.control_plane,
            "kube-system",
            "kube-dns",
            self.network.gateway,
            [("dns", 53, port, "UDP"), ("dns-tcp", 53, port, "TCP")],
            cluster_ip=CLUSTER_DNS,
        )
        say(f"node: cluster DNS (CoreDNS) ready at {CLUSTER_DNS} ({duration(took)})")

    def _start_metrics_server(self) -> None:
        """metrics-server on the bridge address behind the metrics.k8s.io APIService, so
        HPAs scale on the real CPU of the real node's pods (`kubectl top` works too)."""
        assert self.run_dir is not None
        port = free_port()
        kubeconfig = f"{self.control_plane.kubeconfig}"
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # its own self-signed serving certificate
        took = self._spawn(
            "metrics-server",
            [
                str(self._binary("metrics-server")),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                f"--bind-address={self.network.gateway}",
                f"--secure-port={port}",
                f"--cert-dir={self.run_dir / 'metrics-server'}",
                # The kubelet serves a self-signed certificate, as kubeadm's do by default.
                "--kubelet-insecure-tls",
                "--kubelet-preferred-address-types=InternalIP",
                "--kubelet-use-node-status-port",
                "--metric-resolution=15s",
                "--kubelet-request-timeout=5s",
            ],
            lambda: http_ok(f"https://{self.network.gateway}:{port}/livez", insecure),
            "live (/livez)",
        )
        expose_host_service(
            self.control_plane,
            "kube-system",
            "metrics-server",
            self.network.gateway,
            [("https", 443, port, "TCP")],
        )
        _apply(
            self.control_plane,
            {
                "apiVersion": "apiregistration.k8s.io/v1",
                "kind": "APIService",
                "metadata": {"name": "v1beta1.metrics.k8s.io"},
                "spec": {
                    "service": {"name": "metrics-server", "namespace": "kube-system", "port": 443},
                    "group": "metrics.k8s.io",
                    "version": "v1beta1",
                    "insecureSkipTLSVerify": True,
                    "groupPriorityMinimum": 100,
                    "versionPriority": 100,
                },
            },
        )
        say(f"node: metrics-server serving metrics.k8s.io ({duration(took)})")

    def _wait_ready(self) -> None:
        kubelet = next(p for p in self.processes if p.name == "kubelet")

        def ready() -> bool:
            node = self.control_plane.get_json(f"/api/v1/nodes/{NODE_NAME}")
            return any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in node.get("status", {}).get("conditions", [])
            )

        kubelet.wait_healthy(ready, START_TIMEOUT, f"reporting {NODE_NAME} Ready")

    def _spawn(
        self,
        name: str,
        args: list[str],
        check: Callable[[], bool],
        what: str,
        env: dict[str, str] | None = None,
    ) -> float:
        """Start one of the node's processes and wait until ``check`` passes; seconds taken."""
        assert self.run_dir is not None
        proc = ManagedProcess(name, args, self.run_dir / "logs", env=env).start()
        self.processes.append(proc)
        return proc.wait_healthy(check, START_TIMEOUT, what)

    def _binary(self, name: str) -> Path:
        assert self.toolchain is not None
        return self.toolchain.binary(name)

    # --- teardown ------------------------------------------------------------------------

    def stop(self) -> None:
        # The kubelet first: alive, it would restart the containers _remove_pods kills, and
        # those would outlive the node.
        containerd = [p for p in self.processes if p.name == "containerd"]
        for proc in reversed(self.processes):
            if proc.name != "containerd":
                proc.stop()
        if any(p.alive() for p in containerd):
            self._remove_pods()
        for proc in containerd:
            proc.stop()
        self.processes.clear()
        if self.run_dir is not None:
            _kill_shims(self.socket)
        if self.run_dir is not None:
            _unmount_below(self.run_dir)
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        self.builder.close()

    def _remove_pods(self) -> None:
        """Stop every container and sandbox (CNI teardown included) while containerd runs."""
        listed = self.ctr("tasks", "list", "-q", check=False).stdout.split()
        for task in listed:
            self.ctr("tasks", "kill", "--signal=SIGKILL", task, check=False)
        deadline = time.monotonic() + 10
        while listed and time.monotonic() < deadline:
            time.sleep(0.2)
            listed = [
                t
                for t in self.ctr("tasks", "list", "-q", check=False).stdout.split()
                if t in listed
            ]
        for task in self.ctr("tasks", "list", "-q", check=False).stdout.split():
            self.ctr("tasks", "delete", "--force", task, check=False)
        for container in self.ctr("containers", "list", "-q", check=False).stdout.split():
            self.ctr("containers", "delete", container, check=False)

    def dump_logs(self, lines: int = 40) -> str:
        return "\n".join(
            f"----- {p.name} ({p.log_path}) -----\n{p.log_tail(lines)}" for p in self.processes
        )

    def pin_namespace(self, namespace: str) -> None:
        """Create ``namespace`` (if needed) so that all its pods run on this node."""
        pin_namespace(self.control_plane, namespace)


def _may_lower_oom_score() -> bool:
    """Whether this process holds CAP_SYS_RESOURCE (bit 24 of its effective set)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> 24 & 1)
    return False


def _containerd_version() -> str:
    out = _run("containerd", "--version", check=False).stdout.split()
    return out[2] if len(out) > 2 else "?"


def _kill_shims(socket: Path) -> None:
    """containerd's shims are daemons that outlive it; end the ones serving this node and
    every process below them (a container whose shim is killed is adopted by init and
    would run on)."""
    marker = str(socket).encode()
    children: dict[int, list[int]] = {}
    shims = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(proc.name))
        if b"containerd-shim" in cmdline and marker in cmdline:
            shims.append(int(proc.name))
    doomed, stack = [], list(shims)
    while stack:
        pid = stack.pop()
        doomed.append(pid)
        stack += children.get(pid, [])
    for pid in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _unmount_below(directory: Path) -> None:
    """The kubelet's volume mounts (tmpfs for tokens) outlive it; unmount before deleting."""
    prefix = str(directory.resolve()) + "/"
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(prefix)), reverse=True):
        _run("umount", "-l", mount, check=False)


def expose_host_service(
    control_plane: ControlPlane,
    namespace: str,
    name: str,
    address: str,
    ports: list[tuple[str, int, int, str]],
    cluster_ip: str | None = None,
) -> None:
    """A Service without selector whose endpoint is ``address`` (a host process on the pod
    bridge), so pods reach it by its cluster name. ``ports``: (name, service port, target
    port, protocol)."""
    service: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "ports": [
                {"name": n, "port": p, "targetPort": t, "protocol": proto}
                for n, p, t, proto in ports
            ]
        },
    }
    if cluster_ip:
        service["spec"]["clusterIP"] = cluster_ip
    endpoints = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{name}-host",
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": name},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
        "ports": [{"name": n, "port": t, "protocol": proto} for n, _, t, proto in ports],
    }
    namespace_manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    for manifest in (namespace_manifest, service, endpoints):
        _apply(control_plane, manifest)


def _apply(control_plane: ControlPlane, manifest: dict[str, Any]) -> None:
    result = subprocess.run(
        [*control_plane.kubectl_command(), "apply", "--server-side", "-f", "-"],
        input=json.dumps(manifest),
        text=True,
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        raise StartError(f"applying {kind} {name} failed: {result.stderr.strip()}")


def namespace_annotations() -> dict[str, str]:
    """What puts every pod of a namespace on the real node (PodNodeSelector and
    PodTolerationRestriction admission plugins)."""
    toleration = {"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}
    return {
        "scheduler.alpha.kubernetes.io/node-selector": f"{NODE_LABEL}=real",
        "scheduler.alpha.kubernetes.io/defaultTolerations": json.dumps([toleration]),
    }


def pin_namespace(control_plane: ControlPlane, namespace: str) -> None:
    metadata = {"name": namespace, "annotations": namespace_annotations()}
    _apply(control_plane, {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata})


__all__ = ["PodNetwork", "RealNode", "RealNodeUnavailable", "host_support"]
