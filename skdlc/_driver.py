"""The path driver: the one loop that turns per-ratio features into prototypes and losses.

Every execution path runs the method through here: the in-memory engines, the
resumable chunk store (:mod:`skdlc._chunks`), Ray (:mod:`skdlc._distributed`), the
ONNX export reader and the TorchServe handler. They differ only in their *source* of
features; the method (which passes are needed, prototypes, logits, losses, the
``"auto"`` growth and the calibrated path) lives once, below.

A :class:`Plan` says what to compute; a :class:`FeatureSource` yields one
:class:`Variant` per ratio asked for, in order. A variant holds the features of every
row under one masked model, wherever they are (an array, chunk files, Ray blocks), and
applies a function of this module to them piece by piece (``variant.map``): the
sources never compute a prototype or a loss themselves, so every source gives the
same numbers.

Passes: the path's ratios, plus one unmasked pass *off* the path when unmasked
prototypes or the embedding need the full model and 0 is not on the path. Prototypes
are returned for the path's ratios only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

import numpy as np

from . import _layout
from ._layout import class_index
from ._losses import per_class_losses
from ._prototypes import class_sums, means_from_sums

__all__ = [
    "AutoPath",
    "FeatureSource",
    "FitResult",
    "Plan",
    "ArraySource",
    "ArrayVariant",
    "EngineSource",
    "Variant",
    "fit",
    "transform",
    "transform_input",
    "embed",
    "class_index",
    "own_class",
    "calibrate",
    "ReuseSource",
    "UnreadableRows",
    "EmptyClasses",
    "unreadable",
]

# --------------------------------------------------------------------------- protocols
class Variant(Protocol):
    """The features (N, D) of every row under one masked model."""

    ratio: float

    def map(self, fn: Callable, *args) -> Iterator[tuple[Any, Any]]:
        """Yield ``(rows, fn(rows, features[rows], *args))`` over pieces covering all rows."""
        ...


class FeatureSource(Protocol):
    """Where the features come from (an engine, chunk files, Ray)."""

    n: int
    n_forward_batches: int

    def variants(self, run: Sequence[float], desc: str) -> Iterator[Variant]:
        """One variant per ratio of ``run``, in that order; each is used before the next is asked for."""
        ...


# --------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class AutoPath:
    """``mask_ratios="auto"``: grow the path in ``order`` until the ranking is stable."""

    order: tuple[float, ...]
    tol: float
    min_ratios: int = 3


@dataclass(frozen=True)
class Plan:
    """What to compute: the path (or how to grow it) and how samples meet prototypes."""

    ratios: tuple[float, ...] | None = None
    prototypes: str = "masked"
    logits: str = "cosine"
    temperature: float = 0.1
    embedding: bool = False
    auto: AutoPath | None = None
    skip_unreadable: bool = False  # rows marked unreadable (see unreadable()) leave the fit

    def __post_init__(self):
        if (self.ratios is None) == (self.auto is None):
            raise ValueError("a Plan needs exactly one of ratios or auto")
        if self.ratios is not None:
            object.__setattr__(self, "ratios", tuple(sorted({float(r) for r in self.ratios})))

    def needs_unmasked(self) -> bool:
        return self.prototypes == "unmasked" or self.embedding

    def fit_run(self, want_losses: bool) -> list[float]:
        """The passes of a fit: the path, with an unmasked pass in front when needed."""
        ratios = list(self.ratios)
        if not want_losses:  # unmasked prototypes: the full model alone gives them
            return [0.0]
        if self.needs_unmasked() and 0.0 not in ratios:
            return [0.0] + ratios
        return ratios

    def transform_run(self, ratios: Sequence[float]) -> list[float]:
        ratios = list(ratios)
        return [0.0] + ratios if self.embedding and 0.0 not in ratios else ratios


@dataclass
class FitResult:
    mask_ratios: tuple[float, ...]
    prototypes: np.ndarray
    losses: np.ndarray | None
    embedding: np.ndarray | None
    calibration: Any = None

    def as_dict(self) -> dict:
        return dict(mask_ratios=self.mask_ratios, prototypes=self.prototypes, losses=self.losses,
                    embedding=self.embedding, calibration=self.calibration)


# --------------------------------------------------------------------------- piece functions
class UnreadableRows(ValueError):
    """Rows whose input could not be read (their features carry the unreadable mark)."""

    def __init__(self, rows):
        self.rows = np.asarray(rows, dtype=np.int64)
        super().__init__(f"{self.rows.size} sample(s) could not be read (rows {self.rows[:5].tolist()})")


class EmptyClasses(ValueError):
    """Classes left without a readable sample (``classes``: their column indices)."""

    def __init__(self, classes):
        self.classes = [int(k) for k in classes]
        super().__init__(f"class(es) {self.classes} have no readable sample left")


def unreadable(feats: np.ndarray) -> np.ndarray:
    """Rows carrying the engine's mark of an unreadable input (every feature +inf)."""
    return np.isposinf(feats).all(axis=1)


def _input_rows(rows, idx: np.ndarray) -> np.ndarray:
    return idx + rows.start if isinstance(rows, slice) else np.asarray(rows)[idx]


def _check(feats: np.ndarray, rows, ratio: float, skip: bool = False) -> np.ndarray | None:
    """None when every row is finite; else the mask of rows marked unreadable (with ``skip``).

    Rows marked unreadable (an image that did not decode, with ``on_error="skip"``)
    are returned so that the caller leaves them out; without ``skip`` they are an
    :class:`UnreadableRows` error. Any other non-finite row is the backbone's.
    """
    if np.isfinite(feats).all():
        return None
    feats = np.asarray(feats)
    marked = unreadable(feats)
    if marked.any() and not skip:
        raise UnreadableRows(_input_rows(rows, np.flatnonzero(marked)))
    bad = np.flatnonzero(~marked & ~np.isfinite(feats).all(axis=1))
    if bad.size:
        first = _input_rows(rows, bad[:5])
        raise ValueError(
            f"the backbone returned NaN or infinite features at mask ratio {ratio:g} for "
            f"{bad.size} sample(s) (rows {first.tolist()}); check the input and the model "
            "(e.g. a layer that divides by a masked weight's norm)"
        )
    return marked


def _piece_sums(rows, feats, ratio, y_idx, n_classes, skip=False):
    marked = _check(feats, rows, ratio, skip)
    y = y_idx[rows]
    if marked is not None:
        feats, y = np.asarray(feats)[~marked], y[~marked]
    return class_sums(feats, y, n_classes), np.bincount(y, minlength=n_classes)


def _piece_losses(rows, feats, ratio, protos, logits, temperature, skip=False):
    marked = _check(feats, rows, ratio, skip)
    if marked is None:
        return per_class_losses(np.asarray(feats), protos, logits, temperature)
    out = np.full((len(feats), len(protos)), np.nan)
    if (~marked).any():
        out[~marked] = per_class_losses(np.asarray(feats)[~marked], protos, logits, temperature)
    return out


def _piece_raw(rows, feats, ratio, skip=False):
    """The features as they are (unreadable marks kept, for reuse by the path)."""
    _check(feats, rows, ratio, skip)
    return np.asarray(feats, dtype=np.float32)


def _piece_features(rows, feats, ratio, skip=False):
    marked = _check(feats, rows, ratio, skip)
    out = np.asarray(feats, dtype=np.float32)
    if marked is not None:
        out = out.copy()
        out[marked] = np.nan
    return out


def _gather(variant: Variant, n: int, fn, *args) -> np.ndarray:
    out = None
    for rows, part in variant.map(fn, variant.ratio, *args):
        if out is None:
            out = np.empty((n,) + part.shape[1:], dtype=part.dtype)
        out[rows] = part
    return out


def _prototypes_of(variant: Variant, y_idx: np.ndarray, n_classes: int, skip: bool = False) -> np.ndarray:
    sums = counts = None
    for _, (s, c) in variant.map(_piece_sums, variant.ratio, y_idx, n_classes, skip):
        sums, counts = (s, c) if sums is None else (sums + s, counts + c)
    if (counts == 0).any():
        raise EmptyClasses(np.flatnonzero(counts == 0))
    return means_from_sums(sums, counts.astype(np.float64))


# --------------------------------------------------------------------------- in memory
def input_rows(order: np.ndarray | None, rows):
    """Rows of the input for rows of the batches (``order``: input row of each batch row)."""
    return rows if order is None else order[rows]


@dataclass
class ArrayVariant:
    """A variant whose features are one array in memory (row i of it is input row ``order[i]``)."""

    ratio: float
    features: np.ndarray
    order: np.ndarray | None = None

    def map(self, fn, *args):
        rows = input_rows(self.order, slice(0, len(self.features)))
        yield rows, fn(rows, self.features, *args)


@dataclass
class EngineSource:
    """Features streamed from an engine, one variant at a time (nothing written anywhere).

    ``order``: when the batches hold the input rows in another order (text grouped by
    length), the input row of each batch row; the driver puts results back in input order.
    """

    engine: Any
    batches: Any
    decodes: bool = True
    order: np.ndarray | None = None

    @property
    def n(self) -> int:
        return self.batches.n

    @property
    def n_forward_batches(self) -> int:
        return self.engine.n_forward_batches

    def variants(self, run, desc):
        run = [float(r) for r in run]
        for i, feats in self.engine.features(self.batches, run, desc=desc, decodes=self.decodes):
            yield ArrayVariant(run[i], feats, self.order)


@dataclass
class ArraySource:
    """Precomputed features, one (N, D) array per ratio (benchmarks that cache features)."""

    features: dict
    n_forward_batches: int = 0

    @property
    def n(self) -> int:
        return len(next(iter(self.features.values())))

    def variants(self, run, desc):
        for r in run:
            yield ArrayVariant(float(r), self.features[float(r)])


@dataclass
class _JoinedVariant:
    """One ratio's features held in two parts: rows already known, the rest from a source."""

    ratio: float
    parts: tuple

    def map(self, fn, *args):
        for part in self.parts:
            yield from part.map(fn, *args)


@dataclass
class ReuseSource:
    """Features of some rows known already (the calibration's probe sample), the rest from ``rest``.

    ``known[r]`` holds the features of rows ``known_rows`` at ratio ``r``; ``rest``
    (a source over the other rows, mapping them back to input rows with its
    ``order``) runs only those. A run may ask only for ratios in ``known``: the
    calibrated path is chosen among the probed ratios, so none is computed twice.
    """

    n: int
    known_rows: np.ndarray
    known: dict
    rest: Any = None

    @property
    def n_forward_batches(self) -> int:
        return 0 if self.rest is None else self.rest.n_forward_batches

    def variants(self, run, desc):
        run = [float(r) for r in run]
        missing = [r for r in run if r not in self.known]
        if missing:
            raise ValueError(f"ratios {missing} were not probed; the probe features cannot serve them")
        rest = iter(()) if self.rest is None else self.rest.variants(run, desc)
        for r in run:
            own = ArrayVariant(r, self.known[r], self.known_rows)
            yield _JoinedVariant(r, (own,) if self.rest is None else (own, next(rest)))


# --------------------------------------------------------------------------- the path
@dataclass
class _Path:
    """Prototypes and running losses as the variants arrive."""

    plan: Plan
    y_idx: np.ndarray
    n_classes: int
    n: int
    unmasked: np.ndarray | None = None
    embedding: np.ndarray | None = None
    loss_sum: np.ndarray | None = None
    protos: dict = field(default_factory=dict)

    own_by_ratio: dict = field(default_factory=dict)

    def add(self, v: Variant, *, on_path: bool, want_embedding: bool) -> None:
        skip = self.plan.skip_unreadable
        first_full = v.ratio == 0.0 and self.unmasked is None
        means = None
        if first_full or (on_path and self.plan.prototypes == "masked"):
            means = _prototypes_of(v, self.y_idx, self.n_classes, skip)
        if first_full:
            self.unmasked = means
            if want_embedding and self.plan.embedding:
                self.embedding = _gather(v, self.n, _piece_features, skip)
        if not on_path:
            return
        protos = self.unmasked if self.plan.prototypes == "unmasked" else means
        self.protos[v.ratio] = protos
        loss = _gather(v, self.n, _piece_losses, protos, self.plan.logits, self.plan.temperature, skip)
        self.own_by_ratio[v.ratio] = loss[np.arange(self.n), self.y_idx]
        self.loss_sum = loss if self.loss_sum is None else self.loss_sum + loss

    def own_class(self) -> np.ndarray:
        return self.loss_sum[np.arange(len(self.y_idx)), self.y_idx] / len(self.protos)

    def result(self, ratios: tuple[float, ...], want_losses: bool, calibration=None) -> FitResult:
        if self.plan.prototypes == "unmasked":
            protos = np.stack([self.unmasked] * len(ratios))
        else:
            protos = np.stack([self.protos[r] for r in ratios])
        losses = self.loss_sum / len(ratios) if want_losses else None
        if calibration is not None and hasattr(calibration, "with_path_stats") and self.own_by_ratio:
            calibration = calibration.with_path_stats([self.own_by_ratio[r] for r in sorted(self.own_by_ratio)],
                                                      n_rows=self.n)
        return FitResult(tuple(ratios), protos, losses, self.embedding, calibration)


def fit(plan: Plan, source: FeatureSource, y_idx: np.ndarray, n_classes: int, *,
        want_losses: bool = True, desc: str = "DLC fit", calibration=None) -> FitResult:
    """Prototypes of the path's ratios (and the losses of the training rows).

    ``want_losses=False`` is honoured only where it saves passes: unmasked prototypes
    on a fixed path (one unmasked pass); masked prototypes need every variant anyway.
    """
    y_idx = np.asarray(y_idx)
    if plan.auto is not None:
        return _fit_auto(plan, source, y_idx, n_classes, desc)
    want_losses = want_losses or plan.prototypes == "masked"
    path = _Path(plan, y_idx, n_classes, source.n)
    on_path = set(plan.ratios) if want_losses else set()
    run = plan.fit_run(want_losses)
    for v in source.variants(run, desc):
        path.add(v, on_path=v.ratio in on_path, want_embedding=want_losses)
    return path.result(plan.ratios, want_losses, calibration)


def _fit_auto(plan: Plan, source: FeatureSource, y_idx, n_classes, desc) -> FitResult:
    from scipy.stats import spearmanr  # here: importing skdlc stays light
    path = _Path(plan, y_idx, n_classes, source.n)
    used, previous = [], None
    for r in plan.auto.order:
        for v in source.variants([r], f"{desc} (auto, {len(used) + 1})"):
            path.add(v, on_path=True, want_embedding=True)
        used.append(float(r))
        current = path.own_class()
        if previous is not None and len(used) >= plan.auto.min_ratios:
            ok = np.isfinite(current)  # rows left out as unreadable are NaN
            rho = spearmanr(previous[ok], current[ok]).statistic
            if np.isfinite(rho) and rho >= plan.auto.tol:
                break
        previous = current
    return path.result(tuple(sorted(used)), True)


def transform(plan: Plan, source: FeatureSource, ratios: Sequence[float], prototypes: np.ndarray,
              *, desc: str = "DLC transform") -> tuple[np.ndarray, np.ndarray | None]:
    """(per-class losses averaged over ``ratios``, the unmasked embedding or None)."""
    ratios = [float(r) for r in ratios]
    losses, emb = None, None
    skip = plan.skip_unreadable
    for v in source.variants(plan.transform_run(ratios), desc):
        if plan.embedding and v.ratio == 0.0 and emb is None:
            emb = _gather(v, source.n, _piece_features, skip)
        if v.ratio in ratios:
            p = prototypes[ratios.index(v.ratio)]
            loss = _gather(v, source.n, _piece_losses, p, plan.logits, plan.temperature, skip)
            losses = loss if losses is None else losses + loss
    return losses / len(ratios), emb


def embed(source: FeatureSource, *, desc: str = "DLC embedding", skip: bool = False) -> np.ndarray:
    """The full (unmasked) model's features of every row, (N, D) float32, in input order.

    With ``skip``, rows whose input could not be read are NaN."""
    for v in source.variants([0.0], desc):
        return _gather(v, source.n, _piece_features, skip)
    raise RuntimeError("the source yielded no variant")  # pragma: no cover


def own_class(per_class: np.ndarray, classes: np.ndarray, y) -> np.ndarray:
    """Each row's entry of its own class, from (n, [D +] n_classes) ``transform`` output.

    Public as ``skdlc.own_class_scores(Xt, scorer.classes_, y)``: the DLC score of every
    sample from a ``transform`` output already at hand (``score_samples`` without a second
    pass).
    """
    idx = _layout.class_index(classes, y)
    _, block = _layout.split_columns(np.asarray(per_class), len(classes))
    return _layout.own_class(block, idx)


def transform_input(plan: Plan, engine, X, *, input_spec, batch_size: int, ratios: Sequence[float],
                    prototypes: np.ndarray, desc: str = "DLC transform"):
    """:func:`transform` of raw input X through ``engine`` (the export reader, the server)."""
    from ._data import decodes_files, make_batches

    order = length_order(X, input_spec)
    if order is not None:
        X = [X[i] for i in order]
    batches = make_batches(X, input_spec, batch_size)
    source = EngineSource(engine, batches, decodes_files(X), order)
    return transform(plan, source, ratios, prototypes, desc=desc)


def length_order(X, backbone) -> np.ndarray | None:
    """For text: the rows sorted by length, so that each batch pads little; else None.

    Characters stand in for tokens (no tokenizer call); a stable sort keeps equal
    lengths in input order.
    """
    if getattr(backbone, "collate", None) is None or not isinstance(X, (list, tuple)) or len(X) < 2:
        return None
    if not all(isinstance(t, str) for t in X):
        return None
    order = np.argsort(np.fromiter((len(t) for t in X), dtype=np.int64, count=len(X)), kind="stable")
    return None if (order == np.arange(len(X))).all() else order


# --------------------------------------------------------------------------- calibrated path
def calibrate(source: FeatureSource, probe_ratios: Iterable[float], y_idx_sample: np.ndarray,
              n_ratios: int, random_state=None, *, skip: bool = False):
    """Probe the masked models on a sample of rows (``source`` covers only those) and
    choose the path: :func:`skdlc._calibration.calibrate` on the probes' features.

    Returns ``(calibration, features)``: the probes' features by ratio, which the path
    then reuses for the sample's rows. Rows marked unreadable (``skip``) are left out
    of the calibration (their marks are kept in the features).
    """
    from . import _calibration

    probe_ratios = [float(r) for r in probe_ratios]
    feats = {v.ratio: _gather(v, source.n, _piece_raw, skip)
             for v in source.variants(probe_ratios, "DLC calibration")}
    y = np.asarray(y_idx_sample)
    ok = ~unreadable(feats[0.0]) if skip else slice(None)
    cal = _calibration.calibrate({r: f[ok] for r, f in feats.items()}, y[ok], n_ratios=n_ratios,
                                 random_state=random_state)
    return cal, feats


#: Public name (``skdlc.own_class_scores``).
own_class_scores = own_class
