"""Scorer input -> batches the backbone can take.

X may be: a uint8 image array (N, H, W, C) with C in (1, 3, 4), or (N, H, W) (other
integer dtypes holding 0-255 are read the same way); a float array (N, C, H, W)
of pixels in [0, 1] (or of model input as-is when the backbone has no preprocessing);
a 2-d float array (N, F) for a user module that takes vectors; a list of image file
paths; a list of image arrays of any sizes; a torch ``Dataset`` yielding images (or
``(image, label)`` pairs); or a list of strings for a text backbone.

Decoding and resizing happen here, once per batch; the engine then runs the batch
through every masked variant it needs. With ``on_error="skip"`` an image that does not
decode becomes an all-NaN placeholder row: the engine runs a blank in its place and
marks its features unreadable, and the driver leaves the row out (no pass of its own
is spent finding unreadable files).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from ._backbones._base import Backbone, Preprocessing

__all__ = [
    "Batches",
    "make_batches",
    "preprocess_uint8",
    "decode_image",
    "ImageReadError",
    "n_samples",
    "check_finite",
    "decodes_files",
    "read_error",
]


class ImageReadError(ValueError):
    """An image file is missing or cannot be decoded; ``path`` names the file.

    It survives DataLoader worker processes as itself, with ``path`` and ``reason``:
    torch re-raises a worker's error as ``type(message=<worker traceback>)`` when the
    class has a ``message`` attribute, and the path is read back from that traceback's
    last line (which this class wrote, with the path as a Python literal).
    """

    message: str = "cannot read image"  # tells torch to re-raise with message=...

    def __init__(self, path: str | None = None, reason: str | None = None, *, message: str | None = None):
        if message is not None and path is None:
            path, reason, worker = _parse_image_read_error(message)
            self.worker_traceback = worker
        self.path = "" if path is None else str(path)
        self.reason = "" if reason is None else str(reason)
        self.message = f"cannot read image {self.path!r}: {self.reason}"
        super().__init__(self.message)

    def __reduce__(self):  # pickling (multiprocessing, Ray, joblib) keeps path and reason
        return (type(self), (self.path, self.reason))


def _parse_image_read_error(text: str) -> tuple[str, str, str]:
    """(path, reason, text) from a worker traceback ending in an ImageReadError line."""
    import ast
    import io
    import tokenize

    tag = "cannot read image "
    at = text.rfind(tag)
    if at < 0:
        return "", text.strip().splitlines()[-1] if text.strip() else "", text
    rest = text[at + len(tag):]
    try:
        tok = next(tokenize.generate_tokens(io.StringIO(rest).readline))
        path = ast.literal_eval(tok.string)
        reason = rest.splitlines()[tok.end[0] - 1][tok.end[1]:].lstrip(": ").rstrip()
        return str(path), reason, text
    except (SyntaxError, ValueError, tokenize.TokenError, StopIteration):
        return "", rest.strip(), text


def _is_pathlike_list(X: Any) -> bool:
    return (
        isinstance(X, (list, tuple, np.ndarray))
        and len(X) > 0
        and all(isinstance(x, (str, os.PathLike)) for x in X[:50])
    )


def n_samples(X: Any) -> int:
    try:
        return len(X)
    except TypeError as exc:
        raise TypeError(
            f"X must be an array, a list or a torch Dataset with __len__, got {type(X).__name__}"
        ) from exc


# --------------------------------------------------------------------------- images
def _resize_crop(x: torch.Tensor, pp: Preprocessing) -> torch.Tensor:
    """Resize the shorter side to input_size / crop_pct, then centre-crop input_size."""
    h, w = x.shape[-2:]
    th, tw = pp.input_size
    scale = max(th / pp.crop_pct / h, tw / pp.crop_pct / w)
    nh, nw = max(th, round(h * scale)), max(tw, round(w * scale))
    if (nh, nw) != (h, w):
        mode = pp.interpolation if pp.interpolation in ("bilinear", "bicubic", "nearest") else "bilinear"
        kwargs = {} if mode == "nearest" else {"align_corners": False, "antialias": nh < h or nw < w}
        x = F.interpolate(x, size=(nh, nw), mode=mode, **kwargs)
    top, left = (nh - th) // 2, (nw - tw) // 2
    return x[..., top : top + th, left : left + tw]


def _normalise(x: torch.Tensor, pp: Preprocessing, pixel_scale: float) -> torch.Tensor:
    """x: float (N, 3, H, W) RGB pixels in 0..255 units times pixel_scale/255."""
    if pp.channel_order == "BGR":
        x = x.flip(1)
    mean = torch.tensor(pp.mean, dtype=x.dtype).view(1, -1, 1, 1)
    std = torch.tensor(pp.std, dtype=x.dtype).view(1, -1, 1, 1)
    return (x * pixel_scale - mean) / std


#: Channel counts of channels-last image arrays: gray, RGB, RGBA.
_CHANNELS = (1, 3, 4)


def check_image_channels(shape: tuple, what: str = "a uint8 image array") -> None:
    """Refuse channels-last images that are neither gray, RGB nor RGBA."""
    if len(shape) == 4 and shape[-1] not in _CHANNELS:
        first = " (channels first? transpose to (N, H, W, C))" if shape[1] in _CHANNELS else ""
        raise ValueError(
            f"{what} must be (N, H, W) gray or (N, H, W, C) with C = 1 (gray), 3 (RGB) or 4 "
            f"(RGBA) channels; got shape {tuple(shape)}{first}"
        )


def integer_images_as_uint8(X: np.ndarray) -> np.ndarray:
    """Integer (non-uint8) pixels in 0-255 as uint8, channels last like uint8 images;
    other integer values are refused (they are not 8-bit pixels)."""
    if X.size:
        lo, hi = int(X.min()), int(X.max())
        if lo < 0 or hi > 255:
            raise ValueError(
                f"X is an integer ({X.dtype}) image array with values from {lo} to {hi}; integer "
                "images are read as 8-bit pixels in 0-255: pass uint8 (N, H, W, C) images, or "
                "float (N, C, H, W) pixels in [0, 1] (e.g. 16-bit images divided by 65535)"
            )
    return X.astype(np.uint8)


def preprocess_uint8(images: np.ndarray, pp: Preprocessing) -> torch.Tensor:
    """uint8 (N, H, W, C) RGB -> normalised float (N, 3, h, w) model input."""
    check_image_channels(images.shape)
    # np.require copies read-only slices (e.g. memmaps), which torch cannot wrap.
    x = torch.from_numpy(np.require(images, requirements=["C", "W"]))
    if x.ndim == 3:
        x = x.unsqueeze(-1)
    x = x.permute(0, 3, 1, 2).float()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    elif x.shape[1] == 4:
        x = x[:, :3]
    return _normalise(_resize_crop(x, pp), pp, pp.scale)


def _preprocess_unit_float(x: torch.Tensor, pp: Preprocessing) -> torch.Tensor:
    """float (N, C, H, W) RGB in [0, 1] -> normalised model input."""
    x = x.float()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return _normalise(_resize_crop(x, pp), pp, pp.scale * 255.0)


_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


def _pil_to_rgb_uint8(im: "Image.Image") -> np.ndarray:
    """A PIL image in any mode -> uint8 (H, W, 3) RGB, upright.

    ``convert("RGB")`` clips: 16-bit pixels become 0/255 and float pixels 0/1. Those
    modes are scaled to 0-255 first: 16-bit integers (``I;16``) by 255/65535; 32-bit
    integers (``I``, e.g. TIFF, or 16-bit PNGs in older Pillow) by their range: values
    up to 255 as 8-bit pixels, up to 65535 as 16-bit ones, larger ones as 32-bit;
    float (``F``) pixels in [0, 1] by 255, float pixels above 1 are taken as 0-255
    values, or as 0-65535 values when above 255. EXIF orientation (a phone photo
    stored sideways) is applied.
    """
    if im.getexif().get(0x0112, 1) not in (None, 1):  # 0x0112: EXIF orientation
        im = ImageOps.exif_transpose(im) or im
    if im.mode in _SIXTEEN_BIT or im.mode in ("I", "F"):
        a = np.asarray(im, dtype=np.float64)
        if a.size and not np.isfinite(a).all():
            raise ValueError(f"{im.mode} image with NaN or infinite pixel values")
        peak = float(a.max()) if a.size else 0.0
        if im.mode == "F":
            scale = 255.0 if peak <= 1.0 else (1.0 if peak <= 255.0 else 255.0 / 65535.0)
        elif im.mode == "I":  # 32-bit container: read the values' own range
            scale = 1.0 if peak <= 255.0 else (255.0 / 65535.0 if peak <= 65535.0 else 255.0 / (2**31 - 1))
        else:
            scale = 255.0 / 65535.0
        gray = np.clip(np.rint(a * scale), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im)


def decode_image(source: "str | os.PathLike | bytes | Image.Image") -> np.ndarray:
    """Decode an image file, its bytes or a PIL image into uint8 (H, W, 3) RGB.

    The one decoder of skdlc (the scorer, the command line and the TorchServe handler
    all use it): EXIF orientation applied, 16-bit and float images scaled to 0-255
    (see :func:`_pil_to_rgb_uint8`), every other mode converted to RGB.

    Raises
    ------
    ImageReadError
        A path that is no file or does not decode (names the path).
    ValueError, OSError
        Bytes or an image that do not decode (the caller names them).
    """
    if isinstance(source, Image.Image):
        return _pil_to_rgb_uint8(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        import io

        with Image.open(io.BytesIO(bytes(source))) as im:
            return _pil_to_rgb_uint8(im)
    return _read_image(os.fspath(source))


def _read_image(path: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise ImageReadError(str(path), "no such file")
    try:
        with Image.open(path) as im:
            return _pil_to_rgb_uint8(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(str(path), f"not a readable image ({exc})") from exc


def _item_to_uint8_or_float(item: Any) -> np.ndarray | torch.Tensor:
    """One dataset item -> HWC uint8 array, or CHW float tensor in [0, 1]."""
    if isinstance(item, (tuple, list)) and len(item) >= 1 and not isinstance(item[0], (int, float)):
        item = item[0]  # (image, label) pairs from torchvision-style datasets
    if isinstance(item, Image.Image):
        return _pil_to_rgb_uint8(item)
    if isinstance(item, (str, os.PathLike)):
        return _read_image(os.fspath(item))
    if isinstance(item, torch.Tensor):
        if item.is_floating_point():
            return item
        item = item.numpy()
    arr = np.asarray(item)
    if arr.dtype == np.uint8:
        return arr
    if np.issubdtype(arr.dtype, np.integer):
        return integer_images_as_uint8(arr[None])[0]
    return torch.from_numpy(arr.astype(np.float32))


def _placeholder(pp: Preprocessing) -> torch.Tensor:
    """An all-NaN model input: the mark of an image that could not be read."""
    return torch.full((1, 3, *pp.input_size), float("nan"))


def _stack_items(items: list, pp: Preprocessing, skip: bool = False) -> torch.Tensor:
    out = []
    for it in items:
        try:
            x = _item_to_uint8_or_float(it)
        except ImageReadError:
            if not skip:
                raise
            out.append(_placeholder(pp))
            continue
        if isinstance(x, torch.Tensor):
            if x.ndim == 2:
                x = x.unsqueeze(0)
            out.append(_preprocess_unit_float(x.unsqueeze(0), pp))
        else:
            out.append(preprocess_uint8(x[None], pp))
    return torch.cat(out)


# --------------------------------------------------------------------------- batching
@dataclass
class Batches(torch.utils.data.Dataset):
    """A map-style dataset whose i-th item is the i-th ready batch.

    Building whole batches inside DataLoader workers overlaps decoding with the model.
    """

    n: int
    batch_size: int
    make: Callable[[int, int], Any]

    def __len__(self) -> int:
        return (self.n + self.batch_size - 1) // self.batch_size

    def __getitem__(self, i: int):
        start = i * self.batch_size
        return self.make(start, min(start + self.batch_size, self.n))


def check_finite(X: np.ndarray) -> None:
    if np.issubdtype(X.dtype, np.floating) and not np.isfinite(X).all():
        bad = int((~np.isfinite(X.reshape(len(X), -1))).any(axis=1).sum())
        raise ValueError(f"X contains NaN or infinity in {bad} sample(s); clean or drop them first")


def _warn_if_not_unit_range(X: np.ndarray) -> None:
    """Float images are read as pixels in [0, 1]; 0-255 values would be 255x too bright."""
    if X.size and np.issubdtype(X.dtype, np.floating):
        peak = float(X.max())
        if peak > 2.0:
            warnings.warn(
                f"X is a float image array with values up to {peak:g}; float images are read "
                "as pixels in [0, 1]. Divide by 255, or pass uint8 (N, H, W, C) images.",
                UserWarning,
                stacklevel=4,
            )


def _array_batches(X: np.ndarray, backbone: Backbone, batch_size: int) -> Batches:
    pp = backbone.preprocessing
    if X.dtype == object:
        return _list_batches(list(X), backbone, batch_size)
    if np.iscomplexobj(X):
        raise ValueError("X has a complex dtype; images must be real-valued")
    check_finite(X)
    if pp is None:
        def make(a, b):
            return torch.from_numpy(np.require(X[a:b], np.float32, ["C", "W"]))
        return Batches(len(X), batch_size, make)
    if X.ndim not in (3, 4):
        raise ValueError(
            f"backbone {backbone.name!r} expects images: an array of shape (N, H, W, C) "
            f"uint8, (N, H, W) or (N, C, H, W) float; got shape {X.shape}"
        )
    what = "a uint8 image array"
    if np.issubdtype(X.dtype, np.integer) and X.dtype != np.uint8:
        what = f"an integer ({X.dtype}) image array"
        X = integer_images_as_uint8(X)  # int64 pixels 0-255 are 8-bit images, not floats
    if X.dtype == np.uint8:
        check_image_channels(X.shape, what)
        return Batches(len(X), batch_size, lambda a, b: preprocess_uint8(X[a:b], pp))
    _warn_if_not_unit_range(X)
    if X.ndim == 3:
        X = X[:, None]
    if X.shape[1] not in (1, 3):
        raise ValueError(
            f"a float image array must be (N, C, H, W) with C in (1, 3), got shape {X.shape}; "
            "pass uint8 for channels-last images"
        )
    return Batches(
        len(X),
        batch_size,
        lambda a, b: _preprocess_unit_float(torch.from_numpy(np.require(X[a:b], requirements=["C", "W"])), pp),
    )


_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff",
                   ".ppm", ".pgm", ".pbm")  # fmt: skip


def input_kind(backbone: Backbone) -> str:
    """What a backbone takes: "text" (strings), "images" or "arrays" (as given)."""
    if backbone.collate is not None:
        return "text"
    return "images" if backbone.preprocessing is not None else "arrays"


def _looks_like_image_files(X: Sequence) -> bool:
    head = list(X[:50])
    return bool(head) and all(
        isinstance(x, os.PathLike) or (isinstance(x, str) and x.lower().endswith(_IMAGE_SUFFIXES)
                                       and os.path.isfile(x))
        for x in head
    )


def check_input_kind(X: Sequence, backbone: Backbone) -> None:
    """Refuse image files for a text backbone and text for an image backbone."""
    kind = input_kind(backbone)
    if kind == "text" and _looks_like_image_files(X):
        raise ValueError(
            f"backbone {backbone.name!r} takes text (a list of strings), but X is a list of "
            "image files; choose an image backbone (e.g. 'efficientnet_lite0')"
        )
    if kind == "images" and len(X) and all(isinstance(x, str) for x in X[:50]):
        head = X[:50]
        if not any(os.path.isfile(x) or os.sep in x or x.lower().endswith(_IMAGE_SUFFIXES) for x in head):
            raise ValueError(
                f"backbone {backbone.name!r} takes images, but X is a list of strings that "
                f"are neither image files nor image paths (e.g. {head[0][:60]!r}); for text, "
                "choose a text backbone (e.g. 'all-MiniLM-L6-v2')"
            )


def _list_batches(X: Sequence, backbone: Backbone, batch_size: int, skip: bool = False) -> Batches:
    check_input_kind(X, backbone)
    if backbone.collate is not None:
        items = list(X)
        return Batches(len(items), batch_size, lambda a, b: backbone.collate(items[a:b]))
    pp = backbone.preprocessing
    if pp is None:
        raise ValueError(
            f"backbone {backbone.name!r} has no image preprocessing, so X must be a numeric "
            "array it can take as-is, not a list of files or images"
        )
    if _is_pathlike_list(X) and not skip:
        missing = [os.fspath(p) for p in X if not os.path.isfile(p)]
        if missing:
            more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
            raise ImageReadError(missing[0], f"no such file; missing: {missing[:3]}{more}")
    return Batches(len(X), batch_size, lambda a, b: _stack_items(list(X[a:b]), pp, skip))


def _dataset_batches(ds: torch.utils.data.Dataset, backbone: Backbone, batch_size: int,
                     skip: bool = False) -> Batches:
    if backbone.collate is not None:
        return Batches(len(ds), batch_size, lambda a, b: backbone.collate([ds[i] for i in range(a, b)]))
    pp = backbone.preprocessing
    if pp is None:
        def make(a, b):
            return torch.stack([torch.as_tensor(_first(ds[i]), dtype=torch.float32) for i in range(a, b)])
        return Batches(len(ds), batch_size, make)
    return Batches(len(ds), batch_size, lambda a, b: _stack_items([ds[i] for i in range(a, b)], pp, skip))


def _first(item):
    return item[0] if isinstance(item, (tuple, list)) else item


def make_batches(X: Any, backbone: Backbone, batch_size: int, on_error: str = "raise") -> Batches:
    """Wrap X as ready-to-run batches for ``backbone`` (validates X on the way).

    ``on_error="skip"``: an image file that does not decode becomes an all-NaN
    placeholder row instead of an :class:`ImageReadError` (see the module docstring).
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    skip = on_error == "skip"
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    if isinstance(X, np.ndarray) and X.dtype != object:
        if len(X) == 0:
            raise ValueError("X is empty: no samples to score")
        return _array_batches(X, backbone, batch_size)
    if isinstance(X, torch.utils.data.Dataset) and not isinstance(X, (list, tuple)):
        if n_samples(X) == 0:
            raise ValueError("X is empty: no samples to score")
        return _dataset_batches(X, backbone, batch_size, skip)
    if isinstance(X, (list, tuple, np.ndarray)):
        if len(X) == 0:
            raise ValueError("X is empty: no samples to score")
        return _list_batches(list(X) if not isinstance(X, list) else X, backbone, batch_size, skip)
    raise TypeError(
        "X must be an image array, a list of image paths or arrays, a list of strings "
        f"(text backbones) or a torch Dataset; got {type(X).__name__}"
    )


def decodes_files(X: Any) -> bool:
    """Whether reading X costs real decoding work (files, datasets), not just slicing."""
    return not (isinstance(X, np.ndarray) and X.dtype != object)


def read_error(X: Any, row: int) -> ImageReadError:
    """The error of row ``row`` of X, marked unreadable while scoring: read it again to say why."""
    item = X[int(row)]
    item = item[0] if isinstance(item, (tuple, list)) and item and not isinstance(item[0], (int, float)) else item
    if isinstance(item, (str, os.PathLike)):
        try:
            _read_image(os.fspath(item))
        except ImageReadError as exc:
            return exc
        return ImageReadError(os.fspath(item), "could not be read when it was scored (a cached result)")
    return ImageReadError(f"<row {int(row)}>", "could not be read")
