"""The ``skdlc`` command line: thin layers over the public API, one module per command."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

__all__ = ["main"]

# Each module defines ``add_parser(subparsers)``, which registers its command and sets
# ``func`` (taking the parsed args, returning an exit code) on its parser.
_COMMAND_MODULES = [
    "skdlc._cli.prune",
    "skdlc._cli.demo",
    "skdlc._cli.serve",
    "skdlc._cli.export_onnx",
    "skdlc._cli.validate",
    "skdlc._cli.instructions",
]


class CLIError(Exception):
    """A user-facing error: printed as one line, exit code 2, no traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skdlc",
        description="Training-free dataset pruning: DLC hardness scores + FlexRand sampling.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CLIError as exc:
        _report(args.command, exc)
        return 2
    except (ValueError, OSError, RuntimeError) as exc:
        # The library's user errors: bad values (sklearn's InvalidParameterError and
        # skdlc's ImageReadError are ValueErrors), missing files, unwritable folders,
        # data sets or weights that cannot be fetched. Other RuntimeErrors are bugs and
        # keep their traceback, as does everything with SKDLC_DEBUG=1.
        if os.environ.get("SKDLC_DEBUG") or (isinstance(exc, RuntimeError) and not _is_user_error(exc)):
            raise
        _report(args.command, exc)
        return 2
    except KeyboardInterrupt:
        print(f"skdlc {args.command}: interrupted; no output was written", file=sys.stderr)
        return 130


def _is_user_error(exc: BaseException) -> bool:
    """RuntimeErrors that skdlc raises for the user to act on (no data, no weights)."""
    from .._backbones import WeightsNotAvailableError
    from ..datasets import DatasetNotAvailableError

    return isinstance(exc, (DatasetNotAvailableError, WeightsNotAvailableError))


def _report(command: str, exc: BaseException) -> None:
    """``skdlc CMD: error: <first line>``; further lines of the message (hints) follow
    indented, so the error itself is always one line."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()] or [type(exc).__name__]
    print(f"skdlc {command}: error: {lines[0]}", file=sys.stderr)
    for line in lines[1:]:
        print(f"  {line}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
