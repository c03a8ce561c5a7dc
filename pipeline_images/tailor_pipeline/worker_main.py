"""``tailor-stream-worker``: run one stream worker until SIGTERM."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
from types import FrameType

from tailor_pipeline import program
from tailor_pipeline.observability import HealthServer
from tailor_pipeline.worker import StreamWorker, WorkerFailed

_log = logging.getLogger("tailor.worker")


def main(argv: list[str] | None = None) -> int:
    parser = program.argument_parser("tailor-stream-worker", __doc__)
    parser.add_argument(
        "--instance-id",
        default=os.environ.get("POD_NAME") or socket.gethostname(),
        help="this worker's identity in logs and its transactional.id"
        " (default $POD_NAME, else the host name)",
    )
    parser.add_argument("--http-port", type=int, help="health and metrics port (default: config)")
    args = parser.parse_args(argv)
    settings = program.start(args, _log, "worker")
    if settings is None:
        return 2

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        _log.info("Received %s: draining", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    worker = StreamWorker(settings, args.instance_id)
    port = args.http_port if args.http_port is not None else settings.worker_settings().http_port
    health = HealthServer(port, ready=worker.ready, alive=worker.alive).start()
    _log.info(
        "Stream worker %s of %s/%s: %s -> %s, health on :%d",
        args.instance_id,
        settings.namespace,
        settings.pipeline,
        settings.topics.events,
        settings.topics.profiles,
        health.port,
    )
    try:
        worker.run(stop.is_set)
    except WorkerFailed as exc:
        _log.error("Stopping: %s", exc)
        return 1
    finally:
        health.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
