"""The scorer benchmark's peer: Feast serving the same user profiles as online features.

Feast (PyPI ``feast``, pinned below) is installed once into a venv of its own in Tailor's
cache (its dependencies are not Tailor's), with uv from the dev environment. The feature
repository holds one feature view, ``user_profile`` (the user's top items by decayed
affinity, as JSON, the time of their last event and their event count), computed from the
same click history the scorer's profiles come from, loaded into Feast's SQLite online store
with ``feast materialize`` (warm before the first request), and served by ``feast serve``
(one worker, pinned to the scorer's core, access log off, no worker recycling). A request
is a lookup of those three features for one user: no ranking.
"""

from __future__ import annotations

import datetime
import json
import subprocess
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from measure import peer_venv

FEAST_VERSION = "0.67.0"
FEATURES = ["user_profile:top_items", "user_profile:last_seen_ms", "user_profile:events"]

_STORE_YAML = """\
project: tailor_peer
registry: data/registry.db
provider: local
online_store:
  type: sqlite
  path: data/online.db
entity_key_serialization_version: 3
"""

_REPO_PY = """\
from datetime import timedelta

from feast import Entity, FeatureView, Field, FileSource
from feast.types import Int64, String
from feast.value_type import ValueType

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)
user_profile = FeatureView(
    name="user_profile",
    entities=[user],
    ttl=timedelta(days=3650),
    schema=[
        Field(name="top_items", dtype=String),
        Field(name="last_seen_ms", dtype=Int64),
        Field(name="events", dtype=Int64),
    ],
    online=True,
    source=FileSource(path="data/profiles.parquet", timestamp_field="event_timestamp"),
)
"""

_TO_PARQUET = """\
import datetime, json, sys
import pandas as pd
rows = [json.loads(line) for line in open(sys.argv[1])]
now = datetime.datetime.now(datetime.timezone.utc)
frame = pd.DataFrame(rows)
frame["event_timestamp"] = now
frame.to_parquet(sys.argv[2])
"""


def feast_venv(cache_root: Path) -> Path:
    """The venv with Feast, installed once; its bin directory."""
    return peer_venv(cache_root, f"feast-{FEAST_VERSION}", [f"feast=={FEAST_VERSION}"])


def write_repo(
    work: Path, bin_dir: Path, profiles: Iterable[tuple[str, dict[str, object]]]
) -> Path:
    """A feature repository with the profiles applied and materialized; its path."""
    repo = work / "feast-repo"
    (repo / "data").mkdir(parents=True, exist_ok=True)
    (repo / "feature_store.yaml").write_text(_STORE_YAML)
    (repo / "profiles.py").write_text(_REPO_PY)
    rows = repo / "profiles.jsonl"
    with rows.open("w") as f:
        for user, features in profiles:
            f.write(json.dumps({"user_id": user, **features}) + "\n")
    python = str(bin_dir / "python")
    subprocess.run(
        [python, "-c", _TO_PARQUET, str(rows), str(repo / "data" / "profiles.parquet")], check=True
    )
    feast = str(bin_dir / "feast")
    subprocess.run([feast, "apply"], cwd=repo, check=True, capture_output=True)
    until = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    subprocess.run(
        [feast, "materialize-incremental", until], cwd=repo, check=True, capture_output=True
    )
    return repo


@contextmanager
def serving(repo: Path, bin_dir: Path, port: int, core: str, log_dir: Path) -> Iterator[str]:
    """``feast serve`` on ``core``; yields the lookup URL once it answers."""
    from tailor_localenv.processes import ManagedProcess, http_get

    server = ManagedProcess(
        "feast-serve",
        [
            "taskset",
            "-c",
            core,
            str(bin_dir / "feast"),
            "serve",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "--no-access-log",
            "-w",
            "1",
            "--max-requests",
            "0",
        ],
        log_dir,
        cwd=repo,
    ).start()
    try:
        server.wait_healthy(
            lambda: http_get(f"http://127.0.0.1:{port}/health")[0] == 200, 120, "serving"
        )
        yield f"http://127.0.0.1:{port}/get-online-features"
    finally:
        server.stop()


def lookup_body(user: str) -> bytes:
    return json.dumps({"features": FEATURES, "entities": {"user_id": [user]}}).encode()
