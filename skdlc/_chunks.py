"""Resumable, chunked scoring: per-variant features on disk, scores in two streaming passes.

With ``memory`` set, the scorer no longer holds every sample's features in memory.
The rows are cut into chunks (``chunk_size`` rows, a multiple of ``batch_size``) and the
features of each chunk under each masked variant are written, atomically, as one
``.npy`` file under the cache::

    <memory>/joblib/skdlc_chunks/<feature key>/r0.300000_0000004096_0000008192_<checksum>.npy

The checksum (blake2b of the file's bytes) is verified when a chunk is read: a chunk
that was damaged or altered is computed again, with a one-line note, never used.
Scoring then reads the method's two phases back from those files, one chunk at a
time:

1. per-class feature sums and counts of every variant -> class prototypes;
2. each chunk's per-class losses against the prototypes.

So peak memory is one chunk of features plus the (N, n_classes) scores, whatever N
is, and a run that is killed midway resumes where it stopped: chunks whose files exist
are never computed again. The method itself (prototypes, losses) is :mod:`skdlc._driver`'s; this module is one
of its feature sources, beside the in-memory engines and Ray.

The feature key is a content fingerprint of everything that decides the features and
nothing else: the backbone's tensors and preprocessing, the data (each image file's
bytes, not its name or timestamps), the masking mode, the
batching (and whether fit or transform asked). Labels, logits, temperature or
prototypes do not enter it, so a grid search over those parameters re-reads the
features instead of recomputing them; a
changed backbone, data or masking mode is a different key and never reads a stale file.
Within a key, each file is named by its ratio and row range.

:class:`PathManifest` streams a text file of image paths (one per line, optionally
``path<TAB>label``) as a dataset without loading the paths into memory, for data sets
that do not fit.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import _cache
from ._data import Batches
from ._io import atomic_write

__all__ = [
    "ChunkDamaged",
    "ChunkStore",
    "PathManifest",
    "chunk_store",
    "chunk_ranges",
    "ChunkedSource",
    "feature_key",
]

CHUNK_DIR = "skdlc_chunks"
_KEY_VERSION = "chunks-2"  # bump when the features' meaning changes


# --------------------------------------------------------------------------- store
class ChunkDamaged(Exception):
    """A stored chunk that does not match its checksum (or is not a chunk at all)."""


class ChunkStore:
    """One folder of feature chunks for one feature key.

    A file ``r{ratio}_{start}_{stop}_{digest}.npy`` holds the float32 features
    (stop - start, D) of rows ``start:stop`` under the variant masked at ``ratio``;
    ``digest`` is the blake2b of the file's bytes, checked when the file is read
    (:meth:`load`), so a damaged or altered chunk is never used. Files are written to
    a temporary name and renamed, so a killed run leaves either a whole file or none.
    """

    def __init__(self, root: str | os.PathLike, key: str):
        self.dir = Path(root) / key[:40]
        self.key = key
        self._index: dict | None = None
        self._verified: dict = {}  # path -> (size, mtime_ns) checked in this process

    @staticmethod
    def _stem(ratio: float, start: int, stop: int) -> str:
        return f"r{float(ratio):.6f}_{start:010d}_{stop:010d}"

    def _files(self) -> dict:
        """stem -> path of every stored chunk (listed once, then kept up to date)."""
        if self._index is None:
            self._index = {}
            for p in self.files():
                stem, _, digest = p.stem.rpartition("_")
                if len(digest) == 2 * _DIGEST_BYTES and stem:
                    self._index[stem] = p
        return self._index

    def path(self, ratio: float, start: int, stop: int) -> Path | None:
        """The stored file of this chunk, or None."""
        return self._files().get(self._stem(ratio, start, stop))

    def has(self, ratio: float, start: int, stop: int) -> bool:
        """Whether a chunk is stored (its checksum is verified when it is read)."""
        return self.path(ratio, start, stop) is not None

    def save(self, ratio: float, start: int, stop: int, features: np.ndarray) -> None:
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(features, dtype=np.float32))
        data = buf.getvalue()
        stem = self._stem(ratio, start, stop)
        path = self.dir / f"{stem}_{_checksum(data)}.npy"
        old = self._files().get(stem)
        with atomic_write(path, "wb") as f:
            f.write(data)
        if old is not None and old != path:
            old.unlink(missing_ok=True)
        self._files()[stem] = path
        st = path.stat()
        self._verified[path] = (st.st_size, st.st_mtime_ns)

    def load(self, ratio: float, start: int, stop: int) -> np.ndarray:
        """The chunk, its checksum verified (read-only; memory-mapped once verified).

        Raises :class:`ChunkDamaged` when the file is missing, does not match its
        checksum, or is not (stop - start, D) float32 features.
        """
        path = self.path(ratio, start, stop)
        if path is None:
            raise ChunkDamaged(f"chunk {self._stem(ratio, start, stop)} is missing")
        try:
            st = path.stat()
            if self._verified.get(path) == (st.st_size, st.st_mtime_ns):
                arr = np.load(path, mmap_mode="r")
            else:
                data = path.read_bytes()
                if _checksum(data) != path.stem.rpartition("_")[2]:
                    raise ChunkDamaged(f"{path.name} does not match its checksum")
                arr = np.load(io.BytesIO(data))
                arr.flags.writeable = False
                self._verified[path] = (st.st_size, st.st_mtime_ns)
        except ChunkDamaged:
            raise
        except (OSError, ValueError, EOFError) as exc:
            raise ChunkDamaged(f"{path.name} cannot be read ({type(exc).__name__})") from None
        if arr.ndim != 2 or arr.shape[0] != stop - start or arr.dtype != np.float32:
            raise ChunkDamaged(f"{path.name} holds {arr.dtype} {arr.shape}, not {stop - start} rows of float32")
        return arr

    def files(self) -> list[Path]:
        return sorted(self.dir.glob("r*.npy")) if self.dir.is_dir() else []


_DIGEST_BYTES = 16


def _checksum(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=_DIGEST_BYTES).hexdigest()


def _memory_root(memory: Any) -> Path | None:
    memory = _cache.check_memory(memory)
    if memory is None:
        return None
    backend = getattr(memory, "store_backend", None)
    location = getattr(backend, "location", None) or getattr(memory, "location", None)
    if location is None:
        return None  # joblib.Memory(None) caches nothing, and neither do we
    # Inside joblib's own folder, so that memory.clear() removes the chunks too.
    return Path(location) / CHUNK_DIR


def feature_key(backbone, data_fp: str, *, masking: str, batch_size: int, engine: str,
                role: str = "fit") -> str:
    """Content fingerprint of what decides the features: backbone, data, masking, batching.

    ``role`` ("fit", "transform" or "probe") keeps the runs apart, so each scores its
    data once as before (sharing them would let transform(X) after fit(X) read fit's
    chunks, but changes how many forward passes a cross-validation runs).
    """
    pp = backbone.preprocessing.to_dict() if backbone.preprocessing is not None else None
    return _cache.combine(
        _KEY_VERSION,
        _cache.fingerprint_module(backbone.module),
        backbone.name,
        pp,
        data_fp,
        masking,
        int(batch_size),
        engine,
        role,
    )


def chunk_store(memory: Any, key: str) -> ChunkStore | None:
    """The chunk store of ``key`` under the cache ``memory``, or None without a cache folder."""
    root = _memory_root(memory)
    return None if root is None else ChunkStore(root, key)


def chunk_ranges(n: int, chunk_size: int, batch_size: int) -> list[tuple[int, int]]:
    """Row ranges of ``chunk_size`` rounded up to whole batches, so batches never change."""
    rows = max(batch_size, -(-chunk_size // batch_size) * batch_size)
    return [(a, min(a + rows, n)) for a in range(0, n, rows)]


def _sub_batches(batches: Batches, start: int, stop: int) -> Batches:
    make = batches.make
    return Batches(stop - start, batches.batch_size, lambda a, b: make(start + a, start + b))


# --------------------------------------------------------------------------- source
@dataclass
class ChunkVariant:
    """One ratio's features, as the chunk files of the store (read one at a time)."""

    source: "ChunkedSource"
    ratio: float

    def map(self, fn, *args):
        order = self.source.order
        for a, b in self.source.ranges:
            rows = slice(a, b) if order is None else order[a:b]
            yield rows, fn(rows, self.source.load(self.ratio, a, b), *args)


class ChunkedSource:
    """A :class:`skdlc._driver.FeatureSource` over a chunk store.

    Asked for a run of ratios, it computes the chunks that are missing (each chunk's
    batches through all missing variants, then saved atomically), then hands the
    driver one :class:`ChunkVariant` per ratio. A killed run resumes: chunks on disk
    are never computed again. A chunk that fails its checksum when it is read is
    computed again, with a one-line note.
    """

    def __init__(self, engine, batches: Batches, store: ChunkStore, *, chunk_size: int,
                 decodes: bool, order: np.ndarray | None = None):
        self.engine, self.batches, self.store, self.decodes = engine, batches, store, decodes
        self.order = order  # input row of each batch row (text grouped by length)
        self.n = batches.n
        self.ranges = chunk_ranges(batches.n, chunk_size, batches.batch_size)
        self.chunks_computed = 0

    @property
    def n_forward_batches(self) -> int:
        return self.engine.n_forward_batches

    def _compute(self, a: int, b: int, ratios: list, desc: str) -> dict:
        sub = _sub_batches(self.batches, a, b)
        out = {}
        for i, feats in self.engine.features(sub, ratios, desc=f"{desc} rows {a}:{b}", decodes=self.decodes):
            self.store.save(ratios[i], a, b, feats)
            out[ratios[i]] = feats
        self.chunks_computed += 1
        return out

    def variants(self, run, desc):
        run = [float(r) for r in run]
        missing = {(a, b): [r for r in run if not self.store.has(r, a, b)] for a, b in self.ranges}
        self._say_resuming(missing, len(run))
        for (a, b), todo in missing.items():
            if todo:
                self._compute(a, b, todo, desc)
        for r in run:
            yield ChunkVariant(self, r)

    def load(self, ratio: float, a: int, b: int) -> np.ndarray:
        """A chunk's features; a damaged chunk is computed again (one line on stderr)."""
        try:
            return self.store.load(ratio, a, b)
        except ChunkDamaged as exc:
            print(f"skdlc: cache: damaged feature chunk ({exc}) in {self.store.dir}; "
                  "computing it again", file=sys.stderr)
            return self._compute(a, b, [float(ratio)], "DLC recompute")[float(ratio)]

    def _say_resuming(self, missing: dict, n_ratios: int) -> None:
        """One line on stderr when a run picks up chunks that an earlier run left."""
        total = len(self.ranges) * n_ratios
        to_compute = sum(len(todo) for todo in missing.values())
        if to_compute < total and getattr(self.engine, "verbose", False):
            print(f"skdlc: resuming: {total - to_compute} of {total} chunks cached "
                  f"({to_compute} to compute)", file=sys.stderr)


# --------------------------------------------------------------------------- manifests
class PathManifest(torch.utils.data.Dataset):
    """A text file of image paths read as a dataset, never loaded whole.

    One sample per line: ``path`` or ``path<TAB>label`` (a comma also separates when
    ``sep=","``). Relative paths are taken relative to ``root`` (default: the
    manifest's folder). Only an index of line offsets (8 bytes a line) is kept in
    memory; items are read from the file on demand, so it can be handed to
    :class:`~skdlc.DLCScorer` like a list of paths, by worker processes and Ray
    actors too (it pickles as its file name and index).

    Parameters
    ----------
    path : str or path-like
    root : str, path-like or None
    sep : str, default="\\t"
    """

    def __init__(self, path: str | os.PathLike, *, root: str | os.PathLike | None = None, sep: str = "\t"):
        self.path = os.fspath(path)
        self.root = os.fspath(root) if root is not None else os.path.dirname(os.path.abspath(self.path))
        self.sep = sep
        offsets = [0]
        with open(self.path, "rb") as f:
            for line in f:
                offsets.append(offsets[-1] + len(line))
        # Drop trailing blank lines; a blank line in the middle is an error at read time.
        self._offsets = np.asarray(offsets, dtype=np.int64)
        n = len(offsets) - 1
        while n > 0 and self._line(n - 1).strip() == "":
            n -= 1
        self._n = n
        self._fd = None

    def __len__(self) -> int:
        return self._n

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_fd"] = None
        return state

    def __del__(self):
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)

    def _line(self, i: int) -> str:
        if getattr(self, "_fd", None) is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        # pread: no shared file position, so forked DataLoader workers never race.
        start, stop = int(self._offsets[i]), int(self._offsets[i + 1])
        return os.pread(self._fd, stop - start, start).decode("utf-8").rstrip("\r\n")

    def _fields(self, i: int) -> list[str]:
        if not 0 <= i < self._n:
            raise IndexError(f"manifest {self.path!r} has {self._n} lines, asked for {i}")
        fields = self._line(i).split(self.sep)
        if not fields[0]:
            raise ValueError(f"manifest {self.path!r}: line {i + 1} is empty")
        return fields

    def __getitem__(self, i: int) -> str:
        p = self._fields(int(i))[0]
        return p if os.path.isabs(p) else os.path.join(self.root, p)

    def labels(self) -> np.ndarray:
        """The label column (as strings), read in one streaming pass."""
        out = []
        for i in range(self._n):
            fields = self._fields(i)
            if len(fields) < 2:
                raise ValueError(f"manifest {self.path!r}: line {i + 1} has no label column")
            out.append(fields[1])
        return np.asarray(out)

    def fingerprint(self) -> str:
        """A hash of every image's bytes, streamed (for ``memory=``); names and times do not count."""
        h = hashlib.sha256(f"manifest{self._n}".encode())
        for i in range(self._n):
            d = _cache.file_digest(self[i])
            if d is None:
                raise FileNotFoundError(f"manifest {self.path!r}: line {i + 1}: no such file {self[i]!r}")
            h.update(d)
        return h.hexdigest()

    def __repr__(self) -> str:
        return f"PathManifest({self.path!r}, n={self._n})"
