"""The whole local environment as one object: the control plane, the Kafka broker and, when
wanted and possible, the real node, started on first use and stopped together. The pytest
fixtures, `tailor-localenv up` and the demo all assemble it here."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tailor_localenv import real_node as real_node_mod
from tailor_localenv.bootstrap import Toolchain, locate
from tailor_localenv.images import REPO_ROOT, ImageBuilder
from tailor_localenv.kafka import KafkaBroker
from tailor_localenv.kube import ControlPlane
from tailor_localenv.real_node import PodNetwork, RealNode


@dataclass
class LocalEnvironment:
    """``needs_*``: what will be asked for, so that what can start early does (the broker's
    JVM while the control plane boots) and both listen where a real node's pods reach them.
    ``run_dir``: where data and logs go (default: temporary directories)."""

    needs_kube: bool = False
    needs_kafka: bool = False
    needs_real_node: bool = False
    run_dir: Path | None = None
    nodes: int = 2
    toolchain: Toolchain | None = None
    control_plane: ControlPlane | None = None
    broker: KafkaBroker | None = None
    network: PodNetwork | None = None
    node: RealNode | None = None
    _address: str | None = None
    _kafka_future: Future[KafkaBroker] | None = None
    # The broker is started from a thread that lives until it is stopped: PR_SET_PDEATHSIG
    # follows the thread that forked it, not the process.
    _pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(max_workers=1))

    def _toolchain(self) -> Toolchain:
        if self.toolchain is None:
            self.toolchain = locate()
        return self.toolchain

    def _dir(self, name: str) -> Path | None:
        return self.run_dir / name if self.run_dir is not None else None

    def address(self) -> str:
        """Where the control plane and Kafka listen: the pod bridge when a real node is
        wanted and possible, else loopback."""
        if self._address is None:
            self._address = "127.0.0.1"
            if self.needs_real_node and real_node_mod.host_support() is None:
                self.network = PodNetwork.create()
                self._address = self.network.gateway
        return self._address

    def start_kafka_in_background(self) -> None:
        if self._kafka_future is None:
            self.broker = KafkaBroker(
                toolchain=self._toolchain(), address=self.address(), run_dir=self._dir("kafka")
            )
            self._kafka_future = self._pool.submit(self.broker.start)

    def kafka(self) -> KafkaBroker:
        self.start_kafka_in_background()
        assert self._kafka_future is not None
        return self._kafka_future.result()

    def kube(self) -> ControlPlane:
        if self.control_plane is None:
            if self.needs_kafka:
                self.start_kafka_in_background()
            self.control_plane = ControlPlane(
                nodes=self.nodes,
                toolchain=self._toolchain(),
                address=self.address(),
                run_dir=self._dir("kube"),
            ).start()
        return self.control_plane

    def real_node(self) -> RealNode:
        """Raises RealNodeUnavailable (one line: why) when this host cannot run it."""
        if self.node is None:
            real_node_mod.require_host_support()
            control_plane = self.kube()
            assert self.network is not None, "needs_real_node was not set before kube()"
            builder = ImageBuilder(REPO_ROOT, self._toolchain())
            self.node = RealNode(
                control_plane,
                self.network,
                builder.build(),
                builder,
                self._toolchain(),
                run_dir=self._dir("node"),
            ).start()
            if self.needs_kafka:
                # Pods find the broker as the examples say: kafka.kafka.svc:9092.
                real_node_mod.expose_host_service(
                    control_plane,
                    "kafka",
                    "kafka",
                    self.network.gateway,
                    [("kafka", 9092, self.kafka().port, "TCP")],
                )
        return self.node

    def logs(self) -> Iterator[tuple[str, str]]:
        if self.control_plane is not None and self.control_plane.processes:
            yield "control plane logs", self.control_plane.dump_logs()
        if self.node is not None and self.node.processes:
            yield "real node logs", self.node.dump_logs()
        if self.broker is not None and self.broker.process is not None:
            yield "kafka log", self.broker.dump_logs()

    def stop(self) -> None:
        """Stop what started, dependents first; safe to call more than once."""
        if self.node is not None:
            self.node.stop()
        if self.control_plane is not None:
            self.control_plane.stop()
        if self._kafka_future is not None:
            # A broker still starting must finish before it can be stopped.
            with contextlib.suppress(Exception):
                self._kafka_future.result()
        if self.broker is not None:
            self.broker.stop()
        if self.network is not None:
            self.network.delete()
            self.network = None
        self._pool.shutdown()
