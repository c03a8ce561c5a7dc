"""The operator's shared Kafka admin client against a real broker that goes away."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tailor_localenv.kafka import KafkaBroker
from tailor_operator.adapters.kafka_admin import KafkaAdmins, KafkaUnavailable


@pytest.mark.kafka
def test_one_pipelines_timeout_does_not_tear_down_the_others_requests(toolchain):
    """Six pipelines share one client; when the broker is gone each must learn that Kafka
    is unavailable, not get `_DESTROY` because another's timeout replaced the client."""
    broker = KafkaBroker().start()
    try:
        admin = KafkaAdmins().get({"bootstrap.servers": broker.bootstrap_servers})
        assert admin.describe(["nothing-here"]) == {}  # connected
        broker.halt()

        def describe(n: int) -> str:
            try:
                admin.describe([f"ns.pipeline-{n}.events"])
            except KafkaUnavailable:
                return "unavailable"
            except Exception as exc:
                return f"{type(exc).__name__}: {exc}"
            return "answered"

        with ThreadPoolExecutor(6) as pool:
            outcomes = list(pool.map(describe, range(6)))
        assert outcomes == ["unavailable"] * 6
    finally:
        broker.stop()
