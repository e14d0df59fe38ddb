"""Graph surgery: the masked variants of one exported graph, by masking its weight initializers."""

from __future__ import annotations

import weakref
from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from . import _onnx_export
from ._backbones._base import Backbone
from ._masking import MASKING_MODES, compute_masks, maskable_parameters, masked
from ._onnx_export import _PREFIX
from ._onnx_runtime import _import_onnx

class _MaskedGraphs:
    """One exported graph of a backbone; masked variants by masking its initializers.

    Holds the module weakly: a cached export never keeps a model alive.
    """

    def __init__(self, module: nn.Module, name: str, masking: str, example: torch.Tensor):
        onnx, numpy_helper = _import_onnx()
        if masking not in MASKING_MODES:
            raise ValueError(f"masking must be one of {MASKING_MODES}, got {masking!r}")
        self._module = weakref.ref(module)
        self.name = name
        self.masking = masking
        self.example = example.detach().cpu()
        try:
            self.base = onnx.load_from_string(_onnx_export._cached_export(module, example, name))
        except Exception:  # noqa: BLE001 - e.g. a damaged cache file: trace again
            self.base = onnx.load_from_string(_onnx_export._export(module, example, name))
        self.nbytes = self.base.ByteSize()
        self.index = self._match_initializers(numpy_helper, maskable_parameters(module))
        self._weights: dict[str, np.ndarray] | None = None
        self._order = None

    @property
    def module(self) -> nn.Module:
        module = self._module()
        if module is None:  # pragma: no cover - the cache drops dead entries
            raise RuntimeError("the backbone of this ONNX export no longer exists")
        return module

    def _match_initializers(self, numpy_helper, named) -> dict[str, int] | None:
        """Initializer index of every maskable parameter, or None if not all found."""
        inits = list(self.base.graph.initializer)
        by_name = {init.name: k for k, init in enumerate(inits)}
        arrays: dict[int, np.ndarray] = {}

        def array(k):
            if k not in arrays:
                arrays[k] = numpy_helper.to_array(inits[k])
            return arrays[k]

        wanted = [(name, p.detach().cpu().numpy()) for name, p in named]
        index: dict[str, int] = {}
        for name, want in wanted:
            k = by_name.get(_PREFIX + name, by_name.get(name))
            if k is None or array(k).shape != want.shape or not np.array_equal(array(k), want):
                taken = set(index.values())
                same = [
                    j for j, init in enumerate(inits)
                    if tuple(init.dims) == want.shape and j not in taken
                    and np.array_equal(array(j), want)
                ]
                if len(same) != 1:
                    return None
                k = same[0]
            index[name] = k
        # A weight duplicated into a second initializer would stay unmasked there.
        used = set(index.values())
        for j, init in enumerate(inits):
            if j in used or len(init.dims) < 2:
                continue
            for _, want in wanted:
                if tuple(init.dims) == want.shape and np.array_equal(array(j), want):
                    return None
        return index

    def _sorted(self) -> bool:
        """Sort the maskable weights by magnitude once, for every ratio to come.

        A stable sort of ``|w|`` puts first exactly the entries that
        :func:`~skdlc._masking.compute_masks` zeroes: the k smallest, ties broken by
        position (per tensor for "layer"; over the concatenation, in parameter order,
        for "global"), so the first k of the order are its mask. One sort replaces a
        selection per ratio (tests check the masks are identical).
        """
        if self._order is not None:
            return True
        _, numpy_helper = _import_onnx()
        inits = self.base.graph.initializer
        weights = {n: numpy_helper.to_array(inits[k]).reshape(-1) for n, k in self.index.items()}
        total = sum(w.size for w in weights.values())
        if total > _SORT_MAX or any(w.dtype.kind != "f" or w.dtype.itemsize > 8 for w in weights.values()):
            return False  # huge models: per-ratio selection, as the torch path does
        idx = np.int32 if total < 2**31 else np.int64
        names = list(self.index)  # maskable parameter order
        if self.masking == "layer":
            order = {n: np.argsort(np.abs(weights[n]), kind="stable").astype(idx) for n in names}
        else:
            order = np.argsort(np.concatenate([np.abs(weights[n]) for n in names]), kind="stable").astype(idx)
        self._weights, self._order = weights, order
        return True

    def _masked_weights(self, ratio: float) -> dict[str, np.ndarray]:
        """Each maskable weight (flat) with the entries ``compute_masks`` removes zeroed."""
        if not 0.0 <= ratio < 1.0:
            raise ValueError(f"mask ratio must be in [0, 1), got {ratio!r}")
        out = {}
        if self.masking == "layer":
            for n, w in self._weights.items():
                k = int(round(w.size * ratio))
                out[n] = w.copy()
                out[n][self._order[n][:k]] = 0
            return out
        total = sum(w.size for w in self._weights.values())
        gone = np.zeros(total, dtype=bool)
        gone[self._order[: int(round(total * ratio))]] = True
        start = 0
        for n, w in self._weights.items():
            out[n] = np.where(gone[start : start + w.size], np.zeros((), w.dtype), w)
            start += w.size
        return out

    def variant(self, ratio: float) -> bytes:
        """Serialized ONNX model of the variant masked at ``ratio``."""
        if ratio == 0.0:
            return self.base.SerializeToString()
        module = self.module
        if self.index is None:  # fallback: export the masked module itself
            with masked(module, ratio, self.masking):
                param = next(iter(module.parameters()), None)
                example = self.example if param is None else self.example.to(param.device)
                return _onnx_export._export(module, example, self.name)
        onnx, numpy_helper = _import_onnx()
        if self._sorted():
            weights = self._masked_weights(ratio)
        else:
            named = maskable_parameters(module)
            masks = compute_masks([p for _, p in named], ratio, self.masking)
            weights = {}
            for (name, p), m in zip(named, masks):
                w = p.detach().cpu().numpy().reshape(-1).copy()  # C order = logical order
                w[m.cpu().numpy()] = 0
                weights[name] = w
        model = onnx.ModelProto()
        model.CopyFrom(self.base)
        for name, w in weights.items():
            init = model.graph.initializer[self.index[name]]
            init.CopyFrom(numpy_helper.from_array(w.reshape(tuple(init.dims)), init.name))
        return model.SerializeToString()


_SORT_MAX = 50_000_000  # maskable weights beyond which masks are selected per ratio

# Exports of recent backbones: fit then transform (or a second fit) export once.
_GRAPHS: "OrderedDict[tuple, _MaskedGraphs]" = OrderedDict()
_GRAPHS_MAX = 2


def _graphs_for(backbone: Backbone, masking: str, example: torch.Tensor) -> _MaskedGraphs:
    from ._cache import fingerprint_module

    module = backbone.module
    key = (id(module), fingerprint_module(module), tuple(example.shape[1:]), str(example.dtype), masking)
    g = _GRAPHS.get(key)
    if g is None or g._module() is not module:
        g = _MaskedGraphs(module, backbone.name, masking, example)
        _GRAPHS[key] = g
        weakref.finalize(module, _GRAPHS.pop, key, None)
        while len(_GRAPHS) > _GRAPHS_MAX:
            _GRAPHS.popitem(last=False)
    _GRAPHS.move_to_end(key)
    return g
