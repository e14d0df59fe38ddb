"""find_duplicates: planted exact and near-duplicate groups, label conflicts, keeping one."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from skdlc import content_hashes, find_duplicates, image_thumbnails, keep_one_per_group

BACKENDS = ["numpy"] + (["faiss"] if importlib.util.find_spec("faiss") else [])


def _planted(n=600, d=64, seed=0):
    """Clustered unit vectors; rows 590-599 copy rows 0-9 (590-594 near, 595-599 exact hashes)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(12, d))
    E = centres[rng.integers(0, 12, n)] + 0.8 * rng.normal(size=(n, d))
    src = np.arange(10)
    cp = np.arange(n - 10, n)
    E[cp[:5]] = E[src[:5]] + 0.02 * rng.normal(size=(5, d))
    E[cp[5:]] = E[src[5:]]
    hashes = np.array([f"h{i}" for i in range(n)], dtype=object)
    hashes[cp[5:]] = hashes[src[5:]]
    y = rng.integers(0, 3, n)
    y[cp] = y[src]
    y[cp[0]] = (y[src[0]] + 1) % 3  # a label conflict
    return E, y, hashes, src, cp


@pytest.mark.parametrize("backend", BACKENDS)
def test_planted_groups_found_exactly(backend):
    E, y, hashes, src, cp = _planted()
    dup = find_duplicates(E, y=y, hashes=hashes, threshold=0.99, backend=backend)
    groups = {frozenset(g) for g in dup.groupby("group")["row"].agg(set)}
    assert groups == {frozenset((int(s), int(c))) for s, c in zip(src, cp)}
    assert list(dup.columns) == ["row", "group", "kind", "nearest_row", "similarity", "group_size",
                                 "label", "cross_class"]
    by_row = dup.set_index("row")
    assert (by_row.loc[cp[5:], "kind"] == "exact").all() and (by_row.loc[cp[:5], "kind"] == "near").all()
    np.testing.assert_array_equal(by_row.loc[cp, "nearest_row"], src)
    assert (by_row.loc[cp, "similarity"] > 0.99).all()
    assert by_row.loc[[src[0], cp[0]], "cross_class"].all() and by_row["cross_class"].sum() == 2
    assert dup["group"].tolist() == sorted(dup["group"])  # numbered by first row
    assert (dup["group_size"] == 2).all()


def test_backends_agree_and_ivf_finds_separated_pairs():
    if len(BACKENDS) < 2:
        pytest.skip("faiss not installed")
    E, y, hashes, *_ = _planted(n=2000)
    a = find_duplicates(E, threshold=0.99, backend="numpy")
    b = find_duplicates(E, threshold=0.99, backend="faiss")
    c = find_duplicates(E, threshold=0.99, backend="faiss", exact_max_rows=100)  # inverted file
    assert a[["row", "group", "nearest_row"]].equals(b[["row", "group", "nearest_row"]])
    assert set(c["row"]) == set(a["row"])


def test_hashes_alone_group_exact_copies_whatever_the_embedding():
    rng = np.random.default_rng(0)
    E = rng.normal(size=(50, 8))
    hashes = np.arange(50).astype(str)
    hashes[[3, 17, 40]] = "same"
    dup = find_duplicates(E, hashes=hashes, threshold=1.0)
    assert dup["row"].tolist() == [3, 17, 40] and (dup["kind"] == "exact").all()
    assert (dup["group_size"] == 3).all() and not dup["cross_class"].any()


def test_no_duplicates_gives_an_empty_frame_with_the_columns():
    dup = find_duplicates(np.eye(5), y=np.arange(5))
    assert dup.empty and "cross_class" in dup.columns and "label" in dup.columns
    np.testing.assert_array_equal(keep_one_per_group(dup, 5), np.arange(5))


def test_keep_one_per_group():
    E, y, hashes, src, cp = _planted()
    dup = find_duplicates(E, y=y, hashes=hashes, threshold=0.99)
    keep = keep_one_per_group(dup, len(E))
    assert len(keep) == len(E) - 10 and set(src) <= set(keep) and not set(cp) & set(keep)
    prefer = np.zeros(len(E))
    prefer[src] = 1.0  # the copies score lower: they are kept instead
    keep = keep_one_per_group(dup, len(E), prefer=prefer)
    assert set(cp) <= set(keep) and not set(src) & set(keep)
    keep = keep_one_per_group(dup, len(E), conflicts="drop")
    assert src[0] not in keep and cp[0] not in keep and len(keep) == len(E) - 11
    with pytest.raises(ValueError, match="conflicts must be"):
        keep_one_per_group(dup, len(E), conflicts="vote")


def test_content_hashes_and_thumbnails(tmp_path):
    digits = load_digits().images[:20]
    imgs = np.round(digits * 15).astype(np.uint8)
    imgs[5] = imgs[2]
    h = content_hashes(imgs)
    assert h[5] == h[2] and len(set(h)) == 19
    h2 = content_hashes([imgs[2], imgs[2].astype(np.float32)])  # a list of arrays; the dtype counts
    assert h2[0] == h[2] != h2[1]
    for i in (2, 5, 6):
        Image.fromarray(imgs[i]).save(tmp_path / f"{i}.png")
    hf = content_hashes([tmp_path / "2.png", str(tmp_path / "5.png"), tmp_path / "6.png"])
    assert hf[0] == hf[1] != hf[2]
    ht = content_hashes(["a cat", "a dog", "a cat"], text=True)
    assert ht[0] == ht[2] != ht[1]
    big = np.asarray(Image.fromarray(imgs[3]).resize((24, 24), Image.BILINEAR))
    T = image_thumbnails(list(imgs) + [big, tmp_path / "6.png"], size=8)
    assert T.shape == (22, 64)
    cos = T @ T.T / np.outer(np.linalg.norm(T, axis=1), np.linalg.norm(T, axis=1))
    assert cos[3, 20] > 0.95 and cos[6, 21] > 0.999


@pytest.mark.parametrize("kwargs, match", [
    (dict(threshold=0), "threshold must be in"),
    (dict(k=0), "k must be a positive int"),
    (dict(backend="annoy"), "backend must be one of"),
    (dict(y=[0, 1]), "y must be 1-d with one entry per embedding row"),
    (dict(hashes=np.zeros((4, 2))), "hashes must be 1-d"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        find_duplicates(np.ones((4, 3)), **kwargs)


def test_bad_embedding_is_named():
    with pytest.raises(ValueError, match="2-d"):
        find_duplicates(np.ones(4))
    with pytest.raises(ValueError, match="NaN"):
        find_duplicates(np.array([[np.nan, 1.0], [1.0, 2.0]]))
