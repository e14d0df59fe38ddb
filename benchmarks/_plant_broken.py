"""Broken (instruction, response) pairs planted in a clean pool, for benchmarks.

Three kinds, in equal shares (cycled over the broken records in a random order):

- ``swap``: the response of another record, drawn from the whole pool (so most swaps
  come from another task; a same-task donor with the same answer is skipped);
- ``truncate``: the response cut to a few tokens: the first third of its words (at least
  one) when it has several, the first half of the characters of a single word of 4+
  characters, and ``"."`` for a one- to three-character answer (an empty response is
  not a valid record);
- ``format``: the right answer in the wrong format for the task (JSON, a chatty
  sentence, another language, upper-case markup), drawn at random.

The broken sets are nested: one permutation of the pool decides the order in which
records break, so the 10% set is the first half of the 20% set and a record broken in
both has the same broken response in both (its losses are computed once).
"""

from __future__ import annotations

import numpy as np

KINDS = ("swap", "truncate", "format")

_FORMATS = (
    '{{"answer": "{0}"}}',
    "Sure! Here is my answer: {0}. Let me know if you need anything else.",
    "La respuesta correcta es: {0}",
    "**ANSWER: {1}**",
)


def _truncate(text: str) -> str:
    words = text.split()
    if len(words) >= 2:
        return " ".join(words[: max(1, len(words) // 3)])
    if len(text) >= 4:
        return text[: len(text) // 2]
    return "."


def broken_plan(records: list[dict], seed: int = 0) -> dict:
    """The order in which records break and each one's broken response.

    Returns ``{"order": permutation, "kind": {i: kind}, "output": {i: text}}`` over
    every record (the first ``round(rate * n)`` of ``order`` are broken at ``rate``).
    """
    rng = np.random.default_rng(seed)
    n = len(records)
    order = rng.permutation(n)
    kinds, outputs = {}, {}
    for rank, i in enumerate(order):
        i = int(i)
        kind = KINDS[rank % len(KINDS)]
        out = records[i]["output"]
        if kind == "swap":
            while True:
                donor = int(rng.integers(n))
                if donor != i and records[donor]["output"].strip() != out.strip():
                    break
            new = records[donor]["output"]
        elif kind == "truncate":
            new = _truncate(out)
        else:
            new = _FORMATS[int(rng.integers(len(_FORMATS)))].format(out, out.upper())
        kinds[i], outputs[i] = kind, new
    return {"order": order, "kind": kinds, "output": outputs}


def plant(records: list[dict], plan: dict, rate: float) -> tuple[list[dict], np.ndarray, list[str]]:
    """The pool with ``round(rate * n)`` broken records, the broken mask, and kinds.

    A broken record keeps every field but ``output`` (and gains ``broken``: its kind).
    """
    n = len(records)
    m = int(np.floor(rate * n + 0.5))
    broken = np.zeros(n, dtype=bool)
    broken[plan["order"][:m]] = True
    out, kinds = [], []
    for i, r in enumerate(records):
        if broken[i]:
            out.append({**r, "output": plan["output"][i], "broken": plan["kind"][i]})
            kinds.append(plan["kind"][i])
        else:
            out.append(r)
            kinds.append("clean")
    return out, broken, kinds
