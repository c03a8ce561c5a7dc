"""Downloading the model over HTTP (a server on loopback): what cannot succeed is not
retried, and a download that fails verification is never used again."""

from __future__ import annotations

import functools
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tailor_pipeline.model import ModelError
from tailor_pipeline.scorer import fetch_and_load
from tailor_pipeline.settings import ModelRef
from tailor_pipeline.train import TrainingSettings, train, write_model
from tests.unit.test_model_and_ranking import FEATURES, T0, session


class Files(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def do_GET(self) -> None:
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """(base URL, the served directory, the paths requested so far)."""
    directory = tmp_path / "served"
    directory.mkdir()
    requests: list[str] = []
    handler = type("Handler", (Files,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(directory))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", directory, requests
    server.shutdown()
    server.server_close()


def test_a_missing_model_fails_at_once_without_retrying(served, tmp_path):
    base, _, requests = served
    ref = ModelRef(name="knn", version="v1", uri=f"{base}/missing.tailor", sha256="0" * 64)
    started = time.monotonic()
    with pytest.raises(ModelError, match="404"):
        fetch_and_load(ref, tmp_path / "cache")
    assert requests == ["/missing.tailor"]
    assert time.monotonic() - started < 2


def test_a_download_that_fails_its_checksum_is_fetched_again_next_time(served, tmp_path):
    base, directory, requests = served
    events = session("u", "a", ["s1", "s2", "s3"], T0)
    digest = write_model(
        tmp_path / "good.tailor",
        train(events, FEATURES.event_weights, TrainingSettings(neighbours=2)),
        "knn",
        "v1",
    )
    # The server has a broken copy first (a truncated upload, say).
    (directory / "m.tailor").write_bytes((tmp_path / "good.tailor").read_bytes()[:100])
    ref = ModelRef(name="knn", version="v1", uri=f"{base}/m.tailor", sha256=digest)
    cache = tmp_path / "cache"
    with pytest.raises(ModelError, match="sha256"):
        fetch_and_load(ref, cache)
    assert list(cache.iterdir()) == []
    # Fixed on the server: the next start downloads it again and serves it.
    (directory / "m.tailor").write_bytes((tmp_path / "good.tailor").read_bytes())
    assert fetch_and_load(ref, cache).version == "v1"
    assert requests == ["/m.tailor", "/m.tailor"]
