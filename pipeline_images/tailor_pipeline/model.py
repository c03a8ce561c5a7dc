"""The model artifact: item neighbours, popularity and categories in one memory-mapped file.

Format version 1, little-endian, one file (conventionally ``*.tailor``)::

    offset 0   8 bytes   magic b"TAILORM\\x00"
    offset 8   4 bytes   format version, uint32 (1)
    offset 12  4 bytes   header length H, uint32
    offset 16  H bytes   header, UTF-8 JSON (below)
    then       sections, each starting at a multiple of 64 bytes from the file start

The header::

    {"name": str, "version": str, "created": RFC 3339, "items": n, "neighbours": K,
     "categories": [category names], "training": {free-form: events, half-life ...},
     "sections": {name: {"offset": int, "dtype": "<f4", "shape": [..]}}}

Sections:

    ids_offsets   <i8 [n + 1]   item i's UTF-8 id is ids_blob[ids_offsets[i]:ids_offsets[i+1]]
    ids_blob      |u1 [bytes]
    popularity    <f4 [n]       decayed interaction weight of each item at training time
    category      <i4 [n]       index into header "categories", -1 if unknown
    neighbours    <i4 [n, K]    the K most similar items, best first, -1 padded
    weights       <f4 [n, K]    their similarity (shrunk cosine), 0 for padding

A reader checks the sha256 of the whole file against the expected digest before it maps it,
then the magic, version, header and that every section lies inside the file: a truncated
or foreign file is refused with the reason, never half-loaded.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tailor_pipeline.features import item_hash

MAGIC = b"TAILORM\x00"
FORMAT_VERSION = 1
_ALIGN = 64
_PREAMBLE = struct.Struct("<8sII")
_SECTIONS = {
    "ids_offsets": "<i8",
    "ids_blob": "|u1",
    "popularity": "<f4",
    "category": "<i4",
    "neighbours": "<i4",
    "weights": "<f4",
}


class ModelError(ValueError):
    """The artifact cannot be used; the message says why."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Model:
    name: str
    version: str
    header: dict[str, Any]
    item_ids: list[str]
    index: dict[str, int]
    popularity: npt.NDArray[np.float32]
    category: npt.NDArray[np.int32]
    neighbours: npt.NDArray[np.int32]
    weights: npt.NDArray[np.float32]
    categories: list[str]
    # Item indices by popularity, best first (the cold-start fallback), at most 1000.
    popular_order: npt.NDArray[np.intp]
    # features.item_hash of each item (the key a profile's seen set holds), ascending, and
    # the row of each.
    sorted_hashes: npt.NDArray[np.uint32]
    hash_rows: npt.NDArray[np.intp]
    # How many neighbours each row has before its first -1 (ranking reads no further).
    row_length: npt.NDArray[np.intp]
    # The codes of each category name (``category`` values), for per-request lookups.
    category_codes: dict[str, tuple[int, ...]]

    @property
    def items(self) -> int:
        return len(self.item_ids)

    def rows_of(self, hashes: npt.NDArray[np.uint32]) -> list[int]:
        """The rows of the items with these item_hash keys (all of them, where two items
        share a key)."""
        if not len(hashes):
            return []
        first = np.searchsorted(self.sorted_hashes, hashes, "left")
        last = np.searchsorted(self.sorted_hashes, hashes, "right")
        rows = [int(r) for r in self.hash_rows[first[last > first]]]
        for a, b in zip(first, last, strict=True):
            rows.extend(int(r) for r in self.hash_rows[a + 1 : b])  # rare: a shared key
        return rows

    def category_of(self, item: int) -> str | None:
        c = int(self.category[item])
        return self.categories[c] if c >= 0 else None


def write(
    path: Path,
    *,
    name: str,
    version: str,
    item_ids: list[str],
    popularity: npt.NDArray[np.float32],
    category: npt.NDArray[np.int32],
    categories: list[str],
    neighbours: npt.NDArray[np.int32],
    weights: npt.NDArray[np.float32],
    training: dict[str, Any] | None = None,
) -> str:
    """Write an artifact atomically (temp file + rename); returns its sha256."""
    blob = b"".join(i.encode() for i in item_ids)
    offsets = np.zeros(len(item_ids) + 1, dtype="<i8")
    np.cumsum([len(i.encode()) for i in item_ids], out=offsets[1:])
    arrays: dict[str, npt.NDArray[Any]] = {
        "ids_offsets": offsets,
        "ids_blob": np.frombuffer(blob, dtype="|u1"),
        "popularity": np.asarray(popularity, dtype="<f4"),
        "category": np.asarray(category, dtype="<i4"),
        "neighbours": np.asarray(neighbours, dtype="<i4"),
        "weights": np.asarray(weights, dtype="<f4"),
    }
    header: dict[str, Any] = {
        "name": name,
        "version": version,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "items": len(item_ids),
        "neighbours": int(arrays["neighbours"].shape[1]) if arrays["neighbours"].ndim == 2 else 0,
        "categories": categories,
        "training": training or {},
        "sections": {},
    }
    # Offsets depend on the header's length, which depends on the offsets: lay out with
    # room to spare, then pad the header to the room it was given.
    room = len(json.dumps(header)) + 120 * len(arrays) + 256
    position = _aligned(_PREAMBLE.size + room)
    for key, array in arrays.items():
        header["sections"][key] = {
            "offset": position,
            "dtype": _SECTIONS[key],
            "shape": list(array.shape),
        }
        position = _aligned(position + array.nbytes)
    encoded = json.dumps(header).encode()
    assert len(encoded) <= room, "header outgrew its room"
    encoded = encoded.ljust(room)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("wb") as f:
        f.write(_PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(encoded)))
        f.write(encoded)
        for key, array in arrays.items():
            f.seek(header["sections"][key]["offset"])
            f.write(np.ascontiguousarray(array).tobytes())
        f.truncate(position)
    tmp.replace(path)
    return sha256_of(path)


def _aligned(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def load(path: Path, sha256: str | None) -> Model:
    """Verify and memory-map an artifact. ``sha256=None`` skips the digest check (tools)."""
    if not path.is_file():
        raise ModelError(f"{path}: no such file")
    if sha256 is not None:
        actual = sha256_of(path)
        if actual != sha256.lower():
            raise ModelError(f"{path}: sha256 is {actual}, expected {sha256}")
    size = path.stat().st_size
    with path.open("rb") as f:
        preamble = f.read(_PREAMBLE.size)
        if len(preamble) < _PREAMBLE.size:
            raise ModelError(f"{path}: truncated ({size} bytes), not a Tailor model")
        magic, version, header_length = _PREAMBLE.unpack(preamble)
        if magic != MAGIC:
            raise ModelError(f"{path}: not a Tailor model (magic {magic!r})")
        if version != FORMAT_VERSION:
            raise ModelError(
                f"{path}: model format version {version}, this scorer reads {FORMAT_VERSION}"
            )
        raw_header = f.read(header_length)
    try:
        header = json.loads(raw_header)
        sections = header["sections"]
    except (ValueError, KeyError) as exc:
        raise ModelError(f"{path}: unreadable header: {exc}") from exc
    mapped = np.memmap(path, dtype="|u1", mode="r")
    arrays: dict[str, npt.NDArray[Any]] = {}
    for key, dtype in _SECTIONS.items():
        section = sections.get(key)
        if section is None:
            raise ModelError(f"{path}: section {key} is missing")
        count = int(np.prod(section["shape"])) if section["shape"] else 0
        end = section["offset"] + count * np.dtype(dtype).itemsize
        if end > size:
            raise ModelError(f"{path}: truncated: section {key} ends at {end}, file has {size}")
        # Plain ndarray views of the mapping: indexing a memmap goes through Python code.
        section_view = mapped[section["offset"] : end].view(dtype).reshape(section["shape"])
        arrays[key] = np.asarray(section_view)
    offsets, blob = arrays["ids_offsets"], bytes(arrays["ids_blob"])
    ids = [blob[offsets[i] : offsets[i + 1]].decode() for i in range(len(offsets) - 1)]
    hashes = np.fromiter((item_hash(i) for i in ids), dtype=np.uint32, count=len(ids))
    hash_rows = np.argsort(hashes, kind="stable")
    neighbours = arrays["neighbours"]
    _check_ranges(path, arrays, len(ids), len(header["categories"]))
    padded = neighbours < 0
    # argmax finds the first -1; a row without one is full.
    row_length = np.where(padded.any(axis=1), padded.argmax(axis=1), neighbours.shape[1])
    categories = list(header["categories"])
    codes: dict[str, tuple[int, ...]] = {}
    for code, category in enumerate(categories):
        codes[category] = (*codes.get(category, ()), code)
    return Model(
        name=header["name"],
        version=header["version"],
        header=header,
        item_ids=ids,
        index={item: i for i, item in enumerate(ids)},
        popularity=arrays["popularity"],
        category=arrays["category"],
        neighbours=neighbours,
        weights=arrays["weights"],
        categories=categories,
        popular_order=np.argsort(-arrays["popularity"], kind="stable")[:1000],
        sorted_hashes=hashes[hash_rows],
        hash_rows=hash_rows,
        row_length=row_length,
        category_codes=codes,
    )


def _check_ranges(
    path: Path, arrays: dict[str, npt.NDArray[Any]], items: int, categories: int
) -> None:
    """Every row and code the ranking will index by is in range. The digest proves the file
    is the one the pipeline names, not that its writer was right; ranking reads these
    arrays in compiled code (voting.py) that does not check bounds, so a bad index must be
    refused here rather than read as some other memory."""
    neighbours, weights, category = arrays["neighbours"], arrays["weights"], arrays["category"]
    if neighbours.ndim != 2 or neighbours.shape[0] != items or weights.shape != neighbours.shape:
        raise ModelError(
            f"{path}: neighbours {neighbours.shape} and weights {weights.shape} must both be"
            f" [{items}, K]"
        )
    if len(arrays["popularity"]) != items or len(category) != items:
        raise ModelError(f"{path}: popularity and category must have one value per item")
    if neighbours.size and (neighbours.min() < -1 or neighbours.max() >= items):
        raise ModelError(f"{path}: a neighbour is outside the {items} items (or -1 padding)")
    if category.size and (category.min() < -1 or category.max() >= categories):
        raise ModelError(f"{path}: a category code is outside the {categories} categories")
