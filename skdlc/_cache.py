"""Content fingerprints and the joblib cache behind ``memory=``.

joblib hashes a torch module by pickling it, which differs between processes and after
``deepcopy`` (so every ``clone`` in a grid search would miss). Cache keys here are built
from content instead: the bytes of every tensor of the backbone, the bytes of the data
(each image file's bytes, hashed, never its name or timestamps) and the scoring
parameters. What the cache returns is checked too: every result carries a digest of
itself, verified when it is read back (:func:`seal`, :func:`unseal`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import joblib
import numpy as np
import torch
from torch import nn

__all__ = [
    "check_memory",
    "fingerprint_module",
    "fingerprint_data",
    "fingerprint_rows",
    "fingerprint_params",
    "file_digest",
    "Fingerprint",
    "combine",
    "seal",
    "unseal",
]

_DIGEST = 16  # bytes of a row's blake2b digest
_READ = 1 << 20


def _update_tensor(h: "hashlib._Hash", t: torch.Tensor) -> None:
    t = t.detach()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: hash the raw bits
        t = t.view(torch.int16)
    h.update(np.ascontiguousarray(t.cpu().numpy()).tobytes())


def fingerprint_module(module: nn.Module) -> str:
    """SHA-256 of a module's class name and every parameter and buffer, by name."""
    h = hashlib.sha256(type(module).__qualname__.encode())
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        _update_tensor(h, t)
    return h.hexdigest()


def file_digest(path: str | os.PathLike) -> bytes | None:
    """blake2b (16 bytes) of a file's bytes, or None when ``path`` is no readable file.

    The bytes are read, never decoded: hashing a small PNG costs a few microseconds,
    decoding it milliseconds. Two files with the same bytes have the same digest
    wherever they are and whatever their timestamps say.
    """
    h = hashlib.blake2b(digest_size=_DIGEST)
    try:
        with open(path, "rb") as f:
            if not os.path.isfile(path):  # a folder opens on some systems
                return None
            while True:
                block = f.read(_READ)
                if not block:
                    break
                h.update(block)
    except (OSError, ValueError, TypeError):
        return None
    return h.digest()


def _digest(*parts: bytes) -> bytes:
    h = hashlib.blake2b(digest_size=_DIGEST)
    for p in parts:
        h.update(p)
    return h.digest()


@dataclass(frozen=True)
class Fingerprint:
    """A content fingerprint of scorer input.

    ``key`` is the hex digest that cache keys are built from. ``rows`` holds one
    16-byte digest per row where the input has rows of its own (arrays, lists of
    files, strings or arrays), so that the fingerprint of any subset of rows
    (:meth:`take`) costs no second read of the data; it is None for inputs that
    fingerprint themselves (a Dataset's ``fingerprint()``).
    """

    key: str
    rows: np.ndarray | None = None

    def take(self, idx) -> "Fingerprint":
        """The fingerprint of the rows ``idx`` (in that order)."""
        idx = np.asarray(idx, dtype=np.int64)
        if self.rows is None:
            return Fingerprint(combine(self.key, "rows", hashlib.sha256(idx.tobytes()).hexdigest()))
        return _from_rows(self.key.split(":", 1)[0], self.rows[idx])


def _from_rows(kind: str, rows: np.ndarray) -> Fingerprint:
    h = hashlib.sha256(f"{kind}|{len(rows)}|".encode())
    h.update(np.ascontiguousarray(rows).tobytes())
    return Fingerprint(f"{kind}:{h.hexdigest()}", rows)


def _item_digest(item: Any, files: dict) -> bytes | None:
    if isinstance(item, (str, os.PathLike)) and id(item) in files:
        d = files[id(item)]
        if d is not None:
            return b"f" + d
    if isinstance(item, str):
        return b"s" + _digest(item.encode())
    if isinstance(item, np.ndarray):
        return b"a" + _digest(f"{item.dtype}{item.shape}".encode(), np.ascontiguousarray(item).tobytes())
    if isinstance(item, dict):
        return b"d" + _digest(json.dumps(item, sort_keys=True, default=str).encode())
    return None


def _file_digests(items: list, workers: int = 8) -> dict:
    """id(item) -> digest of the file it names (None: not a readable file), read in threads."""
    paths = [it for it in items if isinstance(it, (str, os.PathLike))]
    if not paths:
        return {}
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(paths)))) as pool:
        digests = list(pool.map(file_digest, paths, chunksize=64))
    return {id(p): d for p, d in zip(paths, digests)}


def fingerprint_rows(X: Any) -> Fingerprint | None:
    """A content :class:`Fingerprint` of scorer input, or None when it cannot be taken cheaply.

    Arrays and tensors hash each row's bytes (with the dtype and row shape); lists of
    image paths hash each file's bytes (not its name, size or timestamps: a file
    replaced by another of the same size and mtime is a new key); lists of strings or
    arrays hash their content. Objects that define ``fingerprint()`` (e.g. a torch
    Dataset of yours, :class:`skdlc._chunks.PathManifest`) are asked for one.
    """
    if hasattr(X, "fingerprint") and callable(X.fingerprint):
        return Fingerprint("custom:" + hashlib.sha256(str(X.fingerprint()).encode()).hexdigest())
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu()
        if X.dtype == torch.bfloat16:
            X = X.view(torch.int16)
        X = X.numpy()
    if isinstance(X, np.ndarray) and X.dtype != object:
        X = np.ascontiguousarray(X)
        kind = f"ndarray{X.dtype}{X.shape[1:]}".replace(":", "")
        rows = np.empty((len(X), _DIGEST), dtype=np.uint8)
        for i in range(len(X)):
            rows[i] = np.frombuffer(_digest(X[i].tobytes()), dtype=np.uint8)
        return _from_rows(kind, rows)
    if isinstance(X, (list, tuple, np.ndarray)):
        items = list(X)
        files = _file_digests(items)
        rows = np.empty((len(items), _DIGEST + 1), dtype=np.uint8)
        for i, item in enumerate(items):
            d = _item_digest(item, files)
            if d is None:
                return None
            rows[i] = np.frombuffer(d, dtype=np.uint8)
        return _from_rows("seq", rows)
    return None


def fingerprint_data(X: Any) -> str | None:
    """The key of :func:`fingerprint_rows` (a hex string), or None."""
    fp = fingerprint_rows(X)
    return None if fp is None else fp.key


def fingerprint_params(params: dict) -> str:
    """Stable hash of a JSON-able parameter dict."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=repr).encode()).hexdigest()


def combine(*parts: Iterable[str] | str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(str(p).encode() + b"|")
    return h.hexdigest()


# --------------------------------------------------------------------------- verified results
def _walk(h: "hashlib._Hash", obj: Any) -> None:
    if isinstance(obj, np.ndarray):
        h.update(f"A{obj.dtype}{obj.shape}".encode())
        h.update(np.ascontiguousarray(obj).tobytes() if obj.dtype != object else repr(obj.tolist()).encode())
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}".encode())
        for k in sorted(obj, key=repr):
            h.update(repr(k).encode())
            _walk(h, obj[k])
    elif isinstance(obj, (list, tuple)):
        h.update(f"L{len(obj)}".encode())
        for v in obj:
            _walk(h, v)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        h.update(type(obj).__qualname__.encode())
        _walk(h, {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)})
    else:
        h.update(f"S{type(obj).__name__}{obj!r}".encode())


def result_digest(obj: Any) -> str:
    """A digest of a cached result's content (arrays by their bytes)."""
    h = hashlib.blake2b(digest_size=_DIGEST)
    _walk(h, obj)
    return h.hexdigest()


def seal(obj: Any) -> tuple:
    """``(digest, obj)``: what the cache stores, so that a read can be checked."""
    return ("skdlc-sealed", result_digest(obj), obj)


def unseal(stored: Any) -> tuple[bool, Any]:
    """``(intact, obj)`` of what :func:`seal` stored (False for anything altered)."""
    if not (isinstance(stored, tuple) and len(stored) == 3 and stored[0] == "skdlc-sealed"):
        return False, None
    try:
        return result_digest(stored[2]) == stored[1], stored[2]
    except Exception:  # noqa: BLE001 - any unreadable content is a damaged entry
        return False, None


def check_memory(memory: Any) -> joblib.Memory | None:
    """``None``, a path, or a ``joblib.Memory`` -> a ``joblib.Memory`` or None."""
    if memory is None:
        return None
    if isinstance(memory, (str, os.PathLike)):
        _check_cache_folder(memory)
        return joblib.Memory(os.fspath(memory), verbose=0)
    if isinstance(memory, joblib.Memory) or (
        hasattr(memory, "cache") and callable(memory.cache)
    ):
        return memory
    raise ValueError(
        f"memory must be None, a path or a joblib.Memory, got {type(memory).__name__}"
    )


def _check_cache_folder(memory: str | os.PathLike) -> None:
    """Create the cache folder ``memory`` if needed; a clear error naming ``memory``
    when it is a file or cannot be created or written."""
    folder = Path(os.path.expanduser(os.fspath(memory)))
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"memory={os.fspath(memory)!r} is a file, not a folder; give a folder "
                         "for the cache (it is created if needed)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as exc:
        raise ValueError(f"memory={os.fspath(memory)!r}: the cache folder cannot be created or "
                         f"written ({exc.strerror or exc})") from None
