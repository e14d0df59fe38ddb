"""Distributed scoring on Ray Data: DLC's two phases as ``map_batches`` over an actor pool.

DLC is embarrassingly parallel apart from the class prototypes, so a run is:

1. **features** (Ray Data): the batch indices are mapped with ``map_batches`` through
   a pool of actors (``ActorPoolStrategy``). Each actor gets the fitted backbone and
   the data (an array, a list of paths, a manifest) from Ray's object store once
   (``ray.put``), masks the backbone at every ratio of the run once, then decodes its
   batches (image files are read in parallel, by the actors) and runs each through
   all masked variants. The features are materialised in Ray's object store (spilled
   to disk when they do not fit), not on the driver.
2. **prototypes**: one task per block of features gives per-class feature sums where
   the block lives; the driver adds the (K, D) sums of each variant up and divides by
   the counts.
3. **losses**: one task per block gives its rows' per-class losses against the
   prototypes; the driver collects the (N, K) scores.

On a single-node cluster, steps 2 and 3 read the blocks from the shared-memory
object store in the driver instead (no copy, and no worker to start); on several
nodes they run as tasks beside their blocks. Either way only sums and losses travel.

This module is only a *source* of features for the path driver
(:mod:`skdlc._driver`): the functions applied to each block (class sums, losses) and
the path logic (which ratios, unmasked prototypes, embeddings, ``"auto"``) are the
driver's, so the scores equal the local backend's.

GPU actors are used when the cluster has GPUs (``num_gpus`` per actor, default 1);
otherwise one actor per CPU, each running torch on one thread.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

__all__ = ["RayBackend", "RaySource", "require_ray"]

_MIN_BATCHES_PER_ACTOR = 4
_MAX_BATCHES_PER_CALL = 8


@dataclass(frozen=True)
class RayBackend:
    """Score on a Ray cluster: ``DLCScorer(..., backend=RayBackend(address="auto"))``.

    Parameters
    ----------
    address : str or None, default=None
        Cluster to join when Ray is not initialised in this process yet ("auto",
        "ray://head:10001"); None starts a local Ray (or joins ``$RAY_ADDRESS``). A Ray
        already initialised is used as it is.
    num_gpus : float or None, default=None
        GPUs per actor; None: 1 when the cluster has GPUs, else 0 (one CPU actor per CPU).
    """

    address: str | None = None
    num_gpus: float | None = None

    def __post_init__(self):
        if self.address is not None and not isinstance(self.address, str):
            raise TypeError(f"RayBackend address must be a str or None, got {type(self.address).__name__}")
        if self.num_gpus is not None and not (isinstance(self.num_gpus, (int, float)) and self.num_gpus >= 0):
            raise ValueError(f"RayBackend num_gpus must be a number >= 0 or None, got {self.num_gpus!r}")


def require_ray():
    """Import Ray and Ray Data, or fail with the install line."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "backend='ray' needs Ray Data: pip install 'skdlc[ray]' (or 'ray[data]>=2.40')"
        ) from exc
    return ray


def _connect(address: str | None, verbose: bool):
    ray = require_ray()
    if not ray.is_initialized():
        # address=None starts a local Ray (or joins the one named by $RAY_ADDRESS).
        ray.init(address=address, include_dashboard=False, log_to_driver=verbose,
                 configure_logging=verbose, logging_level="info" if verbose else "warning")
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = bool(verbose)
    ctx.enable_operator_progress_bars = bool(verbose)
    if not verbose:
        import logging

        logging.getLogger("ray.data").setLevel(logging.WARNING)
    return ray


def _is_local_module(mod) -> bool:
    """A user's own module (a script's folder, a test folder): not installed, not ours."""
    import sysconfig

    name = getattr(mod, "__name__", "")
    if name in ("__main__", "builtins") or name.split(".")[0] in ("skdlc", "torch", "numpy"):
        return False  # __main__ is pickled by value anyway
    path = os.path.abspath(getattr(mod, "__file__", None) or "")
    if not path or not path.endswith(".py"):
        return False
    installed = {sysconfig.get_paths()[k] for k in ("purelib", "platlib", "stdlib", "platstdlib")}
    return not any(path.startswith(os.path.abspath(p) + os.sep) for p in installed)


def _put(ray, obj, types: Sequence[type] = ()):
    """``ray.put``, shipping classes from the user's own modules by value.

    Workers on a cluster (and even local Ray workers) cannot import a model class
    defined in a script's folder or a test module; pickling those classes by value
    lets any picklable ``nn.Module`` or Dataset travel without a ``runtime_env``.
    """
    import ray.cloudpickle as cp

    mods = {sys.modules.get(t.__module__) for t in types}
    registered = []
    for mod in mods:
        if mod is not None and _is_local_module(mod):
            cp.register_pickle_by_value(mod)
            registered.append(mod)
    try:
        return ray.put(obj)
    finally:
        for mod in registered:
            cp.unregister_pickle_by_value(mod)


# --------------------------------------------------------------------------- actors & maps
class _FeatureActor:
    """A Ray actor: the engine's own code, backbone loaded once, each ratio masked once."""

    def __init__(self, refs: list, run: Sequence[float], masking: str, batch_size: int,
                 threads: int, use_gpu: bool, on_error: str = "raise"):
        import ray
        import torch

        from ._data import make_batches
        from ._engine import TorchEngine

        torch.set_num_threads(max(1, int(threads)))
        backbone, X = ray.get(refs[0]), ray.get(refs[1])
        device = torch.device("cuda" if use_gpu else "cpu")
        self.engine = TorchEngine(backbone, masking=masking, device=device, retain=True)
        self.engine.mark_unreadable = on_error == "skip"
        self.run = [float(r) for r in run]
        self.batches = make_batches(X, backbone, batch_size, on_error=on_error)

    def __call__(self, batch: dict) -> dict:
        rows, feats = [], []
        bs, n = self.batches.batch_size, self.batches.n
        for j in np.asarray(batch["id"]).tolist():
            a, b = j * bs, min(j * bs + bs, n)
            f = self.engine.batch_features(self.batches[j], self.run)
            rows.append(np.arange(a, b, dtype=np.int64))
            feats.append(np.stack(f, axis=1))  # (rows, T, D)
        return {"row": np.concatenate(rows), "f": np.concatenate(feats).astype(np.float32, copy=False)}


def _numpy(block, columns: list[str]) -> dict:
    from ray.data.block import BlockAccessor

    return BlockAccessor.for_block(block).to_numpy(columns)


def _block_apply(block, i: int, fn, order, *args):
    """``(rows, fn(rows, features of variant i, *args))`` for one block, where it lives."""
    b = _numpy(block, ["row", "f"])
    rows = b["row"] if order is None else order[b["row"]]
    return rows, fn(rows, b["f"][:, i], *args)


# --------------------------------------------------------------------------- source
class RayFeatures:
    """Phase 1 on Ray Data; a :class:`skdlc._driver.FeatureSource` over its output.

    The features are materialised in Ray's object store. The reduce (class sums) and
    the loss map then run per block of that dataset (:meth:`RaySource.map_blocks`), and
    only (T, K, D) sums and (rows, K) losses come back to the driver. (A further Ray
    Data execution would cost its own planning and worker start-up, seconds; tasks on
    the materialised blocks cost milliseconds.)
    """

    def __init__(self, job: "RaySource", run: list[float]):
        ray = job.ray
        self.job, self.run, self.n = job, list(run), job.n
        n_batches = -(-job.n // job.batch_size)
        use_gpu = job.num_gpus > 0
        actor_opts: dict[str, Any] = {"num_cpus": job.cpus_per_actor}
        if use_gpu:
            actor_opts["num_gpus"] = job.num_gpus
        # Batch indices from the driver: no read task competes with the actors for CPUs
        # (with every CPU held by an actor, a read task would never be scheduled).
        # A few batches per actor call: fewer, larger blocks (each block costs Ray Data
        # a round of scheduling and serialisation), yet >= 4 calls per actor to balance.
        per_call = max(1, min(_MAX_BATCHES_PER_CALL, n_batches // (4 * job.n_actors)))
        ids = np.arange(n_batches, dtype=np.int64)
        n_blocks = max(1, min(n_batches, 8 * job.n_actors))
        ds = ray.data.from_numpy(np.array_split(ids, n_blocks)).rename_columns({"data": "id"})
        ds = ds.map_batches(
            _FeatureActor,
            batch_size=per_call,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=job.n_actors),
            fn_constructor_kwargs={
                "refs": job.refs,
                "run": self.run,
                "masking": job.masking,
                "batch_size": job.batch_size,
                "threads": job.threads_per_actor,
                "use_gpu": use_gpu,
                "on_error": job.on_error,
            },
            **actor_opts,
        )
        self.ds = ds.materialize()
        self.blocks = self.ds.to_arrow_refs()
        job.n_forward_batches += n_batches * len(self.run)

    def variants(self):
        return (RayVariant(self, i, r) for i, r in enumerate(self.run))


class RayVariant:
    """Variant ``i`` of a :class:`RayFeatures`: the driver's functions run per block."""

    def __init__(self, features: RayFeatures, i: int, ratio: float):
        self.features, self.i, self.ratio = features, i, float(ratio)

    def map(self, fn, *args):
        job = self.features.job
        # Large arrays (the labels) go to the object store once, not with every task.
        args = tuple(job.ray.put(a) if isinstance(a, np.ndarray) and a.nbytes > 1 << 16 and not job.single_node
                     else a for a in args)
        out = []
        job.map_blocks(_block_apply, self.features.blocks, (self.i, fn, job.order) + args, out.append)
        return iter(out)


class RaySource:
    """A :class:`skdlc._driver.FeatureSource` on Ray: one Ray Data job per run of ratios.

    What every run of one fit or transform shares lives here: the connection, the
    backbone and data in the object store, the pool size.
    """

    def __init__(self, backbone, X, *, masking: str, batch_size: int,
                 address: str | None = None, num_gpus: float | None = None, verbose: bool = False,
                 order: np.ndarray | None = None, on_error: str = "raise"):
        from ._data import n_samples

        self.order = order  # input row of each batch row (text grouped by length)
        self.on_error = on_error
        self.ray = ray = _connect(address, bool(verbose))
        self.masking = masking
        self.n = n_samples(X)
        self.batch_size = int(batch_size)
        bb = backbone
        self.refs = [
            _put(ray, bb, [type(m) for m in bb.module.modules()]),
            _put(ray, X, [type(X)]),
        ]
        res = ray.cluster_resources()
        cpus, gpus = float(res.get("CPU", 1.0)), float(res.get("GPU", 0.0))
        if num_gpus is None:
            num_gpus = 1.0 if gpus >= 1 else 0.0
        if num_gpus > 0 and gpus < num_gpus:
            raise ValueError(f"num_gpus={num_gpus} per actor but the Ray cluster has {gpus:g} GPU(s)")
        self.num_gpus = float(num_gpus)
        if self.num_gpus > 0:
            self.n_actors = max(1, int(gpus // self.num_gpus))
            self.cpus_per_actor = max(1, int(cpus // self.n_actors))
        else:
            self.n_actors = max(1, int(cpus))
            self.cpus_per_actor = 1
        # Every actor costs a process, torch's import and a copy of the model: give
        # each at least _MIN_BATCHES_PER_ACTOR batches, so tiny jobs use fewer.
        n_batches = -(-self.n // self.batch_size)
        self.n_actors = max(1, min(self.n_actors, -(-n_batches // _MIN_BATCHES_PER_ACTOR)))
        self.threads_per_actor = self.cpus_per_actor
        self.n_forward_batches = 0
        self._tasks: dict = {}
        self.single_node = sum(1 for node in ray.nodes() if node.get("Alive")) == 1

    def variants(self, run, desc):
        return RayFeatures(self, [float(r) for r in run]).variants()

    def map_blocks(self, fn, blocks: list, args: tuple, consume) -> None:
        """``consume(fn(block, *args))`` for every block, as results arrive.

        Several nodes: one Ray task per block, scheduled where the block lives, at most
        ``2 x CPUs`` in flight, each result consumed (added up, scattered) as soon as
        it is done, so the driver never holds more than a few. ``fn`` is shipped by
        value with the one module it needs: by reference, every fresh worker would
        import skdlc, hence torch and sklearn (seconds), to run a few numpy lines.

        One node: the blocks are in this machine's shared memory; the driver reads
        them there (no copy) instead of starting workers.
        """
        ray = self.ray
        if self.single_node:
            args = tuple(ray.get(a) if isinstance(a, ray.ObjectRef) else a for a in args)
            for b in blocks:
                consume(fn(ray.get(b), *args))
            return
        import ray.cloudpickle as cp

        from . import _driver, _losses, _prototypes

        if fn not in self._tasks:
            self._tasks[fn] = ray.remote(num_cpus=1)(fn)
        limit = max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
        pending, todo = [], list(blocks)
        mods = [sys.modules[__name__], _driver, _losses, _prototypes]
        while todo or pending:
            while todo and len(pending) < limit:
                for m in mods:
                    cp.register_pickle_by_value(m)
                try:  # Ray pickles the function at its first .remote()
                    pending.append(self._tasks[fn].remote(todo.pop(0), *args))
                finally:
                    for m in mods:
                        cp.unregister_pickle_by_value(m)
            done, pending = ray.wait(pending, num_returns=1)
            consume(ray.get(done[0]))

    def source(self, run: list[float]) -> RayFeatures:
        return RayFeatures(self, run)
