"""The ``skdlc`` command line: thin layers over the public API, one module per command."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
import warnings

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
        with _one_line_diagnostics(args.command):
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


#: Warnings that say nothing to a user of the command line: scikit-learn's guess that
#: many classes of one image each "could represent a regression problem".
_IGNORED_WARNINGS = ("The number of unique classes is greater than 50%",)


@contextlib.contextmanager
def _one_line_diagnostics(command: str):
    """Library warnings as ``skdlc CMD: warning: ...`` (once each, no source path or
    code line), and joblib's traceback for a cache entry it cannot read (it computes
    the entry again) as one ``note`` line. ``SKDLC_DEBUG=1`` keeps them raw."""
    if os.environ.get("SKDLC_DEBUG"):
        yield
        return
    seen: set[str] = set()

    def say(kind: str, text: str) -> None:
        lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()] or [kind]
        if lines[0] not in seen:
            seen.add(lines[0])
            print(f"skdlc {command}: {kind}: {' '.join(lines)}", file=sys.stderr)

    def showwarning(message, category, filename, lineno, file=None, line=None):
        say("warning", str(message))

    class _CacheNote(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            text = record.getMessage()
            if "Exception while loading results" not in text:
                return True
            last = [ln.strip() for ln in text.strip().splitlines() if ln.strip()][-1]
            say("note", f"a cached result could not be read ({last[:200]}); computed again")
            return False

    joblib_log, note = logging.getLogger("joblib"), _CacheNote()
    joblib_log.addFilter(note)
    try:
        with warnings.catch_warnings():
            for text in _IGNORED_WARNINGS:
                warnings.filterwarnings("ignore", message=text)
            warnings.showwarning = showwarning
            yield
    finally:
        joblib_log.removeFilter(note)


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
