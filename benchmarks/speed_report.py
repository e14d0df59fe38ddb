"""Write benchmarks/results/speed.md and its figures from the speed_<section>.json files.

    python benchmarks/speed.py --report      (or: python benchmarks/speed_report.py)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _load(results: Path) -> dict:
    out = {}
    for f in sorted(results.glob("speed_*.json")):
        d = json.loads(f.read_text())
        out[d["section"]] = d
    return out


def _f(v, digits=3):
    if isinstance(v, float):
        if v != 0 and abs(v) < 10 ** -digits:
            return f"{v:.1e}"
        return f"{v:,.{digits}f}".rstrip("0").rstrip(".")
    return str(v)


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_f(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _load_note(d: dict) -> str:
    la = d.get("load_avg") or []
    flat = [x[0] for x in la if x]
    if not flat:
        return ""
    return f"1-min load average during the run: {min(flat):g} to {max(flat):g} on {d['env']['usable_cores']} cores."


def _plot_scaling(d: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = d["rows"]
    base = rows[0]
    keys = ("n", "T", "batch_size")
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, key, label in zip(axes, keys, ("N samples", "T variants", "batch size")):
        pts: dict = {}
        for r in rows:
            if all(r[k] == base[k] for k in keys if k != key):
                bare = r.get("T_x_bare_cpu_s", r["dlc_cpu_s"] / r["dlc_over_T_bare_cpu"])
                pts.setdefault(r[key], []).append((r["dlc_cpu_s"], bare))
        xs = sorted(pts)
        mean = lambda v, i: sum(p[i] for p in v) / len(v)  # noqa: E731 - repeated base config
        ax.plot(xs, [mean(pts[x], 0) for x in xs], "o-", label="DLC fit_transform")
        ax.plot(xs, [mean(pts[x], 1) for x in xs], "s--", label="T x bare forward pass")
        ax.set_xlabel(label)
        ax.set_ylabel("CPU seconds")
        if key != "T":
            ax.set_xscale("log", base=2)
        if key == "n":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.set_title(f"{label} (others: N={base['n']}, T={base['T']}, batch {base['batch_size']})", fontsize=9)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"DLC cost growth (CPU seconds), ONNX Runtime, EfficientNet-Lite0 at {d['image_size']} px, "
                 "CIFAR-10", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_memory(d: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in d["rows"] if r["image_size"] == d["image_size"]]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    ort_n = sorted((r for r in rows if r["engine"] == "onnxruntime" and r["T"] == 5), key=lambda r: r["n"])
    ax = axes[0]
    ax.plot([r["n"] for r in ort_n], [r["peak_minus_before_MB"] for r in ort_n], "o-", label="peak RSS - RSS before scoring")
    ax.plot([r["n"] for r in ort_n], [r["features_MB_T_x_N_x_D"] for r in ort_n], "s--", label="T x N x D float32 features")
    ax.set_xlabel("N samples (T = 5)")
    ax.set_ylabel("MB")
    ax.set_xscale("log", base=2)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax = axes[1]
    for engine, mark in (("onnxruntime", "o-"), ("torch", "^-")):
        pts = [r for r in rows if r["engine"] == engine]
        n = 1024 if engine == "onnxruntime" else min((r["n"] for r in pts), default=0)
        pts = sorted((r for r in pts if r["n"] == n), key=lambda r: r["T"])
        if pts:
            ax.plot([r["T"] for r in pts], [r["peak_minus_before_MB"] for r in pts], mark, label=f"{engine} (N={n})")
    pts = sorted((r for r in rows if r["engine"] == "onnxruntime" and r["n"] == 1024), key=lambda r: r["T"])
    ax.plot([r["T"] for r in pts], [r["features_MB_T_x_N_x_D"] for r in pts], "s--", label="T x N x D features (N=1024)")
    ax.set_xlabel("T variants")
    ax.set_ylabel("MB")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(f"Peak memory of a fresh process, EfficientNet-Lite0 at {d['image_size']} px", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(results: Path = RESULTS) -> Path:
    S = _load(results)
    any_d = next(iter(S.values()))
    env = any_d["env"]
    loads = [x[0] for d in S.values() for x in d.get("load_avg") or [] if x]
    lo, hi = (min(loads), max(loads)) if loads else (float("nan"), float("nan"))
    md = [
        "# Speed: DLC near its physical limit, ONNX Runtime, and DLC against training",
        "",
        "Produced by `benchmarks/speed.py` (one section per command, listed under each table;",
        "`python benchmarks/speed.py --report` wrote this page and the figures from the JSON",
        "files beside it). Backbone: EfficientNet-Lite0 with its ImageNet weights",
        "(`skdlc.create_backbone(\"efficientnet_lite0\")`, offline); data: Fashion-MNIST test",
        "images (`skdlc.datasets.load_fashion_mnist`, 28 px, resized by the backbone's",
        "preprocessing; pages written before the bigbench archive left the registry used",
        "CIFAR-10 test images, 32 px); T = 5 ratios drawn from the paper's grid with `random_state=0`.",
        "",
        f"Machine: {env['cpu']}, {env['usable_cores']} usable cores, no GPU; torch {env['torch']},",
        f"onnxruntime {env['onnxruntime']}, onnx {env['onnx']}, Python {env['python']}.",
        "**No GPU machine was lent to this session**, so the CUDA paths (CUDAExecutionProvider",
        "with IO binding, torch autocast) are implemented but not benchmarked here.",
        "",
        "**Shared machine.** The 2 cores were shared with other engineers' jobs during every run",
        f"(1-minute load averages of {lo:g} to {hi:g} were recorded), so absolute seconds are",
        "inflated and wall times noisy: a run with a decoding worker process also gets a larger",
        "share of the contended cores than a bare pass. Every ratio is therefore given in wall",
        "time and in CPU time (this process and its finished children, i.e. the work done);",
        "CPU time is the robust one here, and the status column reads it.",
        "",
    ]
    # ------------------------------------------------------------------ headline
    head = []
    if "limit" in S:
        r, n = S["limit"]["row"], S["limit"]["n"]
        ok = lambda v: "met" if v <= 1.10 else "not met"  # noqa: E731
        head.append([f"DLC / (T x bare model-only forward pass), ONNX Runtime, N={n}: wall (CPU)", "<= 1.10",
                     f"{r['dlc_over_T_bare']} ({r['dlc_over_T_bare_cpu']})", ok(r["dlc_over_T_bare_cpu"])])
        head.append([f"DLC / (T x bare pass + decoding the data once), ONNX Runtime, N={n}: wall (CPU)",
                     "(context)", f"{r['dlc_over_limit']} ({r['dlc_over_limit_cpu']})", ""])
    if "engines" in S:
        rows = S["engines"]["rows"]
        for k in ("torch (channels_last)", "torch eager"):
            if k in rows:
                v = rows[k]
                head.append([f"DLC / (T x bare forward pass), {k}, N={S['engines']['n']}: wall (CPU)", "<= 1.10",
                             f"{v['dlc_over_T_bare']} ({v['dlc_over_T_bare_cpu']})",
                             "met" if v["dlc_over_T_bare_cpu"] <= 1.10 else "not met"])
        o = rows["onnxruntime"]
        head.append(["ONNX Runtime engine vs torch eager, DLC time, same scores: wall (CPU)", ">= 2x",
                     f"{o['speedup_vs_torch_eager']}x ({o['speedup_vs_torch_eager_cpu']}x); scores within "
                     f"{o['scores_max_rel_diff_vs_torch_eager']:.1e} relative, Spearman {o['spearman_vs_torch_eager']}",
                     "met" if o["speedup_vs_torch_eager_cpu"] >= 2 else "not met"])
        if "torch (channels_last)" in rows:
            c = rows["torch (channels_last)"]
            head.append(["ONNX Runtime vs the torch engine as it is now (channels_last)", "",
                         f"{round(c['dlc_wall_s'] / o['dlc_wall_s'], 2)}x", ""])
    if "baseline" in S:
        b = S["baseline"]
        for name, r in b["rows"].items():
            head.append([f"training-based baseline / DLC whole pruning: {name}: wall (CPU)", ">= 50x",
                         f"{r['baseline_over_dlc_total']}x ({r['baseline_over_dlc_total_cpu']}x)",
                         "met" if r["baseline_over_dlc_total_cpu"] >= 50 else "not met"])
    if head:
        md += ["## Results against the targets of issue 4", "", _table(["measure", "target", "measured", ""], head), ""]
    # ------------------------------------------------------------------ sections
    if "engines" in S:
        d = S["engines"]
        md += [
            "## Engines: the same scores with torch eager, torch (channels_last) and ONNX Runtime", "",
            f"N = {d['n']}, T = {d['T']}, batch {d['batch_size']}, {d['image_size']} px. *bare pass*: one unmasked",
            "forward pass over the same data, pre-decoded, with the same engine (torch: `inference_mode`,",
            "same memory format; ONNX Runtime: the same session options). *DLC*: `fit_transform` from",
            "the uint8 images, cold (the ONNX export is traced, or read from the disk cache, inside it).", "",
            _table(["engine", "DLC wall s", "bare pass s", "DLC / (T x bare)", "speed-up vs torch eager",
                    "DLC CPU s", "bare pass CPU s", "DLC / (T x bare), CPU", "speed-up, CPU",
                    "max rel. score diff vs torch eager", "Spearman vs torch eager"],
                   [[k, r["dlc_wall_s"], r["bare_pass_s"], r["dlc_over_T_bare"], r["speedup_vs_torch_eager"],
                     r["dlc_cpu_s"], r["bare_pass_cpu_s"], r["dlc_over_T_bare_cpu"], r["speedup_vs_torch_eager_cpu"],
                     r["scores_max_rel_diff_vs_torch_eager"], r["spearman_vs_torch_eager"]] for k, r in d["rows"].items()]),
            "",
            "Where the CPU time goes (seconds; a session build includes its masks; with a decoding",
            "worker process, decoding runs beside the model and is not in the main process's CPU time):", "",
            _table(["engine", "parts (CPU s)"], [[k, ", ".join(f"{p} {v:g}" for p, v in r["parts_cpu_s"].items())]
                                                  for k, r in d["rows"].items()]),
            "",
        ]
        if "nchw_bare" in d:
            nb = d["nchw_bare"]
            e, c = nb["torch eager, NCHW batches"], nb["torch channels_last, NCHW batches"]
            md += [
                "The two torch rows agree because batches made from uint8 images (arrays or files) are",
                "channels-last already. What `channels_last` is for, batches that arrive NCHW (float",
                f"arrays, datasets of CHW tensors): one bare pass takes {e['bare_pass_cpu_s']:g} CPU s eager and "
                f"{c['bare_pass_cpu_s']:g} CPU s channels-last ({e['bare_pass_cpu_s'] / c['bare_pass_cpu_s']:.2f}x).",
                "",
            ]
        md += [_load_note(d), f"Command: `{d['env']['command']}`", ""]
    if "limit" in S:
        d, r = S["limit"], S["limit"]["row"]
        md += [
            "## The physical limit: DLC vs T bare forward passes (ONNX Runtime)", "",
            f"N = {d['n']}, T = {d['T']}, batch {d['batch_size']}, {d['image_size']} px. The bare passes (one",
            "unmasked pass over pre-decoded batches; and a plain loop that decodes each batch and runs it",
            "once) are measured before and after the DLC run and averaged. *limit* = T bare passes +",
            "decoding the data once: the least any method can spend on T passes over data that must be",
            "decoded (DLC decodes each batch once for all T variants).", "",
            _table(["", "DLC s", "bare pass s", "decode + bare pass s", "DLC / (T x bare)", "DLC / limit",
                    "DLC / (T x (decode + bare))"],
                   [["wall", r["dlc_wall_s"], r["bare_pass_s"], r["decode_plus_bare_pass_s"], r["dlc_over_T_bare"],
                     r["dlc_over_limit"], r["dlc_over_T_decode_plus_bare"]],
                    ["CPU", r["dlc_cpu_s"], r["bare_pass_cpu_s"], r["decode_plus_bare_pass_cpu_s"],
                     r["dlc_over_T_bare_cpu"], r["dlc_over_limit_cpu"], r["dlc_over_T_decode_plus_bare_cpu"]]]),
            "",
            "Parts of the DLC run, CPU s (main process): "
            + ", ".join(f"{p} {v:g}" for p, v in r["parts_cpu_s"].items()) + ".",
            f"The export was read from the on-disk cache; the first run on a machine also traces the "
            f"backbone: {r['first_run_trace_s']} s wall ({r['first_run_trace_cpu_s']} s CPU).",
            "", _load_note(d), f"Command: `{d['env']['command']}`", "",
        ]
    if "layout" in S:
        d = S["layout"]
        md += [
            "## Export layout: one file per ratio vs one graph with all T variants", "",
            f"One batch of 64 at {d.get('image_size', 224)} px through all T = {d['T']} variants, ONNX Runtime CPU, "
            "interleaved repeats (wall and process CPU seconds).", "",
            _table(["layout", "wall s (min)", "wall s (median)", "CPU s (min)", "CPU s (median)"],
                   [[k, r["batch_of_64_all_T_s_min"], r["median_s"], r.get("cpu_s_min", ""), r.get("cpu_s_median", "")]
                    for k, r in d["rows"].items()]),
            "",
            f"Files: {d['sizes']['per_file_MB']} MB as T files, {d['sizes']['merged_MB']} MB as one graph; "
            f"loading T sessions {d['sizes']['load_per_file_sessions_s']} s, the merged one "
            f"{d['sizes']['load_merged_session_s']} s.", "",
            "Decision: **one file per ratio**. Both layouts do the same work (equal CPU seconds; the wall",
            "times differ within the noise of the shared machine), and inter-op parallelism over the",
            "branches of one graph is clearly slower. Separate files let a reader load only the",
            "variants it needs, run them one at a time when memory is short, and grow the path one",
            "ratio at a time (`mask_ratios=\"auto\"`). Spin-waiting thread pools (ONNX Runtime's",
            "default) cost CPU with T sessions alternating on 2 cores, so skdlc turns spinning off.",
            "", _load_note(d), f"Command: `{d['env']['command']}`", "",
        ]
    if "baseline" in S:
        d = S["baseline"]
        dl = d["dlc"]
        md += [
            "## Whole pruning vs training-based baselines", "",
            f"N = {d['n']} images, {d.get('image_size', 224)} px, keep {d['keep']}. DLC whole pruning = scores with ONNX Runtime",
            f"(`embedding=True`) {dl['score_s']} s + gamma tuning (`skdlc.tuning.tune_gamma`, 19",
            f"candidates x 3 draws, logistic-regression probe) {dl['tune_gamma_s']} s + FlexRand = **{dl['total_s']} s**.", "",
            f"In CPU time: scores {dl['score_cpu_s']} s, whole pruning {dl['total_cpu_s']} s.", "",
            _table(["baseline", "wall s", "CPU s", "how", "baseline / DLC, wall", "baseline / DLC, CPU"],
                   [[k, r["seconds"], r["cpu_s"], r["how"], r["baseline_over_dlc_total"], r["baseline_over_dlc_total_cpu"]]
                    for k, r in d["rows"].items()]),
            "",
            "How to read this: the training-based scorers of `skdlc.baselines` embed the data once",
            "with the frozen backbone and train only a linear head on the cached embedding, which",
            "needs one forward pass; DLC needs T = 5, so DLC is *not* faster than them, and the",
            "50x target does not hold against them. The paper's baselines (and its 35x) fine-tune",
            "on augmented data for the whole schedule, which recomputes the features every epoch;",
            f"against that protocol ({d['epochs']} epochs, measured per epoch / per step and multiplied,",
            "as marked) DLC's whole pruning is the figure in the last column.",
            "", _load_note(d), f"Command: `{d['env']['command']}`", "",
        ]
    if "scaling" in S:
        d = S["scaling"]
        _plot_scaling(d, results / "speed_scaling.png")
        md += [
            "## How the cost grows with N, T and batch size", "",
            f"ONNX Runtime, {d['image_size']} px (smaller than 224 px to fit a sweep in minutes on 2 shared",
            "cores; the shape of the growth is what this shows). One factor varied at a time around",
            "N = 512, T = 5, batch 64. *fixed s*: ONNX export + session builds (masks included).", "",
            _table(["N", "T", "batch", "DLC wall s", "T x bare s", "DLC / (T x bare)", "DLC CPU s",
                    "DLC / (T x bare), CPU", "ms per sample x variant", "fixed s"],
                   [[r["n"], r["T"], r["batch_size"], r["dlc_wall_s"], r["T_x_bare_s"], r["dlc_over_T_bare"],
                     r["dlc_cpu_s"], r["dlc_over_T_bare_cpu"], r["ms_per_sample_variant"], r["fixed_s"]]
                    for r in d["rows"]]),
            "", "![cost growth](speed_scaling.png)", "", _load_note(d), f"Command: `{d['env']['command']}`", "",
        ]
    if "memory" in S:
        d = S["memory"]
        _plot_memory(d, results / "speed_memory.png")
        md += [
            "## Peak memory vs N and T", "",
            f"A fresh process per row (EfficientNet-Lite0 at {d['image_size']} px, CIFAR-10 uint8 in memory);",
            "*before*: resident memory once torch, the backbone and the data are loaded; *peak*: the",
            "process's high-water mark after `fit_transform`.", "",
            _table(["engine", "px", "N", "T", "RSS before MB", "peak RSS MB", "peak - before MB",
                    "T x N x D features MB", "wall s"],
                   [[r["engine"] + ("" if r.get("shared_arena", True) else ", an arena per session (ORT default)"),
                     r["image_size"], r["n"], r["T"], r["rss_before_MB"], r["peak_rss_MB"], r["peak_minus_before_MB"],
                     r["features_MB_T_x_N_x_D"], r["wall_s"]] for r in d["rows"]]),
            "",
            "Peak memory is flat in N apart from the features (T x N x D float32 while the T",
            "variants run batch by batch, plus float64 temporaries of one variant's prototypes and",
            "losses). In T, ONNX Runtime adds one session per variant (its weights and their",
            "prepacked copy, ~40 MB here), never T copies of the data or of the activations: all",
            "sessions share one CPU arena (the last two rows: ONNX Runtime's default, an arena per",
            "session, keeps each session's peak activations, T times over). The torch engine masks",
            "in place or keeps T masked weight copies (13 MB each) within a 2 GiB budget; beyond",
            "it, both engines run one variant at a time.",
            "", "![peak memory](speed_memory.png)", "", f"Command: `{d['env']['command']}`", "",
        ]
    out = results / "speed.md"
    out.write_text("\n".join(md).rstrip() + "\n")
    print(f"-> {out}")
    return out


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS)
