"""The programs' health server stays small whatever clients do."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request

from tailor_pipeline.observability import HealthServer


def get(port: int, path: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
        return answer.status, answer.read()


def test_idle_connections_neither_pile_up_threads_nor_block_probes() -> None:
    server = HealthServer(
        0, lambda: (True, "ok: 3 partitions"), host="127.0.0.1", idle_seconds=1.0
    ).start()
    try:
        before = threading.active_count()
        idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(100)]
        time.sleep(0.5)
        # Once: a thread per idle connection (100 idle -> 110 threads).
        assert threading.active_count() <= before + 16
        time.sleep(1.5)  # past idle_seconds: the server closed the ones it held
        assert get(server.port, "/readyz") == (200, b"ok: 3 partitions\n")
        assert threading.active_count() <= before + 16
        for sock in idle:
            sock.close()
    finally:
        server.stop()
