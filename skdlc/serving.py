"""Serve DLC scores over HTTP with TorchServe (``pip install "skdlc[serve]"``, Java 11+).

The Python side of ``skdlc serve`` (see docs/serving.md):

- :func:`build_archive`: pack a fitted :class:`~skdlc.DLCScorer` saved with joblib (or
  its ONNX export folder) with skdlc's handler into ``<name>.mar``.
- :func:`start_server`: start TorchServe on a folder of archives, every listener on
  127.0.0.1 and token authorisation on, and wait until the models answer; returns a
  :class:`Server` (``url()``, ``headers()``, ``token()``, ``stop()``).
- :func:`stop_server`: stop the server of a state folder and wait for its workers.
- :func:`read_token`, :func:`write_config`, :func:`free_ports`, :func:`wait_ready`:
  the pieces :func:`start_server` uses, for servers started by other means.
- :func:`write_metadata`: the ``skdlc_serving.json`` an archive built by hand with
  ``torch-model-archiver`` needs.
- :class:`DLCHandler`: the TorchServe handler class (importing it imports TorchServe).

Importing this module imports neither TorchServe nor ONNX Runtime: the tools are
looked up when a function needs them, and :class:`DLCHandler` on first access.

Examples
--------
>>> from skdlc.serving import build_archive, start_server  # doctest: +SKIP
>>> build_archive("scorer.joblib", "model-store/", model_name="dlc")  # doctest: +SKIP
>>> server = start_server("model-store/")  # doctest: +SKIP
>>> server.url(), server.headers()  # doctest: +SKIP
>>> server.stop()  # doctest: +SKIP
"""

from __future__ import annotations

from ._serve import (
    DEFAULT_PORTS,
    HANDLER_FILE,
    META_FILE,
    STATE_DIR,
    ServeError,
    Server,
    build_archive,
    free_ports,
    java_executable,
    model_config_yaml,
    read_token,
    start_server,
    stop_server,
    wait_ready,
    write_config,
    write_metadata,
)

__all__ = [
    "DEFAULT_PORTS",
    "DLCHandler",
    "HANDLER_FILE",
    "META_FILE",
    "STATE_DIR",
    "ServeError",
    "Server",
    "build_archive",
    "free_ports",
    "java_executable",
    "model_config_yaml",
    "read_token",
    "start_server",
    "stop_server",
    "wait_ready",
    "write_config",
    "write_metadata",
]


def __getattr__(name: str):
    # The handler subclasses TorchServe's BaseHandler: importing it imports TorchServe,
    # which only a serving worker needs.
    if name == "DLCHandler":
        from ._serving_handler import DLCHandler

        globals()[name] = DLCHandler
        return DLCHandler
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | {"DLCHandler"})
