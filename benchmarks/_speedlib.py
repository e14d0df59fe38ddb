"""Helpers of benchmarks/speed.py: data, timers, bare passes, instrumentation."""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import sys
import time
from collections import defaultdict
from typing import Callable

import numpy as np
import torch

import skdlc
from skdlc import _data, _driver, _engine, _masking, _onnx, _onnx_engine, _onnx_export


def env_info() -> dict:
    import onnx
    import onnxruntime as ort

    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    return {
        "cpu": cpu,
        "usable_cores": len(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "onnx": onnx.__version__,
        "skdlc": skdlc.__version__,
        "command": "python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:]),
    }


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n Fashion-MNIST test images (uint8 28x28 RGB), n/10 per class."""
    from skdlc.datasets import load_fashion_mnist

    X, y = load_fashion_mnist(n_per_class=max(1, n // 10), random_state=seed, return_X_y=True)
    return X[:n], y[:n]


def backbone(image_size: int | None = None):
    import dataclasses

    bb = skdlc.create_backbone("efficientnet_lite0")
    if image_size is not None:
        bb = dataclasses.replace(
            bb, preprocessing=dataclasses.replace(bb.preprocessing, input_size=(image_size, image_size))
        )
    return bb


def predecode(X, bb, batch_size: int) -> list[torch.Tensor]:
    b = _data.make_batches(X, bb, batch_size)
    return [b[i] for i in range(len(b))]


# ----------------------------------------------------------------------------- timers
class Parts:
    """Seconds spent in named parts of a run (patched in with :func:`instrument`)."""

    def __init__(self):
        self.t = defaultdict(float)
        self.c = defaultdict(float)
        self.n = defaultdict(int)

    def wrap(self, name: str, fn: Callable) -> Callable:
        def timed(*a, **k):
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return fn(*a, **k)
            finally:
                self.t[name] += time.perf_counter() - t0
                self.c[name] += time.process_time() - c0
                self.n[name] += 1

        return timed

    def as_dict(self) -> dict:
        """Wall seconds per part."""
        return {k: round(v, 3) for k, v in sorted(self.t.items())}

    def cpu_dict(self) -> dict:
        """CPU seconds per part."""
        return {k: round(v, 3) for k, v in sorted(self.c.items())}


@contextlib.contextmanager
def instrument(parts: Parts):
    """Time decoding, tracing/export, mask computation, session builds, forward passes
    and losses of whatever DLC run happens inside (parts may nest: a session build
    includes the masks it needs)."""
    targets = [
        (_data.Batches, "__getitem__", "decode"),
        (_onnx_export, "_export", "onnx export (trace)"),
        # the thresholds of a path (one pass over the weights) and each ratio's masks
        (_masking.MaskPlan, "prepare", "masks"),
        (_masking.MaskPlan, "_mask", "masks"),
        (_onnx_engine.OnnxEngine, "_prepare", "onnx session build (incl. masks)"),
        (_onnx_engine.OnnxEngine, "_run", "forward"),
        (_engine.TorchEngine, "_run", "forward"),
        (_driver, "per_class_losses", "losses"),
        (_driver, "class_sums", "prototypes"),
    ]
    saved = []
    for owner, attr, name in targets:
        orig = owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)
        saved.append((owner, attr, orig))
        setattr(owner, attr, parts.wrap(name, orig))
    try:
        yield parts
    finally:
        for owner, attr, orig in reversed(saved):
            setattr(owner, attr, orig)


@contextlib.contextmanager
def torch_eager():
    """The torch engine as it was before this benchmark's work: no channels_last."""
    orig = _engine.TorchEngine._use_channels_last
    _engine.TorchEngine._use_channels_last = lambda self: False
    try:
        yield
    finally:
        _engine.TorchEngine._use_channels_last = orig


def cpu_seconds() -> float:
    """CPU seconds of this process (all threads) and of its finished children (the
    DataLoader workers that decode batches)."""
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ch.ru_utime + ch.ru_stime


class Clock:
    """Wall and CPU seconds since creation. CPU seconds are the contention-robust measure
    on a shared machine: they count work, not waiting."""

    def __init__(self):
        self.w, self.c = time.perf_counter(), cpu_seconds()

    def read(self) -> tuple[float, float]:
        return time.perf_counter() - self.w, cpu_seconds() - self.c


def timed(fn: Callable, *a, **k):
    """``fn(*a, **k)``, wall seconds, CPU seconds."""
    clock = Clock()
    out = fn(*a, **k)
    return (out, *clock.read())


# ----------------------------------------------------------------------------- bare passes
def bare_torch(module: torch.nn.Module, batches: list[torch.Tensor], channels_last: bool) -> tuple[float, float]:
    """One unmasked forward pass over pre-decoded batches, the way TorchEngine runs it
    (``channels_last``: 4-d batches converted to channels-last; weights as they are):
    (wall, CPU) seconds."""
    module.eval()

    def fmt(x):
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x

    with torch.inference_mode():
        module(fmt(batches[0]))  # warm-up at the batch shape (oneDNN creates kernels per shape)
        clock = Clock()
        for x in batches:
            module(fmt(x))
        return clock.read()


def ort_session(bb, example: torch.Tensor):
    import onnxruntime as ort

    g = _onnx._graphs_for(bb, "layer", example)
    return ort.InferenceSession(g.variant(0.0), _onnx.session_options(), providers=["CPUExecutionProvider"])


def bare_ort(sess, batches: list[torch.Tensor]) -> tuple[float, float]:
    """One forward pass of an ONNX Runtime session over pre-decoded batches: (wall, CPU) s."""
    xs = [np.ascontiguousarray(x.numpy()) for x in batches]
    sess.run(None, {"input": xs[0]})  # warm-up at the batch shape
    clock = Clock()
    for x in xs:
        sess.run(None, {"input": x})
    return clock.read()


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rel_diff(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))
