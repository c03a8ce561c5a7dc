"""The bootstrap cache trusts an entry only when every file matches the stamp written last."""

from pathlib import Path

import pytest

from tailor_localenv import cache


@pytest.fixture
def entry(tmp_path: Path) -> Path:
    directory = tmp_path / "bin" / "etcd-3.6.16-0123456789ab"
    directory.mkdir(parents=True)
    binary = directory / "etcd"
    binary.write_bytes(b"\x7fELF" + b"x" * 4096)
    cache.write_stamp(directory, [binary], {"version": "3.6.16"})
    return directory


def test_a_complete_entry_verifies(entry: Path) -> None:
    assert cache.verify_entry(entry) is None


def test_an_entry_without_stamp_is_an_interrupted_build(entry: Path) -> None:
    (entry / cache.STAMP).unlink()
    assert cache.verify_entry(entry) == "no completion stamp (an interrupted build?)"


def test_a_truncated_binary_is_rejected(entry: Path) -> None:
    binary = entry / "etcd"
    binary.write_bytes(binary.read_bytes()[:100])
    reason = cache.verify_entry(entry)
    assert reason is not None
    assert "etcd does not match its recorded sha256" in reason


def test_a_missing_file_is_rejected(entry: Path) -> None:
    (entry / "etcd").unlink()
    assert cache.verify_entry(entry) == "etcd is missing"


def test_an_unreadable_stamp_is_rejected(entry: Path) -> None:
    (entry / cache.STAMP).write_text("{not json")
    reason = cache.verify_entry(entry)
    assert reason is not None
    assert reason.startswith("unreadable stamp")


def test_a_missing_directory_is_not_built_yet(tmp_path: Path) -> None:
    assert cache.verify_entry(tmp_path / "nope") == "not built yet"


def test_prune_keeps_only_the_new_build_of_that_component(tmp_path: Path) -> None:
    bins = tmp_path / "bin"
    keep = bins / "kwok-0.7.0-aaaaaaaaaaaa"
    old = bins / "kwok-0.6.1-bbbbbbbbbbbb"
    partial = bins / "kwok-0.7.0-aaaaaaaaaaaa.partial-1234"
    other = bins / "kubernetes-1.35.4-cccccccccccc"
    for d in (keep, old, partial, other):
        d.mkdir(parents=True)
    removed = cache.prune_siblings(keep)
    assert sorted(removed) == sorted([old, partial])
    assert sorted(p.name for p in bins.iterdir()) == sorted([keep.name, other.name])


def test_cache_root_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TAILOR_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache.cache_root() == (tmp_path / "home" / ".cache" / "tailor").resolve()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_root() == (tmp_path / "xdg" / "tailor").resolve()
    monkeypatch.setenv("TAILOR_CACHE", str(tmp_path / "explicit"))
    assert cache.cache_root() == (tmp_path / "explicit").resolve()


def test_the_entry_name_changes_with_the_recipe(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("TAILOR_CACHE", str(tmp_path))
    first = cache.entry_dir("bin", "helm", "3.20.2", b"go.sum v1")
    second = cache.entry_dir("bin", "helm", "3.20.2", b"go.sum v2")
    assert first.parent == second.parent == tmp_path / "bin"
    assert first != second
    assert first.name.startswith("helm-3.20.2-")
