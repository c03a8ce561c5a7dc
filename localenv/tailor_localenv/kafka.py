"""A real single-node Kafka (KRaft, broker and controller in one JVM).

Clients connect at ``address``: 127.0.0.1, or the real node's bridge address so that pods
reach the broker too (the controller listener stays on loopback).
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tailor_localenv.bootstrap import Toolchain, locate
from tailor_localenv.processes import ManagedProcess, StartError, free_port
from tailor_localenv.progress import duration, say

START_TIMEOUT = 120.0
# Sized for a shared 2-core, 24 GiB machine that also runs the control plane and the
# pipeline programs: enough for tests and the demo, far below what production needs.
DEFAULT_HEAP = "-Xms256m -Xmx1g"

_LOG4J = """\
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.org.apache.kafka.controller=INFO
"""


def _cluster_id() -> str:
    # Kafka's Uuid text form: 16 random bytes, URL-safe base64 without padding. StorageTool's
    # random-uuid also avoids a leading '-', which a command line would read as an option.
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


@dataclass
class KafkaBroker:
    """One Kafka node with transactions enabled and every replication factor at 1."""

    toolchain: Toolchain | None = None
    run_dir: Path | None = None
    keep_run_dir: bool = False
    heap: str = DEFAULT_HEAP
    address: str = "127.0.0.1"
    # Extra server.properties lines, e.g. {"auto.create.topics.enable": "true"}.
    overrides: dict[str, str] = field(default_factory=dict)
    port: int = 0
    process: ManagedProcess | None = None
    _owns_run_dir: bool = False
    _command: list[str] = field(default_factory=list)

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.address}:{self.port}"

    def properties(self, controller_port: int, data_dir: Path) -> dict[str, str]:
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
            "listeners": (
                f"PLAINTEXT://{self.bootstrap_servers},CONTROLLER://127.0.0.1:{controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://{self.bootstrap_servers}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(data_dir),
            # Topics come from the operator, as in production; a typo must not create one.
            "auto.create.topics.enable": "false",
            "num.partitions": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            # Internal topics are created on first use; few partitions make that fast.
            "offsets.topic.num.partitions": "3",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "3",
            "group.initial.rebalance.delay.ms": "0",
            "num.network.threads": "2",
            "num.io.threads": "4",
            "log.cleaner.threads": "1",
            # Compacted topics (profiles) get cleaned within seconds in tests, not hours.
            "log.cleaner.backoff.ms": "1000",
            "log.retention.check.interval.ms": "10000",
        }
        props.update(self.overrides)
        return props

    def start(self) -> KafkaBroker:
        started = time.monotonic()
        self.toolchain = self.toolchain or locate()
        if self.run_dir is None:
            self.run_dir = Path(tempfile.mkdtemp(prefix="tailor-kafka-"))
            self._owns_run_dir = True
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        controller_port = free_port()
        data_dir = self.run_dir / "data"
        config = self.run_dir / "server.properties"
        config.write_text(
            "".join(f"{k}={v}\n" for k, v in self.properties(controller_port, data_dir).items())
        )
        log4j = self.run_dir / "log4j.properties"
        log4j.write_text(_LOG4J)
        java = shutil.which("java")
        if java is None:
            raise StartError(
                "java not found: install a JDK 17+ (apt-get install openjdk-17-jre-headless)"
            )
        classpath = f"{self.toolchain.kafka_libs}/*"
        jvm = [
            *self.heap.split(),
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{log4j}",
        ]
        formatted = subprocess.run(
            [
                java,
                *jvm,
                "-cp",
                classpath,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                _cluster_id(),
                "-c",
                str(config),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if formatted.returncode != 0:
            raise StartError(
                f"kafka storage format failed (exit {formatted.returncode}):\n"
                f"{formatted.stdout[-2000:]}{formatted.stderr[-2000:]}"
            )
        self._command = [java, *jvm, "-cp", classpath, "kafka.Kafka", str(config)]
        self._launch(started)
        return self

    def _launch(self, started: float) -> None:
        assert self.run_dir is not None
        self.process = ManagedProcess("kafka", self._command, self.run_dir / "logs").start()
        try:
            took = self.process.wait_healthy(
                self._serves_metadata, START_TIMEOUT, "serving metadata"
            )
        except BaseException:
            self.stop()
            raise
        say(
            f"kafka: broker ready on {self.bootstrap_servers} ({duration(took)}; "
            f"total {duration(time.monotonic() - started)})"
        )

    def halt(self) -> None:
        """Stop the broker but keep its port, config and data, for restart()."""
        if self.process is not None:
            self.process.stop(grace=20.0)
            self.process = None

    def restart(self) -> KafkaBroker:
        """Start a halted broker again on the same address with the same data."""
        if not self._command:
            raise StartError("restart() needs a broker that was started before")
        self._launch(time.monotonic())
        return self

    def _serves_metadata(self) -> bool:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 0})
        metadata = admin.list_topics(timeout=2)
        return bool(metadata.brokers)

    def stop(self) -> None:
        # A controlled shutdown of a single node is quick; halt() gives it time before SIGKILL.
        self.halt()
        if self._owns_run_dir and not self.keep_run_dir and self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def dump_logs(self, lines: int = 60) -> str:
        if self.process is None:
            return "(kafka not running)"
        return f"----- kafka ({self.process.log_path}) -----\n{self.process.log_tail(lines)}"
