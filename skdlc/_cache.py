"""Content fingerprints and the joblib cache behind ``memory=``.

joblib hashes a torch module by pickling it, which differs between processes and after
``deepcopy`` (so every ``clone`` in a grid search would miss). Cache keys here are built
from content instead: the bytes of every tensor of the backbone, the bytes (or file
identities) of the data, and the scoring parameters.
"""

from __future__ import annotations

import hashlib
import json
import os
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
    "fingerprint_params",
    "combine",
]


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


def _fingerprint_path(h: "hashlib._Hash", p: str | os.PathLike) -> None:
    # Path, size and modification time identify a file without reading it all:
    # rewriting a file changes its mtime, so a stale entry is never read.
    st = os.stat(p)
    h.update(f"{os.path.abspath(p)}|{st.st_size}|{st.st_mtime_ns}\n".encode())


def fingerprint_data(X: Any) -> str | None:
    """A content fingerprint of scorer input, or None when it cannot be taken cheaply.

    Arrays hash their bytes, dtype and shape; lists of paths hash each file's path,
    size and mtime; lists of strings or arrays hash their content. Objects that
    define ``fingerprint()`` (e.g. a torch Dataset of yours) are asked for one.
    """
    h = hashlib.sha256()
    if hasattr(X, "fingerprint") and callable(X.fingerprint):
        h.update(b"custom")
        h.update(str(X.fingerprint()).encode())
        return h.hexdigest()
    if isinstance(X, torch.Tensor):
        h.update(b"tensor")
        _update_tensor(h, X)
        return h.hexdigest()
    if isinstance(X, np.ndarray) and X.dtype != object:
        h.update(f"ndarray{X.dtype}{X.shape}".encode())
        h.update(np.ascontiguousarray(X).tobytes())
        return h.hexdigest()
    if isinstance(X, (list, tuple, np.ndarray)):
        h.update(f"seq{len(X)}".encode())
        for item in X:
            if isinstance(item, (str, os.PathLike)) and _is_file(item):
                _fingerprint_path(h, item)
            elif isinstance(item, str):
                h.update(b"s" + item.encode() + b"\0")
            elif isinstance(item, np.ndarray):
                h.update(f"a{item.dtype}{item.shape}".encode())
                h.update(np.ascontiguousarray(item).tobytes())
            elif isinstance(item, dict):
                h.update(json.dumps(item, sort_keys=True, default=str).encode())
            else:
                return None
        return h.hexdigest()
    return None


def _is_file(item: str | os.PathLike) -> bool:
    try:
        return Path(item).is_file()
    except (OSError, ValueError):
        return False


def fingerprint_params(params: dict) -> str:
    """Stable hash of a JSON-able parameter dict."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=repr).encode()).hexdigest()


def combine(*parts: Iterable[str] | str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(str(p).encode() + b"|")
    return h.hexdigest()


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
