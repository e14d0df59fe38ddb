"""Start-up cost: ``import skdlc`` and ``skdlc --help`` must not load the heavy stack.

Each check runs in a fresh interpreter (this test process has torch loaded already).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # subprocesses; `-m 'not slow'` skips these

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "onnxruntime", "ray", "sklearn", "scipy.stats", "imblearn")


def _python(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=300, check=True)


def _loaded_after(statement: str) -> list[str]:
    out = _python(f"import sys, json\n{statement}\nprint(json.dumps(sorted(sys.modules)))").stdout
    modules = set(json.loads(out.strip().splitlines()[-1]))
    return [m for m in HEAVY if m in modules]


def test_import_skdlc_loads_no_heavy_module():
    assert _loaded_after("import skdlc") == []


def test_public_names_stay_listed_and_importable_on_demand():
    out = _python(
        "import sys, skdlc\n"
        "names = dir(skdlc)\n"
        "assert set(skdlc.__all__) <= set(names), set(skdlc.__all__) - set(names)\n"
        "assert 'torch' not in sys.modules\n"
        "from skdlc import DLCScorer, FlexRandSampler, create_backbone\n"
        "assert DLCScorer.__module__ == 'skdlc._scorer'\n"
        "assert skdlc.DLCScorer is DLCScorer and callable(create_backbone)\n"
        "assert callable(skdlc.datasets.load_mnist)\n"
        "try:\n"
        "    skdlc.no_such_name\n"
        "except AttributeError as exc:\n"
        "    print('AttributeError', exc)\n"
    ).stdout
    assert "AttributeError" in out and "no_such_name" in out


@pytest.mark.parametrize("argv", [["--help"], ["prune", "--help"], ["prune-instructions", "--help"],
                                  ["validate", "--help"], ["serve", "--help"]])
def test_help_answers_without_heavy_modules(argv):
    code = ("import sys\nfrom skdlc._cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit as exc:\n    assert exc.code == 0, exc.code\n")
    out = _python(code + "import json\nprint(json.dumps(sorted(sys.modules)))").stdout
    assert "usage: skdlc" in out
    modules = set(json.loads(out.strip().splitlines()[-1]))
    assert [m for m in HEAVY if m in modules] == []
