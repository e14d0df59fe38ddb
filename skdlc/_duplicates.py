"""Exact and near-duplicates from the embedding DLC already computes, in bounded memory.

Two rows are *exact* duplicates when their content hashes are equal (the bytes of the
file, or the decoded pixels: :func:`content_hashes`), and *near*-duplicates when the
cosine similarity of their embeddings is at least ``threshold``. Duplicate pairs link
rows into groups (connected components), so a resized copy of a re-encoded copy joins
the same group as the original. A group whose rows carry different labels is a *label
conflict*: the same picture cannot be both.

Nearest neighbours come from faiss (``pip install 'skdlc[scale]'``) when it is installed
(exact inner products up to ``exact_max_rows`` rows, an inverted-file index above), else
from blocked matrix products in numpy; neither builds the all-pairs matrix: memory stays
O(n_samples * k) plus one block. The default threshold was chosen on
``benchmarks/duplicates.py`` (docs/label_issues.md).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse.csgraph import connected_components

__all__ = ["content_hashes", "find_duplicates", "image_thumbnails", "keep_one_per_group"]

BACKENDS = ("auto", "faiss", "numpy")
_LOOKUP_DIMS = 128  # candidate lookup above exact_max_rows; the final cosine is exact
#: threshold="auto": a near-duplicate is at most this share of the median nearest-neighbour distance
AUTO_SHARE = 0.05
_BLOCK_BYTES = 1 << 27  # one block of similarities: 128 MiB of float32


def content_hashes(X, *, text: bool = False) -> np.ndarray:
    """One content hash per row, for :func:`find_duplicates`'s ``hashes``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, ...), list of ndarrays, list of paths or of texts
        Arrays (decoded images, any shape): a hash of the values with their shape and
        dtype, so equal pixels hash equal whatever file they came from. Paths (``str`` or
        ``os.PathLike`` naming files): a hash of the file's bytes.
    text : bool, default=False
        ``X`` is a list of texts: a hash of each string's UTF-8 bytes (not a file).

    Returns
    -------
    ndarray of shape (n_samples,), dtype object
        Hex digests (BLAKE2b, 16 bytes).
    """
    if text:
        return np.array([hashlib.blake2b(str(x).encode("utf-8"), digest_size=16).hexdigest() for x in X],
                        dtype=object)
    if isinstance(X, np.ndarray) and X.dtype != object:
        return np.array([_digest_array(x) for x in X], dtype=object)
    out = []
    for x in X:
        if isinstance(x, (str, os.PathLike)):
            h = hashlib.blake2b(digest_size=16)
            with open(Path(x), "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            out.append(h.hexdigest())
        else:
            out.append(_digest_array(np.asarray(x)))
    return np.array(out, dtype=object)


def image_thumbnails(images, size: int = 16) -> np.ndarray:
    """A pixel descriptor per image for :func:`find_duplicates`: a centred grey thumbnail.

    Each image is converted to grey, resized to ``size`` x ``size`` (PIL, bilinear with
    antialiasing) and its mean subtracted, so that cosine similarity compares the
    pattern, not the brightness. Resized and re-encoded copies stay above 0.99 here even
    where a network's embedding cannot tell them from other images of the class (see
    docs/label_issues.md); crops and shifts move pixels and need the embedding.

    Parameters
    ----------
    images : uint8 ndarray (n, H, W[, C]), list of arrays, or list of image paths
    size : int, default=16

    Returns
    -------
    ndarray of shape (n_samples, size * size), float32.
    """
    from PIL import Image

    if not isinstance(size, (int, np.integer)) or size < 2:
        raise ValueError(f"size must be an int >= 2, got {size!r}")
    out = np.empty((len(images), size * size), np.float32)
    for i, img in enumerate(images):
        if isinstance(img, (str, os.PathLike)):
            with Image.open(img) as im:
                im = im.convert("L")
                im.load()
        else:
            a = np.asarray(img)
            if a.dtype != np.uint8:
                a = np.clip(a * (255.0 if a.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
            im = Image.fromarray(a.squeeze(-1) if a.ndim == 3 and a.shape[-1] == 1 else a).convert("L")
        v = np.asarray(im.resize((size, size), Image.BILINEAR), np.float32).ravel()
        out[i] = v - v.mean()
    return out


def find_duplicates(
    embedding,
    *,
    y=None,
    hashes=None,
    threshold: float | str = "auto",
    k: int = 8,
    backend: str = "auto",
    exact_max_rows: int = 20_000,
    random_state: int = 0,
) -> pd.DataFrame:
    """Groups of exact and near-duplicate rows.

    Parameters
    ----------
    embedding : array-like of shape (n_samples, n_features)
        One vector per row (e.g. :meth:`DLCScorer.embed`, or the embedding block of
        ``DLCScorer(embedding=True).transform``). Compared by cosine similarity.
    y : array-like of shape (n_samples,), default=None
        Labels; a group whose rows carry different labels is a label conflict.
    hashes : array-like of shape (n_samples,), default=None
        Content hashes (:func:`content_hashes`): rows with equal hashes are exact
        duplicates whatever their embeddings. None: only near-duplicates are found.
    threshold : float in (0, 1] or "auto", default="auto"
        Cosine similarity at or above which two rows are near-duplicates (1 keeps only
        identical vectors). "auto": scale-free, from the data itself: a pair is a
        near-duplicate when its cosine distance (1 - cosine) is at most
        5% of the median distance of a row to its nearest other row,
        so the rule holds across backbones and input sizes whose embeddings crowd
        differently (measured in docs/label_issues.md). The threshold used is in
        ``result.attrs["threshold"]``.
    k : int, default=8
        Neighbours looked up per row. A row with more than ``k`` near-duplicates is still
        grouped with all of them through its neighbours' links.
    backend : {"auto", "faiss", "numpy"}, default="auto"
        Nearest-neighbour search: faiss when installed ("auto"), else exact blocked
        matrix products in numpy (time grows with n_samples squared).
    exact_max_rows : int, default=20000
        With faiss, exact search up to this many rows; above, candidates come from an
        inverted-file index over a 128-d PCA of the rows (about sqrt(n_samples) lists, 16
        probed), which may miss a few pairs, and are ranked by their exact cosine.
    random_state : int, default=0
        Seeds the inverted file's clustering.

    Returns
    -------
    pandas.DataFrame
        One row per sample that has a duplicate, sorted by group then row: ``row``
        (position in the input), ``group`` (0, 1, ...), ``kind`` (``"exact"`` when
        another row of the group has the same hash, else ``"near"``), ``nearest_row``
        and ``similarity`` (its most similar other row of the group, 1.0 for an exact
        twin), ``group_size``, ``label`` (when ``y`` is given) and ``cross_class``
        (the group holds more than one label). Empty when no row has a duplicate.

    Examples
    --------
    >>> import numpy as np
    >>> from skdlc import find_duplicates
    >>> E = np.eye(4)[[0, 0, 1, 2, 3]] + [[0, 0, 0, 0], [0.01, 0, 0, 0], [0] * 4, [0] * 4, [0] * 4]
    >>> dup = find_duplicates(E, y=[0, 1, 1, 2, 3])
    >>> dup[["row", "group", "kind", "nearest_row", "cross_class"]].values.tolist()
    [[0, 0, 'near', 1, True], [1, 0, 'near', 0, True]]
    """
    E = _check_embedding(embedding)
    n = len(E)
    if not (isinstance(threshold, str) and threshold == "auto") and not (
            isinstance(threshold, (int, float, np.floating)) and 0 < float(threshold) <= 1):
        raise ValueError(f"threshold must be in (0, 1] or 'auto', got {threshold!r}")
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    y = _check_rows(y, n, "y")
    hashes = _check_rows(hashes, n, "hashes")

    k_eff = min(int(k), n - 1)
    if k_eff > 0:
        nbr, sim = knn(E, k_eff, backend=backend, exact_max_rows=exact_max_rows, random_state=random_state)
        if threshold == "auto":
            threshold = 1.0 - AUTO_SHARE * float(np.median(1.0 - sim[:, 0]))
        keep = (sim >= float(threshold) - 1e-6) & (nbr >= 0) & (nbr != np.arange(n)[:, None])
        rows, cols, vals = np.repeat(np.arange(n), k_eff)[keep.ravel()], nbr[keep], sim[keep]
    else:
        rows = cols = np.zeros(0, np.int64)
        vals = np.zeros(0)
    exact_of = np.full(n, -1)
    if hashes is not None:  # chain the rows of each hash: r0-r1, r1-r2, ...
        _, inv = np.unique(hashes.astype(str), return_inverse=True)
        order = np.argsort(inv, kind="stable")
        same = inv[order][1:] == inv[order][:-1]
        a, b = order[:-1][same], order[1:][same]
        exact_of[a], exact_of[b] = b, a
        rows, cols = np.concatenate([rows, a]), np.concatenate([cols, b])
        vals = np.concatenate([vals, np.ones(len(a))])
    out = _groups(n, rows, cols, vals, exact_of, y)
    out.attrs["threshold"] = 1.0 if threshold == "auto" else float(threshold)
    return out


def keep_one_per_group(duplicates: pd.DataFrame, n_samples: int, *, conflicts: str = "keep_one",
                       prefer=None) -> np.ndarray:
    """Rows to keep when every duplicate group is reduced to one row.

    Parameters
    ----------
    duplicates : pandas.DataFrame
        The output of :func:`find_duplicates`.
    n_samples : int
        Rows in the data set.
    conflicts : {"keep_one", "drop"}, default="keep_one"
        What to do with groups whose rows carry different labels: keep one row like any
        other group, or drop the whole group (its labels contradict each other).
    prefer : array-like of shape (n_samples,), default=None
        A score per row; the row with the lowest score of each group is kept (e.g. the
        DLC score, to keep the easiest copy). None: the first row of each group.

    Returns
    -------
    ndarray of int
        Sorted row indices to keep: every row without a duplicate, plus one per group.
    """
    if conflicts not in ("keep_one", "drop"):
        raise ValueError(f"conflicts must be 'keep_one' or 'drop', got {conflicts!r}")
    keep = np.ones(int(n_samples), bool)
    if len(duplicates) == 0:
        return np.flatnonzero(keep)
    rows = duplicates["row"].to_numpy()
    if rows.max() >= n_samples:
        raise ValueError(f"duplicates name row {rows.max()} but n_samples is {n_samples}")
    keep[rows] = False
    groups = duplicates["group"].to_numpy()
    rank = np.zeros(len(rows)) if prefer is None else np.asarray(prefer, float)[rows]
    order = np.lexsort((rows, rank, groups))  # per group: lowest score, then first row
    first = order[np.r_[True, groups[order][1:] != groups[order][:-1]]]
    if conflicts == "drop" and "cross_class" in duplicates:
        first = first[~duplicates["cross_class"].to_numpy()[first]]
    keep[rows[first]] = True
    return np.flatnonzero(keep)


# --------------------------------------------------------------------- neighbour search
def knn(E: np.ndarray, k: int, *, backend: str = "auto", exact_max_rows: int = 20_000,
        random_state: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The k most similar other rows of every row (cosine): (indices, similarities), (n, k)."""
    X = _unit(E)
    if backend in ("auto", "faiss"):
        try:
            import faiss  # noqa: F401
        except ImportError:
            if backend == "faiss":
                raise ImportError("backend='faiss' needs faiss: pip install 'skdlc[scale]' "
                                  "(or backend='numpy')") from None
        else:
            return _knn_faiss(X, k, exact_max_rows, random_state)
    return _knn_numpy(X, k)


def _knn_numpy(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(X)
    block = int(max(1, min(4096, _BLOCK_BYTES // (4 * n))))
    nbr = np.empty((n, k), np.int64)
    sim = np.empty((n, k), np.float32)
    for s in range(0, n, block):
        S = X[s:s + block] @ X.T
        S[np.arange(len(S)), np.arange(s, s + len(S))] = -np.inf  # never yourself
        top = np.argpartition(-S, k - 1, axis=1)[:, :k]
        vals = np.take_along_axis(S, top, 1)
        order = np.argsort(-vals, axis=1, kind="stable")
        nbr[s:s + block] = np.take_along_axis(top, order, 1)
        sim[s:s + block] = np.take_along_axis(vals, order, 1)
    return nbr, sim


def _knn_faiss(X: np.ndarray, k: int, exact_max_rows: int, random_state: int):
    import faiss

    n, d = X.shape
    if n <= exact_max_rows:
        index = faiss.IndexFlatIP(d)
        index.add(X)
        sim, nbr = index.search(X, k + 1)  # the row itself comes back too (dropped below)
        return _drop_self(nbr, sim, k)
    # Above exact_max_rows: look up candidates in a short PCA of the vectors (the search
    # scans a share of the rows per query, so its cost is linear in the dimension), then
    # rank the candidates by their exact cosine in the full space.
    nlist = int(max(16, round(np.sqrt(n))))
    rng = np.random.RandomState(random_state)
    train = np.arange(n) if n <= 64 * nlist else np.sort(rng.choice(n, 64 * nlist, False))
    pca = faiss.PCAMatrix(d, min(d, _LOOKUP_DIMS))
    pca.train(X[train])
    Z = _unit(pca.apply(X))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(Z.shape[1]), Z.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = int(random_state)
    index.cp.niter = 10  # coarse lists only route the search: a short k-means is enough
    index.train(Z[train])
    index.nprobe = min(16, nlist)
    index.add(Z)
    _, cand = index.search(Z, min(n, 2 * k + 1))
    return _rerank(X, cand, k)


def _rerank(X: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k candidates of each row with the highest exact cosine (self and -1 left out)."""
    n = len(X)
    nbr = np.full((n, k), -1, np.int64)
    sim = np.full((n, k), -np.inf, np.float32)
    for s in range(0, n, 1024):  # 1024 x (2k+1) gathered rows at a time
        c = cand[s:s + 1024]
        rows = np.arange(s, s + len(c))[:, None]
        v = np.einsum("id,ikd->ik", X[s:s + len(c)], X[np.maximum(c, 0)]).astype(np.float32)
        v[(c < 0) | (c == rows)] = -np.inf
        top = np.argsort(-v, axis=1, kind="stable")[:, :k]
        nbr[s:s + len(c)] = np.take_along_axis(c, top, 1)
        sim[s:s + len(c)] = np.take_along_axis(v, top, 1)
    nbr[~np.isfinite(sim)] = -1
    return nbr, sim


def _drop_self(nbr: np.ndarray, sim: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(nbr)
    own = nbr == np.arange(n)[:, None]
    drop = np.where(own.any(1), own.argmax(1), k)  # the self column, else the last one
    keep = np.ones_like(own)
    keep[np.arange(n), drop] = False
    return nbr[keep].reshape(n, k).astype(np.int64), sim[keep].reshape(n, k)


# ------------------------------------------------------------------------------ groups
def _groups(n, rows, cols, vals, exact_of, y) -> pd.DataFrame:
    columns = ["row", "group", "kind", "nearest_row", "similarity", "group_size"]
    columns += (["label"] if y is not None else []) + ["cross_class"]
    if len(rows) == 0:
        return pd.DataFrame({c: pd.Series(dtype=object if c in ("kind", "label") else
                                          (bool if c == "cross_class" else float if c == "similarity"
                                           else np.int64)) for c in columns})
    G = sparse.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    _, comp = connected_components(G, directed=False)
    members = np.flatnonzero(np.bincount(comp, minlength=n)[comp] > 1)
    # nearest other row of each member: the most similar link, both directions
    both_r, both_c = np.concatenate([rows, cols]), np.concatenate([cols, rows])
    both_v = np.concatenate([vals, vals])
    order = np.lexsort((-both_v, both_r))
    first = order[np.r_[True, both_r[order][1:] != both_r[order][:-1]]]
    nearest = np.full(n, -1)
    best = np.full(n, np.nan)
    nearest[both_r[first]], best[both_r[first]] = both_c[first], both_v[first]
    twin = exact_of >= 0
    nearest[twin], best[twin] = exact_of[twin], 1.0
    # groups numbered in order of their first row
    comp_m = comp[members]
    _, group = np.unique(comp_m, return_inverse=True)
    first_row = np.full(group.max() + 1, n)
    np.minimum.at(first_row, group, members)
    group = np.argsort(np.argsort(first_row, kind="stable"), kind="stable")[group]
    size = np.bincount(group)[group]
    out = pd.DataFrame({"row": members, "group": group,
                        "kind": np.where(twin[members], "exact", "near"),
                        "nearest_row": nearest[members], "similarity": np.clip(best[members], -1, 1),
                        "group_size": size})
    if y is not None:
        out["label"] = y[members]
        n_labels = out.groupby("group")["label"].transform("nunique")
        out["cross_class"] = (n_labels > 1).to_numpy()
    else:
        out["cross_class"] = False
    return out.sort_values(["group", "row"], kind="stable").reset_index(drop=True)[columns]


# ----------------------------------------------------------------------------- helpers
def _digest_array(x: np.ndarray) -> str:
    x = np.ascontiguousarray(x)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{x.dtype.str}{x.shape}".encode())
    h.update(x.tobytes())
    return h.hexdigest()


def _unit(E: np.ndarray) -> np.ndarray:
    X = np.ascontiguousarray(E, dtype=np.float32)
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def _check_embedding(embedding) -> np.ndarray:
    E = np.asarray(embedding, dtype=np.float32)
    if E.ndim != 2 or len(E) == 0:
        raise ValueError(f"embedding must be 2-d (n_samples, n_features) with rows, got shape {E.shape}")
    if not np.isfinite(E).all():
        raise ValueError("embedding contains NaN or infinity")
    return E


def _check_rows(values, n: int, name: str):
    if values is None:
        return None
    values = np.asarray(values)
    if values.ndim != 1 or len(values) != n:
        raise ValueError(f"{name} must be 1-d with one entry per embedding row ({n}), got shape {values.shape}")
    return values
