"""Scorer benchmark: decision latency and throughput over HTTP, on real Kafka.

    python bench/scorer.py [--quick]

Generates a click history (tailor_pipeline.generator), trains the model, loads the history
into the events topic, runs a stream worker and a scorer process, and once the scorer is
ready fires requests for random users (most known, some cold) from concurrent keep-alive
clients. Prints one JSON object: client-side p50/p99 latency, requests/s, the scorer's own
ranking time (mean), its RSS, and how long it took to become ready.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from measure import histogram, percentile, rss_mb

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tailor_localenv.kafka import KafkaBroker  # noqa: E402
from tailor_localenv.processes import ManagedProcess, free_port, http_get  # noqa: E402
from tailor_pipeline import events  # noqa: E402
from tailor_pipeline.generator import GeneratorSettings, stream  # noqa: E402
from tailor_pipeline.train import train, write_model  # noqa: E402
from tests.pipeline_env import Workers, create_pipeline, group_lag, produce_all  # noqa: E402


async def fire(port: int, users: list[str], n: int, concurrency: int) -> list[float]:
    latencies: list[float] = []
    url = f"http://127.0.0.1:{port}/v1/decide"
    rng = random.Random(1)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client(count: int) -> None:
            for _ in range(count):
                user = rng.choice(users) if rng.random() < 0.9 else f"cold-{rng.random()}"
                started = time.perf_counter()
                async with session.post(url, json={"user_id": user, "k": 10}) as response:
                    await response.read()
                    assert response.status == 200, response.status
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(client(n // concurrency) for _ in range(concurrency)))
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    generator = GeneratorSettings(
        seed=9,
        users=2000 if args.quick else 20_000,
        items=3000 if args.quick else 20_000,
        days=1,
        start_ms=int(time.time() * 1000) - 86_400_000,
    )
    history = list(stream(generator))
    work = Path(tempfile.mkdtemp(prefix="tailor-bench-scorer-"))
    digest = write_model(work / "m.tailor", train(history), "item-knn", "bench")
    model = {
        "name": "item-knn",
        "version": "bench",
        "uri": f"file://{work}/m.tailor",
        "sha256": digest,
    }
    n = 5000 if args.quick else 30_000
    result: dict[str, Any] = {
        "benchmark": "scorer",
        "users": generator.users,
        "items": generator.items,
        "history_events": len(history),
    }
    with KafkaBroker() as broker:
        settings, config = create_pipeline(
            broker.bootstrap_servers, work, partitions=4, spec={"scorer": {"model": model}}
        )
        produce_all(
            broker.bootstrap_servers,
            settings.topics.events,
            ((e.user_id, events.encode(e)) for e in history),
        )
        workers = Workers(config, work)
        port = free_port()
        scorer = None
        try:
            workers.start("w0")
            while group_lag(
                broker.bootstrap_servers, settings.worker.group_id, settings.topics.events
            ):
                time.sleep(0.5)
            started = time.monotonic()
            scorer = ManagedProcess(
                "scorer",
                [
                    sys.executable,
                    "-m",
                    "tailor_pipeline.scorer_main",
                    f"--config={config}",
                    f"--http-port={port}",
                ],
                work,
            ).start()
            scorer.wait_healthy(
                lambda: http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200, 120, "ready"
            )
            result["scorer_ready_s"] = round(time.monotonic() - started, 2)
            users = sorted({e.user_id for e in history})
            asyncio.run(fire(port, users, 500, 4))  # warm-up
            for concurrency in (1, 8):
                tick = time.monotonic()
                latencies = asyncio.run(fire(port, users, n, concurrency))
                elapsed = time.monotonic() - tick
                result[f"concurrency_{concurrency}"] = {
                    "requests": len(latencies),
                    "p50_ms": round(1000 * percentile(latencies, 0.5), 2),
                    "p99_ms": round(1000 * percentile(latencies, 0.99), 2),
                    "requests_per_s": round(len(latencies) / elapsed),
                }
            _, metrics = http_get(f"http://127.0.0.1:{port}/metrics")
            count, total, _ = histogram(metrics.decode(), "tailor_scorer_decision_seconds")
            result["ranking_mean_ms"] = round(1000 * total / max(count, 1), 3)
            assert scorer.pid is not None
            result["scorer_rss_mb"] = round(rss_mb(scorer.pid)[0], 1)
        finally:
            if scorer:
                scorer.stop()
            workers.stop_all()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
