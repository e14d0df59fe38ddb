"""Tokenisation of instruction examples: prompt + response ids, truncation, length batches.

Prompt and response are tokenized separately and concatenated, so the response span
(the last ``n_response`` tokens of each sequence) is exact; :func:`_batches` groups
length-sorted examples for :mod:`skdlc._response_loss`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ._prompts import format_example

__all__ = ["Encoded", "encode_examples"]


@dataclass
class Encoded:
    """Token ids of examples and the length of each one's response (its last tokens)."""

    ids: list[list[int]]
    n_response: list[int]
    n_truncated: int

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(x) for x in self.ids], dtype=np.int64)


def _truncate(prompt: list[int], response: list[int], max_length: int) -> tuple[list, list]:
    """Fit prompt + response into ``max_length`` tokens.

    The response keeps its first ``max(max_length - len(prompt), max_length // 2)``
    tokens (all of it when it fits); the prompt loses tokens from its middle, so the
    start of the instruction and the text right before the response (e.g. the
    ``### Response:`` header) stay.
    """
    r_keep = min(len(response), max(max_length - len(prompt), max_length // 2))
    p_keep = max_length - r_keep
    if len(prompt) > p_keep:
        head = (p_keep + 1) // 2
        tail = p_keep - head
        prompt = prompt[:head] + (prompt[len(prompt) - tail:] if tail else [])
    return prompt, response[:r_keep]


def encode_examples(
    triples: Sequence[tuple[str, str, str]],
    tokenizer: Any,
    template: str | Callable = "alpaca",
    max_length: int = 512,
) -> Encoded:
    """Tokenize (instruction, input, output) triples into prompt + response ids.

    Prompt and response are tokenized separately and concatenated, so the response
    span is exact. The prompt gets the tokenizer's special tokens (e.g. BOS), except
    with the chat template, which writes its own. Examples longer than
    ``max_length`` are truncated (see :func:`_truncate`) and counted.
    """
    prompts, responses, eos = [], [], []
    for ins, inp, out in triples:
        p, r, e = format_example(ins, inp, out, template, tokenizer)
        prompts.append(p)
        responses.append(r)
        eos.append(e)
    add_special = template != "chat"  # chat templates write their own special tokens
    p_ids = tokenizer(prompts, add_special_tokens=add_special)["input_ids"] if prompts else []
    r_ids = tokenizer(responses, add_special_tokens=False)["input_ids"] if responses else []
    eos_id = getattr(tokenizer, "eos_token_id", None)
    ids, n_resp, n_trunc = [], [], 0
    for i, (p, r, e) in enumerate(zip(p_ids, r_ids, eos)):
        p, r = list(p), list(r)
        if e and eos_id is not None:
            r.append(int(eos_id))
        if not r:
            raise ValueError(f"record {i}: the response has no tokens (empty output)")
        if not p:
            raise ValueError(f"record {i}: the prompt has no tokens")
        if len(p) + len(r) > max_length:
            p, r = _truncate(p, r, max_length)
            n_trunc += 1
        ids.append(p + r)
        n_resp.append(len(r))
    return Encoded(ids, n_resp, n_trunc)



def _batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Indices in batches of similar length (longest first, so memory peaks early)."""
    order = np.argsort(-lengths, kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
