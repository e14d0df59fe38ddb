"""``skdlc serve``: serve DLC scoring with TorchServe (archive, start, stop).

A thin layer over the public :mod:`skdlc.serving`: ``archive`` packs a fitted scorer (joblib file,
or its ONNX export) with skdlc's handler into ``<name>.mar``; ``start`` writes a
``config.properties`` binding every listener to 127.0.0.1 with token authorisation on,
starts TorchServe in the background and waits until the models answer; ``stop`` stops
it and waits for its Python workers to exit.
"""

from __future__ import annotations

import argparse
import json

from .. import serving
from . import CLIError

__all__ = ["add_parser"]

_EPILOG = """\
examples:
  python -c "import joblib; from skdlc import DLCScorer; ..."   # fit, joblib.dump(scorer, 'scorer.joblib')
  skdlc serve archive --scorer scorer.joblib --out model-store/ --batch-size 8 --max-batch-delay 20
  skdlc serve start --model-store model-store/
  curl -H "Authorization: Bearer $(skdlc serve token)" -H "X-Label: cat" \\
       -H "Content-Type: image/png" --data-binary @cat.png http://127.0.0.1:8080/predictions/skdlc
  skdlc serve stop

Everything the server writes goes to --state-dir (default .skdlc-serve/): config.properties,
key_file.json (the Bearer keys), tmp/ (unpacked models), logs/. See docs/serving.md.
"""

_PORTS = ("inference", "management", "metrics", "grpc_inference", "grpc_management")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "serve",
        help="serve DLC scoring over HTTP with TorchServe (archive / start / stop / token)",
        description="Serve a fitted DLCScorer with TorchServe: build the model archive, start and stop a server.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="serve_command", required=True, metavar="ACTION")

    a = sub.add_parser("archive", help="build <name>.mar from a fitted scorer",
                       description="Build a TorchServe model archive (.mar) from a fitted DLCScorer "
                                   "saved with joblib, or from its ONNX export folder.")
    a.add_argument("--scorer", required=True, metavar="FITTED",
                   help="joblib file of a fitted DLCScorer (or, with --engine onnx, its ONNX export folder)")
    a.add_argument("--out", required=True, metavar="MODEL_STORE", help="folder for the .mar (created if missing)")
    a.add_argument("--name", default="skdlc", help="model name: POST /predictions/<name> (default: skdlc)")
    a.add_argument("--engine", choices=("torch", "onnx"), default="torch",
                   help="score with the pickled torch scorer (default) or its ONNX export (needs skdlc[onnx])")
    a.add_argument("--version", default="1.0", help="model version (default: 1.0)")
    a.add_argument("--batch-size", type=_positive, default=1,
                   help="TorchServe batching: requests scored together (default: 1)")
    a.add_argument("--max-batch-delay", type=_non_negative, default=50, metavar="MS",
                   help="ms to wait for a batch to fill (default: 50)")
    a.add_argument("--workers", type=_positive, default=1, help="Python worker processes (default: 1)")
    a.add_argument("--threads", type=_positive, default=None,
                   help="torch / ONNX Runtime threads per worker (default: the library's)")
    a.add_argument("--device", default="auto", help="auto (the worker's GPU if any), cpu or cuda:N")
    a.add_argument("--max-images", type=_positive, default=256,
                   help="most images one request may hold (default: 256)")
    a.add_argument("--response-timeout", type=_positive, default=120, metavar="S",
                   help="seconds before TorchServe restarts a stuck worker (default: 120)")
    a.add_argument("--force", action="store_true", help="overwrite an existing archive")
    a.set_defaults(func=_archive)

    s = sub.add_parser("start", help="start TorchServe on a model store (loopback, token auth on)",
                       description="Start TorchServe in the background and wait until every model answers. "
                                   "All listeners bind --address (127.0.0.1); token authorisation is on "
                                   "unless --no-token-auth.")
    s.add_argument("--model-store", required=True, help="folder of .mar files")
    s.add_argument("--models", nargs="+", default=["all"], metavar="MAR",
                   help="archives to load (name.mar or name=name.mar; default: all)")
    _state_arg(s)
    s.add_argument("--address", default="127.0.0.1",
                   help="address every listener binds (default 127.0.0.1; 0.0.0.0 exposes the server)")
    for name in _PORTS:
        default = serving.DEFAULT_PORTS[name]
        s.add_argument(f"--{name.replace('_', '-')}-port", type=_port, default=default, dest=f"port_{name}",
                       metavar="PORT", help=f"{name.replace('_', ' ')} port (default {default})")
    s.add_argument("--no-token-auth", action="store_true",
                   help="turn token authorisation off (disable_token_authorization=true); only on a trusted host")
    s.add_argument("--timeout", type=_positive, default=180, metavar="S",
                   help="seconds to wait for the models to be ready (default: 180)")
    s.set_defaults(func=_start)

    t = sub.add_parser("stop", help="stop the server of a state folder and wait for its workers")
    _state_arg(t)
    t.add_argument("--timeout", type=_positive, default=60, metavar="S", help="seconds to wait (default: 60)")
    t.set_defaults(func=_stop)

    k = sub.add_parser("token", help="print a Bearer key of the running server")
    _state_arg(k)
    k.add_argument("--kind", choices=("inference", "management", "API"), default="inference",
                   help="inference (predictions), management, or API (renews the other two)")
    k.set_defaults(func=_token)
    return p


def _state_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state-dir", default=serving.STATE_DIR,
                   help=f"config, key file, unpacked models and logs (default: {serving.STATE_DIR})")


def _int(text: str, low: int, what: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if v < low:
        raise argparse.ArgumentTypeError(f"{text!r}: must be {what}")
    return v


def _positive(text: str) -> int:
    return _int(text, 1, ">= 1")


def _non_negative(text: str) -> int:
    return _int(text, 0, ">= 0")


def _port(text: str) -> int:
    v = _int(text, 1, "a port in 1..65535")
    if v > 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a port in 1..65535")
    return v


def _archive(args) -> int:
    settings = {"max_images_per_request": args.max_images, "device": args.device}
    if args.threads:
        settings["num_threads"] = args.threads
    try:
        mar = serving.build_archive(
            args.scorer, args.out, model_name=args.name, engine=args.engine, version=args.version,
            batch_size=args.batch_size, max_batch_delay=args.max_batch_delay, workers=args.workers,
            response_timeout=args.response_timeout, handler_settings=settings, force=args.force,
        )
    except serving.ServeError as exc:
        raise CLIError(str(exc)) from None
    print(mar)
    return 0


def _start(args) -> int:
    ports = {name: getattr(args, f"port_{name}") for name in _PORTS}
    try:
        server = serving.start_server(
            args.model_store, models=args.models, state_dir=args.state_dir, address=args.address,
            ports=ports, token_auth=not args.no_token_auth, timeout=args.timeout,
        )
    except serving.ServeError as exc:
        raise CLIError(str(exc)) from None
    info = {
        "inference": server.url("inference"),
        "management": server.url("management"),
        "metrics": server.url("metrics"),
        "pid": server.pid,
        "state_dir": str(server.state_dir),
        "token_auth": server.token_auth,
    }
    if server.token_auth:
        info["key_file"] = str(server.state_dir / "key_file.json")
    print(json.dumps(info, indent=2))
    return 0


def _stop(args) -> int:
    if serving.stop_server(args.state_dir, timeout=args.timeout):
        print(f"stopped the TorchServe of {args.state_dir}")
    else:
        print(f"no TorchServe running from {args.state_dir}")
    return 0


def _token(args) -> int:
    key = serving.read_token(args.state_dir, args.kind)
    if key is None:
        raise CLIError(f"no {args.kind} key in {args.state_dir}/key_file.json: is the server running "
                       "with token authorisation?")
    print(key)
    return 0
