"""Thumbnails for the report: small JPEGs of the few images a report shows.

Only the images that appear in the report are opened (a few hundred at most, whatever
the size of the data set), each decoded at reduced size when the format allows it
(JPEG draft mode), so a report of a large set costs about as much as a small one.
"""

from __future__ import annotations

import base64
import io
import os

__all__ = ["Thumbnails"]

#: Longest side of a thumbnail, in pixels.
THUMB_PX = 64


class Thumbnails:
    """Decode-once cache of thumbnails, keyed by row index.

    ``get(i)`` returns an RGB ``PIL.Image`` of at most ``size`` x ``size`` pixels, or
    None when the file cannot be read (the report shows a placeholder instead).
    """

    def __init__(self, paths, size: int = THUMB_PX, quality: int = 80):
        self.paths = paths
        self.size = size
        self.quality = quality
        self._images: dict[int, object] = {}
        self._jpeg: dict[int, str | None] = {}

    def get(self, i: int):
        i = int(i)
        if i not in self._images:
            self._images[i] = self._load(self.paths[i])
        return self._images[i]

    def _load(self, path):
        from PIL import Image

        try:
            with Image.open(os.fspath(path)) as im:
                # JPEG: decode straight at a fraction of the size (much faster).
                im.draft("RGB", (self.size, self.size))
                im = im.convert("RGB")
                im.thumbnail((self.size, self.size), Image.Resampling.BILINEAR)
                return im.copy()
        except Exception:  # noqa: BLE001 - any unreadable file becomes a placeholder
            return None

    def data_uri(self, i: int) -> str | None:
        """``data:image/jpeg;base64,...`` of thumbnail ``i``, or None if unreadable."""
        i = int(i)
        if i not in self._jpeg:
            im = self.get(i)
            if im is None:
                self._jpeg[i] = None
            else:
                buf = io.BytesIO()
                im.save(buf, format="JPEG", quality=self.quality, optimize=True)
                self._jpeg[i] = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
        return self._jpeg[i]
