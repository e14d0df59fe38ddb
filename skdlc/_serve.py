"""Serve DLC scoring with TorchServe: build the model archive, start and stop a server.

A thin layer over the public API: the archive holds a fitted :class:`~skdlc.DLCScorer`
saved with joblib (or its ONNX export) and a handler subclassing
:class:`skdlc.serving.DLCHandler`, which scores as ``DLCScorer.transform`` does.
Everything the server writes (``config.properties``, the token key file, unpacked
models, logs) lives in one state folder, so several servers can run side by side.
Users import these from :mod:`skdlc.serving`.

Defaults are conservative: every listener (inference, management, metrics and both
gRPC ones) binds 127.0.0.1, token authorisation stays on, the model-registration API
stays off.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from ._outputs import dumps_json

__all__ = [
    "HANDLER_FILE",
    "HANDLER_SOURCE",
    "Server",
    "build_archive",
    "free_ports",
    "read_token",
    "start_server",
    "stop_server",
    "write_config",
    "write_metadata",
]

#: Name of the handler module inside the archive; the same text is serving/skdlc_handler.py.
HANDLER_FILE = "skdlc_handler.py"
HANDLER_SOURCE = '''"""TorchServe handler for skdlc: DLC complexities of posted images.

Pass this file to ``torch-model-archiver --handler`` (``skdlc serve archive`` does). All
logic lives in the installed package (``skdlc.serving.DLCHandler``), so the handler always
matches the skdlc that unpickles the scorer. TorchServe wants exactly one class here.
"""

from skdlc.serving import DLCHandler as _DLCHandler


class SkdlcHandler(_DLCHandler):
    """DLC scoring handler; see ``skdlc.serving.DLCHandler``."""
'''
META_FILE = "skdlc_serving.json"
STATE_DIR = ".skdlc-serve"
_PID_FILE = ".model_server.pid"
_KEY_FILE = "key_file.json"
DEFAULT_PORTS = {
    "inference": 8080,
    "management": 8081,
    "metrics": 8082,
    "grpc_inference": 7070,
    "grpc_management": 7071,
}


class ServeError(RuntimeError):
    """Something the user can fix: a missing tool, a busy port, a server not running."""


# --------------------------------------------------------------------------- tools
def _tool(name: str, module: str, pip_name: str) -> list[str]:
    """The command for a console script of the serve extra, from this Python first."""
    beside = Path(sys.executable).with_name(name)
    if beside.is_file():
        return [str(beside)]
    found = shutil.which(name)
    if found:
        return [found]
    try:
        __import__(module)
    except ImportError:
        raise ServeError(
            f"{name} is not installed; install the serving extra: pip install 'skdlc[serve]' "
            f"(it brings {pip_name})"
        ) from None
    raise ServeError(f"{name} is installed as a module but its command is not on PATH")


def java_executable() -> str | None:
    """The ``java`` TorchServe will use (``$JAVA_HOME/bin/java`` first), or None."""
    home = os.environ.get("JAVA_HOME")
    if home and Path(home, "bin", "java").is_file():
        return str(Path(home, "bin", "java"))
    return shutil.which("java")


# --------------------------------------------------------------------------- archive
def _load_scorer(path: Path):
    import joblib
    from sklearn.utils.validation import check_is_fitted

    from ._scorer import DLCScorer

    try:
        scorer = joblib.load(path)
    except Exception as exc:  # pickle raises many types
        raise ServeError(f"cannot load a fitted scorer from {str(path)!r}: {type(exc).__name__}: {exc}") from None
    if not isinstance(scorer, DLCScorer):
        raise ServeError(f"{str(path)!r} holds a {type(scorer).__name__}, not a skdlc.DLCScorer")
    check_is_fitted(scorer, "prototypes_")
    return scorer


def _scorer_meta(scorer, engine: str, artifact: str) -> dict:
    from . import __version__

    bb = scorer.backbone_
    pp = bb.preprocessing
    return {
        "format": 1,
        "skdlc_version": __version__,
        "engine": engine,
        "artifact": artifact,
        "backbone": bb.name,
        "classes": [c.item() if hasattr(c, "item") else c for c in scorer.classes_],
        "mask_ratios": [float(r) for r in scorer.mask_ratios_],
        "prototypes_shape": list(scorer.prototypes_.shape),
        "logits": scorer.logits,
        "temperature": float(scorer.temperature),
        "preprocessing": None if pp is None else pp.to_dict(),
    }


def write_metadata(
    scorer: str | os.PathLike, out_dir: str | os.PathLike = ".", *, engine: str = "torch"
) -> Path:
    """Write ``<out_dir>/skdlc_serving.json``, the handler's description of the model.

    :func:`build_archive` writes it into every archive; call this only to build an
    archive by hand with ``torch-model-archiver`` (pass the file to ``--extra-files``).

    Parameters
    ----------
    scorer : path
        A fitted :class:`~skdlc.DLCScorer` saved with ``joblib.dump`` (the archive's
        ``--serialized-file``), or with ``engine="onnx"`` its ONNX export folder.
    out_dir : path, default="."
        Folder to write into; created if missing.
    engine : {"torch", "onnx"}, default="torch"

    Returns
    -------
    Path of the JSON file.

    Raises
    ------
    ServeError
        ``scorer`` is missing, not a fitted DLCScorer, or not a usable ONNX export.
    """
    source = Path(scorer)
    if not source.exists():
        raise ServeError(f"no such scorer file or folder: {str(source)!r}")
    if engine == "torch":
        if source.is_dir():
            raise ServeError(f"{str(source)!r} is a folder; engine='torch' needs a joblib file of a fitted DLCScorer")
        meta = _scorer_meta(_load_scorer(source), "torch", source.name)
    elif engine == "onnx":
        if not source.is_dir():
            raise ServeError(f"{str(source)!r} is not a folder; engine='onnx' needs an ONNX export folder")
        try:
            meta = _onnx_meta(source)
        except (OSError, ValueError, KeyError) as exc:
            raise ServeError(f"{str(source)!r} is not a usable skdlc ONNX export: {exc}") from None
    else:
        raise ServeError(f"engine must be 'torch' or 'onnx', got {engine!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / META_FILE
    path.write_text(dumps_json(meta, indent=2) + "\n", encoding="utf-8")  # strict JSON
    return path


def _yaml_scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v))  # a JSON string is a valid YAML scalar


def model_config_yaml(
    *,
    batch_size: int = 1,
    max_batch_delay: int = 50,
    workers: int = 1,
    response_timeout: int = 120,
    handler: dict | None = None,
) -> str:
    """The archive's ``model-config.yaml``: workers, TorchServe batching, handler settings."""
    lines = [
        "# TorchServe settings for this model (skdlc serve archive).",
        f"minWorkers: {int(workers)}",
        f"maxWorkers: {int(workers)}",
        "# Server-side batching: up to batchSize requests, waiting at most maxBatchDelay ms.",
        f"batchSize: {int(batch_size)}",
        f"maxBatchDelay: {int(max_batch_delay)}",
        f"responseTimeout: {int(response_timeout)}",
        "# Read by skdlc's handler: num_threads, score_batch_size, max_images_per_request,",
        "# max_image_pixels, device (auto | cpu | cuda:N), prepare_variants, max_variant_bytes.",
        "handler:",
    ]
    settings = {"max_images_per_request": 256, "max_image_pixels": 40_000_000, "device": "auto",
                "prepare_variants": True}
    settings.update(handler or {})
    lines += [f"  {k}: {_yaml_scalar(v)}" for k, v in settings.items() if v is not None]
    return "\n".join(lines) + "\n"


def build_archive(
    scorer: str | os.PathLike,
    out: str | os.PathLike,
    *,
    model_name: str = "skdlc",
    engine: str = "torch",
    version: str = "1.0",
    batch_size: int = 1,
    max_batch_delay: int = 50,
    workers: int = 1,
    response_timeout: int = 120,
    handler_settings: dict | None = None,
    force: bool = False,
) -> Path:
    """Build ``<out>/<model_name>.mar`` with ``torch-model-archiver``.

    Parameters
    ----------
    scorer : path
        A fitted :class:`~skdlc.DLCScorer` saved with ``joblib.dump``, or (with
        ``engine="onnx"``) an ONNX export folder of one.
    out : path
        The model store folder; created if missing.
    model_name : str
        The name in ``/predictions/<model_name>``.
    engine : {"torch", "onnx"}
        Score with the pickled torch scorer, or with its ONNX export (exported here
        from a joblib file when needed; needs ``skdlc[onnx]``).
    batch_size, max_batch_delay : int
        TorchServe batching: up to ``batch_size`` requests scored together, waiting at
        most ``max_batch_delay`` ms for them.
    workers : int
        Python worker processes for this model.
    handler_settings : dict, optional
        Handler settings for ``model-config.yaml`` (``num_threads``,
        ``score_batch_size``, ``max_images_per_request``, ``max_image_pixels``,
        ``device``).
    force : bool
        Overwrite an existing archive.

    Returns
    -------
    Path of the ``.mar`` file.
    """
    from . import __version__

    if engine not in ("torch", "onnx"):
        raise ServeError(f"engine must be 'torch' or 'onnx', got {engine!r}")
    if not model_name or not all(c.isalnum() or c in "-_." for c in model_name):
        raise ServeError(f"model name {model_name!r} must be letters, digits, '-', '_' or '.'")
    scorer = Path(scorer)
    if not scorer.exists():
        raise ServeError(f"no such scorer file or folder: {str(scorer)!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    mar = out / f"{model_name}.mar"
    if mar.exists() and not force:
        raise ServeError(f"{str(mar)!r} exists; pass force=True (--force) to overwrite it")
    archiver = _tool("torch-model-archiver", "model_archiver", "torch-model-archiver")
    with tempfile.TemporaryDirectory(prefix="skdlc-mar-") as tmp:
        stage = Path(tmp)
        extra = [stage / META_FILE]
        requirements = [f"skdlc[serve]=={__version__}"]
        if engine == "torch":
            if scorer.is_dir():
                raise ServeError(
                    f"{str(scorer)!r} is a folder; engine='torch' needs a joblib file of a fitted "
                    "DLCScorer (use engine='onnx' for an ONNX export folder)"
                )
            fitted = _load_scorer(scorer)
            bb = fitted.backbone_
            if bb.preprocessing is None or bb.collate is not None:
                raise ServeError(
                    f"the serving handler scores images, and backbone {bb.name!r} takes none (no image "
                    "preprocessing): wrap your module as skdlc.Backbone(..., preprocessing=skdlc.Preprocessing(...))"
                )
            meta = _scorer_meta(fitted, "torch", scorer.name)
            serialized = ["--serialized-file", str(scorer)]
        else:
            onnx_dir = _onnx_export(scorer, stage / "payload" / "onnx")
            meta = _onnx_meta(onnx_dir)
            extra.append(stage / "payload")
            serialized = []
            requirements = [f"skdlc[serve,onnx]=={__version__}"]
        (stage / META_FILE).write_text(dumps_json(meta, indent=2) + "\n", encoding="utf-8")
        (stage / HANDLER_FILE).write_text(HANDLER_SOURCE, encoding="utf-8")
        (stage / "requirements.txt").write_text("\n".join(requirements) + "\n", encoding="utf-8")
        (stage / "model-config.yaml").write_text(
            model_config_yaml(
                batch_size=batch_size,
                max_batch_delay=max_batch_delay,
                workers=workers,
                response_timeout=response_timeout,
                handler=handler_settings,
            ),
            encoding="utf-8",
        )
        cmd = [
            *archiver,
            "--model-name", model_name,
            "--version", str(version),
            "--handler", str(stage / HANDLER_FILE),
            *serialized,
            "--extra-files", ",".join(str(p) for p in extra),
            "--requirements-file", str(stage / "requirements.txt"),
            "--config-file", str(stage / "model-config.yaml"),
            "--export-path", str(out),
        ]
        if force:
            cmd.append("--force")
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not mar.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            raise ServeError("torch-model-archiver failed: " + " | ".join(tail))
    return mar


def _onnx_export(source: Path, dest: Path) -> Path:
    """An ONNX export folder at ``dest``: copied from ``source`` or exported from a scorer."""
    try:
        from . import _onnx

        _onnx._import_ort()
        _onnx._import_onnx()
    except ImportError as exc:
        raise ServeError(f"engine='onnx' needs ONNX support: {exc}") from None
    if source.is_dir():
        try:
            _onnx.OnnxDLCModel.load(source, device="cpu")  # a valid export, files intact
        except (OSError, ValueError, KeyError) as exc:
            raise ServeError(f"{str(source)!r} is not a usable skdlc ONNX export: {exc}") from None
        shutil.copytree(source, dest)
        return dest
    fitted = _load_scorer(source)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        _onnx.export_scorer(fitted, dest)
    except (NotImplementedError, RuntimeError, ValueError) as exc:
        raise ServeError(f"cannot export the scorer to ONNX: {exc}") from None
    return dest


def _onnx_meta(folder: Path) -> dict:
    from . import __version__, _onnx

    m = _onnx._read_manifest(folder)
    return {
        "format": 1,
        "skdlc_version": __version__,
        "engine": "onnx",
        "artifact": folder.name,
        "backbone": m["backbone"]["name"],
        "classes": m["classes"],
        "mask_ratios": m["mask_ratios"],
        "prototypes_shape": m["prototypes"]["shape"],
        "logits": m["logits"],
        "temperature": m["temperature"],
        "preprocessing": m.get("preprocessing"),
    }


# --------------------------------------------------------------------------- config
def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct TCP ports free on ``host`` right now (the OS picks them)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def write_config(
    state_dir: str | os.PathLike,
    model_store: str | os.PathLike,
    *,
    address: str = "127.0.0.1",
    ports: dict[str, int] | None = None,
    token_auth: bool = True,
    workers: int = 1,
    jvm_args: Sequence[str] = (),
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``<state_dir>/config.properties`` and return its path.

    Every listener binds ``address`` (127.0.0.1 by default; use 0.0.0.0 only behind a
    firewall), the unpack folder is ``<state_dir>/tmp`` (``-Djava.io.tmpdir``), token
    authorisation is on unless ``token_auth=False`` and the model-registration API is
    off (``enable_model_api=false``). ``extra`` adds or overrides properties.
    """
    state = Path(state_dir).resolve()
    tmp = state / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    (state / "logs").mkdir(exist_ok=True)
    p = {**DEFAULT_PORTS, **(ports or {})}
    unknown = set(p) - set(DEFAULT_PORTS)
    if unknown:
        raise ServeError(f"unknown port names {sorted(unknown)}; known: {sorted(DEFAULT_PORTS)}")
    host = f"[{address}]" if ":" in address else address
    sections = [
        ("Every listener binds one address; 127.0.0.1 keeps the server off the network. The\n"
         "# gRPC listeners are set too: left unset, gRPC would take 7070/7071.", {
            "inference_address": f"http://{host}:{p['inference']}",
            "management_address": f"http://{host}:{p['management']}",
            "metrics_address": f"http://{host}:{p['metrics']}",
            "grpc_inference_address": address,
            "grpc_inference_port": p["grpc_inference"],
            "grpc_management_address": address,
            "grpc_management_port": p["grpc_management"],
        }),
        ("Token authorisation: clients send 'Authorization: Bearer <key>' with the keys TorchServe\n"
         "# writes to key_file.json in the state folder (a request without one gets HTTP 400).\n"
         "# To turn it off (trusted hosts only): disable_token_authorization=true, or\n"
         "# skdlc serve start --no-token-auth.", {
            "disable_token_authorization": "false" if token_auth else "true",
        }),
        ("Registering models over HTTP (POST /models) stays off: only the store's archives load.", {
            "enable_model_api": "false",
            "install_py_dep_per_model": "false",
        }),
        ("Models, workers, metrics.", {
            "model_store": str(Path(model_store).resolve()),
            "default_workers_per_model": int(workers),
            "disable_system_metrics": "true",
        }),
        ("Unpacked archives and worker sockets go to java.io.tmpdir; logs go to $LOG_LOCATION\n"
         "# (skdlc serve start sets it to the state folder's logs/).", {
            "vmargs": " ".join([f"-Djava.io.tmpdir={tmp}", *jvm_args]),
        }),
    ]
    overrides = dict(extra or {})
    lines = ["# Written by skdlc serve (skdlc.serving.write_config)."]
    for comment, props in sections:
        lines.append(f"\n# {comment}")
        for k, v in props.items():
            lines.append(f"{k}={overrides.pop(k, v)}")
    if overrides:
        lines.append("\n# Extra settings.")
        lines += [f"{k}={v}" for k, v in overrides.items()]
    path = state / "config.properties"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (state / "server.json").write_text(
        json.dumps({"address": address, "ports": p, "token_auth": bool(token_auth)}, indent=2) + "\n",
        encoding="utf-8",
    )
    return path


def read_token(state_dir: str | os.PathLike = STATE_DIR, kind: str = "inference") -> str | None:
    """The ``inference`` or ``management`` key from the server's key file (None if absent)."""
    path = Path(state_dir) / _KEY_FILE
    if not path.is_file():
        return None
    try:
        keys = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None  # being written
    entry = keys.get(kind) or {}
    return entry.get("key") if isinstance(entry, dict) else None


# --------------------------------------------------------------------------- server
@dataclass
class Server:
    """A TorchServe started by :func:`start_server`: its addresses, keys and processes."""

    state_dir: Path
    address: str
    ports: dict[str, int]
    token_auth: bool = True
    pid: int | None = None
    models: list[str] = field(default_factory=list)

    def url(self, kind: str = "inference") -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        if host in ("0.0.0.0", "[::]"):
            host = "127.0.0.1"
        return f"http://{host}:{self.ports[kind]}"

    def token(self, kind: str = "inference") -> str | None:
        return read_token(self.state_dir, kind) if self.token_auth else None

    def headers(self, kind: str = "inference") -> dict[str, str]:
        """``{"Authorization": "Bearer <key>"}`` when token authorisation is on."""
        key = self.token(kind)
        return {"Authorization": f"Bearer {key}"} if key else {}

    def stop(self, timeout: float = 60) -> bool:
        return stop_server(self.state_dir, timeout=timeout)


def _env(state: Path) -> dict[str, str]:
    env = dict(os.environ)
    tmp = str(state / "tmp")
    # The launcher keeps its pid file in the temp folder: one per state folder.
    env.update(TMPDIR=tmp, TEMP=tmp, TMP=tmp)
    env["LOG_LOCATION"] = env["METRICS_LOCATION"] = str(state / "logs")
    env.pop("TS_CONFIG_FILE", None)
    return env


def _server_pid(state: Path) -> int | None:
    """The Java frontend's pid from this state folder, if it is alive."""
    import psutil

    pid_file = state / "tmp" / _PID_FILE
    try:
        pid = int(pid_file.read_text().split()[0])
        proc = psutil.Process(pid)
        if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE and "org.pytorch.serve.ModelServer" in proc.cmdline():
            return pid
    except (OSError, ValueError, IndexError, psutil.Error):
        pass
    return None


def _http(url: str, headers: dict | None = None, timeout: float = 5) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _log_tail(state: Path, n: int = 15) -> str:
    lines: list[str] = []
    for name in ("console.log", "ts_log.log", "model_log.log"):
        f = state / "logs" / name
        if f.is_file():
            lines += [f"[{name}] {ln}" for ln in f.read_text(errors="replace").splitlines()[-n:]]
    return "\n".join(lines[-2 * n:])


def start_server(
    model_store: str | os.PathLike,
    *,
    models: Iterable[str] | str = "all",
    state_dir: str | os.PathLike = STATE_DIR,
    address: str = "127.0.0.1",
    ports: dict[str, int] | None = None,
    token_auth: bool = True,
    workers: int = 1,
    jvm_args: Sequence[str] = (),
    extra: dict[str, Any] | None = None,
    wait: bool = True,
    timeout: float = 180,
) -> Server:
    """Start TorchServe on ``model_store`` in the background and wait until it scores.

    Parameters
    ----------
    model_store : path
        Folder of ``.mar`` files (``skdlc serve archive --out``).
    models : "all" or list of str
        Archives to load at start (``name.mar`` or ``name=name.mar``).
    state_dir : path
        Where config.properties, the key file, unpacked models (``tmp/``) and logs
        (``logs/``) go.
    address, ports, token_auth, workers, jvm_args, extra
        See :func:`write_config`. ``ports`` maps ``inference``, ``management``,
        ``metrics``, ``grpc_inference`` and ``grpc_management`` to port numbers.
    wait : bool
        Return only once every loaded model has a ready worker.
    timeout : float
        Seconds to wait; on timeout the server is stopped and the log tail reported.

    Returns
    -------
    Server
    """
    if java_executable() is None:
        raise ServeError("TorchServe needs Java 11 or newer: install a JDK/JRE or set JAVA_HOME")
    launcher = _tool("torchserve", "ts", "torchserve")
    store = Path(model_store)
    if not store.is_dir():
        raise ServeError(f"model store {str(store)!r} is not a folder")
    models = ["all"] if models == "all" else list(models)
    if models != ["all"]:
        for m in models:
            mar = m.split("=", 1)[-1]
            if not (store / mar).exists():
                raise ServeError(f"no {mar!r} in the model store {str(store)!r}")
    elif not any(store.glob("*.mar")):
        raise ServeError(f"the model store {str(store)!r} has no .mar archives")
    state = Path(state_dir).resolve()
    state.mkdir(parents=True, exist_ok=True)
    if _server_pid(state) is not None:
        raise ServeError(f"a TorchServe from {str(state)!r} is already running; stop it first")
    p = {**DEFAULT_PORTS, **(ports or {})}
    bind = "127.0.0.1" if address in ("0.0.0.0", "::") else address
    busy = [f"{k}={v}" for k, v in p.items() if not _port_free(bind, v)]
    if busy:
        raise ServeError(f"ports in use on {bind}: {', '.join(busy)}; choose others (--port-* options)")
    config = write_config(
        state, store, address=address, ports=p, token_auth=token_auth, workers=workers,
        jvm_args=jvm_args, extra=extra,
    )
    (state / _KEY_FILE).unlink(missing_ok=True)
    cmd = [*launcher, "--start", "--ncs", "--ts-config", str(config), "--model-store", str(store.resolve()),
           "--models", *models]
    with open(state / "logs" / "console.log", "ab") as log:
        proc = subprocess.run(cmd, cwd=state, env=_env(state), stdout=log, stderr=subprocess.STDOUT, timeout=60)
    if proc.returncode != 0:
        raise ServeError(f"torchserve --start failed (exit {proc.returncode}):\n{_log_tail(state)}")
    server = Server(state, address, p, token_auth=token_auth, models=models)
    deadline = time.monotonic() + 10
    while server.pid is None and time.monotonic() < deadline:
        server.pid = _server_pid(state)
        time.sleep(0.1)
    if server.pid is None:
        raise ServeError(f"TorchServe did not start:\n{_log_tail(state)}")
    if wait:
        try:
            wait_ready(server, timeout=timeout)
        except BaseException:
            stop_server(state)
            raise
    return server


def wait_ready(server: Server, timeout: float = 180) -> None:
    """Wait until the server answers and every loaded model has a READY worker."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if _server_pid(server.state_dir) is None:
            raise ServeError(f"TorchServe exited while starting:\n{_log_tail(server.state_dir)}")
        if server.token_auth and server.token("management") is None:
            time.sleep(0.3)
            continue
        try:
            code, body = _http(server.url("management") + "/models", server.headers("management"))
            if code == 200:
                names = [m["modelName"] for m in json.loads(body).get("models", [])]
                ready = names != []
                for name in names:
                    code, body = _http(f"{server.url('management')}/models/{name}", server.headers("management"))
                    workers = json.loads(body)[0].get("workers", []) if code == 200 else []
                    ready = ready and any(w.get("status") == "READY" for w in workers)
                if ready:
                    return
                last = f"models {names} not ready"
            else:
                last = f"HTTP {code}: {body[:200]!r}"
        except (OSError, ValueError) as exc:
            last = str(exc)
        time.sleep(0.5)
    raise ServeError(f"TorchServe not ready after {timeout:.0f} s ({last}):\n{_log_tail(server.state_dir)}")


def stop_server(state_dir: str | os.PathLike = STATE_DIR, *, timeout: float = 60) -> bool:
    """Stop the TorchServe of ``state_dir`` and wait for its Python workers to exit.

    ``torchserve --stop`` returns before the workers are gone; this waits for the Java
    frontend and every worker (up to ``timeout`` s, then kills them), so the ports and
    sockets are free for a restart. Returns False if no server was running.
    """
    import psutil

    state = Path(state_dir).resolve()
    pid = _server_pid(state)
    if pid is None:
        return False
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        procs = []
    with contextlib.suppress(ServeError, subprocess.TimeoutExpired, OSError):
        launcher = _tool("torchserve", "ts", "torchserve")
        with open(state / "logs" / "console.log", "ab") as log:
            subprocess.run([*launcher, "--stop"], cwd=state, env=_env(state), stdout=log,
                           stderr=subprocess.STDOUT, timeout=30)
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:  # the frontend did not take its workers down in time
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=10)
    (state / "tmp" / _PID_FILE).unlink(missing_ok=True)
    (state / _KEY_FILE).unlink(missing_ok=True)
    return True
