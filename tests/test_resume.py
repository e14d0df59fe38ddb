"""Resumable chunked scoring (``memory=``): kill and resume, stale keys, manifests."""

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from skdlc import DLCScorer
from skdlc._backbones._base import Backbone, Preprocessing
from skdlc._chunks import CHUNK_DIR, PathManifest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RATIOS = [0, 0.3, 0.6]


def _scorer(module, **kw):
    kw.setdefault("engine", "torch")  # forward hooks and pass counts see the torch module
    kw.setdefault("mask_ratios", RATIOS)
    return DLCScorer(module, device="cpu", verbose=False, batch_size=16, **kw)


def _chunk_files(mem):
    return sorted(p for p in (mem / "joblib" / CHUNK_DIR).glob("*/*.npy"))


def _data(n=160, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 4
    X = np.clip(rng.random((4, 3, 1, 1))[y] + 0.3 * rng.standard_normal((n, 3, 12, 12)), 0, 1)
    return X.astype(np.float32), y


# The child scores with a forward hook that sleeps: hooks are not weights, so its
# chunks have the same content key as the parent's plain TinyCNN(0).
_CHILD = """
import sys, time
sys.path.insert(0, {root!r})
from tests.conftest import TinyCNN
from tests.test_resume import _data, _scorer
m = TinyCNN(0)
m.register_forward_pre_hook(lambda *a: time.sleep({sleep}))
X, y = _data()
_scorer(m, memory={mem!r}, chunk_size=16).fit_transform(X, y)
print("finished")
"""


@pytest.mark.slow
def test_killed_run_resumes_computing_only_missing_chunks(tiny_cnn, tmp_path):
    X, y = _data()
    n_files = len(RATIOS) * (len(X) // 16)  # one file per (ratio, chunk of 16 rows)
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD.format(root=ROOT, mem=str(tmp_path), sleep=0.15)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while len(_chunk_files(tmp_path)) < 4:
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "the child wrote no chunks"
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    done = len(_chunk_files(tmp_path))
    assert 4 <= done < n_files  # killed midway
    assert not list((tmp_path / "joblib" / CHUNK_DIR).glob("*/.*.tmp"))  # no half-written chunk left

    resumed = _scorer(tiny_cnn, memory=tmp_path, chunk_size=16)
    out = resumed.fit_transform(X, y)
    # One forward batch per missing file, none for the chunks the killed run wrote.
    assert resumed.n_forward_batches_ == n_files - done
    assert len(_chunk_files(tmp_path)) == n_files

    whole = _scorer(tiny_cnn).fit_transform(X, y)  # uninterrupted, no cache
    np.testing.assert_allclose(out, whole, rtol=1e-6, atol=1e-7)
    again = _scorer(tiny_cnn, memory=tmp_path, chunk_size=16)
    np.testing.assert_array_equal(again.fit_transform(X, y), out)
    assert again.n_forward_batches_ == 0


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"embedding": True, "prototypes": "unmasked", "mask_ratios": [0.2, 0.5]},
        {"logits": "inverse_distance", "masking": "global"},
        {"mask_ratios": "auto", "max_ratios": 4, "auto_tol": 0.999, "random_state": 0},
    ],
)
def test_chunked_equals_in_memory(tiny_cnn, tmp_path, params):
    X, y = _data(100)
    X_new = _data(37, seed=1)[0]
    ref = _scorer(tiny_cnn, **params)
    a = ref.fit_transform(X, y)
    s = _scorer(tiny_cnn, memory=tmp_path, chunk_size=32, **params)
    b = s.fit_transform(X, y)
    np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(s.prototypes_, ref.prototypes_, rtol=1e-6, atol=1e-7)
    assert s.mask_ratios_ == ref.mask_ratios_
    np.testing.assert_allclose(s.transform(X_new), ref.transform(X_new), rtol=1e-6, atol=1e-6)
    assert _chunk_files(tmp_path)


def test_stale_chunks_never_read(tiny_cnn, tmp_path):
    X, y = _data(64)
    n_fwd = len(RATIOS) * 4

    def run(module, X, y, **kw):
        s = _scorer(module, memory=tmp_path, chunk_size=32, **kw)
        out = s.fit_transform(X, y)
        np.testing.assert_allclose(out, _scorer(module, **kw).fit_transform(X, y), rtol=1e-6, atol=1e-7)
        return s.n_forward_batches_

    assert run(tiny_cnn, X, y) == n_fwd
    # What decides the features is in the key: each change scores everything again.
    X2 = X.copy()
    X2[5, 0, 0, 0] += 0.25
    assert run(tiny_cnn, X2, y) == n_fwd  # changed data
    assert run(tiny_cnn, X, y, masking="global") == n_fwd  # changed parameter
    with torch.no_grad():
        tiny_cnn.conv1.weight[0, 0, 0, 0] += 0.5
    assert run(tiny_cnn, X, y) == n_fwd  # changed backbone weights
    # What does not decide the features reuses them (and still gives fresh scores).
    assert run(tiny_cnn, X, y, logits="neg_sq_distance") == 0
    assert run(tiny_cnn, X, y[::-1].copy()) == 0  # other labels, same images


def test_corrupt_or_partial_chunk_is_recomputed(tiny_cnn, tmp_path):
    X, y = _data(64)
    first = _scorer(tiny_cnn, memory=tmp_path, chunk_size=32).fit_transform(X, y)
    files = _chunk_files(tmp_path)
    files[0].write_bytes(b"\x93NUMPY garbage")  # a damaged file
    files[1].unlink()
    (files[2].parent / ".r0.300000_junk.npy.tmp").write_bytes(b"half")  # a killed write
    for d in (tmp_path / "joblib").iterdir():  # drop the final-result cache (another
        if d.name != CHUNK_DIR:  # layer), so that the chunks are read again
            shutil.rmtree(d)
    s = _scorer(tiny_cnn, memory=tmp_path, chunk_size=32)
    np.testing.assert_allclose(s.fit_transform(X, y), first, rtol=1e-6, atol=1e-7)
    assert s.n_forward_batches_ == 2 * 2  # two files of two batches each


def test_memory_clear_removes_chunks(tiny_cnn, tmp_path):
    import joblib

    X, y = _data(32)
    _scorer(tiny_cnn, memory=tmp_path).fit(X, y)
    assert _chunk_files(tmp_path)
    joblib.Memory(tmp_path, verbose=0).clear(warn=False)
    assert not _chunk_files(tmp_path)


def _write_images(folder, n, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir()
    paths = []
    for i in range(n):
        img = (rng.random((10 + i % 3, 12, 3)) * 255).astype(np.uint8)
        p = folder / f"img{i:03d}.png"
        Image.fromarray(img).save(p)
        paths.append(p)
    return paths


def test_path_manifest_streams_paths(tiny_cnn, tmp_path):
    paths = _write_images(tmp_path / "imgs", 24)
    y = np.arange(24) % 3
    manifest = tmp_path / "train.tsv"
    manifest.write_text("".join(f"imgs/{p.name}\t{c}\n" for p, c in zip(paths, y)) + "\n")
    m = PathManifest(manifest)
    assert len(m) == 24 and m[3] == str(paths[3]) and m.labels().tolist() == [str(c) for c in y]
    bb = Backbone("tiny", tiny_cnn, preprocessing=Preprocessing(input_size=(12, 12)))
    ref = _scorer(bb).fit_transform([str(p) for p in paths], y)
    s = _scorer(bb, memory=tmp_path / "mem", chunk_size=16)
    np.testing.assert_allclose(s.fit_transform(m, y), ref, rtol=1e-6, atol=1e-7)
    assert s.n_forward_batches_ > 0
    fp = m.fingerprint()
    time.sleep(0.01)
    Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(paths[0])  # a rewritten image
    assert PathManifest(manifest).fingerprint() != fp
    s2 = _scorer(bb, memory=tmp_path / "mem", chunk_size=16)
    s2.fit_transform(m, y)
    assert s2.n_forward_batches_ > 0
    with pytest.raises(ValueError, match="no label column"):
        PathManifest(manifest, sep=",").labels()
