"""Groups of instruction records for the broken-pair estimate, found without being named.

A broken pair stands out against the records of its own task: tasks differ in loss level
far more than a broken pair differs from a clean one of the same task (benchmarks/
results/instruction_selection.md). ``skdlc prune-instructions`` therefore estimates the
broken share per group, and when the user names no ``--category-field`` it finds the
groups itself, in this order:

1. **a category-like field**: the first of :data:`CATEGORY_FIELDS` (any letter case)
   that every record has, with scalar values (text, number, true/false) and between
   2 and ``n / 10`` distinct values; the record's text fields are never candidates;
2. **clusters of the prompts**: k-means on the TF-IDF vectors of each record's
   instruction and input (reduced to :data:`N_COMPONENTS` dimensions and L2-normalised,
   so distances are cosine). The responses take no part: a broken pair keeps the prompt
   of its task, only its response is wrong. ``k`` runs over 2 .. ``min(MAX_CLUSTERS,
   n // MIN_MEAN_CLUSTER)`` (fitted on at most :data:`FIT_SAMPLE` records); the fewest
   clusters whose silhouette is within
   :data:`SILHOUETTE_SLACK` of the best one are chosen (fewer, larger groups give the
   mixture model more records), and no clusters at all when even the best silhouette is
   below :data:`MIN_SILHOUETTE` (the prompts form no groups: one task, or a mix without
   structure);
3. otherwise **the whole set** is one group.

No forward pass is needed: the text is all the clustering sees.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from dataclasses import field as _field
from typing import Any, Sequence

import numpy as np

__all__ = ["CATEGORY_FIELDS", "InstructionGroups", "cluster_prompts", "find_category_field",
           "find_instruction_groups"]

#: Field names taken as a task/category column, in order of preference.
CATEGORY_FIELDS = ("category", "task", "task_name", "task_type", "source", "dataset",
                   "subset", "domain", "type", "topic", "skill")
#: Largest number of clusters tried.
MAX_CLUSTERS = 16
#: Fewest records per cluster on average: at most ``n // MIN_MEAN_CLUSTER`` clusters.
MIN_MEAN_CLUSTER = 50
#: Below this best silhouette the prompts are taken to form no groups.
MIN_SILHOUETTE = 0.1
#: The chosen k is the smallest whose silhouette is at least this share of the best.
SILHOUETTE_SLACK = 0.95
#: Dimensions of the TF-IDF vectors after truncated SVD.
N_COMPONENTS = 64
#: Records the silhouette is computed on (a sample of larger sets).
SILHOUETTE_SAMPLE = 3000
#: Records k-means is fitted on (a sample of larger sets; every record is then assigned).
FIT_SAMPLE = 5000


@dataclass(frozen=True)
class InstructionGroups:
    """How the records were grouped for the broken-pair estimate.

    Attributes
    ----------
    method : {"field", "clusters", "none"}
        A category-like field, clusters of the prompts, or the whole set.
    labels : ndarray of str, shape (n_samples,), or None
        The group of each record (``None`` for the whole set).
    field : str or None
        The field used (``method == "field"``).
    detail : dict
        Clusters: ``k``, ``silhouette`` per k tried, ``sizes``; otherwise why there are
        none (``reason``).
    """

    method: str
    labels: np.ndarray | None
    field: str | None = None
    detail: dict = _field(default_factory=dict)

    @property
    def n_groups(self) -> int:
        """Number of groups (1 for the whole set)."""
        return 1 if self.labels is None else int(np.unique(self.labels).size)

    def describe(self) -> str:
        """One line for the summary: which grouping, and how many groups."""
        if self.method == "field":
            return f"per value of the field {self.field!r} ({self.n_groups} values, found automatically)"
        if self.method == "clusters":
            sil = self.detail["silhouette"][str(self.detail["k"])]
            return (f"per cluster of the prompts ({self.n_groups} clusters of the instruction "
                    f"and input text, silhouette {sil:.2f})")
        return "over the whole set (" + self.detail.get("reason", "no groups") + ")"

    def to_dict(self) -> dict:
        """JSON-ready description (no per-record arrays)."""
        out = {"method": self.method, "field": self.field, "n_groups": self.n_groups,
               "description": self.describe(), **self.detail}
        if self.labels is not None:
            names, counts = np.unique(self.labels, return_counts=True)
            out["sizes"] = {str(a): int(b) for a, b in zip(names, counts)}
        return out


def _scalar_key(value: Any) -> str | None:
    """The group name of a field value, or None when it is not a scalar."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (str, int, float)):
        return value if isinstance(value, str) else json.dumps(value)
    return None


def find_category_field(records: Sequence[dict], exclude: Sequence[str] = ()) -> str | None:
    """The first field of :data:`CATEGORY_FIELDS` that looks like a task/category column.

    Every record must have it (same spelling), with scalar values, and it must take
    between 2 and ``len(records) / 10`` distinct values. Fields in ``exclude`` (the
    instruction, input and output fields) are skipped.

    Examples
    --------
    >>> recs = [{"instruction": "q", "output": "a", "Task": f"t{i % 2}"} for i in range(40)]
    >>> find_category_field(recs)
    'Task'
    >>> find_category_field([{"instruction": "q", "output": "a"}] * 40) is None
    True
    """
    if not records:
        return None
    n = len(records)
    skip = {str(e).lower() for e in exclude}
    keys = [k for k in records[0] if isinstance(k, str) and k.lower() not in skip]
    by_lower: dict[str, str] = {}
    for k in keys:
        by_lower.setdefault(k.lower(), k)
    for name in CATEGORY_FIELDS:
        key = by_lower.get(name)
        if key is None:
            continue
        values = set()
        for r in records:
            v = _scalar_key(r[key]) if key in r else None
            if v is None:
                break
            values.add(v)
        else:
            if 2 <= len(values) <= n / 10:
                return key
    return None


def cluster_prompts(texts: Sequence[str], *, random_state: int = 0) -> InstructionGroups:
    """Cluster prompt texts (TF-IDF, truncated SVD, k-means); k by silhouette.

    See the module docstring for the rule. Returns a :class:`InstructionGroups` with
    ``method="clusters"`` and labels ``"cluster 0"``, ... (ordered by each cluster's
    first record), or ``method="none"`` with the reason.
    """
    from sklearn.cluster import KMeans
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics import silhouette_score
    from sklearn.preprocessing import normalize

    n = len(texts)
    k_max = min(MAX_CLUSTERS, n // MIN_MEAN_CLUSTER)
    if k_max < 2:
        return InstructionGroups("none", None, detail={
            "reason": f"too few records to cluster ({n}; {2 * MIN_MEAN_CLUSTER} needed)"})
    try:
        X = TfidfVectorizer(sublinear_tf=True, min_df=2, max_features=20000).fit_transform(texts)
    except ValueError:  # no term occurs twice
        X = None
    if X is None or X.shape[1] < 3:
        return InstructionGroups("none", None, detail={"reason": "the prompts share too few words"})
    Z = TruncatedSVD(min(N_COMPONENTS, X.shape[1] - 1), random_state=random_state).fit_transform(X)
    Z = normalize(Z)
    sample = min(n, SILHOUETTE_SAMPLE)
    rows = (np.arange(n) if n <= FIT_SAMPLE else
            np.sort(np.random.default_rng(random_state).choice(n, FIT_SAMPLE, replace=False)))
    fits, sil = {}, {}
    for k in range(2, k_max + 1):
        labels = KMeans(k, n_init=4, random_state=random_state).fit(Z[rows]).predict(Z)
        if np.unique(labels).size < 2:
            continue
        fits[k] = labels
        sil[k] = float(silhouette_score(Z, labels, sample_size=sample,
                                        random_state=random_state))
    detail = {"silhouette": {str(k): round(v, 4) for k, v in sil.items()}}
    best = max(sil.values(), default=-1.0)
    if best < MIN_SILHOUETTE:
        detail["reason"] = (f"the prompts form no clusters (best silhouette {best:.2f} < "
                            f"{MIN_SILHOUETTE})")
        return InstructionGroups("none", None, detail=detail)
    k = min(k for k, v in sil.items() if v >= SILHOUETTE_SLACK * best)
    raw = fits[k]
    _, first = np.unique(raw, return_index=True)
    rank = np.argsort(np.argsort(first))  # cluster names in order of first appearance
    labels = np.array([f"cluster {rank[c]}" for c in raw], dtype=object)
    return InstructionGroups("clusters", labels, detail={"k": k, **detail})


def find_instruction_groups(records: Sequence[dict], *, instruction_field: str = "instruction",
                            input_field: str = "input", output_field: str = "output",
                            method: str = "auto", random_state: int = 0) -> InstructionGroups:
    """Groups for the broken-pair estimate: a category-like field, else prompt clusters.

    Parameters
    ----------
    records : sequence of dict
        The instruction records.
    instruction_field, input_field, output_field : str
        The text fields (never taken as a category; the first two are clustered).
    method : {"auto", "clusters", "none"}, default="auto"
        ``"auto"``: a field (a category-like field) if there is one, else
        clusters of the prompts; ``"clusters"``: always cluster; ``"none"``: one group.
    random_state : int, default=0
        Seeds the SVD, k-means and the silhouette sample.

    Returns
    -------
    InstructionGroups
        ``labels`` is the group of each record (``None``: one group); ``describe()``
        says which rule found them.

    Examples
    --------
    The broken-pair estimate per group, as ``skdlc prune-instructions`` makes it:

    >>> from skdlc import estimate_broken_share, find_instruction_groups
    >>> records = [{"instruction": "Is it sarcastic?", "input": f"text {i}", "output": "no",
    ...             "task": "sarcasm" if i < 20 else "quartz"} for i in range(40)]
    >>> g = find_instruction_groups(records)
    >>> g.method, g.field, g.n_groups
    ('field', 'task', 2)

    then ``estimate_broken_share(signal, groups=g.labels)`` and
    ``select_instructions(scores, 0.5, broken=...)``.
    """
    if method not in ("auto", "clusters", "none"):
        raise ValueError(f"method must be 'auto', 'clusters' or 'none', got {method!r}")
    if method == "none":
        return InstructionGroups("none", None, detail={"reason": "grouping turned off"})
    if method == "auto":
        key = find_category_field(records, exclude=(instruction_field, input_field, output_field))
        if key is not None:
            labels = np.array([_scalar_key(r[key]) for r in records], dtype=object)
            return InstructionGroups("field", labels, field=key)
    texts = [f"{r.get(instruction_field, '')}\n\n{r.get(input_field, '') or ''}" for r in records]
    return cluster_prompts([str(t) for t in texts], random_state=random_state)
