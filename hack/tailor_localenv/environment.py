"""The local control plane and Kafka broker, started side by side and stopped together."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from tailor_localenv.kafka import KafkaBroker
from tailor_localenv.kube import ControlPlane


@contextlib.contextmanager
def side_by_side(control_plane: ControlPlane, broker: KafkaBroker) -> Iterator[None]:
    """Start both at once (the JVM and the control plane share nothing), stop both on exit.
    The broker is started from a thread that lives until it is stopped: PR_SET_PDEATHSIG
    follows the thread that forked it, not the process."""
    spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spawner")
    try:
        kafka_started = spawner.submit(broker.start)
        control_plane.start()
        kafka_started.result()
        yield
    finally:
        control_plane.stop()
        broker.stop()
        spawner.shutdown()
