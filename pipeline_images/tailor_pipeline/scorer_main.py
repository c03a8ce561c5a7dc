"""``tailor-scorer``: serve decisions until SIGTERM. Exits 3 when the model is refused."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
from functools import partial
from pathlib import Path

from tailor_pipeline import heap, http1, program
from tailor_pipeline.admission import Admission, LoopSelector, loop_factory
from tailor_pipeline.scorer import (
    LIMITS,
    DecisionLog,
    ProfileTable,
    Scorer,
    admission_for,
    make_handler,
)

_log = logging.getLogger("tailor.scorer")


def main(argv: list[str] | None = None) -> int:
    parser = program.argument_parser("tailor-scorer", __doc__)
    parser.add_argument("--http-port", type=int, help="serving port (default: config)")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument(
        "--model-cache",
        type=Path,
        default=Path(os.environ.get("TAILOR_MODEL_CACHE", "/tmp/tailor-models")),
        help="where downloaded models are kept (default $TAILOR_MODEL_CACHE or /tmp/tailor-models)",
    )
    args = parser.parse_args(argv)
    settings = program.start(args, _log, "scorer")
    if settings is None:
        return 2

    kafka = settings.kafka.client_config()
    table = ProfileTable(settings, kafka).start()
    decisions = DecisionLog(settings.topics.decisions, kafka).start()
    scorer = Scorer(settings, table, decisions)
    scorer.load_model(args.model_cache)
    if scorer.model_error:
        # A model that cannot be served will not become servable by waiting: exit, so the
        # pod's status says why and the kubelet retries with backoff (a download that
        # failed for a while succeeds on a later start).
        table.stop()
        decisions.stop()
        return program.give_up(_log, 3, f"model refused: {scorer.model_error}")
    port = args.http_port if args.http_port is not None else settings.scorer_settings().http_port
    # The loop's selector stamps each round, so admission knows how long a request waited.
    selector = LoopSelector()
    try:
        with asyncio.Runner(loop_factory=partial(loop_factory, selector)) as runner:
            runner.run(_serve(scorer, admission_for(scorer, selector), args.host, port))
    finally:
        _log.info("Stopping: flushing the decision log")
        table.stop()
        decisions.stop()
    return 0


async def _serve(scorer: Scorer, admission: Admission, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT, then stop gracefully (http1.Server.stop)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = http1.Server(make_handler(scorer, admission), LIMITS)
    await server.start(host, port)
    settings = scorer.settings
    _log.info("Scorer of %s/%s on :%d", settings.namespace, settings.pipeline, port)
    # The libraries and the model live as long as the process: out of the collector's
    # sight (heap.py). The profiles are bytes, which it never tracks.
    gc.collect()
    heap.settle()
    await stop.wait()
    await server.stop()
    await admission.stop()


if __name__ == "__main__":
    sys.exit(main())
