"""Resumable, chunked scoring: per-variant features on disk, scores in two streaming passes.

With ``memory`` set, the scorer no longer holds every sample's features in memory.
The rows are cut into chunks (``chunk_size`` rows, a multiple of ``batch_size``) and the
features of each chunk under each masked variant are written, atomically, as one
``.npy`` file under the cache::

    <memory>/joblib/skdlc_chunks/<feature key>/r0.300000_0000004096_0000008192.npy

Scoring then reads the method's two phases back from those files, memory-mapped, one
chunk at a time:

1. per-class feature sums and counts of every variant -> class prototypes;
2. each chunk's per-class losses against the prototypes.

So peak memory is one chunk of features plus the (N, n_classes) scores, whatever N
is, and a run that is killed midway resumes where it stopped: chunks whose files exist
are never computed again. The method itself (prototypes, losses) is :mod:`skdlc._driver`'s; this module is one
of its feature sources, beside the in-memory engines and Ray.

The feature key is a content fingerprint of everything that decides the features and
nothing else: the backbone's tensors and preprocessing, the data, the masking mode, the
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
    "ChunkStore",
    "PathManifest",
    "chunk_store",
    "chunk_ranges",
    "ChunkedSource",
    "feature_key",
]

CHUNK_DIR = "skdlc_chunks"
_KEY_VERSION = "chunks-1"  # bump when the features' meaning changes


# --------------------------------------------------------------------------- store
class ChunkStore:
    """One folder of feature chunks for one feature key.

    A file ``r{ratio}_{start}_{stop}.npy`` holds the float32 features (stop - start, D)
    of rows ``start:stop`` under the variant masked at ``ratio``. Files are written to
    a temporary name and renamed, so a killed run leaves either a whole file or none.
    """

    def __init__(self, root: str | os.PathLike, key: str):
        self.dir = Path(root) / key[:40]
        self.key = key

    def path(self, ratio: float, start: int, stop: int) -> Path:
        return self.dir / f"r{float(ratio):.6f}_{start:010d}_{stop:010d}.npy"

    def has(self, ratio: float, start: int, stop: int) -> bool:
        """Whether a readable chunk of the right number of rows is stored."""
        p = self.path(ratio, start, stop)
        if not p.is_file():
            return False
        try:
            arr = np.load(p, mmap_mode="r")
        except (OSError, ValueError, EOFError):
            return False  # unreadable: compute it again (the rename is atomic, so rare)
        return arr.ndim == 2 and arr.shape[0] == stop - start and arr.dtype == np.float32

    def save(self, ratio: float, start: int, stop: int, features: np.ndarray) -> None:
        with atomic_write(self.path(ratio, start, stop), "wb") as f:
            np.save(f, np.ascontiguousarray(features, dtype=np.float32))

    def load(self, ratio: float, start: int, stop: int) -> np.ndarray:
        """The chunk, memory-mapped read-only."""
        return np.load(self.path(ratio, start, stop), mmap_mode="r")

    def files(self) -> list[Path]:
        return sorted(self.dir.glob("r*.npy")) if self.dir.is_dir() else []


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
    """One ratio's features, as the chunk files of the store (memory-mapped one at a time)."""

    store: ChunkStore
    ratio: float
    ranges: list
    order: np.ndarray | None = None

    def map(self, fn, *args):
        for a, b in self.ranges:
            rows = slice(a, b) if self.order is None else self.order[a:b]
            yield rows, fn(rows, self.store.load(self.ratio, a, b), *args)


class ChunkedSource:
    """A :class:`skdlc._driver.FeatureSource` over a chunk store.

    Asked for a run of ratios, it computes the chunks that are missing (each chunk's
    batches through all missing variants, then saved atomically), then hands the
    driver one :class:`ChunkVariant` per ratio. A killed run resumes: chunks on disk
    are never computed again.
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

    def variants(self, run, desc):
        run = [float(r) for r in run]
        missing = {(a, b): [r for r in run if not self.store.has(r, a, b)] for a, b in self.ranges}
        self._say_resuming(missing, len(run))
        for (a, b), todo in missing.items():
            if not todo:
                continue
            sub = _sub_batches(self.batches, a, b)
            for i, feats in self.engine.features(sub, todo, desc=f"{desc} rows {a}:{b}",
                                                 decodes=self.decodes):
                self.store.save(todo[i], a, b, feats)
            self.chunks_computed += 1
        for r in run:
            yield ChunkVariant(self.store, r, self.ranges, self.order)

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
        """Each image's path, size and modification time, streamed (for ``memory=``)."""
        import hashlib

        h = hashlib.sha256(f"manifest{self._n}".encode())
        for i in range(self._n):
            p = self[i]
            st = os.stat(p)
            h.update(f"{os.path.abspath(p)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        return h.hexdigest()

    def __repr__(self) -> str:
        return f"PathManifest({self.path!r}, n={self._n})"
