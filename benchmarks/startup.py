"""Start-up cost of the package and the command line (issue 13, item 1).

Prints, each measured in fresh interpreters (min of ``--repeat`` runs, wall seconds):

- ``python -m skdlc --help`` and ``python -m skdlc COMMAND --help`` for each command;
- ``python -c "import skdlc"`` and the heavy modules that import loads;
- ``from skdlc import DLCScorer`` (what the first real use pays), for contrast;
- the largest top-level entries of ``python -X importtime -c "import skdlc"``.

``--baseline DIR`` measures another checkout (e.g. ``git archive`` of an older commit)
in the same run, right after, so the two columns see similar machine load.

Usage::

    python benchmarks/startup.py [--repeat 3] [--baseline DIR] [--out benchmarks/results/startup.md]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "onnxruntime", "ray", "sklearn", "scipy.stats", "imblearn",
         "pandas", "matplotlib", "PIL")
COMMANDS = ("prune", "demo", "serve", "export-onnx", "validate", "prune-instructions")


def _run(root: Path, argv: list[str], **kw) -> subprocess.CompletedProcess:
    # The checkout measured comes first on the path, and the process runs inside it
    # (``-c`` and ``-m`` put the working directory before PYTHONPATH).
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(argv, env=env, cwd=root, check=True, **kw)


def wall(root: Path, argv: list[str], repeat: int) -> float:
    """Min wall seconds of ``repeat`` fresh runs of ``argv`` (output discarded)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        _run(root, argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - t0)
    return best


def heavy_loaded(root: Path, statement: str) -> str:
    code = f"import sys\n{statement}\nprint(' '.join(sorted(sys.modules)))"
    mods = set(_run(root, [sys.executable, "-c", code], capture_output=True, text=True).stdout.split())
    return " ".join(m for m in HEAVY if m in mods) or "none"


def importtime_top(root: Path, statement: str, n: int) -> list[tuple[int, str]]:
    """The ``n`` largest cumulative import times (microseconds) among top-level imports."""
    err = _run(root, [sys.executable, "-X", "importtime", "-c", statement], capture_output=True,
               text=True).stderr
    rows = []
    for line in err.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cum, name = line[len("import time:"):].split("|")
        if len(name) - len(name.lstrip()) == 1:  # nested imports are indented further
            rows.append((int(cum), name.strip()))
    return sorted(rows, reverse=True)[:n]


def measure(root: Path, repeat: int) -> list[tuple[str, float, str]]:
    py = sys.executable
    rows = [("python -c pass (the interpreter alone)", wall(root, [py, "-c", "pass"], repeat), "")]
    rows.append(("skdlc --help", wall(root, [py, "-m", "skdlc", "--help"], repeat),
                 heavy_loaded(root, "from skdlc._cli import build_parser; build_parser()")))
    for cmd in COMMANDS:
        rows.append((f"skdlc {cmd} --help", wall(root, [py, "-m", "skdlc", cmd, "--help"], repeat), ""))
    rows.append(("import skdlc", wall(root, [py, "-c", "import skdlc"], repeat),
                 heavy_loaded(root, "import skdlc")))
    rows.append(("from skdlc import DLCScorer (first real use)",
                 wall(root, [py, "-c", "from skdlc import DLCScorer"], repeat),
                 heavy_loaded(root, "from skdlc import DLCScorer")))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--baseline", type=Path, default=None,
                    help="another checkout to measure in the same run (a 'before' column)")
    ap.add_argument("--out", type=Path, default=None, help="also write the page as Markdown here")
    args = ap.parse_args()

    rows = measure(ROOT, args.repeat)
    base = measure(args.baseline.resolve(), args.repeat) if args.baseline else None
    head = f"| what | wall s (min of {args.repeat}) | heavy modules loaded |"
    sep = "|---|---:|---|"
    if base:
        head += " baseline wall s | baseline heavy modules |"
        sep += "---:|---|"
    lines = [head, sep]
    for i, (what, sec, heavy) in enumerate(rows):
        line = f"| `{what}` | {sec:.3f} | {heavy} |"
        if base:
            line += f" {base[i][1]:.3f} | {base[i][2]} |"
        lines.append(line)
    lines += ["", "Largest top-level imports of `import skdlc` (`python -X importtime`, cumulative ms):", ""]
    lines += [f"- {name}: {cum / 1000:.1f}" for cum, name in importtime_top(ROOT, "import skdlc", 5)]
    if base:
        lines += ["", "Baseline:", ""]
        lines += [f"- {name}: {cum / 1000:.1f}"
                  for cum, name in importtime_top(args.baseline.resolve(), "import skdlc", 5)]
    lines += ["", f"1-min load average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs "
              "(shared machine: compare the columns, not the seconds across runs)."]
    text = "\n".join(lines)
    print(text)
    if args.out is not None:
        cmd = "python benchmarks/startup.py " + " ".join(sys.argv[1:])
        args.out.write_text(f"# Start-up time\n\nCommand: `{cmd.strip()}`\n\n{text}\n")


if __name__ == "__main__":
    main()
