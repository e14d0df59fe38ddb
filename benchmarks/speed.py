"""Speed of DLC against its physical limit, ONNX Runtime against torch, DLC against training.

The physical limit of DLC is T forward passes over the data. Every section runs the
real default backbone (EfficientNet-Lite0, ImageNet weights, offline) on real images
(CIFAR-10 test set, 32 px upsampled to the backbone's input), prints its table and
saves its numbers to ``benchmarks/results/speed_<section>.json``; ``--report`` (run
after the sections) writes ``benchmarks/results/speed.md`` and the figures from them.

    nice -n 10 python benchmarks/speed.py --sections engines      # ORT vs torch eager, 224 px
    nice -n 10 python benchmarks/speed.py --sections limit        # DLC / (T x bare pass), ORT
    nice -n 10 python benchmarks/speed.py --sections layout       # one graph vs a file per ratio
    nice -n 10 python benchmarks/speed.py --sections baseline     # whole pruning vs training
    nice -n 10 python benchmarks/speed.py --sections scaling      # N, T, batch size
    nice -n 10 python benchmarks/speed.py --sections memory       # peak RSS vs N and T
    python benchmarks/speed.py --report

Sections:

- ``engines``: the same scores (T=5, batch 64, 224 px) with torch eager (the engine
  before channels_last), the torch engine as it is now (channels_last on the CPU) and
  ONNX Runtime; for each, DLC's wall time, one bare unmasked forward pass over the same
  (pre-decoded) data with the same engine, their ratio, and the scores' agreement.
- ``limit``: the same ratio for ONNX Runtime at a larger N, where fixed costs (export,
  masks, sessions) are amortised; a cost breakdown.
- ``layout``: the export layout: T sessions of one file each vs one graph holding all T
  variants (sequential, and inter-op parallel), per-batch time and load time.
- ``baseline``: whole pruning (DLC scores + gamma tuning + FlexRand) vs the cheapest
  training-based baselines on the same data and backbone.
- ``scaling``: wall time vs N, T and batch size (ONNX Runtime, 112 px), with T x bare.
- ``memory``: peak resident memory of a fresh process vs N and vs T (64 px inputs).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _speedlib as L  # noqa: E402

from skdlc import DLCScorer, FlexRandSampler  # noqa: E402
from skdlc import _onnx  # noqa: E402
from skdlc._ratios import resolve_mask_ratios  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SECTIONS = ("engines", "limit", "layout", "baseline", "scaling", "memory")


def _scorer(engine: str, **kw) -> DLCScorer:
    kw = {"mask_ratios": 5, "random_state": 0, "device": "cpu", "verbose": False, "batch_size": 64, **kw}
    return DLCScorer(engine=engine, **kw)


def _save(section: str, data: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {"section": section, "env": L.env_info(), "finished": time.strftime("%Y-%m-%d %H:%M:%S"), **data}
    (RESULTS / f"speed_{section}.json").write_text(json.dumps(data, indent=2) + "\n")
    print(f"-> {RESULTS / f'speed_{section}.json'}")


def _dlc_run(engine: str, X, y, *, eager: bool = False, **kw) -> dict:
    """One fit_transform with a cold ONNX export cache, timed in parts."""
    _onnx._GRAPHS.clear()
    s = _scorer(engine, **kw)
    parts = L.Parts()
    with L.instrument(parts), (L.torch_eager() if eager else _nullctx()):
        out, wall, cpu = L.timed(s.fit_transform, X, y)
    own = out[np.arange(len(y)), np.searchsorted(s.classes_, y)]
    return {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "parts_s": parts.as_dict(),
            "parts_cpu_s": parts.cpu_dict(), "scores": out,
            "own": own, "forward_batches": s.n_forward_batches_}


class _nullctx:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


# ----------------------------------------------------------------------------- engines
def section_engines(args) -> dict:
    T = 5
    X, y = L.images(args.n_engines)
    bb = L.backbone(args.image_size)
    batches = L.predecode(X, bb, 64)
    rows, runs = {}, {}
    kw = {"image_size": args.image_size}
    load = [L.load_avg()]
    sess = L.ort_session(bb, batches[0][:2])

    def bare_passes():  # each engine, one unmasked pass over the same pre-decoded batches
        return {
            "torch eager": L.bare_torch(bb.module, batches, channels_last=False),
            "torch (channels_last)": L.bare_torch(bb.module, batches, channels_last=True),
            "onnxruntime": L.bare_ort(sess, batches),
        }

    before = bare_passes()
    # what channels_last is for: batches that arrive NCHW (float arrays, CHW datasets)
    nchw = [b.contiguous() for b in batches]
    nchw_bare = {"torch eager, NCHW batches": L.bare_torch(bb.module, nchw, channels_last=False),
                 "torch channels_last, NCHW batches": L.bare_torch(bb.module, nchw, channels_last=True)}
    del nchw
    load.append(L.load_avg())
    runs["torch eager"] = _dlc_run("torch", X, y, eager=True, **kw)
    runs["torch (channels_last)"] = _dlc_run("torch", X, y, **kw)
    runs["onnxruntime"] = _dlc_run("onnxruntime", X, y, **kw)
    load.append(L.load_avg())
    after = bare_passes()  # the bare passes bracket the DLC runs: load changes hit both
    bare = {k: tuple((before[k][i] + after[k][i]) / 2 for i in (0, 1)) for k in before}
    del sess
    ref = runs["torch eager"]
    for name, r in runs.items():
        bw, bc = bare[name]
        rows[name] = {
            "dlc_wall_s": r["wall_s"],
            "bare_pass_s": round(bw, 3),
            "dlc_over_T_bare": round(r["wall_s"] / (T * bw), 3),
            "speedup_vs_torch_eager": round(ref["wall_s"] / r["wall_s"], 2),
            "dlc_cpu_s": r["cpu_s"],
            "bare_pass_cpu_s": round(bc, 3),
            "dlc_over_T_bare_cpu": round(r["cpu_s"] / (T * bc), 3),
            "speedup_vs_torch_eager_cpu": round(ref["cpu_s"] / r["cpu_s"], 2),
            "scores_max_rel_diff_vs_torch_eager": L.rel_diff(r["scores"], ref["scores"]),
            "spearman_vs_torch_eager": round(float(spearmanr(r["own"], ref["own"]).statistic), 6),
            "parts_s": r["parts_s"],
            "parts_cpu_s": r["parts_cpu_s"],
            "forward_batches": r["forward_batches"],
        }
    _print_table(f"engines: N={len(y)}, T={T}, batch 64, {args.image_size} px", rows,
                 ["dlc_wall_s", "bare_pass_s", "dlc_over_T_bare", "speedup_vs_torch_eager",
                  "dlc_cpu_s", "dlc_over_T_bare_cpu", "speedup_vs_torch_eager_cpu",
                  "scores_max_rel_diff_vs_torch_eager", "spearman_vs_torch_eager"])
    nchw_rows = {k: {"bare_pass_s": round(w, 3), "bare_pass_cpu_s": round(c, 3)} for k, (w, c) in nchw_bare.items()}
    print("   bare passes from NCHW batches:", nchw_rows)
    return {"n": len(y), "T": T, "batch_size": 64, "image_size": args.image_size, "rows": rows,
            "nchw_bare": nchw_rows, "load_avg": load}


# ----------------------------------------------------------------------------- limit
def section_limit(args) -> dict:
    T = 5
    X, y = L.images(args.n_limit)
    bb = L.backbone(args.image_size)
    batches = L.predecode(X, bb, 64)
    load = [L.load_avg()]
    sess = L.ort_session(bb, batches[0][:2])
    dec = L._data.make_batches(X, bb, 64)

    def bare_passes():
        """(model only), (decode + model): one unmasked pass each, (wall, CPU) seconds."""
        model = L.bare_ort(sess, batches)
        clock = L.Clock()  # a plain inference loop a user would write
        for i in range(len(dec)):
            sess.run(None, {"input": np.ascontiguousarray(dec[i].numpy())})
        return model, clock.read()

    before = bare_passes()
    r = _dlc_run("onnxruntime", X, y, image_size=args.image_size)
    after = bare_passes()  # bare passes bracket the DLC run: load changes hit both
    load.append(L.load_avg())
    # what a first run on a machine adds: tracing the backbone (later runs read it from disk)
    _, trace_w, trace_c = L.timed(_onnx._export, bb.module, batches[0][:2], bb.name)
    del sess, batches
    row = {"dlc_wall_s": r["wall_s"], "dlc_cpu_s": r["cpu_s"]}
    for k, name in ((0, ""), (1, "_cpu")):
        bare = (before[0][k] + after[0][k]) / 2
        both = (before[1][k] + after[1][k]) / 2
        dlc = r["wall_s"] if k == 0 else r["cpu_s"]
        row[f"bare_pass{name}_s"] = round(bare, 3)
        row[f"decode_plus_bare_pass{name}_s"] = round(both, 3)
        row[f"dlc_over_T_bare{name}"] = round(dlc / (T * bare), 3)
        row[f"dlc_over_limit{name}"] = round(dlc / (T * bare + (both - bare)), 3)
        row[f"dlc_over_T_decode_plus_bare{name}"] = round(dlc / (T * both), 3)
    row.update({"first_run_trace_s": round(trace_w, 2), "first_run_trace_cpu_s": round(trace_c, 2),
                "parts_s": r["parts_s"], "parts_cpu_s": r["parts_cpu_s"], "forward_batches": r["forward_batches"]})
    _print_table(f"limit (onnxruntime): N={len(y)}, T={T}, batch 64, {args.image_size} px", {"onnxruntime": row},
                 ["dlc_wall_s", "bare_pass_s", "dlc_over_T_bare", "dlc_over_limit", "dlc_over_T_decode_plus_bare",
                  "dlc_cpu_s", "bare_pass_cpu_s", "dlc_over_T_bare_cpu", "dlc_over_limit_cpu",
                  "dlc_over_T_decode_plus_bare_cpu"])
    print("  parts (wall):", r["parts_s"])
    print("  parts (cpu): ", r["parts_cpu_s"])
    return {"n": len(y), "T": T, "batch_size": 64, "image_size": args.image_size, "row": row, "load_avg": load}


# ----------------------------------------------------------------------------- layout
def _merged_graph(models: list[bytes]) -> bytes:
    """One ONNX graph holding every variant, sharing the input."""
    import onnx

    protos = [onnx.load_from_string(m) for m in models]
    base = protos[0]
    g = onnx.helper.make_graph([], "dlc_all_variants", [base.graph.input[0]], [], [])
    for i, p in enumerate(protos):
        p = onnx.compose.add_prefix(p, f"v{i}_", rename_inputs=False)
        g.node.extend(p.graph.node)
        g.initializer.extend(p.graph.initializer)
        g.output.extend(p.graph.output)
    merged = onnx.helper.make_model(g, opset_imports=base.opset_import)
    merged.ir_version = base.ir_version
    onnx.checker.check_model(merged)
    return merged.SerializeToString()


def _spinning(so, threads, parallel):
    """skdlc's options but with ONNX Runtime's default spin-waiting."""
    import onnxruntime as ort

    out = ort.SessionOptions()
    out.graph_optimization_level = so.graph_optimization_level
    out.execution_mode = ort.ExecutionMode.ORT_PARALLEL if parallel else so.execution_mode
    out.intra_op_num_threads = so.intra_op_num_threads
    out.inter_op_num_threads = 2 if parallel else so.inter_op_num_threads
    out.log_severity_level = 3
    return out


def section_layout(args) -> dict:
    import onnxruntime as ort

    X, _ = L.images(64)
    bb = L.backbone(args.image_size)
    x = np.ascontiguousarray(L.predecode(X, bb, 64)[0].numpy())
    ratios = list(resolve_mask_ratios(5, 0))
    g = _onnx._graphs_for(bb, "layer", torch.from_numpy(x[:2]))
    models = [g.variant(r) for r in ratios]
    merged = _merged_graph(models)
    load = [L.load_avg()]

    def opts(threads=None, parallel=False, spin=False):
        so = _onnx.session_options(threads)  # skdlc's settings: no spin-waiting
        if parallel:
            so.execution_mode = ort.ExecutionMode.ORT_PARALLEL
            so.inter_op_num_threads = 2
        if spin:  # ONNX Runtime's default
            so = _onnx.session_options(threads)
            so.intra_op_num_threads = so.intra_op_num_threads
            so = _spinning(so, threads, parallel)
        return so

    cpu = ["CPUExecutionProvider"]
    t0 = time.perf_counter()
    per_file = [ort.InferenceSession(m, opts(), providers=cpu) for m in models]
    load_files = time.perf_counter() - t0
    t0 = time.perf_counter()
    one = ort.InferenceSession(merged, opts(), providers=cpu)
    load_merged = time.perf_counter() - t0
    one_spin = ort.InferenceSession(merged, opts(spin=True), providers=cpu)
    one_par = ort.InferenceSession(merged, opts(1, parallel=True), providers=cpu)
    per_file_spin = [ort.InferenceSession(m, opts(spin=True), providers=cpu) for m in models]
    ref = [s.run(None, {"input": x})[0] for s in per_file]
    got = one.run(None, {"input": x})
    assert max(float(np.abs(a - b).max()) for a, b in zip(ref, got)) < 1e-4
    configs = {
        "one file per ratio: T sessions in turn (skdlc)": lambda: [s.run(None, {"input": x}) for s in per_file],
        "one graph with all T variants": lambda: one.run(None, {"input": x}),
        "one file per ratio, with spin-waiting (ORT default)":
            lambda: [s.run(None, {"input": x}) for s in per_file_spin],
        "one graph, with spin-waiting (ORT default)": lambda: one_spin.run(None, {"input": x}),
        "one graph, inter-op parallel (2 branches x 1 thread)": lambda: one_par.run(None, {"input": x}),
    }
    for f in configs.values():  # first runs allocate: not timed
        f()
    times = {k: [] for k in configs}
    cpu_times = {k: [] for k in configs}
    for _ in range(args.layout_reps):  # interleaved, so load changes hit every config alike
        for k, f in configs.items():
            t0, c0 = time.perf_counter(), time.process_time()
            f()
            times[k].append(time.perf_counter() - t0)
            cpu_times[k].append(time.process_time() - c0)
    load.append(L.load_avg())
    rows = {
        k: {"batch_of_64_all_T_s_min": round(min(v), 3), "median_s": round(float(np.median(v)), 3),
            "per_variant_s_min": round(min(v) / len(ratios), 3),
            "cpu_s_min": round(min(cpu_times[k]), 3), "cpu_s_median": round(float(np.median(cpu_times[k])), 3)}
        for k, v in times.items()
    }
    sizes = {"per_file_MB": round(sum(map(len, models)) / 1e6, 1), "merged_MB": round(len(merged) / 1e6, 1),
             "load_per_file_sessions_s": round(load_files, 3), "load_merged_session_s": round(load_merged, 3)}
    _print_table(f"layout: T={len(ratios)}, batch 64, {args.image_size} px, {args.layout_reps} interleaved repeats", rows,
                 ["batch_of_64_all_T_s_min", "median_s", "per_variant_s_min", "cpu_s_min", "cpu_s_median"])
    print("  ", sizes)
    return {"T": len(ratios), "ratios": ratios, "image_size": args.image_size, "rows": rows, "sizes": sizes, "load_avg": load}


# ----------------------------------------------------------------------------- baseline
def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random horizontal flip + random 4-px-padded crop: why features cannot be cached."""
    flip = torch.rand(len(x), generator=g) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    pad = torch.nn.functional.pad(x, (8, 8, 8, 8), mode="reflect")
    i, j = torch.randint(0, 17, (2,), generator=g).tolist()
    return pad[..., i : i + x.shape[-2], j : j + x.shape[-1]].contiguous()


def _finetune_epoch_frozen(bb, X, y, bs=64) -> tuple[float, float]:
    """One epoch of the paper's protocol with a frozen backbone: forward every augmented
    batch through the backbone (torch, channels_last) and take an SGD step of the head.
    (wall, CPU) seconds."""
    g = torch.Generator().manual_seed(0)
    module = bb.module.eval()
    head = torch.nn.Linear(bb.num_features, 10)
    opt = torch.optim.SGD(head.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-5)
    b = L._data.make_batches(X, bb, bs)
    yt = torch.as_tensor(y)
    for p in module.parameters():
        if p.ndim == 4:
            p.data = p.data.contiguous(memory_format=torch.channels_last)
    clock = L.Clock()
    for i in range(len(b)):
        x = _augment(b[i], g).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            z = module(x)
        loss = torch.nn.functional.cross_entropy(head(z), yt[i * bs : i * bs + len(x)])
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = clock.read()
    for p in module.parameters():
        p.data = p.data.contiguous()
    return out


def _finetune_steps_full(bb, X, y, bs=64, steps=2) -> tuple[float, float]:
    """(wall, CPU) seconds per batch of full fine-tuning (forward + backward + SGD on
    every weight), the mean of ``steps`` steps after a warm-up step."""
    import copy

    g = torch.Generator().manual_seed(0)
    module = copy.deepcopy(bb.module).train().to(memory_format=torch.channels_last)
    head = torch.nn.Linear(bb.num_features, 10)
    params = list(module.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9, weight_decay=1e-5)
    b = L._data.make_batches(X, bb, bs)
    yt = torch.as_tensor(y)
    times = []
    for i in range(steps + 1):  # the first step warms up
        x = _augment(b[i % len(b)], g).contiguous(memory_format=torch.channels_last)
        clock = L.Clock()
        loss = torch.nn.functional.cross_entropy(head(module(x)), yt[(i % len(b)) * bs :][: len(x)])
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(clock.read())
    return tuple(float(np.mean([t[k] for t in times[1:]])) for k in (0, 1))


def section_baseline(args) -> dict:
    from skdlc.baselines import EL2NScorer, ForgettingScorer
    from skdlc.tuning import tune_gamma

    X, y = L.images(args.n_baseline)
    bb = L.backbone(args.image_size)
    keep = 0.3
    load = [L.load_avg()]
    # DLC whole pruning: scores (ONNX Runtime) + gamma tuning + FlexRand
    _onnx._GRAPHS.clear()
    clock = L.Clock()
    s = _scorer("onnxruntime", embedding=True, image_size=args.image_size)
    out = s.fit_transform(X, y)
    t_score = clock.read()
    tuned = tune_gamma(out, y, keep_ratio=keep, random_state=0)
    t_tuned = clock.read()
    idx = FlexRandSampler(keep, tuned.best_gamma, random_state=0).fit(out, y).sample_indices_
    t_dlc = clock.read()
    load.append(L.load_avg())
    # skdlc.baselines: frozen embedding once (torch engine), then a linear head
    el2n, *t_el2n = L.timed(EL2NScorer("efficientnet_lite0", device="cpu", image_size=args.image_size).fit, X, y)
    emb = out[:, : -len(s.classes_)]  # the same embedding, so that only the head is timed
    _, *t_forget_head = L.timed(ForgettingScorer("precomputed").fit, emb, y)
    load.append(L.load_avg())
    # the paper's protocol: E = 50 epochs with augmentation (features recomputed every epoch)
    E = 50
    epoch_frozen = _finetune_epoch_frozen(bb, X, y)
    n_batches = -(-len(y) // 64)
    step_full = _finetune_steps_full(bb, X, y)
    load.append(L.load_avg())
    dlc = {"score_s": round(t_score[0], 2), "tune_gamma_s": round(t_tuned[0] - t_score[0], 2),
           "total_s": round(t_dlc[0], 2), "total_cpu_s": round(t_dlc[1], 2),
           "score_cpu_s": round(t_score[1], 2), "best_gamma": tuned.best_gamma, "kept": int(len(idx))}
    emb_w, emb_c = el2n.embedding_time_, None
    rows = {
        "skdlc.baselines.EL2NScorer: embedding once (torch) + 5 epochs of head SGD": {
            "seconds": t_el2n[0], "cpu_s": t_el2n[1], "how": f"measured (embedding {emb_w:.1f} s)"},
        "skdlc.baselines.ForgettingScorer: embedding once (torch) + 50 epochs of head SGD": {
            "seconds": emb_w + t_forget_head[0], "cpu_s": t_el2n[1] * emb_w / t_el2n[0] + t_forget_head[1],
            "how": "head measured + EL2N's embedding time"},
        f"paper protocol, frozen backbone, {E} epochs with augmentation": {
            "seconds": E * epoch_frozen[0], "cpu_s": E * epoch_frozen[1],
            "how": f"1 epoch measured ({epoch_frozen[0]:.1f} s) x {E}"},
        f"paper protocol, full fine-tuning, {E} epochs": {
            "seconds": E * n_batches * step_full[0], "cpu_s": E * n_batches * step_full[1],
            "how": f"2 steps measured ({step_full[0]:.1f} s/step) x {n_batches} batches x {E}"},
    }
    for r in rows.values():
        r["baseline_over_dlc_total"] = round(r["seconds"] / t_dlc[0], 2)
        r["baseline_over_dlc_total_cpu"] = round(r["cpu_s"] / t_dlc[1], 2)
        r["seconds"], r["cpu_s"] = round(r["seconds"], 1), round(r["cpu_s"], 1)
    del emb_c
    print(f"\nbaseline: N={len(y)}, keep {keep}; DLC whole pruning (onnxruntime) {dlc}")
    _print_table("training-based baselines, same data and backbone", rows,
                 ["seconds", "cpu_s", "how", "baseline_over_dlc_total", "baseline_over_dlc_total_cpu"])
    return {"n": len(y), "keep": keep, "dlc": dlc, "rows": rows, "epochs": E, "image_size": args.image_size,
            "load_avg": load}


# ----------------------------------------------------------------------------- scaling
def section_scaling(args) -> dict:
    size = args.scaling_image_size
    bb = L.backbone(size)
    base = {"n": 512, "T": 5, "batch_size": 64}
    grid = [("n", v) for v in (128, 2048)] + [("T", v) for v in (1, 2, 10)] + \
           [("batch_size", v) for v in (16, 128)]
    X_all, y_all = L.images(max(v for k, v in grid if k == "n"))
    load = [L.load_avg()]
    rows = []
    configs = [dict(base)] + [{**base, k: v} for k, v in grid]
    for cfg in configs:
        n, T, bs = cfg["n"], cfg["T"], cfg["batch_size"]
        X, y = X_all[:n], y_all[:n]
        batches = L.predecode(X, bb, bs)
        sess = L.ort_session(bb, batches[0][:2])
        before = L.bare_ort(sess, batches)  # (wall, cpu)
        r = _dlc_run("onnxruntime", X, y, mask_ratios=T, batch_size=bs, image_size=size)
        after = L.bare_ort(sess, batches)  # bracketing the DLC run
        del sess, batches
        bare, bare_cpu = ((before[i] + after[i]) / 2 for i in (0, 1))
        rows.append({**cfg, "dlc_wall_s": r["wall_s"], "bare_pass_s": round(bare, 3),
                     "T_x_bare_s": round(T * bare, 3), "dlc_over_T_bare": round(r["wall_s"] / (T * bare), 3),
                     "dlc_cpu_s": r["cpu_s"], "T_x_bare_cpu_s": round(T * bare_cpu, 3),
                     "dlc_over_T_bare_cpu": round(r["cpu_s"] / (T * bare_cpu), 3),
                     "ms_per_sample_variant": round(1000 * r["wall_s"] / (n * T), 2),
                     "fixed_s": round(r["parts_s"].get("onnx export (trace)", 0)
                                      + r["parts_s"].get("onnx session build (incl. masks)", 0), 2)})
        print("  ", rows[-1])
    load.append(L.load_avg())
    return {"image_size": size, "rows": rows, "load_avg": load}


# ----------------------------------------------------------------------------- memory
def _child_memory(spec: dict) -> dict:
    torch.set_num_threads(2)
    if not spec.get("shared_arena", True):  # ONNX Runtime's default: an arena per session
        from skdlc import _onnx_runtime

        _onnx_runtime._share_cpu_arena = lambda ort: None
    X, y = L.images(spec["n"])
    import skdlc

    skdlc.create_backbone("efficientnet_lite0")  # weights loaded before the baseline
    before = L.rss_mb()
    s = _scorer(spec["engine"], mask_ratios=spec["T"], image_size=spec["image_size"])
    t0 = time.perf_counter()
    s.fit_transform(X, y)
    return {**spec, "rss_before_MB": round(before, 1), "peak_rss_MB": round(L.peak_rss_mb(), 1),
            "wall_s": round(time.perf_counter() - t0, 2)}


def section_memory(args) -> dict:
    specs = [{"engine": "onnxruntime", "n": n, "T": 5} for n in (256, 1024, 4096)]
    specs += [{"engine": "onnxruntime", "n": 1024, "T": t} for t in (1, 2, 10)]
    specs += [{"engine": "torch", "n": 256, "T": t} for t in (1, 5)]
    specs = [{**s, "image_size": args.memory_image_size} for s in specs]
    # the arena shared by all sessions vs one per session, at the backbone's own 224 px
    specs += [{"engine": "onnxruntime", "n": 256, "T": 5, "image_size": 224, "shared_arena": shared}
              for shared in (True, False)]
    rows = []
    for spec in specs:
        out = subprocess.run(
            [sys.executable, __file__, "--child-memory", json.dumps(spec)],
            capture_output=True, text=True, check=True,
        )
        row = json.loads(out.stdout.strip().splitlines()[-1])
        d = 1280
        row["features_MB_T_x_N_x_D"] = round(row["T"] * row["n"] * d * 4 / 2**20, 1)
        row["peak_minus_before_MB"] = round(row["peak_rss_MB"] - row["rss_before_MB"], 1)
        rows.append(row)
        print("  ", row)
    return {"rows": rows, "image_size": args.memory_image_size}


# ----------------------------------------------------------------------------- output
def _fmt(v):
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e-2 and v != 0 else f"{v:,.3f}".rstrip("0").rstrip(".")
    return str(v)


def _print_table(title: str, rows: dict, cols: list[str]) -> None:
    print(f"\n{title}")
    print("| | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for name, r in rows.items():
        print(f"| {name} | " + " | ".join(_fmt(r[c]) for c in cols) + " |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sections", default=",".join(SECTIONS))
    p.add_argument("--image-size", type=int, default=224, help="input px of engines, limit, layout, baseline")
    p.add_argument("--n-engines", type=int, default=256)
    p.add_argument("--n-limit", type=int, default=1024)
    p.add_argument("--n-baseline", type=int, default=256)
    p.add_argument("--layout-reps", type=int, default=3)
    p.add_argument("--scaling-image-size", type=int, default=112)
    p.add_argument("--memory-image-size", type=int, default=64)
    p.add_argument("--report", action="store_true", help="write speed.md and the figures from the JSONs")
    p.add_argument("--child-memory", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child_memory:
        print(json.dumps(_child_memory(json.loads(args.child_memory))))
        return 0
    if args.report:
        import speed_report

        speed_report.write(RESULTS)
        return 0
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    for name in [s.strip() for s in args.sections.split(",") if s.strip()]:
        if name not in SECTIONS:
            p.error(f"unknown section {name!r}; choose from {SECTIONS}")
        t0 = time.perf_counter()
        data = globals()[f"section_{name}"](args)
        data["section_wall_s"] = round(time.perf_counter() - t0, 1)
        _save(name, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
