"""The ``skdlc`` command line: thin layers over the public API, one module per command."""

from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["main"]

# Each module defines ``add_parser(subparsers)``, which registers its command and sets
# ``func`` (taking the parsed args, returning an exit code) on its parser.
_COMMAND_MODULES = [
    "skdlc._cli.prune",
    "skdlc._cli.demo",
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
        print(f"skdlc {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"skdlc {args.command}: interrupted; no output was written", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
