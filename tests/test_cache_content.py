"""The cache is keyed by content and verifies what it reads (issue 19, items 2 and 6);
the calibrated path, and so the cache entries, do not depend on the seed (issue 18.3)."""

import os
import shutil

import joblib
import numpy as np
import pytest
from PIL import Image

from skdlc import DLCScorer
from skdlc._backbones._base import Backbone, Preprocessing
from skdlc._chunks import CHUNK_DIR, PathManifest


def _bb(module):
    return Backbone("tiny", module, preprocessing=Preprocessing(input_size=(12, 12)))


def _scorer(module, **kw):
    kw.setdefault("mask_ratios", [0, 0.3, 0.6])
    return DLCScorer(_bb(module), device="cpu", engine="torch", verbose=False, batch_size=8,
                     num_workers=0, **kw)


def _images(folder, n=24, seed=0, fmt="bmp"):
    """n images in 3 classes; BMP: every file of one size has the same number of bytes."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    base = rng.integers(0, 255, (3, 1, 1, 3))
    paths, y = [], np.arange(n) % 3
    for i in range(n):
        img = np.clip(base[y[i]] + rng.normal(0, 50, (12, 12, 3)), 0, 255).astype(np.uint8)
        p = folder / f"img{i:03d}.{fmt}"
        Image.fromarray(img).save(p)
        paths.append(str(p))
    return paths, y


def _chunks(mem):
    return sorted((mem / "joblib" / CHUNK_DIR).glob("*/*.npy"))


def _drop_results(mem):
    """Remove the final-result layer of the cache, so that the chunks are read again."""
    for d in (mem / "joblib").iterdir():
        if d.name != CHUNK_DIR:
            shutil.rmtree(d)


def test_file_replaced_with_same_size_and_mtime_is_scored_again(tiny_cnn, tmp_path):
    paths, y = _images(tmp_path / "data")
    mem = tmp_path / "cache"
    _scorer(tiny_cnn, memory=mem).fit_transform(paths, y)
    # Replace image 0 by image 3's bytes (same size: BMP), keeping image 0's mtime, as
    # `cp -p`, `rsync -a` or `tar x` do.
    st = os.stat(paths[0])
    shutil.copyfile(paths[3], paths[0])
    os.utime(paths[0], ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(paths[0]).st_size == st.st_size
    again = _scorer(tiny_cnn, memory=mem)
    out = again.fit_transform(paths, y)
    assert again.n_forward_batches_ > 0  # not read from the cache
    np.testing.assert_allclose(out, _scorer(tiny_cnn).fit_transform(paths, y), rtol=1e-6, atol=1e-7)


def test_same_bytes_elsewhere_read_the_cache(tiny_cnn, tmp_path):
    paths, y = _images(tmp_path / "data")
    mem = tmp_path / "cache"
    first = _scorer(tiny_cnn, memory=mem).fit_transform(paths, y)
    moved = shutil.copytree(tmp_path / "data", tmp_path / "moved")  # new names and mtimes
    s = _scorer(tiny_cnn, memory=mem)
    np.testing.assert_array_equal(s.fit_transform([str(moved / os.path.basename(p)) for p in paths], y), first)
    assert s.n_forward_batches_ == 0


@pytest.mark.parametrize("how", ["scaled", "nan"])
def test_altered_chunk_is_recomputed_with_one_line(tiny_cnn, tmp_path, capfd, how):
    paths, y = _images(tmp_path / "data")
    mem = tmp_path / "cache"
    first = _scorer(tiny_cnn, memory=mem, chunk_size=8).fit_transform(paths, y)
    files = _chunks(mem)
    assert len(files) == 3 * 3  # 3 ratios x 3 chunks of 8 rows
    arr = np.load(files[4])
    np.save(files[4], arr * 2.0 if how == "scaled" else np.full_like(arr, np.nan))  # a valid .npy
    _drop_results(mem)
    capfd.readouterr()
    s = _scorer(tiny_cnn, memory=mem, chunk_size=8)
    np.testing.assert_allclose(s.fit_transform(paths, y), first, rtol=1e-6, atol=1e-7)
    assert s.n_forward_batches_ == 1  # that chunk's one batch, under its one ratio
    err = capfd.readouterr().err
    notes = [ln for ln in err.splitlines() if ln.strip()]
    assert len(notes) == 1 and "damaged feature chunk" in notes[0] and "again" in notes[0], err
    assert "Traceback" not in err and "backbone" not in err
    # the recomputed chunk replaced the damaged one: a third run reads everything
    _drop_results(mem)
    s3 = _scorer(tiny_cnn, memory=mem, chunk_size=8)
    s3.fit_transform(paths, y)
    assert s3.n_forward_batches_ == 0 and not capfd.readouterr().err


def test_altered_result_entry_is_recomputed(tiny_cnn, tmp_path, capfd):
    paths, y = _images(tmp_path / "data")
    mem = tmp_path / "cache"
    first = _scorer(tiny_cnn, memory=mem).fit_transform(paths, y)
    outputs = sorted((mem / "joblib").rglob("output.pkl"))
    assert outputs
    for f in outputs:  # every stored result altered into another valid pickle
        stored = joblib.load(f)
        obj = stored[2] if isinstance(stored, tuple) and len(stored) == 3 else stored
        if isinstance(obj, dict) and obj.get("losses") is not None:
            obj["losses"] = obj["losses"] + 1.0
        elif isinstance(obj, tuple) and isinstance(obj[0], np.ndarray):
            obj[0][:] += 1.0
        joblib.dump(stored, f)
    capfd.readouterr()
    s = _scorer(tiny_cnn, memory=mem)
    np.testing.assert_allclose(s.fit_transform(paths, y), first, rtol=1e-6, atol=1e-7)
    err = capfd.readouterr().err
    assert "damaged" in err and "Traceback" not in err


def test_manifest_fingerprint_follows_the_bytes(tmp_path):
    paths, y = _images(tmp_path / "imgs", n=6)
    manifest = tmp_path / "m.tsv"
    manifest.write_text("".join(f"{p}\t{c}\n" for p, c in zip(paths, y)))
    fp = PathManifest(manifest).fingerprint()
    os.utime(paths[1], ns=(1, 1))  # a new mtime, the same bytes
    assert PathManifest(manifest).fingerprint() == fp
    st = os.stat(paths[2])
    shutil.copyfile(paths[0], paths[2])
    os.utime(paths[2], ns=(st.st_atime_ns, st.st_mtime_ns))  # new bytes, the old mtime
    assert PathManifest(manifest).fingerprint() != fp


def test_another_seed_reads_the_same_calibrated_path(tiny_cnn, tmp_path):
    """--seed drives the selection's draws only: the path and its cache entries are the data's."""
    paths, y = _images(tmp_path / "data", n=60)
    mem = tmp_path / "cache"
    a = _scorer(tiny_cnn, mask_ratios="calibrated", memory=mem, random_state=0, n_ratios=3)
    out = a.fit_transform(paths, y)
    assert a.n_forward_batches_ > 0
    b = _scorer(tiny_cnn, mask_ratios="calibrated", memory=mem, random_state=1, n_ratios=3)
    np.testing.assert_array_equal(b.fit_transform(paths, y), out)
    assert b.n_forward_batches_ == 0 and b.mask_ratios_ == a.mask_ratios_
    # the feature chunks too: without the result layer, nothing is run again
    _drop_results(mem)
    c = _scorer(tiny_cnn, mask_ratios="calibrated", memory=mem, random_state=2, n_ratios=3)
    np.testing.assert_allclose(c.fit_transform(paths, y), out, rtol=1e-6, atol=1e-7)
    assert c.n_forward_batches_ == 0
    # and without a cache, two seeds give the same path and scores
    d = _scorer(tiny_cnn, mask_ratios="calibrated", random_state=5, n_ratios=3)
    np.testing.assert_allclose(d.fit_transform(paths, y), out, rtol=1e-6, atol=1e-7)
    assert d.mask_ratios_ == a.mask_ratios_


def test_calibration_records_passes_used_and_informative():
    from skdlc._calibration import Calibration

    rng = np.random.default_rng(0)
    base = rng.random(500)
    cal = Calibration(probe_ratios=(0.0, 0.1, 0.2, 0.4, 0.8), accuracies=(0.9,) * 5, chance=0.1,
                      ratios=(0.0, 0.2, 0.4), n_rows=100, informative=(True,) * 5)
    # the second pass reorders the rows, the third adds a constant: it moves nothing
    out = cal.with_path_stats([base, rng.random(500) * 3, np.full(500, 2.0)], n_rows=500).to_dict()
    p = out["passes"]
    assert p["path_passes"] == 3 and p["path_passes_informative"] == 2
    assert p["spearman_to_previous"][1] == 1.0 and p["spearman_to_previous"][0] < 0.99
    assert p["image_forwards"] == {"probes": 500, "path_outside_sample": 1200, "total": 1700,
                                   "path_alone_would_be": 1500}
    assert p["probe_overhead"] == round(2 * 100 / 1500, 4)
