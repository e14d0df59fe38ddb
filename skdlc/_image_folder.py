"""Writing images into an image-folder data set (``root/<class>/<i>.<fmt>``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["make_image_folder"]

_FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "bmp": "BMP", "webp": "WEBP",
            "tif": "TIFF", "tiff": "TIFF"}  # fmt: skip


def _check_folder_name(name: str) -> str:
    if not name or name in {".", ".."} or "/" in name or "\\" in name or "\0" in name:
        raise ValueError(f"Class name {name!r} cannot be a folder name.")
    return name


def make_image_folder(
    root: str | os.PathLike,
    images,
    labels,
    class_names: Sequence[str] | None = None,
    fmt: str = "png",
) -> Path:
    """Write images into an image-folder data set, ``root/<class>/<i>.<fmt>``.

    This is the layout that ``torchvision.datasets.ImageFolder`` and the ``skdlc``
    command line read. ``<i>`` is the image's row in ``images``, zero-padded so that
    sorting file names keeps the row order (``00042.png``).

    Parameters
    ----------
    root : str or path-like
        Folder to write into; created if needed. Existing files of the same names are
        overwritten, others are left alone.
    images : array-like of shape (n, H, W, 3) or (n, H, W)
        uint8 RGB or gray images (integers within 0-255 are accepted too).
    labels : array-like of shape (n,)
        Class of each image: integer indices into ``class_names`` or, when
        ``class_names`` is given, names from it. With ``class_names=None`` each
        distinct label value becomes a folder named ``str(label)``.
    class_names : sequence of str, optional
        Folder name of each class index.
    fmt : str, default="png"
        File format and extension: "png" (lossless), "jpg"/"jpeg", "bmp", "webp",
        "tif"/"tiff".

    Returns
    -------
    root : pathlib.Path

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from skdlc.datasets import make_image_folder
    >>> images = np.zeros((4, 8, 8, 3), dtype=np.uint8)
    >>> root = make_image_folder(tempfile.mkdtemp(), images, [0, 1, 1, 0],
    ...                          class_names=["cat", "dog"])
    >>> sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    ['cat/0.png', 'cat/3.png', 'dog/1.png', 'dog/2.png']
    """
    from PIL import Image

    key = str(fmt).lower().lstrip(".")
    if key not in _FORMATS:
        raise ValueError(f"fmt must be one of {sorted(_FORMATS)}, got {fmt!r}.")
    images = np.asarray(images)
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (1, 3)):
        raise ValueError(
            f"images must have shape (n, H, W, 3) or (n, H, W), got {images.shape}."
        )
    if images.dtype != np.uint8:
        if not np.issubdtype(images.dtype, np.integer) or (
            images.size and (images.min() < 0 or images.max() > 255)
        ):
            raise ValueError(
                f"images must be uint8 (or integers within 0-255), got dtype {images.dtype}."
            )
        images = images.astype(np.uint8)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    labels = np.asarray(labels)
    if labels.shape != (len(images),):
        raise ValueError(f"labels must have shape ({len(images)},), got {labels.shape}.")

    if class_names is None:
        folders = [_check_folder_name(str(v)) for v in labels.tolist()]
    else:
        names = [_check_folder_name(str(c)) for c in class_names]
        if len(set(names)) != len(names):
            raise ValueError(f"class_names has duplicates: {names}.")
        if labels.dtype.kind in "iu":
            bad = labels[(labels < 0) | (labels >= len(names))]
            if bad.size:
                raise ValueError(
                    f"label {bad[0]} is no index into the {len(names)} class_names."
                )
            folders = [names[i] for i in labels.tolist()]
        else:
            unknown = sorted(set(map(str, labels.tolist())) - set(names))
            if unknown:
                raise ValueError(f"labels not in class_names: {unknown[:5]}.")
            folders = [str(v) for v in labels.tolist()]

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for name in (class_names if class_names is not None else sorted(set(folders))):
        (root / str(name)).mkdir(exist_ok=True)  # empty classes still get a folder
    width = len(str(max(len(images) - 1, 0)))
    pil_format = _FORMATS[key]
    for i, (img, folder) in enumerate(zip(images, folders)):
        Image.fromarray(img).save(root / folder / f"{i:0{width}d}.{key}", format=pil_format)
    return root
