"""The main job in one call: score with DLC, choose the selection, keep a subset.

``skdlc prune`` (the command line) reads its input, calls :func:`prune` and writes
the result with :meth:`PruneResult.write`; a Python user gets the same rows from the
same data and seed.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from sklearn.base import clone

from ._layout import class_index, own_class, split_columns
from ._outputs import counts_by_class, fmt_score, write_csv, write_json
from ._prune_issues import find_issues, issues_summary, kept_after_duplicates, score_columns
from ._selection import round_half_up

__all__ = ["prune", "PruneResult", "OUTPUT_NAMES"]

#: Every file (or folder) a run can write; a rerun removes the ones it does not write.
#: summary.json comes last: it is the file that says the set is complete.
OUTPUT_NAMES = ("scores.csv", "kept.csv", "kept.tsv", "kept.jsonl", "kept.parquet", "skipped.csv",
                "report.html", "figures", "summary.json")


@dataclass
class PruneResult:
    """What :func:`prune` found: the kept rows, every score, how the selection was chosen.

    Attributes
    ----------
    kept_indices : ndarray of int
        Sorted row indices of the kept samples.
    kept : ndarray of bool
        One flag per sample.
    scores : ndarray of float
        The DLC score of every sample (its own class's loss; higher is harder).
    losses : ndarray of shape (n_samples, n_classes)
        Every sample's loss under every class (``classes`` order).
    labels : ndarray
        The labels given.
    classes : ndarray
        Sorted class labels (the columns of ``losses``).
    scorer : DLCScorer
        The fitted scorer (``mask_ratios_``, ``calibration_``, ``backbone_``).
    sampler : SelectionSampler or FlexRandSampler
        The fitted selection (``cv_results_`` for the cross-validated one).
    keep_ratio : float
    random_state : int, RandomState or None
    notes : list of str
        Things worth knowing about this run (classes too small for the ratio, ...).
    timings : dict
        Seconds per stage: ``scoring``, ``issues``, ``selection``, ``total``.
    label_issues : pandas.DataFrame or None
        One row per sample (:func:`~skdlc.find_label_issues`): ``is_label_issue``,
        ``label_quality`` (higher = the label is more likely right), ``given_label``,
        ``suggested_label``. None with ``issues=False``.
    label_summary : LabelIssueSummary or None
        Estimated share of wrong labels per class, the most confused class pairs.
    duplicates : pandas.DataFrame or None
        Rows with an exact or near-duplicate (:func:`~skdlc.find_duplicates`): ``row``,
        ``group``, ``kind``, ``nearest_row``, ``similarity``, ``cross_class`` (a label
        conflict), ...
    n_dropped_duplicates : int
        Rows left out before the selection by ``drop_duplicates=True``.
    """

    kept_indices: np.ndarray
    kept: np.ndarray
    scores: np.ndarray
    losses: np.ndarray
    labels: np.ndarray
    classes: np.ndarray
    scorer: Any
    sampler: Any
    keep_ratio: float
    random_state: Any = None
    notes: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    label_issues: Any = None
    label_summary: Any = None
    duplicates: Any = None
    n_dropped_duplicates: int = 0
    #: rows of X left out because their image did not decode (scorer ``on_error="skip"``);
    #: every other array holds the remaining rows, in order
    unreadable: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.intp))

    @property
    def selection(self) -> dict | None:
        """The cross-validated choice and its table (``SelectionSampler.summary()``), or None."""
        summary = getattr(self.sampler, "summary", None)
        return summary() if summary is not None else None

    @property
    def calibration(self):
        """The calibrated path's probes (``scorer.calibration_``), or None."""
        return getattr(self.scorer, "calibration_", None)

    def summary(self) -> dict:
        """JSON-ready facts of the run (what ``summary.json`` holds, less the I/O)."""
        before = counts_by_class(self.labels)
        after = counts_by_class(self.labels[self.kept])
        params, gamma, gamma_source, search = self._selection_facts()
        bb = self.scorer.backbone_
        pp = bb.preprocessing
        return {
            "n_samples": int(len(self.scores)),
            "n_kept": int(self.kept.sum()),
            "keep_ratio": self.keep_ratio,
            "classes": [{"label": c, "before": before[c], "kept": after.get(c, 0)} for c in before],
            "strategy": params["strategy"],
            "drop_hardest": float(params.get("drop_hardest", 0.0) or 0.0),
            "selection": self.selection,
            "gamma": gamma,
            "gamma_source": gamma_source,
            "gamma_search": search,
            "backbone": bb.name,
            "input_size": list(pp.input_size) if pp is not None and pp.input_size else None,
            "mask_ratios": [float(r) for r in self.scorer.mask_ratios_],
            "calibration": None if self.calibration is None else self.calibration.to_dict(),
            "seed": self.random_state if isinstance(self.random_state, (int, type(None))) else "RandomState",
            "notes": list(self.notes),
            "time_s": {k: round(float(v), 3) for k, v in self.timings.items()},
            **issues_summary(self),
        }

    def _selection_facts(self):
        s = self.sampler
        if hasattr(s, "best_params_"):  # the cross-validated selection
            p = s.best_params_
            gamma = float(p.get("gamma", 0.5)) if p["strategy"] in ("flexrand", "flexible") else None
            source = "auto (cross-validated with the strategy)" if s.n_cv_samples_ else f"auto ({s.rule_})"
            return p, gamma, source, None
        p = {"strategy": s.strategy, "drop_hardest": s.drop_hardest}
        if s.strategy not in ("flexrand", "flexible"):
            return p, None, f"unused by strategy {s.strategy!r}", None
        if s.gamma_search_ is None:
            return p, float(s.gamma_), "fixed", None
        r = s.gamma_search_
        search = {
            "procedure": "stratified 80/20 split; FlexRand on the 80% at the keep ratio for each "
                         "gamma; the probe (PCA, standardised, logistic regression) on the full "
                         "model's embedding; accuracy on the 20%; mean over repeats",
            "n_train": int(r.train_indices.size), "n_validation": int(r.validation_indices.size),
            "n_repeats": int(r.accuracy.shape[1]), "gammas": r.gammas.tolist(),
            "mean_accuracy": [round(float(a), 6) for a in r.mean_accuracy],
            "std_accuracy": [round(float(a), 6) for a in r.std_accuracy],
            "random_subset_accuracy": round(float(np.mean(r.random_accuracy)), 6),
            "best_gamma": float(s.gamma_),
        }
        return p, float(s.gamma_), "auto", search

    def write(self, out: str | os.PathLike, *, paths: Sequence[str] | None = None,
              texts: Sequence[str] | None = None, ids: Mapping[str, Sequence] | None = None,
              kept_writer: Callable[[Path], str] | None = None, report: bool = True,
              extra: dict | None = None, skipped: Sequence[tuple[Any, str]] | None = None,
              skipped_key: str = "path", command: Sequence[str] | None = None,
              title: str | None = None) -> dict:
        """Write the output set into the folder ``out``, as ``skdlc prune`` does.

        ``scores.csv`` (every sample: ``path`` or ``index``, ``label``, ``score``,
        ``kept``, then ``label_issue``, ``label_quality``, ``suggested_label`` and
        ``duplicate_group`` when the run looked for issues), ``kept.csv`` (the kept
        ones, input order; or the file ``kept_writer`` writes), ``summary.json``
        (last: it marks a complete set), ``report.html`` + ``figures/`` (unless
        ``report=False``), and ``skipped.csv`` when ``skipped`` is given. Written as one
        set: a failure leaves an earlier set in ``out`` as it was.

        Parameters
        ----------
        out : path
            The output folder, created if needed.
        paths : sequence of str, default=None
            One image file per sample: the first CSV column, and thumbnails in the
            report. Default: the row index.
        texts : sequence of str, default=None
            Text records, shown in the report instead of thumbnails.
        ids : mapping of str to sequence, default=None
            The first columns of ``scores.csv`` and ``kept.csv`` instead of ``path`` or
            ``index`` (text inputs: ``row`` and ``line``).
        kept_writer : callable, default=None
            ``kept_writer(folder)`` writes the kept samples into ``folder`` and returns
            the file's name (the command line writes a text input's kept records in the
            input's own format). Default: ``kept.csv`` (id columns, label, score).
        report : bool, default=True
        extra : dict, default=None
            More keys for ``summary.json`` (the command line adds the data source).
        skipped : sequence of (where, reason), default=None
            Samples left out before scoring, for ``skipped.csv``.
        skipped_key : str, default="path"
            The heading of ``skipped.csv``'s first column (``line`` for a text file).
        command : sequence of str, default=None
            The command line, shown in the report.
        title : str, default=None

        Returns
        -------
        summary : dict
            What was written to ``summary.json``.
        """
        from ._io import OUTPUT_MARKER, output_set

        out = Path(out)
        # the marker first: readers of image folders never read an output set as data
        summary = {OUTPUT_MARKER: True, **(extra or {}), **self.summary()}
        summary["outputs"] = {"kept": "kept.csv", "scores": "scores.csv", "summary": "summary.json"}
        if skipped is not None:
            summary["skipped"] = [{skipped_key: p, "reason": r} for p, r in skipped]
            summary["outputs"]["skipped"] = "skipped.csv"
        if ids is None:
            ids = {"path": list(paths)} if paths is not None else {"index": range(len(self.scores))}
        head, rows = tuple(ids), list(zip(*ids.values()))
        labels = self.labels.tolist()
        extra_cols, extra_rows = score_columns(self) if self._has_issues else ((), [()] * len(labels))
        with output_set(out, OUTPUT_NAMES) as tmp:
            write_csv(tmp / "scores.csv", (*head, "label", "score", "kept", *extra_cols),
                      ((*i, lab, fmt_score(s), int(k), *e)
                       for i, lab, s, k, e in zip(rows, labels, self.scores, self.kept, extra_rows)))
            if kept_writer is None:
                write_csv(tmp / "kept.csv", (*head, "label", "score"),
                          ((*rows[i], labels[i], fmt_score(self.scores[i])) for i in self.kept_indices))
            else:
                summary["outputs"]["kept"] = kept_writer(tmp)
            if skipped is not None:
                write_csv(tmp / "skipped.csv", (skipped_key, "reason"), skipped)
            if report:
                self._write_report(tmp, summary, paths, texts, command, title)
            write_json(tmp / "summary.json", summary)  # last: the set is complete
        return summary

    @property
    def _has_issues(self) -> bool:
        return self.label_issues is not None or self.duplicates is not None

    def _write_report(self, folder, summary, paths, texts, command, title) -> None:
        """A secondary output: a failure becomes a note, the run's files are kept."""
        from .report import write_report

        keys = ("data", "backbone", "input_size", "mask_ratios", "keep_ratio", "strategy", "gamma", "seed")
        try:
            write_report(folder, scores=self.scores, labels=self.labels, kept=self.kept, paths=paths,
                         texts=texts, losses=self.losses, classes=self.classes,
                         calibration=self.calibration,
                         selection=summary["selection"] or summary["gamma_search"],
                         timings=summary["time_s"], command=command,
                         label_issues=self.label_issues, label_summary=self.label_summary,
                         duplicates=self.duplicates,
                         info={k: summary[k] for k in keys if k in summary},
                         title=title or "skdlc pruning report")
            summary["outputs"]["report"] = "report.html"
        except Exception as exc:  # noqa: BLE001
            summary["notes"].append(f"report not written ({type(exc).__name__}: {exc})")


def _score(scorer, X, y) -> tuple[np.ndarray, np.ndarray]:
    """Fit ``scorer`` on ``X, y``: ``(per-class losses, embedding)``, apart. A DLCScorer's
    embedding stays float32, never stacked into ``fit_transform``'s float64 array (at
    1,000,000 images x 1280-d, 10 GB on the driver instead of 5)."""
    from ._scorer import DLCScorer

    if isinstance(scorer, DLCScorer):
        losses, emb = scorer._fit(X, y, want_losses=True)  # fit_transform without the stacking
        return np.asarray(losses), emb
    Xt = scorer.fit_transform(X, y)
    emb, losses = split_columns(Xt, len(scorer.classes_), need_embedding=True)
    return losses, emb


def _selection_input(sampler, emb, losses, scores) -> tuple[np.ndarray, np.ndarray]:
    """``(what the sampler reads, the embedding)``. For a sampler that takes
    ``score_columns`` (skdlc's), the compact float32 ``[embedding | own-class score]``,
    whose first columns are then the embedding (one float32 copy in all): the samplers
    select by each class's order of the scores, which float32 keeps but between scores
    equal to 7 digits. Any other sampler gets DLCScorer's ``[embedding | per-class losses]``."""
    if "score_columns" not in sampler.get_params():
        return np.hstack([emb, losses]), emb
    sampler.set_params(score_columns="own_class")
    out = np.empty((len(scores), emb.shape[1] + 1), dtype=np.float32)
    out[:, :-1] = emb
    out[:, -1] = scores
    return out, out[:, :-1]


def _default_selection(keep_ratio, random_state):
    from ._selection_sampler import SelectionSampler

    return SelectionSampler(keep_ratio, random_state=random_state)


def prune(X, y=None, *, keep_ratio: float, text_column: str | None = None,
          image_column: str | None = None, label_column: str | None = None, scorer=None,
          selection=None, random_state=None, issues: bool = True, drop_duplicates: bool = False,
          verbose: bool = True) -> PruneResult:
    """Score every sample with DLC and keep ``keep_ratio`` of every class: the main job.

    Steps: fit ``scorer`` (a :class:`~skdlc.DLCScorer`; by default the offline
    EfficientNet-Lite0 on the calibrated path) and compute every sample's loss under
    every class, with the full model's embedding; then ``selection`` (by default a
    :class:`~skdlc.SelectionSampler`, which chooses how to select by cross-validation
    on the data, Random when nothing beats it) keeps the subset. One scoring pass;
    the selection reads the embedding the pass computed. ``skdlc prune`` calls this
    function: the same data and seed keep the same rows.

    Parameters
    ----------
    X : array-like, list of paths, list of str, torch Dataset, DataFrame or datasets.Dataset
        Whatever ``scorer`` takes: image arrays (N, H, W[, C]), image file paths, a list
        of arrays, a torch ``Dataset``, or texts with a text backbone. Or a table: a
        pandas ``DataFrame`` or a Hugging Face ``datasets.Dataset``, with the samples in
        the column ``text_column`` (or ``image_column``) and the labels in
        ``label_column`` (or in ``y``); rows are then the table's rows, in order
        (``X.iloc[result.kept_indices]``, ``X.select(result.kept_indices)``).
    y : array-like of shape (n_samples,) or None, default=None
        Class labels (at least two classes). None only when X is a table with a label
        column.
    keep_ratio : float
        Fraction of every class to keep, in ``(0, 1]``; every class keeps at least one.
    text_column : str or None, default=None
        The column of a table X holding the texts (non-empty strings). The default
        scorer is then the text encoder ``DLCScorer("all-MiniLM-L6-v2")``.
    image_column : str or None, default=None
        The column of a table X holding the images: PIL images (a ``datasets`` Image
        feature), arrays or image file paths.
    label_column : str or None, default=None
        The column of a table X holding the labels; ``"label"`` when neither it nor ``y``
        is given.
    scorer : DLCScorer or None, default=None
        Cloned; on the clone ``embedding=True`` (the selection's probe reads it),
        ``verbose`` is this function's, and ``random_state`` this function's when the
        scorer's is None. ``None``: ``DLCScorer()`` (its defaults), or
        ``DLCScorer("all-MiniLM-L6-v2")`` with ``text_column``.
    selection : sampler or None, default=None
        Cloned, with ``keep_ratio`` and (unless set) ``random_state`` set on the clone:
        a :class:`~skdlc.SelectionSampler`, a :class:`~skdlc.FlexRandSampler` (e.g.
        ``FlexRandSampler(gamma=0.5)``, the paper's sampler) or another sampler with
        ``sample_indices_``. ``None``: ``SelectionSampler()``.
    random_state : int, RandomState instance or None, default=None
        Seeds the selection (folds and draws). The learning path does not depend on it.
    issues : bool, default=True
        Also flag likely label issues (:func:`~skdlc.find_label_issues` on the
        per-class losses) and find exact and near-duplicates
        (:func:`~skdlc.find_duplicates` on the embedding, with content hashes of the
        input): ``label_issues``, ``label_summary``, ``duplicates``. From the same pass.
    drop_duplicates : bool, default=False
        Leave duplicates out before the selection: each duplicate group keeps its
        row with the lowest score. ``keep_ratio`` then applies to the remaining rows.
    verbose : bool, default=True
        Progress bars while scoring (sets the scorer's ``verbose``).

    Returns
    -------
    PruneResult
        ``kept_indices``, ``scores``, ``losses``, the fitted ``scorer`` and
        ``sampler``, ``selection`` (the cross-validation table), ``calibration``, and
        :meth:`PruneResult.write` for the output files.

    Examples
    --------
    >>> import skdlc
    >>> from skdlc.datasets import load_mnist
    >>> X, y = load_mnist(n_per_class=20, return_X_y=True)
    >>> scorer = skdlc.DLCScorer(image_size=32, mask_ratios=[0.0, 0.2], verbose=False)
    >>> res = skdlc.prune(X, y, keep_ratio=0.3, scorer=scorer, random_state=0, verbose=False)
    >>> len(res.kept_indices), res.scores.shape
    (60, (200,))

    A table of labelled texts (the offline all-MiniLM-L6-v2 text encoder):

    >>> import pandas as pd
    >>> df = pd.DataFrame({"text": ["great stay", "lovely room", "awful food", "rude staff"],
    ...                    "label": ["pos", "pos", "neg", "neg"]})
    >>> res = skdlc.prune(df, text_column="text", label_column="label", keep_ratio=0.5,
    ...                   random_state=0, verbose=False)  # doctest: +SKIP
    >>> kept_rows = df.iloc[res.kept_indices]  # doctest: +SKIP
    """
    from ._scorer import DLCScorer
    from ._table_input import table_input

    if not (isinstance(keep_ratio, (int, float, np.floating)) and not isinstance(keep_ratio, bool)
            and 0 < keep_ratio <= 1):
        raise ValueError(f"keep_ratio must be a number in (0, 1], got {keep_ratio!r}")
    X, y, kind = table_input(X, y, text_column=text_column, image_column=image_column,
                             label_column=label_column)
    if y is None:
        raise ValueError("y is required: the class label of every sample (or, for a DataFrame or a "
                         "datasets.Dataset X, its label column: label_column=)")
    if scorer is None:
        scorer = DLCScorer("all-MiniLM-L6-v2") if kind == "text" else DLCScorer()
    t0 = time.perf_counter()
    scorer = clone(scorer).set_params(embedding=True, verbose=verbose)
    sampler = clone(_default_selection(keep_ratio, random_state) if selection is None else selection)
    sampler.set_params(keep_ratio=keep_ratio)
    for est in (scorer, sampler):  # one seed for the run, unless an estimator has its own
        if est.get_params().get("random_state", 0) is None:
            est.set_params(random_state=random_state)

    losses, emb = _score(scorer, X, y)
    t_score = time.perf_counter() - t0
    labels = np.asarray(y).ravel()
    unreadable = np.asarray(getattr(scorer, "unreadable_", ()), dtype=np.intp)
    if unreadable.size:  # scorer on_error="skip": rows whose image did not decode leave the run
        ok = np.ones(len(labels), dtype=bool)
        ok[unreadable] = False
        losses, emb, labels = losses[ok], emb[ok], labels[ok]
        X = [X[i] for i in np.flatnonzero(ok)] if isinstance(X, (list, tuple)) else (
            X[ok] if hasattr(X, "shape") else X)  # what find_issues hashes, row for row
    classes = scorer.classes_
    codes = class_index(classes, labels)
    scores = own_class(losses, codes)
    if not np.isfinite(scores).all():
        bad = int((~np.isfinite(scores)).sum())
        raise ValueError(f"the backbone gave non-finite scores for {bad} sample(s); check "
                         "the backbone's output (NaN features?)")
    Xsel, emb = _selection_input(sampler, emb, losses, scores)

    found: dict = {}
    if issues or drop_duplicates:
        found = find_issues(X, emb, losses, labels, classes, scorer)
    del emb
    rows = np.arange(len(scores))
    if drop_duplicates:
        rows = kept_after_duplicates(found["duplicates"], len(scores), scores)
    t1 = time.perf_counter()
    if len(rows) < len(scores):
        sampler.fit(Xsel[rows], labels[rows])
        kept_idx = np.sort(rows[np.asarray(sampler.sample_indices_)])
    else:
        sampler.fit(Xsel, labels)
        kept_idx = np.asarray(sampler.sample_indices_)
    del Xsel
    kept = np.zeros(len(scores), dtype=bool)
    kept[kept_idx] = True
    notes = []
    for label, n in counts_by_class(labels).items():
        if round_half_up(keep_ratio * n) == 0:
            notes.append(f"class {label!r} has {n} sample(s): {keep_ratio:g} of it rounds to 0; "
                         "kept 1 (every class keeps at least one)")
    t_sel = time.perf_counter() - t1
    return PruneResult(
        kept_indices=kept_idx, kept=kept, scores=scores, losses=np.asarray(losses), labels=labels,
        classes=classes, scorer=scorer, sampler=sampler, keep_ratio=float(keep_ratio),
        random_state=random_state, notes=notes, unreadable=unreadable,
        timings={"scoring": t_score, **({"issues": found["seconds"]} if found else {}),
                 "selection": t_sel, "total": time.perf_counter() - t0},
        label_issues=found.get("label_issues") if issues else None,
        label_summary=found.get("label_summary") if issues else None,
        duplicates=found.get("duplicates") if issues or drop_duplicates else None,
        n_dropped_duplicates=int(len(scores) - len(rows)),
    )
