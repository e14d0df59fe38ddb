"""Issue 12: bad input and interrupted runs. Each test reproduces one reported case.

Image cases use tiny images and the tiny conv net of test_cli (registered under a
name the CLI resolves); the instruction cases use the tiny Llama of test_instruction.
"""

import csv
import io
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from skdlc import Backbone, DLCScorer, Preprocessing
from skdlc._backbones import _REGISTRY, register_backbone
from skdlc._cli import main
from skdlc.datasets import make_image_folder

from test_cli import TINY, _images, _prune, _read, _TinyCNN

ROOT = Path(__file__).resolve().parents[1]
TEXT = "test_bad_input_text"
COUNTED = "test_bad_input_counted"
_PP = Preprocessing(input_size=(16, 16), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
N_BUILT = {"n": 0}


class _TextNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(1, 4)

    def forward(self, x):
        return self.lin(x)


def _text_collate(texts):
    return torch.tensor([[float(len(t))] for t in texts])


def _counted():
    N_BUILT["n"] += 1
    return Backbone(COUNTED, _TinyCNN().eval(), _PP, 16)


@pytest.fixture(scope="module", autouse=True)
def backbones():
    # test_cli's fixture registers TINY only while its own module runs.
    register_backbone(TINY)(lambda *, pretrained=True: Backbone(TINY, _TinyCNN().eval(), _PP, 16))
    register_backbone(TEXT)(lambda *, pretrained=True: Backbone(TEXT, _TextNet(), None, 4,
                                                                collate=_text_collate))
    register_backbone(COUNTED)(lambda *, pretrained=True: _counted())
    yield
    for name in (TINY, TEXT, COUNTED):
        _REGISTRY.pop(name, None)


@pytest.fixture
def folder(tmp_path):
    X, y = _images((8, 8, 8))
    return make_image_folder(tmp_path / "data", X, y, class_names=["cat", "dog", "emu"])


def _err(capsys, argv):
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    return err


def _picture(h=24, w=32):
    """A gray test picture with a gradient and a bright square (non-symmetric)."""
    yy, xx = np.mgrid[0:h, 0:w]
    g = (xx * 255 / (w - 1) * 0.6 + yy * 2).astype(np.float64)
    g[2:8, 3:9] = 250
    return np.clip(g, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------- 1. 16-bit, float
def test_16bit_and_float_images_decode_like_8bit(tmp_path):
    from skdlc._data import decode_image, make_batches

    g = _picture()
    Image.fromarray(g).save(tmp_path / "p8.png")
    Image.fromarray(g.astype(np.uint16) * 257).save(tmp_path / "p16.png")  # I;16
    Image.fromarray(g.astype(np.float32) / 255).save(tmp_path / "pf.tif")  # F in [0, 1]
    Image.fromarray(g.astype(np.float32)).save(tmp_path / "pf255.tif")  # F in 0-255
    with Image.open(tmp_path / "p16.png") as im:
        assert im.mode.startswith("I")
    paths = [str(tmp_path / n) for n in ("p8.png", "p16.png", "pf.tif", "pf255.tif")]
    for p in paths:
        a = decode_image(p)
        assert a.dtype == np.uint8 and a.shape == (24, 32, 3)
        assert np.abs(a[..., 0].astype(int) - g).max() <= 1, p
    # the scorer's input path (files -> model input) sees the same picture
    bb = Backbone("t", _TinyCNN().eval(), _PP, 16)
    batch = make_batches(paths, bb, 4)[0]
    for i in (1, 2, 3):
        assert torch.allclose(batch[i], batch[0], atol=0.05), i
    # bytes, as the TorchServe handler gets them
    assert np.array_equal(decode_image((tmp_path / "p16.png").read_bytes()), decode_image(paths[0]))


def test_same_scores_for_8bit_and_16bit_copies_of_a_folder(tmp_path):
    X, y = _images((6, 6), size=16)
    gray = X[..., 0]
    d8 = make_image_folder(tmp_path / "d8", gray, y, class_names=["a", "b"])
    d16 = tmp_path / "d16"
    for p in d8.rglob("*.png"):
        q = d16 / p.relative_to(d8)
        q.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(Image.open(p)).astype(np.uint16) * 257).save(q)
    bb = Backbone("t", _TinyCNN().eval(), _PP, 16)
    a = DLCScorer(bb, mask_ratios=[0.0, 0.3], num_workers=0, device="cpu").fit_transform(
        [str(p) for p in sorted(d8.rglob("*.png"))], y)
    b = DLCScorer(bb, mask_ratios=[0.0, 0.3], num_workers=0, device="cpu").fit_transform(
        [str(p) for p in sorted(d16.rglob("*.png"))], y)
    np.testing.assert_allclose(a, b, atol=1e-4)


# ----------------------------------------------------------------------- 2. EXIF
def test_exif_orientation_is_applied(tmp_path):
    from skdlc._data import decode_image

    g = np.zeros((16, 32, 3), np.uint8)
    g[:, :16] = 255  # left half white, as stored
    im = Image.fromarray(g)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display": a phone photo held upright
    im.save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    a = decode_image(tmp_path / "phone.jpg")
    assert a.shape == (32, 16, 3)  # upright: taller than wide
    assert a[:8].mean() > 200 and a[-8:].mean() < 50  # the white half is now on top


# ------------------------------------------------------------ 3. backbone input kind
def test_text_backbone_on_image_folder_is_refused(folder, tmp_path, capsys):
    err = _err(capsys, ["prune", folder, "--keep", "0.5", "--backbone", TEXT,
                        "--out", tmp_path / "o", "--quiet"])
    assert f"--backbone {TEXT} takes text, not images" in err
    assert not (tmp_path / "o").exists()


def test_image_backbone_on_text_and_text_backbone_on_files_api(folder):
    bb = Backbone("t", _TinyCNN().eval(), _PP, 16)
    texts = ["a fine hotel", "the room was cold", "great staff", "never again"]
    with pytest.raises(ValueError, match="takes images, but X is a list of strings"):
        DLCScorer(bb, mask_ratios=[0.0], num_workers=0).fit(texts, [0, 1, 0, 1])
    files = [str(p) for p in sorted(Path(folder).rglob("*.png"))][:4]
    with pytest.raises(ValueError, match="takes text .* but X is a list of image files"):
        DLCScorer(TEXT, mask_ratios=[0.0], num_workers=0).fit(files, [0, 1, 0, 1])


# ----------------------------------------------------------------------- 4. --out
@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
def test_unwritable_out_fails_before_any_model_work(folder, capsys):
    N_BUILT["n"] = 0
    err = _err(capsys, ["prune", folder, "--keep", "0.5", "--backbone", COUNTED,
                        "--out", "/proc/skdlc_no_such_dir/x", "--quiet"])
    assert "--out /proc/skdlc_no_such_dir/x cannot be written" in err
    assert N_BUILT["n"] == 0  # the backbone was never built


def test_out_check_leaves_nothing_behind(folder, tmp_path, capsys):
    out = tmp_path / "a" / "b" / "out"
    # fails later (single class), after the --out check created and removed a/b/out
    X, _ = _images((4,))
    one = make_image_folder(tmp_path / "one", X, np.zeros(4, int), class_names=["x"])
    _err(capsys, ["prune", one, "--keep", "0.5", "--backbone", TINY, "--out", out, "--quiet"])
    assert not (tmp_path / "a").exists()


# ----------------------------------------------------------- 5. labels are strings
def test_na_like_class_names_round_trip_through_kept_csv(tmp_path):
    X, y = _images((5, 5, 5, 5))
    names = ["NA", "None", "null", "nan"]
    data = make_image_folder(tmp_path / "data", X, y, class_names=names)
    assert _prune(data, tmp_path / "o1", "--keep", "0.6") == 0
    kept = _read(tmp_path / "o1" / "kept.csv")
    assert sorted({r["label"] for r in kept}) == sorted(names)
    # kept.csv is a valid DATA: it reads back with the same labels
    assert _prune(tmp_path / "o1" / "kept.csv", tmp_path / "o2", "--keep", "0.5") == 0
    summary = json.loads((tmp_path / "o2" / "summary.json").read_text())
    assert sorted(c["label"] for c in summary["classes"]) == sorted(names)

    from skdlc.datasets import read_manifest

    m = read_manifest(tmp_path / "o1" / "kept.csv")
    assert m.labels.dtype.kind == "U" and set(m.labels) == set(names)


# ------------------------------------------------------------------ 6. output sets
def test_failure_while_writing_leaves_previous_results(folder, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    assert _prune(folder, out, "--keep", "0.3") == 0
    files = lambda: {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}  # noqa: E731
    before = files()
    assert "report.html" in before and any(k.startswith("figures/") for k in before)
    import skdlc._prune as prune_mod  # where the output set is written

    def broken(path, obj):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(prune_mod, "write_json", broken)
    assert _prune(folder, out, "--keep", "0.7") == 2  # different results, then a failure
    assert files() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "out"]  # no temp folder


def test_stale_skipped_csv_is_removed(folder, tmp_path):
    out = tmp_path / "out"
    bad = Path(folder) / "cat" / "zz_broken.png"
    bad.write_bytes(b"not a png")
    assert _prune(folder, out, "--keep", "0.5", "--on-error", "skip") == 0
    assert (out / "skipped.csv").exists()
    bad.unlink()
    assert _prune(folder, out, "--keep", "0.5", "--no-report") == 0
    assert sorted(p.name for p in out.iterdir()) == ["kept.csv", "scores.csv", "summary.json"]  # report removed too


def test_output_set_keeps_foreign_files_and_replaces_ours(tmp_path):
    from skdlc._io import output_set

    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "a.csv").write_text("old a")
    (out / "b.csv").write_text("old b")
    with output_set(out, ["a.csv", "b.csv", "done.json"]) as tmp:
        (tmp / "a.csv").write_text("new a")
        (tmp / "done.json").write_text("{}")
    assert sorted(p.name for p in out.iterdir()) == ["a.csv", "done.json", "notes.txt"]
    assert (out / "a.csv").read_text() == "new a"
    with pytest.raises(RuntimeError):
        with output_set(out, ["a.csv", "done.json"]) as tmp:
            (tmp / "a.csv").write_text("newer a")
            raise RuntimeError("boom")
    assert (out / "a.csv").read_text() == "new a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# ----------------------------------------------------------------------- 8. umask
def test_outputs_honour_the_umask(folder, tmp_path):
    from skdlc._jsonl import write_jsonl

    old = os.umask(0o022)
    try:
        assert _prune(folder, tmp_path / "out", "--keep", "0.5") == 0
        write_jsonl(tmp_path / "k.jsonl", [{"a": 1}])
    finally:
        os.umask(old)
    out = tmp_path / "out"
    for p in [*out.rglob("*"), tmp_path / "k.jsonl"]:
        assert stat.S_IMODE(p.stat().st_mode) == (0o755 if p.is_dir() else 0o644), p
    assert (out / "figures").is_dir()
    assert stat.S_IMODE(out.stat().st_mode) == 0o755


# ------------------------------------------------------------------- 10. API labels
@pytest.mark.parametrize(
    "y, message",
    [(np.array([0, 1, None, 1], dtype=object), "missing label"),
     (np.array([0, "cat", 1, "dog"], dtype=object), "mixes label types"),  # e.g. a pandas column
     ([3, 3, 3, 3], "only one class"), (["x", "x", "x", "x"], "only one class")],
)
def test_api_labels_are_checked(y, message):
    X = np.random.default_rng(0).integers(0, 255, (4, 12, 12, 3), dtype=np.uint8)
    bb = Backbone("t", _TinyCNN().eval(), _PP, 16)
    with pytest.raises(ValueError, match=message):
        DLCScorer(bb, mask_ratios=[0.0], num_workers=0).fit(X, y)


def test_api_and_cli_single_class_wording_match(tmp_path, capsys):
    from skdlc._validation import check_class_labels

    with pytest.raises(ValueError) as info:
        check_class_labels(["x"] * 3)
    X, _ = _images((3,))
    one = make_image_folder(tmp_path / "one", X, np.zeros(3, int), class_names=["x"])
    err = _err(capsys, ["prune", one, "--keep", "0.5", "--backbone", TINY, "--quiet"])
    tail = str(info.value).split("; ", 1)[1]
    assert tail in err and "only one class ('x', 3 images)" in err


# ------------------------------------------------------------------ 11. small things
def test_float_images_in_0_255_warn():
    X = np.random.default_rng(0).uniform(0, 255, (4, 3, 12, 12)).astype(np.float32)
    bb = Backbone("t", _TinyCNN().eval(), _PP, 16)
    with pytest.warns(UserWarning, match=r"read as pixels in \[0, 1\]"):
        DLCScorer(bb, mask_ratios=[0.0], num_workers=0).fit(X, [0, 1, 0, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DLCScorer(bb, mask_ratios=[0.0], num_workers=0).fit(X / 255, [0, 1, 0, 1])


def test_keep_as_percentage(folder, tmp_path):
    assert _prune(folder, tmp_path / "o", "--keep", "50%") == 0
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["keep_ratio"] == 0.5


# ------------------------------------------------ typed errors across DataLoader workers
def test_image_read_error_survives_worker_processes(tmp_path):
    from skdlc._data import ImageReadError

    X, y = _images((4, 4), size=16)
    paths = []
    for i, img in enumerate(X):
        p = tmp_path / f"it's {i}.png"
        Image.fromarray(img).save(p)
        paths.append(str(p))
    Path(paths[6]).write_bytes(b"broken")
    bb = Backbone("t", _TinyCNN().eval(), _PP, 16)
    with pytest.raises(ImageReadError) as info:
        DLCScorer(bb, mask_ratios=[0.0], num_workers=1, batch_size=2, device="cpu").fit(paths, y)
    assert info.value.path == paths[6]
    assert "not a readable image" in info.value.reason


# ------------------------------------------------------------ 7. resume after kill -9
_RUNNER = textwrap.dedent('''
    import os, sys, time, torch
    sys.path[:0] = [{tests!r}]
    from skdlc import Backbone, Preprocessing
    from skdlc._backbones import register_backbone
    from skdlc._cli import main
    from test_cli import _TinyCNN

    class Slow(_TinyCNN):
        def forward(self, x):
            with open(os.environ["COUNT_FILE"], "a") as f:
                f.write("1\\n")
            time.sleep(float(os.environ.get("SLEEP", "0")))
            return super().forward(x)

    pp = Preprocessing(input_size=(16, 16), mean=(0.5,) * 3, std=(0.25,) * 3)
    register_backbone("slow")(lambda *, pretrained=True: Backbone("slow", Slow().eval(), pp, 16))
    sys.exit(main(sys.argv[1:]))
''')


def _cli_process(script, args, count, sleep):
    env = dict(os.environ, COUNT_FILE=str(count), SLEEP=str(sleep), PYTHONPATH=str(ROOT),
               SKDLC_TEST_THREADS="1", OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, str(script), *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _count(path):
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.slow
def test_killed_cli_run_resumes(tmp_path):
    X, y = _images((24, 24), size=16)
    data = make_image_folder(tmp_path / "data", X, y, class_names=["a", "b"])
    script = tmp_path / "run.py"
    script.write_text(_RUNNER.format(tests=str(ROOT / "tests")))
    cache = tmp_path / "cache"
    args = ["prune", data, "--keep", "0.5", "--backbone", "slow", "--mask-ratios", "0,0.3,0.6",
            "--engine", "torch", "--batch-size", "4", "--num-workers", "0", "--device", "cpu",
            "--cache", cache, "--out", tmp_path / "out", "--quiet"]
    n_batches = 48 // 4 * 3  # 12 batches under each of 3 variants
    c1 = tmp_path / "count1"
    proc = _cli_process(script, args, c1, sleep=0.15)
    deadline = time.monotonic() + 120
    while _count(c1) < n_batches // 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before_kill = _count(c1)
    assert 0 < done_before_kill < n_batches
    assert not (tmp_path / "out").exists()

    c2 = tmp_path / "count2"
    proc = _cli_process(script, [a for a in args if a != "--quiet"], c2, sleep=0)  # notes shown
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    m = [ln for ln in stderr.splitlines() if "resuming:" in ln]
    # the default chunk on the CPU is 4 batches: 3 row ranges x 3 variants
    assert m and " of 9 chunks cached" in m[0], stderr
    cached = int(m[0].split("resuming: ")[1].split()[0])
    assert cached >= 3
    # only the missing chunks were computed (each chunk is 4 batches)
    assert _count(c2) == n_batches - 4 * cached

    # and the scores are those of an uninterrupted run without a cache (same weights)
    assert main([str(a) for a in ["prune", data, "--keep", "0.5", "--backbone", TINY,
                                  "--mask-ratios", "0,0.3,0.6", "--engine", "torch", "--batch-size", "4",
                                  "--num-workers", "0", "--device", "cpu",
                                  "--out", tmp_path / "out2", "--quiet"]]) == 0
    assert _read(tmp_path / "out" / "scores.csv") == _read(tmp_path / "out2" / "scores.csv")


# -------------------------------------------------------- 9. prune-instructions input
@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory):
    from test_instruction import _tiny_model, _tiny_tokenizer

    tok = _tiny_tokenizer()
    path = tmp_path_factory.mktemp("tiny_llama")
    _tiny_model(len(tok)).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _records(n=8):
    return [json.dumps({"instruction": f"Say {i}.", "output": f"It is {i} " * (1 + i % 3)})
            for i in range(n)]


def _pi(argv, capsys=None):
    return main(["prune-instructions", *map(str, argv), "--quiet"])


def test_lone_surrogate_is_named_before_the_model_loads(tmp_path, capsys):
    lines = _records(4)
    lines.insert(2, '{"instruction": "ok", "output": "bad \\ud800 text"}')
    src = tmp_path / "d.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    # a model that does not exist: had it been loaded first, the error would be about it
    rc = _pi([src, "--keep", "0.5", "--model", tmp_path / "no_model", "--out", tmp_path / "k.jsonl"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert f"{src}: line 3: field 'output' is not valid Unicode text" in err and "\\ud800" in err
    assert not (tmp_path / "k.jsonl").exists()


def test_api_lone_surrogate_is_a_record_error():
    from skdlc._jsonl import RecordError, extract_fields

    with pytest.raises(RecordError, match=r"record 1: field 'instruction' is not valid Unicode"):
        extract_fields([{"instruction": "a", "output": "b"}, {"instruction": "x\udc80", "output": "y"}])


def test_non_utf8_file_names_file_line_and_offset(tmp_path, capsys):
    src = tmp_path / "latin1.jsonl"
    body = "\n".join(_records(3)).encode() + b'\n{"instruction": "caf\xe9", "output": "x"}\n'
    src.write_bytes(body)
    rc = _pi([src, "--keep", "0.5", "--model", tmp_path / "no_model", "--out", tmp_path / "k.jsonl"])
    err = capsys.readouterr().err
    assert rc == 2
    offset = body.index(b"\xe9")
    assert f"{src}: line 4: not UTF-8 text (byte 0xe9 at byte offset {offset}" in err


def test_out_folder_for_prune_instructions_fails_before_the_model(tmp_path, capsys):
    src = tmp_path / "d.jsonl"
    src.write_text("\n".join(_records(4)) + "\n", encoding="utf-8")
    rc = _pi([src, "--keep", "0.5", "--model", tmp_path / "no_model", "--out", tmp_path])
    err = capsys.readouterr().err
    assert rc == 2 and f"--out {tmp_path} is a folder" in err


def test_crlf_and_bom_kept_byte_for_byte(tiny_llm, tmp_path, capsys):
    lines = [ln.encode() for ln in _records(8)]
    lines[3] = lines[3].replace(b"}", b',  "note": "na\xc3\xafve"}')  # odd spacing, UTF-8
    body = b"\xef\xbb\xbf" + b"\r\n".join(lines)  # BOM, CRLF, no final line ending
    src = tmp_path / "win.jsonl"
    src.write_bytes(body)
    out = tmp_path / "kept.jsonl"
    old = os.umask(0o022)
    try:
        rc = _pi([src, "--keep", "1.0", "--model", tiny_llm, "--mask-ratios", "0", "--out", out])
    finally:
        os.umask(old)
    assert rc == 0, capsys.readouterr().err
    assert out.read_bytes() == body + b"\r\n"  # every record kept: the same bytes
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    rc = _pi([src, "--keep", "0.5", "--model", tiny_llm, "--mask-ratios", "0", "--out", out])
    kept = out.read_bytes()
    assert kept.startswith(b"\xef\xbb\xbf") and kept.count(b"\r\n") == 4
    assert all(ln + b"\r\n" in body + b"\r\n" for ln in kept[3:].split(b"\r\n")[:-1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.jsonl", "kept_report", "kept_summary.json", "win.jsonl"]


# ------------------------------------------------- typed "no weights offline" error
def test_missing_pretrained_weights_is_a_typed_user_error(monkeypatch, capsys):
    import timm

    import skdlc._backbones as backbones
    from skdlc._backbones import WeightsNotAvailableError
    from skdlc._cli import _is_user_error

    def no_network(*a, **k):
        raise ConnectionError("network is unreachable")

    monkeypatch.setattr(timm, "create_model", no_network)
    with pytest.raises(WeightsNotAvailableError, match="offline backbones") as info:
        backbones.create_backbone("resnet18")
    assert _is_user_error(info.value)  # the CLI prints it as one line, no traceback
    assert not _is_user_error(RuntimeError("Could not download the pretrained weights (a message alone)"))
