"""The build cache outside the checkout: versioned entries, integrity stamps and a lock."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

STAMP = ".tailor-stamp.json"


def cache_root() -> Path:
    """``$TAILOR_CACHE``, else ``$XDG_CACHE_HOME/tailor``, else ``~/.cache/tailor``."""
    explicit = os.environ.get("TAILOR_CACHE")
    if explicit:
        return Path(explicit).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return (base / "tailor").resolve()


def recipe_key(recipe: bytes) -> str:
    return hashlib.sha256(recipe).hexdigest()[:12]


def entry_dir(kind: str, name: str, version: str, recipe: bytes) -> Path:
    """Where one build of one component lives, e.g. ``bin/kubernetes-1.35.4-0123abcd4567``."""
    return cache_root() / kind / f"{name}-{version}-{recipe_key(recipe)}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_stamp(directory: Path, files: list[Path], extra: dict[str, object]) -> None:
    """Record the checksum of every file; written last, so its presence means "complete"."""
    stamp = {
        "files": {str(f.relative_to(directory)): file_sha256(f) for f in sorted(files)},
        **extra,
    }
    tmp = directory / (STAMP + ".tmp")
    tmp.write_text(json.dumps(stamp, indent=2, sort_keys=True))
    os.replace(tmp, directory / STAMP)


def verify_entry(directory: Path) -> str | None:
    """Why a cache entry cannot be trusted, or None when every file matches its stamp."""
    stamp_path = directory / STAMP
    if not directory.is_dir():
        return "not built yet"
    if not stamp_path.is_file():
        return "no completion stamp (an interrupted build?)"
    try:
        files = json.loads(stamp_path.read_text())["files"]
    except (ValueError, KeyError) as exc:
        return f"unreadable stamp: {exc}"
    if not files:
        return "stamp lists no files"
    for relative, expected in files.items():
        path = directory / relative
        if not path.is_file():
            return f"{relative} is missing"
        if file_sha256(path) != expected:
            return f"{relative} does not match its recorded sha256 (corrupt or half-written)"
    return None


def replace_entry(staging: Path, final: Path) -> None:
    """Move a finished build into place, dropping whatever stood there."""
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)


def prune_siblings(final: Path) -> list[Path]:
    """Remove other builds of the same component: older versions, recipes, interrupted builds."""
    component = final.name.rsplit("-", 2)[0]
    removed = []
    for sibling in final.parent.iterdir():
        if sibling != final and sibling.is_dir() and sibling.name.startswith(component + "-"):
            shutil.rmtree(sibling, ignore_errors=True)
            removed.append(sibling)
    return removed


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """Serialise bootstraps on one machine (the demo and a test run may start together)."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
