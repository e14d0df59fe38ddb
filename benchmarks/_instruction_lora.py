"""Downstream part of benchmarks/instruction_selection.py: LoRA fine-tuning on kept records."""

from __future__ import annotations


def add_arguments(ap) -> None:
    g = ap.add_argument_group("downstream (LoRA)")
    g.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
