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
are never computed again. The same two-phase driver (:func:`fit_two_phase`,
:func:`transform_two_phase`) runs the Ray backend (:mod:`skdlc._distributed`), whose
features live in Ray's object store instead of files.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

import numpy as np
import torch
from scipy.stats import spearmanr

from . import _cache
from ._data import Batches, decodes_files
from ._io import atomic_write
from ._losses import per_class_losses
from ._ratios import auto_ratio_order, resolve_mask_ratios

__all__ = [
    "ChunkStore",
    "PathManifest",
    "chunk_store",
    "chunk_ranges",
    "fit_two_phase",
    "transform_two_phase",
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


def feature_key(scorer, data_fp: str, role: str = "fit") -> str:
    """Content fingerprint of what decides the features: backbone, data, masking, batching.

    ``role`` ("fit" or "transform") keeps the two apart, so each scores its data once
    as before (sharing them would let transform(X) after fit(X) read fit's chunks, but
    changes how many forward passes a cross-validation runs).
    """
    bb = scorer.backbone_
    pp = bb.preprocessing.to_dict() if bb.preprocessing is not None else None
    return _cache.combine(
        _KEY_VERSION,
        _cache.fingerprint_module(bb.module),
        bb.name,
        pp,
        data_fp,
        scorer.masking,
        int(scorer.batch_size),
        getattr(scorer, "engine", "torch"),
        role,
    )


def chunk_store(scorer, X, role: str = "fit") -> ChunkStore | None:
    """The chunk store for scoring X, or None when there is no cache or X has no fingerprint."""
    root = _memory_root(scorer.memory)
    if root is None:
        return None
    ident, fp = getattr(scorer, "_last_data_fp", (None, None))
    if ident != id(X):
        fp = _cache.fingerprint_data(X)
    if fp is None:
        return None
    return ChunkStore(root, feature_key(scorer, fp, role))


def chunk_ranges(n: int, chunk_size: int, batch_size: int) -> list[tuple[int, int]]:
    """Row ranges of ``chunk_size`` rounded up to whole batches, so batches never change."""
    rows = max(batch_size, -(-chunk_size // batch_size) * batch_size)
    return [(a, min(a + rows, n)) for a in range(0, n, rows)]


def _sub_batches(batches: Batches, start: int, stop: int) -> Batches:
    make = batches.make
    return Batches(stop - start, batches.batch_size, lambda a, b: make(start + a, start + b))


# --------------------------------------------------------------------------- sources
class FeatureSource(Protocol):
    """Features of every sample under ``run`` ratios, wherever they are stored.

    The two-phase driver asks only for what the method needs, so a source can keep
    the features out of memory (files, Ray's object store).
    """

    def class_sums(self, y_idx: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-class feature sums (len(run), K, D) float64 and counts (K,) float64."""
        ...

    def loss_sum(self, protos: Sequence[np.ndarray | None], logits: str, temperature: float) -> np.ndarray:
        """Sum over ``i`` with ``protos[i]`` set of per-class losses (N, K) float64."""
        ...

    def features(self, i: int) -> np.ndarray:
        """All features (N, D) float32 of ``run[i]``."""
        ...


def _add_class_sums(sums: np.ndarray, y_idx: np.ndarray, features: np.ndarray) -> None:
    np.add.at(sums, y_idx, np.asarray(features, dtype=np.float64))


class ChunkedSource:
    """Computes the missing chunks of ``run`` into a store, then streams them back."""

    def __init__(self, engine, batches: Batches, store: ChunkStore, run: Sequence[float], *,
                 chunk_size: int, desc: str, decodes: bool):
        self.store = store
        self.run = [float(r) for r in run]
        self.n = batches.n
        self.ranges = chunk_ranges(batches.n, chunk_size, batches.batch_size)
        self.chunks_computed = 0
        for a, b in self.ranges:
            missing = [r for r in self.run if not store.has(r, a, b)]
            if not missing:
                continue
            sub = _sub_batches(batches, a, b)
            for i, feats in engine.features(sub, missing, desc=f"{desc} rows {a}:{b}", decodes=decodes):
                store.save(missing[i], a, b, feats)
            self.chunks_computed += 1

    def _chunks(self, i: int) -> Iterator[tuple[int, int, np.ndarray]]:
        for a, b in self.ranges:
            yield a, b, self.store.load(self.run[i], a, b)

    def class_sums(self, y_idx, n_classes):
        sums, counts = None, np.bincount(y_idx, minlength=n_classes).astype(np.float64)
        for i in range(len(self.run)):
            for a, b, f in self._chunks(i):
                if sums is None:
                    sums = np.zeros((len(self.run), n_classes, f.shape[1]))
                _add_class_sums(sums[i], y_idx[a:b], f)
        return sums, counts

    def loss_sum(self, protos, logits, temperature):
        out = None
        for a, b in self.ranges:
            for i, p in enumerate(protos):
                if p is None:
                    continue
                loss = per_class_losses(self.store.load(self.run[i], a, b), p, logits, temperature)
                if out is None:
                    out = np.zeros((self.n, loss.shape[1]))
                out[a:b] += loss
        return out

    def features(self, i):
        return np.concatenate([np.asarray(f) for _, _, f in self._chunks(i)])


# --------------------------------------------------------------------------- driver
def _means(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    # Exactly class_means: float64 sums / counts, then float32.
    return (sums / counts[None, :, None]).astype(np.float32)


def fit_two_phase(scorer, source_for: Callable[[list[float]], FeatureSource], y_idx: np.ndarray,
                  n_classes: int, want_losses: bool) -> dict:
    """The scorer's fit (path or "auto"), phase 1 sums -> prototypes, phase 2 losses.

    Gives the same dict as ``DLCScorer._fit_path`` / ``_fit_auto`` for any source.
    """
    if scorer.mask_ratios == "auto":
        return _fit_auto(scorer, source_for, y_idx, n_classes)
    ratios = resolve_mask_ratios(scorer.mask_ratios, scorer.random_state)
    run = list(ratios) if want_losses else [0.0]
    if (scorer.prototypes == "unmasked" or scorer.embedding) and 0.0 not in ratios and want_losses:
        run = [0.0] + run  # one extra unmasked pass, not part of the path
    extra = 0.0 not in ratios
    src = source_for(run)
    sums, counts = src.class_sums(y_idx, n_classes)
    means = _means(sums, counts)
    unmasked = means[run.index(0.0)] if 0.0 in run else None
    use_unmasked = scorer.prototypes == "unmasked"
    protos = [
        None if (extra and i == 0) else (unmasked if use_unmasked else means[i]) for i in range(len(run))
    ]
    losses = None
    if want_losses:
        losses = src.loss_sum(protos, scorer.logits, scorer.temperature) / len(ratios)
    emb = src.features(run.index(0.0)) if scorer.embedding and 0.0 in run else None
    if use_unmasked:
        out_protos = np.stack([unmasked] * len(ratios))
    else:
        out_protos = np.stack([protos[run.index(r)] for r in ratios])
    return {"mask_ratios": tuple(ratios), "prototypes": out_protos, "losses": losses, "embedding": emb}


def _fit_auto(scorer, source_for, y_idx, n_classes) -> dict:
    used, previous, protos = [], None, {}
    loss_sum, unmasked, emb = None, None, None
    for r in auto_ratio_order(scorer.random_state)[: scorer.max_ratios]:
        src = source_for([r])
        sums, counts = src.class_sums(y_idx, n_classes)
        mean = _means(sums, counts)[0]
        if r == 0.0 and unmasked is None:
            unmasked = mean
            if scorer.embedding:
                emb = src.features(0)
        protos[r] = unmasked if scorer.prototypes == "unmasked" else mean
        loss = src.loss_sum([protos[r]], scorer.logits, scorer.temperature)
        loss_sum = loss if loss_sum is None else loss_sum + loss
        used.append(r)
        current = loss_sum[np.arange(len(y_idx)), y_idx] / len(used)
        if previous is not None and len(used) >= 3:
            rho = spearmanr(previous, current).statistic
            if np.isfinite(rho) and rho >= scorer.auto_tol:
                break
        previous = current
    ratios = tuple(sorted(used))
    out_protos = np.stack([unmasked] * len(ratios)) if scorer.prototypes == "unmasked" else np.stack(
        [protos[r] for r in ratios]
    )
    return {"mask_ratios": ratios, "prototypes": out_protos, "losses": loss_sum / len(ratios), "embedding": emb}


def transform_two_phase(scorer, source_for: Callable[[list[float]], FeatureSource]):
    """The scorer's transform: (losses, embedding or None), as ``DLCScorer._transform``."""
    ratios = list(scorer.mask_ratios_)
    run = ratios if (not scorer.embedding or 0.0 in ratios) else [0.0] + ratios
    src = source_for(run)
    protos = [
        scorer.prototypes_[ratios.index(r)] if (run is ratios or i > 0) else None for i, r in enumerate(run)
    ]
    losses = src.loss_sum(protos, scorer.logits, scorer.temperature) / len(ratios)
    emb = src.features(run.index(0.0)) if scorer.embedding else None
    return losses, emb


# --------------------------------------------------------------------------- local entry points
@dataclass
class _LocalRun:
    scorer: Any
    engine: Any
    batches: Batches
    store: ChunkStore
    desc: str
    decodes: bool
    chunks_computed: int = 0

    def __call__(self, run: list[float]) -> ChunkedSource:
        src = ChunkedSource(self.engine, self.batches, self.store, run,
                            chunk_size=self.scorer.chunk_size, desc=self.desc, decodes=self.decodes)
        self.chunks_computed += src.chunks_computed
        return src


def fit_chunked(scorer, engine, batches: Batches, X, y_idx: np.ndarray, want_losses: bool,
                store: ChunkStore) -> dict:
    """Local fit through the chunk store (resumable; features memory-mapped)."""
    source = _LocalRun(scorer, engine, batches, store, "DLC fit", decodes_files(X))
    return fit_two_phase(scorer, source, y_idx, len(scorer.classes_), want_losses)


def transform_chunked(scorer, engine, batches: Batches, X, store: ChunkStore):
    source = _LocalRun(scorer, engine, batches, store, "DLC transform", decodes_files(X))
    return transform_two_phase(scorer, source)


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
