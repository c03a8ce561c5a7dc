"""The stream-worker benchmark's peer: the same fold written as a Quix Streams application.

Quix Streams (PyPI ``quixstreams``, pinned below) is installed once into a venv of its own
in Tailor's cache (its dependencies are not Tailor's), with uv from the dev environment.
The application is what a Quix user would write for Tailor's job: read the events topic
with exactly-once processing, keep each user's profile in Quix's state (RocksDB, with its
changelog topic; Quix keeps state as JSON, so the profile as plain lists and maps), fold
every event into it with Tailor's own decode and ``update_profile`` (same decay, same caps)
and write the profile in Tailor's wire format to a compacted topic.
Tailor's worker also keeps trending and popularity per partition; the peer does not, so
the comparison favours the peer.

Run as a program inside that venv (``python quix_peer.py --help``); the benchmark starts
it pinned to a core and stops it once every offset is committed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

QUIX_VERSION = "3.28.1"
# Tailor's decode and fold run inside the peer's venv: they need msgspec and pydantic,
# which Quix Streams brings itself.
_REQUIREMENTS = [f"quixstreams=={QUIX_VERSION}", "msgspec==0.23.0"]
PIPELINE_IMAGES = Path(__file__).resolve().parents[1] / "pipeline_images"


def quix_venv(cache_root: Path) -> Path:
    """The venv with Quix Streams, installed once; its bin directory."""
    from measure import peer_venv  # the benchmark's side only

    return peer_venv(cache_root, f"quixstreams-{QUIX_VERSION}", _REQUIREMENTS)


def command(
    bin_dir: Path,
    config: Path,
    group: str,
    output: str,
    partitions: int,
    state_dir: Path,
    commit_interval_s: float,
) -> list[str]:
    """The peer's command line (PYTHONPATH must hold PIPELINE_IMAGES)."""
    return [
        str(bin_dir / "python"),
        # Not bench/ on sys.path: bench/operator.py would shadow the standard library's.
        "-P",
        __file__,
        f"--config={config}",
        f"--group={group}",
        f"--output={output}",
        f"--partitions={partitions}",
        f"--state-dir={state_dir}",
        f"--commit-interval={commit_interval_s}",
    ]


def main() -> int:
    import msgspec
    from quixstreams import Application, State
    from quixstreams.models.topics import TopicConfig

    from tailor_pipeline import events, profile_codec
    from tailor_pipeline.features import Profile, update_profile
    from tailor_pipeline.settings import PipelineSettings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="the pipeline's settings")
    parser.add_argument("--group", required=True, help="consumer group")
    parser.add_argument("--output", required=True, help="compacted topic for the profiles")
    parser.add_argument("--partitions", type=int, required=True, help="of the output topic")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--commit-interval", type=float, default=5.0)
    args = parser.parse_args()
    settings = PipelineSettings.model_validate_json(args.config.read_text())
    features = settings.features

    app = Application(
        broker_address=settings.kafka.bootstrap_servers,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once",
        commit_interval=args.commit_interval,
        state_dir=args.state_dir,
        loglevel="WARNING",
    )
    source = app.topic(settings.topics.events, key_deserializer="str", value_deserializer="bytes")
    sink = app.topic(
        args.output,
        key_serializer="str",
        value_serializer="bytes",
        config=TopicConfig(
            num_partitions=args.partitions,
            replication_factor=1,
            extra_config={"cleanup.policy": "compact"},
        ),
    )

    def fold(value: bytes, state: State) -> bytes | None:
        event = events.decode(value, features.event_weights, time.time_ns() // 1_000_000)
        if isinstance(event, events.Rejected):
            return None
        # Quix state values are JSON: the profile as plain lists and maps.
        stored = state.get("profile")
        profile = Profile() if stored is None else msgspec.convert(stored, Profile)
        update_profile(profile, event, features)
        state.set("profile", msgspec.to_builtins(profile))
        return profile_codec.encode_profile(profile)

    frame = app.dataframe(source).apply(fold, stateful=True).filter(lambda v: v is not None)
    frame.to_topic(sink)
    app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
