"""Text data sets from the ``bigbench==1.0.0`` archive, for the LLM and text examples.

- :func:`load_natural_instructions`: Natural Instructions subtasks as Alpaca-style
  records (instruction / input / output / category), for instruction-data pruning.
- :func:`load_text_classification`: labelled texts (multiemo reviews, 4 sentiment
  classes; or the question-typing subtask, 13 question types) for text-classification
  DLC with a text encoder backbone.

The archive is found (and downloaded once) by :mod:`skdlc.datasets`. The files carry a
canary line asking that benchmark data never be trained on: they are used here to
*measure* pruning, and no model weights trained on them ship with skdlc.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.utils import check_random_state

__all__ = [
    "NI_TASK_MIX",
    "natural_instructions_tasks",
    "load_natural_instructions",
    "split_instruction",
    "load_text_classification",
    "TEXT_CLASSIFICATION_SETS",
]

#: A mix of Natural Instructions subtasks with short inputs and short outputs (a few
#: hundred tokens per example at most), from different source data sets (MC-TACO,
#: WinoGrande, QASC, MultiRC and a question-typing task), used by the benchmarks.
NI_TASK_MIX: tuple[str, ...] = (
    "subtask004_mctaco_answer_generation_event_duration",
    "subtask033_winogrande_answer_generation",
    "subtask036_qasc_topic_word_to_generate_related_fact",
    "subtask039_qasc_find_overlapping_words",
    "subtask041_qasc_answer_generation",
    "subtask046_miscellaenous_question_typing",
)

_NI = "natural_instructions"

#: name -> (member suffix in the archive, description)
TEXT_CLASSIFICATION_SETS = {
    "multiemo": ("multiemo/all_text_en/task.json",
                 "English reviews (hotels, medicine, products, school), 4 sentiment classes"),
    "question_typing": (f"{_NI}/subtask046_miscellaenous_question_typing/task.json",
                        "questions with their answer, 13 answer types + 'Other' "
                        "(single-label examples only)"),
}


def _read(member_suffix: str) -> dict:
    from .datasets import _read_bigbench_json

    return _read_bigbench_json(member_suffix)


def natural_instructions_tasks() -> list[str]:
    """Names of the Natural Instructions subtasks in the bigbench archive (sorted)."""
    from .datasets import _bigbench_glob

    names = _bigbench_glob(f"*/{_NI}/subtask*/task.json")
    return sorted(n.split("/")[-2] for n in names)


def split_instruction(task_prefix: str) -> dict[str, str]:
    """Split a Natural Instructions ``task_prefix`` into definition and prompt.

    The prefix reads ``"Definition: ... Things to Avoid: ... Prompt: <one line>"``;
    the prompt is the short instruction, the definition everything before it.
    """
    head, sep, tail = task_prefix.rpartition("Prompt:")
    if not sep:
        return {"definition": task_prefix.strip(), "prompt": task_prefix.strip()}
    return {"definition": head.strip(), "prompt": tail.strip()}


def _targets(example: dict) -> list[str]:
    t = example.get("target")
    if t is None and "target_scores" in example:
        scores = example["target_scores"]
        return [max(scores, key=scores.get)]
    if isinstance(t, str):
        return [t]
    return [str(x) for x in t]


def load_natural_instructions(
    tasks: Sequence[str] | None = None,
    *,
    n_per_task: int | None = None,
    instruction: str = "full",
    random_state=0,
) -> list[dict]:
    """Natural Instructions subtasks as instruction records.

    Parameters
    ----------
    tasks : sequence of str or None
        Subtask names (e.g. ``"subtask046_miscellaenous_question_typing"``; a unique
        prefix such as ``"subtask046"`` is enough). ``None``: :data:`NI_TASK_MIX`.
    n_per_task : int or None
        Draw this many examples of each task at random (all when None or larger).
    instruction : {"full", "prompt", "definition"}
        Which part of the task's ``task_prefix`` becomes the instruction: all of it
        (definition, things to avoid, prompt), the one-line prompt only, or the
        definition without the prompt.
    random_state : int, RandomState or None
        Seeds the per-task draws.

    Returns
    -------
    records : list of dict
        ``instruction``, ``input``, ``output`` (the first reference), ``category``
        (the subtask name) and ``references`` (all reference outputs), task by task.
    """
    if instruction not in ("full", "prompt", "definition"):
        raise ValueError(f"instruction must be 'full', 'prompt' or 'definition', got {instruction!r}")
    if tasks is None:
        tasks = NI_TASK_MIX
    if isinstance(tasks, str):
        tasks = [tasks]
    rng = check_random_state(random_state)
    available: list[str] | None = None
    records: list[dict] = []
    for task in tasks:
        name = task
        if task not in NI_TASK_MIX:
            if available is None:
                available = natural_instructions_tasks()
            if task not in available:
                hits = [t for t in available if t.startswith(task)]
                if len(hits) != 1:
                    raise KeyError(
                        f"unknown Natural Instructions task {task!r}"
                        + (f" (ambiguous: {hits[:4]})" if hits else "")
                    )
                name = hits[0]
        data = _read(f"{_NI}/{name}/task.json")
        prefix = data["task_prefix"]
        parts = split_instruction(prefix)
        ins = prefix.strip() if instruction == "full" else parts[instruction]
        examples = data["examples"]
        idx = np.arange(len(examples))
        if n_per_task is not None and n_per_task < len(examples):
            idx = np.sort(rng.choice(len(examples), size=n_per_task, replace=False))
        for i in idx:
            ex = examples[int(i)]
            refs = _targets(ex)
            records.append({
                "instruction": ins,
                "input": ex["input"].strip(),
                "output": refs[0].strip(),
                "category": name,
                "references": [r.strip() for r in refs],
            })
    return records


def load_text_classification(
    name: str = "multiemo",
    *,
    n_per_class: int | None = None,
    random_state=0,
) -> tuple[list[str], np.ndarray]:
    """Labelled texts for text-classification pruning.

    Parameters
    ----------
    name : {"multiemo", "question_typing"}
        ``"multiemo"``: 8,215 English reviews, labels ``ambivalent``, ``negative``,
        ``neutral``, ``positive``. ``"question_typing"``: the single-label examples of
        Natural Instructions' question-typing subtask (question + answer -> type,
        e.g. ``Humans``, ``Date``).
    n_per_class : int or None
        Draw at most this many texts of each class (all when None).
    random_state : int, RandomState or None

    Returns
    -------
    texts : list of str
    y : ndarray of str, shape (n_samples,)
    """
    if name not in TEXT_CLASSIFICATION_SETS:
        raise ValueError(f"name must be one of {sorted(TEXT_CLASSIFICATION_SETS)}, got {name!r}")
    data = _read(TEXT_CLASSIFICATION_SETS[name][0])
    texts, labels = [], []
    for ex in data["examples"]:
        refs = _targets(ex)
        if name == "question_typing" and len(refs) != 1:
            continue
        texts.append(ex["input"].strip())
        labels.append(refs[0].strip().rstrip("."))
    y = np.asarray(labels, dtype=object).astype(str)
    if n_per_class is not None:
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
