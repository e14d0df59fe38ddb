"""Helpers shared by the ``skdlc`` commands: reading labelled images, checking them (cheaply: decoding is the scoring pass's),
parsing option values and writing outputs atomically."""

from __future__ import annotations

import math
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

from . import CLIError

__all__ = [
    "IMAGE_EXTENSIONS",
    "LabelledImages",
    "read_labelled_images",
    "check_images",
    "drop_unreadable",
    "scorer_on_error",
    "parse_keep",
    "parse_image_size",
    "check_out_dir",
    "check_out_file",
    "parse_gamma",
    "parse_mask_ratios",
    "parse_fractions",
    "parse_device",
    "check_cache_dir",
    "check_num_workers",
    "check_backend_options",
    "check_chunk_size",
    "check_gamma_strategy",
    "check_gamma_search",
    "check_out_outside_data",
    "write_csv",
    "write_json",
]

# Reading lives in skdlc.datasets (public); the CLI turns its errors into one-line ones.
from ..datasets import IMAGE_EXTENSIONS, LabelledImages  # noqa: E402
from .._outputs import write_csv, write_json  # noqa: E402,F401  (the commands' writers)


def read_labelled_images(data: str | os.PathLike) -> LabelledImages:
    """An image folder (one subfolder per class) or a CSV manifest (path,label)."""
    from ..datasets import read_labelled_images as _read

    try:
        return _read(data)
    except (ValueError, FileNotFoundError) as exc:
        raise CLIError(str(exc)) from None


# ----------------------------------------------------------------------- checking
def _check_one(path: str) -> str | None:
    """None if the file is there and starts like an image, else the reason it does not.

    Cheap: a stat and the header (format, size), never the pixels. The pixels are
    decoded once, by the scoring pass, which reports a file that breaks there (a
    truncated one) the same way (see :func:`drop_unreadable`).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        st = os.stat(path)
    except OSError:
        return "no such file"
    if not stat.S_ISREG(st.st_mode):
        return "no such file"
    if st.st_size == 0:
        return "not a readable image (empty file)"
    try:
        with Image.open(path) as im:  # parses the header only
            im.size  # noqa: B018
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError,
            ValueError, EOFError) as exc:
        return f"not a readable image ({type(exc).__name__}: {exc})"
    return None


def _unreadable_error(path: str, reason: str, n_more: int) -> CLIError:
    more = f" ({n_more} more unreadable file(s))" if n_more else ""
    return CLIError(f"cannot read image {path!r}: {reason}{more}; fix or remove it, or pass "
                    "--on-error skip to leave unreadable images out")


def _leave_out(data: LabelledImages, ok: np.ndarray, bad: list) -> LabelledImages:
    if not ok.any():
        raise CLIError(f"none of the {len(data)} images in {data.source} could be read "
                       f"(e.g. {bad[0][0]!r}: {bad[0][1]})")
    out = data.subset(ok)
    out.skipped = list(data.skipped) + bad
    lost = sorted(set(data.labels.tolist()) - set(out.labels.tolist()))
    if lost:
        out.notes.append(f"class(es) with no readable image left out: {', '.join(lost)}")
    return out


def check_images(
    data: LabelledImages, on_error: str = "fail", *, verbose: bool = False, workers: int = 4
) -> LabelledImages:
    """Check every image cheaply before scoring (there, readable, an image header).

    ``on_error="fail"`` raises :class:`CLIError` naming the first bad file (and how
    many there are); ``"skip"`` returns the others with ``skipped`` filled in. No pixel
    is decoded here: a file that breaks only when decoded is reported by the scoring
    pass (an :class:`~skdlc.datasets.ImageReadError` with ``fail``; with ``skip``, the scorer
    leaves it out and :func:`drop_unreadable` lists it).
    """
    from tqdm.auto import tqdm

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        reasons = list(
            tqdm(pool.map(_check_one, data.paths, chunksize=64), total=len(data),
                 desc="checking images", unit="img", disable=not verbose, leave=False)
        )
    bad = [(p, r) for p, r in zip(data.paths, reasons) if r is not None]
    if not bad:
        return data
    if on_error == "fail":
        return_path, reason = bad[0]
        raise _unreadable_error(return_path, reason, len(bad) - 1)
    return _leave_out(data, np.array([r is None for r in reasons]), bad)


def scorer_on_error(on_error: str) -> str:
    """The scorer's ``on_error`` for the command line's ``--on-error``."""
    return "skip" if on_error == "skip" else "raise"


def drop_unreadable(data: LabelledImages, rows) -> LabelledImages:
    """Leave out the rows the scoring pass could not decode (``--on-error skip``).

    ``rows``: what :func:`skdlc.prune` left out (``PruneResult.unreadable``, from the
    scorer's ``unreadable_``). They join ``data.skipped`` with the reason (each bad
    file is read once more to say why), exactly as if :func:`check_images` had found them.
    """
    from .._data import read_error

    rows = np.asarray(rows, dtype=np.intp)
    if rows.size == 0:
        return data
    bad = [(data.paths[i], read_error(data.paths, i).reason) for i in rows]
    ok = np.ones(len(data), dtype=bool)
    ok[rows] = False
    return _leave_out(data, ok, bad)


# ------------------------------------------------------------------------ parsing
def _float(text: str, what: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise CLIError(f"{what} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise CLIError(f"{what} must be finite, got {text!r}")
    return value


def parse_keep(text: str, what: str = "--keep") -> float:
    """A keep ratio: a fraction in (0, 1] (``0.3``) or a percentage in (0, 100] (``30%``).

    A bare number above 1 is refused rather than guessed at: ``1.5`` could mean 1.5%
    or 150%, so the message says both ways of writing a keep ratio.
    """
    raw = str(text).strip()
    if raw.endswith("%"):
        value = _float(raw[:-1].strip(), what)
        if not 0 < value <= 100:
            raise CLIError(f"{what} as a percentage must be in (0%, 100%], got {raw}")
        return value / 100.0
    value = _float(raw, what)
    if not 0 < value <= 1:
        raise CLIError(
            f"{what} must be a fraction in (0, 1] (e.g. 0.3) or a percentage (e.g. 30%), got {raw}"
        )
    return value


def parse_image_size(text: str | None, what: str = "--image-size") -> int | None:
    """A square input size in pixels, at least 8 (None: the backbone's own)."""
    if text is None:
        return None
    value = parse_positive_int(text, what)
    if value < 8:
        raise CLIError(f"{what} must be at least 8 pixels, got {value}")
    return value


def parse_gamma(text: str) -> float | str:
    """``"auto"`` or a quantile in (0, 1)."""
    if str(text).strip().lower() == "auto":
        return "auto"
    value = _float(text, "--gamma")
    if not 0 < value < 1:
        raise CLIError(f"--gamma must be 'auto' or a number in (0, 1), got {text}")
    return value


def parse_mask_ratios(
    text: str, keywords: Sequence[str] = ("auto", "calibrated", "cumulative"), what: str = "--mask-ratios"
) -> int | str | list[float]:
    """``5`` (that many ratios from the paper's grid), ``auto``, ``calibrated``,
    ``cumulative`` (the official code's schedule, with global masking) or ``0,0.3,0.6``.

    ``0`` means the unmasked model alone (the ratio list ``[0.0]``, as ``1`` does), in
    every command. ``keywords``: the named paths the command takes.
    """
    raw = str(text).strip().lower()
    if raw in keywords:
        return raw
    named = "".join(f"'{k}', " for k in keywords)
    if "," not in raw and "." not in raw:
        try:
            n = int(raw)
        except ValueError:
            raise CLIError(f"{what} must be a count, {named}or a comma list of ratios in [0, 1) "
                           f"(e.g. 0,0.1,0.2), got {text!r}") from None
        if n == 0:
            return [0.0]  # the unmasked model alone
        if not 1 <= n <= 50:
            raise CLIError(f"{what} count must be between 1 and 50 (0: the unmasked model alone), got {n}")
        return n
    ratios = [_float(t, what) for t in raw.split(",") if t.strip()]
    if not ratios or not all(0 <= r < 1 for r in ratios):
        raise CLIError(f"{what} values must be ratios in [0, 1) (e.g. 0,0.1,0.2), got {text!r}")
    return ratios


def parse_fractions(text: str, what: str) -> list[float]:
    """A comma list of keep ratios, each in (0, 1]."""
    values = [parse_keep(t.strip(), what) for t in str(text).split(",") if t.strip()]
    if not values:
        raise CLIError(f"{what} needs at least one value")
    return sorted(set(values))


def parse_positive_int(text: str, what: str) -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise CLIError(f"{what} must be a whole number, got {text!r}") from None
    if value < 1:
        raise CLIError(f"{what} must be at least 1, got {value}")
    return value


# ------------------------------------------------------------- option checks
# Each runs before any reading or scoring, and names the option it refuses.

_DEVICE_TYPES = ("cpu", "cuda", "mps")


def parse_device(text: str, option: str = "--device") -> str:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``, checked against this machine."""
    import torch

    raw = str(text).strip()
    if raw.lower() == "auto":
        return "auto"
    try:
        dev = torch.device(raw)
    except (RuntimeError, ValueError, TypeError):
        raise CLIError(f"{option} {raw!r} is not a device; use 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type not in _DEVICE_TYPES:
        raise CLIError(f"{option} {raw!r}: skdlc runs on 'cpu', 'cuda', 'cuda:N' or 'mps' (or 'auto')")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise CLIError(f"{option} {raw}: CUDA is not available on this machine; use --device cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise CLIError(f"{option} {raw}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                           f"numbered from 0")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise CLIError(f"{option} {raw}: MPS is not available on this machine; use --device cpu or auto")
    return raw


def check_cache_dir(path: str | os.PathLike | None, option: str = "--cache") -> Path | None:
    """A cache folder that exists as a folder (or can be created) and can be written."""
    from .._io import check_writable_dir

    if path is None:
        return None
    folder = Path(os.path.expanduser(os.fspath(path)))
    if folder.exists() and not folder.is_dir():
        raise CLIError(f"{option} {path} is a file, not a folder; give a folder for the cache "
                       "(it is created if needed)")
    try:
        check_writable_dir(folder, parent=False)
    except OSError as exc:
        raise CLIError(f"{option} {path} cannot be used as a cache folder: "
                       f"{exc.strerror or exc}") from None
    return folder


def check_num_workers(value: int | None, option: str = "--num-workers") -> int | None:
    """None (automatic) or a count of decoding processes, 0 meaning the main process."""
    if value is not None and value < 0:
        raise CLIError(f"{option} must be 0 (decode in the main process) or more, got {value}")
    return value


def check_backend_options(backend: str, address: str | None, num_gpus: float | None) -> None:
    """``--address`` and ``--num-gpus`` are Ray settings: refused without ``--backend ray``."""
    given = [opt for opt, value in (("--address", address), ("--num-gpus", num_gpus)) if value is not None]
    if given and backend != "ray":
        raise CLIError(f"{' and '.join(given)} appl{'y' if len(given) > 1 else 'ies'} to --backend ray "
                       f"only; add --backend ray or drop {' and '.join(given)}")
    if num_gpus is not None and not (math.isfinite(num_gpus) and num_gpus >= 0):
        raise CLIError(f"--num-gpus must be 0 or more (GPUs per Ray actor), got {num_gpus}")


def check_chunk_size(chunk_size: str | None, cache: str | None) -> None:
    """``--chunk-size`` sizes the resumable chunks of ``--cache``; alone it would do nothing."""
    if chunk_size is not None and cache is None:
        raise CLIError("--chunk-size sets the resumable chunks of --cache, and there is no --cache: "
                       "add --cache DIR or drop --chunk-size")


def check_gamma_strategy(gamma: str | None, strategy: str) -> None:
    """A ``--gamma`` given with a strategy that does not use it is refused, not ignored."""
    from ..tuning import GAMMA_STRATEGIES

    if gamma is not None and strategy not in GAMMA_STRATEGIES + ("auto",):
        raise CLIError(f"--gamma {gamma}: --strategy {strategy} does not use gamma (only "
                       f"{' and '.join(GAMMA_STRATEGIES)} split a class at gamma); drop --gamma")


def check_gamma_search(labels: np.ndarray, gamma, strategy: str, keep: float) -> None:
    """``--gamma auto`` with an explicit strategy holds out 20% of every class; refuse
    data where no class can spare a row (before scoring, not after)."""
    from ..tuning import GAMMA_STRATEGIES, stratified_split

    if gamma != "auto" or strategy not in GAMMA_STRATEGIES or keep >= 1 or len(labels) == 0:
        return

    _, val = stratified_split(labels, 0.2, random_state=0)
    if val.size == 0:
        largest = int(np.unique(labels, return_counts=True)[1].max())
        raise CLIError(f"--gamma auto with --strategy {strategy} tunes gamma on 20% of every class "
                       f"held out, and no class has the 3 images that needs (the largest has {largest}); "
                       "pass a numeric --gamma (e.g. --gamma 0.5), or --strategy auto")


def check_out_outside_data(out: Path, data: str | os.PathLike, names: Sequence[str] = (), *,
                           default: bool = False, option: str = "--out") -> None:
    """Refuse an output folder inside an image-folder DATA (the next run would read the
    outputs as a class), and a DATA that is one of the outputs this run replaces."""
    out_r = Path(os.path.realpath(out))
    data_r = Path(os.path.realpath(os.path.expanduser(os.fspath(data))))
    what = (f"the default {option} {out} (<DATA name>_pruned in the current folder)" if default
            else f"{option} {out}")
    if data_r.is_dir() and (out_r == data_r or data_r in out_r.parents):
        where = "is DATA itself" if out_r == data_r else f"is inside DATA {data_r}"
        hint = " (or run from outside DATA)" if default else ""
        raise CLIError(f"{what} {where}: outputs written there would be read as images by the next "
                       f"run; write them outside DATA, e.g. --out {data_r.parent / (data_r.name + '_pruned')}"
                       f"{hint}")
    for name in names:
        target = out_r / name
        if data_r == target or target in data_r.parents:
            raise CLIError(f"DATA {data} is {target}, which this run writes over in {option} {out}; "
                           "choose another --out")


def check_out_dir(out: Path, option: str = "--out") -> None:
    """Refuse an output folder that cannot be created and written, naming the option.

    Runs before any model work; leaves nothing behind (see ``check_writable_dir``).
    """
    from .._io import check_writable_dir

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CLIError(f"{option} {out} exists and is not a folder")
    try:
        check_writable_dir(out)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise CLIError(f"{option} {out} cannot be written: {reason}") from None


def check_out_file(out: Path, option: str = "--out") -> None:
    """Refuse an output file path that cannot be written (a folder, an unwritable parent)."""
    from .._io import check_writable_dir

    out = Path(out)
    if out.is_dir() or str(out).endswith(os.sep):
        raise CLIError(f"{option} {out} is a folder; give the path of a file to write")
    try:
        check_writable_dir(out.parent, parent=False)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise CLIError(f"{option} {out}: its folder cannot be written: {reason}") from None
