"""Serving DLC scoring with TorchServe: handler, archive, config, and a real server.

The handler and config tests run without Java. The integration tests start one real
TorchServe (module-scoped, loopback, free ports, token authorisation on) and always stop
it; they skip only when Java or torchserve is missing.
"""

from __future__ import annotations

import ast
import base64
import io
import json
import socket
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch

from skdlc import Backbone, DLCScorer, Preprocessing

pytestmark = pytest.mark.slow  # see pyproject.toml: `-m 'not slow'` skips these


ts = pytest.importorskip("ts", reason="torchserve is not installed (pip install 'skdlc[serve]')")
from PIL import Image  # noqa: E402

from skdlc import _serve  # noqa: E402
from skdlc._cli import main as cli_main  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CLASSES = np.array(["cat", "dog", "emu"])
HTTP_TIMEOUT = 30


# --------------------------------------------------------------------------- fixtures
def _tiny_backbone() -> Backbone:
    """Only torch classes inside, so the pickled scorer loads in any worker."""
    g = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
    )
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return Backbone(name="tiny-cnn", module=net, preprocessing=Preprocessing(input_size=(16, 16)), num_features=16)


def _images(n: int, seed: int = 0, size: int = 20) -> np.ndarray:
    """uint8 (n, size, size, 3) images whose colour depends on the class."""
    rng = np.random.default_rng(seed)
    base = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]], dtype=np.float64)
    y = np.arange(n) % 3
    noise = rng.normal(0, 60, (n, size, size, 3))
    return np.clip(base[y][:, None, None, :] + noise, 0, 255).astype(np.uint8)


def _png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")  # lossless: the server decodes the same pixels
    return buf.getvalue()


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(_png(a)).decode()


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    X = _images(30)
    y = CLASSES[np.arange(30) % 3]
    scorer = DLCScorer(_tiny_backbone(), mask_ratios=[0.0, 0.3, 0.6], device="cpu", verbose=False,
                       engine="torch").fit(X, y)  # torch: the handler's torch path matches to 1e-9
    path = tmp_path_factory.mktemp("scorer") / "scorer.joblib"
    joblib.dump(scorer, path)
    return scorer, path


# --------------------------------------------------------------------------- handler, no server
class _Metrics:
    def add_time(self, *a, **k):
        pass


def _onnx_missing() -> str | None:
    try:
        from skdlc import _onnx

        _onnx._import_ort()
        _onnx._import_onnx()
    except ImportError as exc:
        return str(exc)
    return None


ENGINES = [
    "torch",
    pytest.param("onnx", marks=pytest.mark.skipif(_onnx_missing() is not None, reason=f"ONNX: {_onnx_missing()}")),
]


def _handler(tmp_path, scorer_path, engine="torch", **settings):
    """A DLCHandler initialised like TorchServe does, on an unpacked archive folder."""
    from ts.context import Context

    from skdlc._serving_handler import DLCHandler

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    if engine == "torch":
        (model_dir / "scorer.joblib").write_bytes(Path(scorer_path).read_bytes())
        meta = _serve._scorer_meta(joblib.load(scorer_path), "torch", "scorer.joblib")
    else:
        meta = _serve._onnx_meta(_serve._onnx_export(Path(scorer_path), model_dir / "onnx"))
    (model_dir / _serve.META_FILE).write_text(json.dumps(meta))
    ctx = Context("tiny", str(model_dir), {"model": {"modelName": "tiny"}}, 4, None, "0.12",
                  metrics=_Metrics(), model_yaml_config={"handler": {"num_threads": 1, **settings}})
    h = DLCHandler()
    h.initialize(ctx)
    return h, ctx


def _call(h, ctx, rows, headers=None):
    """Run one TorchServe batch through the handler; (status, body) per request."""
    from ts.context import RequestProcessor

    ctx.request_processor = [RequestProcessor(dict(hd)) for hd in (headers or [{}] * len(rows))]
    out = h.handle(rows, ctx)
    assert len(out) == len(rows)  # TorchServe: one entry per request
    return [(ctx.get_response_status(i)[0], json.loads(o)) for i, o in enumerate(out)]


@pytest.mark.parametrize("prepare", [True, False], ids=["prepared", "per-request"])
@pytest.mark.parametrize("engine", ENGINES)
def test_handler_scores_equal_scorer(tmp_path, fitted, engine, prepare):
    scorer, path = fitted
    h, ctx = _handler(tmp_path, path, engine, prepare_variants=prepare)
    tol = 1e-9 if engine == "torch" else 1e-5
    X = _images(6, seed=1)
    ref = scorer.transform(X)
    rows = [
        {"body": bytearray(_png(X[0]))},
        {"body": {"images": [_b64(x) for x in X[1:4]], "labels": ["dog", None, "cat"]}},
        {"body": [{"image": _b64(X[4]), "label": "emu"}, _b64(X[5])]},
    ]
    (c0, r0), (c1, r1), (c2, r2) = _call(h, ctx, rows, [{"X-Label": "cat"}, {}, {}])
    assert (c0, c1, c2) == (200, 200, 200)
    assert r0["label"] == "cat" and r0["score"] == pytest.approx(ref[0, 0], abs=tol)
    np.testing.assert_allclose(list(r0["complexities"].values()), ref[0], atol=tol)
    assert [e.get("label") for e in r1] == ["dog", None, "cat"]
    np.testing.assert_allclose([list(e["complexities"].values()) for e in r1], ref[1:4], atol=tol)
    assert r1[0]["score"] == pytest.approx(ref[1, 1], abs=tol) and "score" not in r1[1]
    assert r2[0]["score"] == pytest.approx(ref[4, 2], abs=tol) and list(r2[1]["complexities"]) == list(CLASSES)


def test_handler_mixed_sizes_and_modes(tmp_path, fitted):
    scorer, path = fitted
    h, ctx = _handler(tmp_path, path)
    small, big = _images(1, seed=2, size=12), _images(1, seed=3, size=40)
    gray = np.asarray(Image.fromarray(small[0]).convert("L"))
    [(code, res)] = _call(h, ctx, [{"body": [_b64(small[0]), _b64(big[0]), base64.b64encode(_png(gray)).decode()]}])
    assert code == 200
    ref = np.vstack([scorer.transform(small), scorer.transform(big),
                     scorer.transform(np.repeat(gray[None, :, :, None], 3, axis=3))])
    np.testing.assert_allclose([list(e["complexities"].values()) for e in res], ref, atol=1e-6)


_MALFORMED = [  # (request row built from a good base64 image g and its PNG bytes p, headers, message)
    (lambda g, p: {"body": bytearray(b"not an image")}, {}, "not a readable image"),
    (lambda g, p: {"body": bytearray(b"{broken json")}, {}, "not valid JSON"),
    (lambda g, p: {"body": bytearray(b"")}, {}, "empty body"),
    (lambda g, p: {}, {}, "no image in the request"),
    (lambda g, p: {"body": 5}, {}, "must be an object"),
    (lambda g, p: {"body": {"image": "%%%not base64"}}, {}, "not valid base64"),
    (lambda g, p: {"body": {"image": "aGVsbG8="}}, {}, "not a readable image"),
    (lambda g, p: {"body": {"images": "x"}}, {}, '"images" must be a list'),
    (lambda g, p: {"body": {"images": [g], "labels": ["cat", "dog"]}}, {}, '"labels" must be a list'),
    (lambda g, p: {"body": []}, {}, "no images"),
    (lambda g, p: {"body": {"label": "cat"}}, {}, '"image" field'),
    (lambda g, p: {"body": {"image": g, "label": "zebra"}}, {}, "unknown label 'zebra'"),
    (lambda g, p: {"body": {"image": g, "label": [1]}}, {}, "a label must be"),
    (lambda g, p: {"body": bytearray(p)}, {"X-Label": "zebra"}, "unknown label"),
    (lambda g, p: {"body": [g] * 5}, {}, "the limit is 4"),
]


@pytest.mark.parametrize("make, headers, needle", _MALFORMED)
def test_handler_rejects_malformed_request(tmp_path, fitted, make, headers, needle):
    _, path = fitted
    h, ctx = _handler(tmp_path, path, max_images_per_request=4)
    img = _images(1)[0]
    ok = {"body": bytearray(_png(img))}
    (code, body), (ok_code, ok_body) = _call(h, ctx, [make(_b64(img), _png(img)), ok], [headers, {}])
    assert code == 400 and body["code"] == 400 and needle in body["message"], body
    assert ok_code == 200 and "complexities" in ok_body  # the rest of the batch is served


def test_handler_integer_classes(tmp_path):
    X = _images(12)
    scorer = DLCScorer(_tiny_backbone(), mask_ratios=[0.0, 0.5], device="cpu", verbose=False).fit(X, np.arange(12) % 3)
    joblib.dump(scorer, tmp_path / "int.joblib")
    h, ctx = _handler(tmp_path, tmp_path / "int.joblib")
    rows = [{"body": {"image": _b64(X[0]), "label": 2}}, {"body": {"image": _b64(X[0]), "label": "1"}},
            {"body": {"image": _b64(X[0]), "label": 1.0}}]
    res = _call(h, ctx, rows)
    ref = scorer.score_samples(np.repeat(X[:1], 3, axis=0), [2, 1, 1])
    assert [c for c, _ in res] == [200, 200, 200]
    np.testing.assert_allclose([r["score"] for _, r in res], ref, atol=1e-9)
    assert [r["label"] for _, r in res] == ["2", "1", "1"]


def test_handler_loads_scorer_pickled_before_a_new_parameter(tmp_path, fitted):
    import inspect

    scorer, path = fitted
    old = joblib.load(path)
    newest = [n for n in inspect.signature(DLCScorer.__init__).parameters if n != "self"][-1]
    delattr(old, newest)  # as if saved by a release without that parameter
    joblib.dump(old, tmp_path / "old.joblib")
    h, ctx = _handler(tmp_path, tmp_path / "old.joblib", prepare_variants=False)
    X = _images(2, seed=9)
    [(code, res)] = _call(h, ctx, [{"body": [_b64(x) for x in X]}])
    assert code == 200
    np.testing.assert_allclose([list(e["complexities"].values()) for e in res], scorer.transform(X), atol=1e-9)


def test_handler_file_defines_one_class():
    src = (REPO / "serving" / "skdlc_handler.py").read_text()
    assert src == _serve.HANDLER_SOURCE  # the archive ships the same text
    classes = [n for n in ast.parse(src).body if isinstance(n, ast.ClassDef)]
    assert len(classes) == 1
    pkg = ast.parse(Path(_serve.__file__).with_name("_serving_handler.py").read_text())
    assert len([n for n in pkg.body if isinstance(n, ast.ClassDef)]) == 1


def test_config_binds_loopback_and_keeps_auth(tmp_path):
    cfg = _serve.write_config(tmp_path / "state", tmp_path, ports={"inference": 18080})
    props = dict(ln.split("=", 1) for ln in cfg.read_text().splitlines() if ln and not ln.startswith("#"))
    for k in ("inference_address", "management_address", "metrics_address"):
        assert props[k].startswith("http://127.0.0.1:")
    assert props["inference_address"].endswith(":18080")
    assert props["grpc_inference_address"] == props["grpc_management_address"] == "127.0.0.1"
    assert props["disable_token_authorization"] == "false"
    assert props["enable_model_api"] == "false"
    assert f"-Djava.io.tmpdir={(tmp_path / 'state' / 'tmp').resolve()}" in props["vmargs"]
    off = _serve.write_config(tmp_path / "s2", tmp_path, token_auth=False).read_text()
    assert "disable_token_authorization=true" in off


def test_archive_contents_and_cli_errors(tmp_path, fitted, capsys, monkeypatch):
    import skdlc._cli

    monkeypatch.setattr(skdlc._cli, "_COMMAND_MODULES", ["skdlc._cli.serve"])  # only this command
    _, path = fitted
    assert cli_main(["serve", "archive", "--scorer", str(path), "--out", str(tmp_path / "store"),
                     "--name", "tiny", "--batch-size", "4", "--threads", "1"]) == 0
    mar = Path(capsys.readouterr().out.strip())
    with zipfile.ZipFile(mar) as z:
        names = set(z.namelist())
        assert {"skdlc_handler.py", "scorer.joblib", "skdlc_serving.json", "model-config.yaml",
                "requirements.txt", "MAR-INF/MANIFEST.json"} <= names
        meta = json.loads(z.read("skdlc_serving.json"))
        cfg = z.read("model-config.yaml").decode()
        manifest = json.loads(z.read("MAR-INF/MANIFEST.json"))
    assert meta["classes"] == list(CLASSES) and meta["mask_ratios"] == [0.0, 0.3, 0.6]
    assert meta["preprocessing"]["input_size"] == [16, 16]
    assert "batchSize: 4" in cfg and "num_threads: 1" in cfg
    assert manifest["model"]["handler"] == "skdlc_handler.py"
    # exists -> error without --force; a non-scorer file -> error; missing file -> error
    assert cli_main(["serve", "archive", "--scorer", str(path), "--out", str(tmp_path / "store"), "--name", "tiny"]) == 2
    joblib.dump({"not": "a scorer"}, tmp_path / "dict.joblib")
    assert cli_main(["serve", "archive", "--scorer", str(tmp_path / "dict.joblib"), "--out", str(tmp_path)]) == 2
    assert cli_main(["serve", "archive", "--scorer", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    # a scorer whose backbone takes no images cannot be served by the image handler
    rng = np.random.default_rng(0)
    arrays = DLCScorer(torch.nn.Linear(4, 3), mask_ratios=[0.0, 0.5], device="cpu", verbose=False)
    joblib.dump(arrays.fit(rng.random((12, 4), dtype=np.float32), np.arange(12) % 2), tmp_path / "arr.joblib")
    assert cli_main(["serve", "archive", "--scorer", str(tmp_path / "arr.joblib"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "exists" in err and "not a skdlc.DLCScorer" in err and "no such scorer" in err
    assert "scores images" in err


# --------------------------------------------------------------------------- real server
@pytest.fixture(scope="module")
def server(tmp_path_factory, fitted):
    if _serve.java_executable() is None:
        pytest.skip("TorchServe needs Java (11+), which is not installed")
    _, path = fitted
    root = tmp_path_factory.mktemp("serve")
    _serve.build_archive(path, root / "store", model_name="tiny", batch_size=8, max_batch_delay=20,
                         handler_settings={"num_threads": 1})
    if _onnx_missing() is None:
        _serve.build_archive(path, root / "store", model_name="tiny-onnx", engine="onnx", batch_size=8,
                             max_batch_delay=20, handler_settings={"num_threads": 1})
    ports = dict(zip(_serve.DEFAULT_PORTS, _serve.free_ports(5)))
    srv = _serve.start_server(root / "store", state_dir=root / "state", ports=ports,
                              jvm_args=["-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"], timeout=150)
    try:
        yield srv
    finally:
        srv.stop(timeout=60)


def _post(srv, data=None, *, json_body=None, headers=None, model="tiny", auth=True):
    import requests

    h = dict(srv.headers() if auth else {})
    h.update(headers or {})
    url = f"{srv.url()}/predictions/{model}"
    return requests.post(url, data=data, json=json_body, headers=h, timeout=HTTP_TIMEOUT)


@pytest.mark.parametrize("model", ["tiny", pytest.param("tiny-onnx", marks=ENGINES[1].marks)])
def test_served_scores_equal_scorer(server, fitted, model):
    scorer, _ = fitted
    X = _images(7, seed=5)
    y = CLASSES[[0, 1, 2, 2, 1, 0, 1]]
    ref, ref_scores = scorer.transform(X), scorer.score_samples(X, y)
    r = _post(server, _png(X[0]), headers={"X-Label": str(y[0])}, model=model)
    assert r.status_code == 200, r.text
    assert r.json()["score"] == pytest.approx(ref_scores[0], abs=1e-5)
    np.testing.assert_allclose(list(r.json()["complexities"].values()), ref[0], atol=1e-5)
    r = _post(server, json_body={"images": [_b64(x) for x in X[1:]], "labels": list(y[1:])}, model=model)
    assert r.status_code == 200, r.text
    got = r.json()
    np.testing.assert_allclose([e["score"] for e in got], ref_scores[1:], atol=1e-5)
    np.testing.assert_allclose([list(e["complexities"].values()) for e in got], ref[1:], atol=1e-5)
    r = _post(server, json_body=[_b64(X[2])], model=model)  # no label: complexities only
    assert r.status_code == 200 and "score" not in r.json()[0]
    files = {"data": ("x.png", _png(X[3]), "image/png")}  # multipart form
    import requests

    r = requests.post(f"{server.url()}/predictions/{model}", files=files, data={"label": str(y[3])},
                      headers=server.headers(), timeout=HTTP_TIMEOUT)
    assert r.status_code == 200 and r.json()["score"] == pytest.approx(ref_scores[3], abs=1e-5)


def test_concurrent_requests_all_succeed(server, fitted):
    import requests

    scorer, _ = fitted
    X = _images(16, seed=7)
    ref = scorer.score_samples(X, CLASSES[np.arange(16) % 3])
    bodies = [_png(x) for x in X]
    local = threading.local()

    def one(i):
        s = getattr(local, "s", None) or requests.Session()
        local.s = s
        r = s.post(f"{server.url()}/predictions/tiny", data=bodies[i % 16],
                   headers={**server.headers(), "X-Label": str(CLASSES[i % 16 % 3])}, timeout=HTTP_TIMEOUT)
        return i, r.status_code, r.json().get("score"), int(r.headers.get("X-Skdlc-Batch-Size", 0))

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(200)))
    assert [c for _, c, _, _ in results] == [200] * 200
    np.testing.assert_allclose([s for _, _, s, _ in results], ref[np.arange(200) % 16], atol=1e-5)
    assert max(b for *_, b in results) >= 1


def test_malformed_requests_get_4xx_and_server_keeps_serving(server):
    img = _png(_images(1)[0])
    bad = [
        _post(server, b"\x00\x01 definitely not an image"),
        _post(server, b"{not json", headers={"Content-Type": "application/json"}),
        _post(server, img, headers={"X-Label": "zebra"}),
        _post(server, json_body={"images": "nope"}),
        _post(server, img, auth=False),  # token auth: TorchServe answers 400, not 401
        _post(server, img, model="no-such-model"),
    ]
    codes = [r.status_code for r in bad]
    assert all(400 <= c < 500 for c in codes), [(r.status_code, r.text[:100]) for r in bad]
    assert "unknown label 'zebra'" in bad[2].json()["message"]
    r = _post(server, img)
    assert r.status_code == 200 and "complexities" in r.json()


def test_model_api_is_off(server):
    import requests

    r = requests.post(f"{server.url('management')}/models?url=tiny.mar", headers=server.headers("management"),
                      timeout=HTTP_TIMEOUT)
    assert r.status_code == 405


def test_listens_on_loopback_only(server):
    import psutil

    procs = [psutil.Process(server.pid)]
    procs += procs[0].children(recursive=True)
    listening = set()
    for p in procs:
        for c in p.net_connections(kind="inet"):
            if c.status == psutil.CONN_LISTEN:
                listening.add((c.laddr.ip, c.laddr.port))
    assert listening, "TorchServe listens on nothing?"
    # Java binds IPv6 sockets; an IPv4-mapped ::ffff:127.0.0.1 is the same loopback address.
    assert {ip.removeprefix("::ffff:") for ip, _ in listening} == {"127.0.0.1"}, listening
    assert set(server.ports.values()) <= {port for _, port in listening}
    own_ip = _non_loopback_ip()
    if own_ip is not None:  # the same ports are closed on the machine's own address
        for port in server.ports.values():
            with socket.socket() as s:
                s.settimeout(2)
                assert s.connect_ex((own_ip, port)) != 0, (own_ip, port)


def _non_loopback_ip() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # UDP connect sends nothing; it picks a route
            ip = s.getsockname()[0]
        except OSError:
            return None
    return None if ip.startswith("127.") else ip


def test_stop_waits_for_workers(server):
    import psutil

    root = psutil.Process(server.pid)
    procs = [root, *root.children(recursive=True)]
    assert len(procs) >= 2  # the Java frontend and a Python worker
    assert server.stop(timeout=60) is True
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in procs)
    for port in server.ports.values():
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0
    assert server.stop() is False  # already stopped
    assert not (server.state_dir / "key_file.json").exists()


def test_broken_onnx_export_is_refused_before_archiving(tmp_path):
    # OnnxDLCModel reads its folder lazily; the archive step must still check it up front
    from skdlc._serve import ServeError, _onnx_export

    broken = tmp_path / "export"
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json")
    with pytest.raises(ServeError, match="not a usable skdlc ONNX export"):
        _onnx_export(broken, tmp_path / "copy")
    assert not (tmp_path / "copy").exists()
