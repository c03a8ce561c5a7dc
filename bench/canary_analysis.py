"""Canary analysis at a high decision rate: does the operator's reader keep up, in bounded
memory, with the default attribution window?

    python bench/canary_analysis.py [--quick] [--rate 5000] [--seconds N]

A producer process (pinned to core 0, beside the broker) writes decisions at a fixed rate,
half from the canary and half from stable, for users drawn from a million, and a click on
one shown item for 5% of them a few seconds later, as the scorers and the apps would. This
process (pinned to core 1) is the operator's side: ``DecisionLogs.tally`` every
``TAILOR_ROLLOUT_CHECK_SECONDS`` (5 s) with its 2 s read budget, exactly as a reconcile
calls it, for the default 5-minute attribution window.

Last stdout line, one JSON object: ``offered_decisions_per_s``, ``read_decisions_per_s``,
``analysis_lag_s_p99`` / ``_max`` (age of the newest decision read, at each check after
the first minute), ``rss_mb`` (peak of this process, which holds nothing but the reader),
``join_entries_max``, ``sample_rate`` (share of users the click-through join kept),
``ctr_canary`` / ``ctr_stable`` (true: 0.05 each), ``checks``, ``seconds``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import sys
import time
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from measure import percentile, rss_mb

from tailor_localenv.kafka import KafkaBroker
from tailor_operator import conditions
from tailor_operator.adapters.decision_log import DecisionLogs
from tailor_pipeline import decisions, events

REPO = Path(__file__).resolve().parents[1]

DECISIONS, EVENTS = "bench.canary.decisions", "bench.canary.events"
ATTRIBUTION_MS = 5 * 60 * 1000  # spec.scorer.rollout.canary.attributionWindow's default
CHECK_SECONDS = 5.0
USERS = 1_000_000
CLICK_RATE = 0.05


def produce(bootstrap: str, rate: int, seconds: float) -> None:
    """Decisions at ``rate`` per second (and their clicks) until ``seconds`` have passed."""
    os.sched_setaffinity(0, {0})
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "acks": "1"})
    rng = random.Random(1)
    pending_clicks: list[tuple[float, bytes, bytes]] = []
    started = time.monotonic()
    sent = 0
    while (elapsed := time.monotonic() - started) < seconds:
        due = int(elapsed * rate)
        now_ms = int(time.time() * 1000)
        while sent < due:
            user = f"user-{rng.randrange(USERS)}"
            items = tuple(decisions.ShownItem(f"item-{rng.randrange(20_000)}") for _ in range(10))
            version = "canary" if sent % 2 else "stable"
            record = decisions.Decision(
                f"r{sent}", user, now_ms, version, items, latency_ms=rng.uniform(1, 4)
            )
            producer.produce(DECISIONS, decisions.encode(record), user.encode())
            if rng.random() < CLICK_RATE:
                click = events.ClickEvent(
                    user, items[rng.randrange(10)].item_id, "click", now_ms + 3000
                )
                pending_clicks.append((time.monotonic() + 3, user.encode(), events.encode(click)))
            sent += 1
        while pending_clicks and pending_clicks[0][0] <= time.monotonic():
            _, key, value = pending_clicks.pop(0)
            producer.produce(EVENTS, value, key)
        producer.poll(0)
        time.sleep(0.002)
    producer.flush(30)


def wait_for_leaders(admin: AdminClient) -> None:
    """New topics answer NOT_LEADER until each partition has one."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        topics = admin.list_topics(timeout=10).topics
        if all(
            t in topics and all(p.leader >= 0 for p in topics[t].partitions.values())
            for t in (DECISIONS, EVENTS)
        ):
            return
        time.sleep(0.2)
    raise RuntimeError("the bench topics got no leaders within 30 s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="90 s instead of 10 min")
    parser.add_argument("--rate", type=int, default=5000, help="decisions per second")
    parser.add_argument("--seconds", type=float, help="how long to produce")
    args = parser.parse_args()
    seconds = args.seconds or (90.0 if args.quick else 600.0)
    os.sched_setaffinity(0, {1})
    with KafkaBroker() as broker:
        bootstrap = broker.bootstrap_servers
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for future in admin.create_topics(
            [NewTopic(t, num_partitions=6, replication_factor=1) for t in (DECISIONS, EVENTS)]
        ).values():
            future.result(timeout=30)
        wait_for_leaders(admin)
        since = conditions.now_rfc3339()
        producer = multiprocessing.get_context("fork").Process(
            target=produce, args=(bootstrap, args.rate, seconds), daemon=True
        )
        producer.start()
        print(f"producing {args.rate} decisions/s for {seconds:.0f}s", file=sys.stderr)
        logs = DecisionLogs()
        pipeline = ("bench", "canary")
        config = {"bootstrap.servers": bootstrap}
        started = time.monotonic()
        lags: list[float] = []
        entries = checks = failed = 0
        tally = None
        while producer.is_alive() or checks == 0:
            check_started = time.monotonic()
            try:
                tally = logs.tally(
                    pipeline,
                    lambda: config,
                    (DECISIONS, EVENTS),
                    since,
                    ATTRIBUTION_MS,
                    frozenset({"click"}),
                )
            except Exception as exc:  # as the operator does: no evidence this time
                print(f"check failed: {exc}", file=sys.stderr)
                failed += 1
                time.sleep(CHECK_SECONDS)
                continue
            checks += 1
            entries = max(entries, tally.pending)
            newest_ms = tally.newest_ms
            lag = time.time() - newest_ms / 1000 if newest_ms else float("inf")
            if time.monotonic() - started > 60:
                lags.append(lag)
            print(
                f"{time.monotonic() - started:6.0f}s  lag {lag:6.2f}s  read"
                f" {sum(a.requests for a in tally.arms.values())}  join {tally.pending}"
                f"  sample {tally.sample_rate:g}  rss {rss_mb(os.getpid())[0]:.0f} MB",
                file=sys.stderr,
            )
            time.sleep(max(0.0, CHECK_SECONDS - (time.monotonic() - check_started)))
        producer.join()
        elapsed = time.monotonic() - started
        assert tally is not None
        canary, stable = tally.arm("canary"), tally.arm("stable")
        read = canary.requests + stable.requests
        logs.close(pipeline)
    result = {
        "benchmark": "canary-analysis",
        "offered_decisions_per_s": args.rate,
        "read_decisions_per_s": round(read / elapsed),
        "analysis_lag_s_p99": round(percentile(lags, 0.99), 2) if lags else None,
        "analysis_lag_s_max": round(max(lags), 2) if lags else None,
        "rss_mb": round(rss_mb(os.getpid())[1]),
        "join_entries_max": entries,
        "sample_rate": tally.sample_rate,
        "ctr_canary": round(canary.ctr, 4),
        "ctr_stable": round(stable.ctr, 4),
        "checks": checks,
        "failed_checks": failed,
        "seconds": round(elapsed),
    }
    print(json.dumps(result, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
