"""The broken-pair estimate, select_instructions(strategy="auto") and what the CLI writes.

Synthetic scores for the rule (fast); the CLI test runs a tiny random Llama with the
scores replaced by planted ones, so the flagged records are known.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from skdlc import BrokenPairs, estimate_broken_share, select_instructions


def _planted(n_clean=400, n_broken=100, seed=0):
    rng = np.random.default_rng(seed)
    scores = np.r_[rng.lognormal(0.3, 0.35, n_clean), rng.lognormal(1.8, 0.25, n_broken)]
    order = rng.permutation(scores.size)
    return scores[order], order >= n_clean


@pytest.mark.parametrize("n_broken", [50, 100])
def test_estimate_finds_planted_share(n_broken):
    scores, broken = _planted(n_broken=n_broken)
    est = estimate_broken_share(scores)
    assert isinstance(est, BrokenPairs)
    assert abs(est.share - broken.mean()) < 0.03
    assert est.flagged.sum() == est.n_flagged == int(round(est.share * scores.size))
    # the flags are a hardest tail: every flagged score is above every unflagged one
    assert scores[est.flagged].min() > scores[~est.flagged].max()
    recall = (est.flagged & broken).sum() / broken.sum()
    precision = (est.flagged & broken).sum() / est.flagged.sum()
    assert recall > 0.9 and precision > 0.9
    idx = est.indices(scores)
    assert (np.diff(scores[idx]) <= 0).all() and set(idx) == set(np.flatnonzero(est.flagged))
    d = est.to_dict()
    assert d["n_flagged"] == est.n_flagged and d["groups"]["all"]["fitted"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_estimate_flags_nothing_on_one_mode(seed):
    rng = np.random.default_rng(seed)
    for scores in (rng.lognormal(0.5, 0.4, 600), rng.gamma(4.0, 0.5, 600), np.full(50, 2.0),
                   rng.lognormal(0.0, 1.0, 10)):
        est = estimate_broken_share(scores)
        assert est.share == 0.0 and est.n_flagged == 0
        assert est.groups["all"]["threshold"] is None


def test_estimate_per_group_and_errors():
    a, broken_a = _planted(200, 50, seed=1)
    b = np.random.default_rng(2).lognormal(2.0, 0.3, 250)  # another task, higher losses, clean
    scores = np.r_[a, b]
    groups = ["a"] * a.size + ["b"] * b.size
    est = estimate_broken_share(scores, groups=groups)
    assert est.groups["b"]["share"] == 0.0 and est.flagged[a.size:].sum() == 0
    assert abs(est.groups["a"]["share"] - 0.2) < 0.04
    assert est.groups["a"]["n"] == 250
    with pytest.raises(ValueError, match="one entry per score"):
        estimate_broken_share(scores, groups=groups[:-1])
    with pytest.raises(ValueError, match="finite"):
        estimate_broken_share(np.r_[scores, np.nan])
    with pytest.raises(ValueError, match="max_share"):
        estimate_broken_share(scores, max_share=2)


def test_auto_leaves_out_the_flagged_and_is_random_otherwise():
    scores, broken = _planted()
    est = estimate_broken_share(scores)
    idx = select_instructions(scores, 0.5, random_state=0)  # the default strategy
    assert len(idx) == 250 and not est.flagged[idx].any()
    np.testing.assert_array_equal(idx, select_instructions(scores, 0.5, strategy="auto",
                                                           random_state=0))
    # keep more than the unflagged: all of them, the rest drawn from the flagged
    idx = select_instructions(scores, 0.9, random_state=0)
    assert len(idx) == 450 and (~est.flagged[idx]).sum() == (~est.flagged).sum()
    assert len(np.unique(idx)) == 450
    # nothing flagged: exactly the random strategy with the same seed
    clean = np.random.default_rng(3).lognormal(0.5, 0.4, 300)
    assert estimate_broken_share(clean).n_flagged == 0
    for keep in (0.3, 90):
        np.testing.assert_array_equal(
            select_instructions(clean, keep, random_state=5),
            select_instructions(clean, keep, strategy="random", random_state=5))
    # per group: each group keeps its share and loses its own flagged tail
    groups = np.repeat(["x", "y"], 250)
    idx = select_instructions(scores, 0.4, groups=groups, random_state=1)
    assert (idx < 250).sum() == 100 and (idx >= 250).sum() == 100
    flagged = estimate_broken_share(scores, groups=groups).flagged
    assert not flagged[idx].any()
    with pytest.raises(ValueError, match="strategy"):
        select_instructions(scores, 0.5, strategy="nope")


def test_auto_with_another_signal_for_the_broken_pairs():
    """broken=: the flags come from other per-record values, or a ready estimate."""
    suspicion, broken = _planted(seed=5)
    scores = np.random.default_rng(6).lognormal(1.0, 0.5, suspicion.size)  # no signal
    est = estimate_broken_share(suspicion)
    assert est.n_flagged > 80
    for given in (suspicion, est):
        idx = select_instructions(scores, 0.5, broken=given, random_state=2)
        assert len(idx) == 250 and not est.flagged[idx].any()
    assert estimate_broken_share(scores).n_flagged == 0  # the scores alone would flag nothing
    with pytest.raises(ValueError, match="500 records"):
        select_instructions(scores, 0.5, broken=suspicion[:-1], random_state=2)


# ------------------------------------------------------------------------------- CLI
def test_cli_writes_broken_share_and_records(tmp_path, monkeypatch, capsys):
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    import skdlc._instruction as mod
    from test_instruction import DATA, _tiny_cli

    cli, model_dir = _tiny_cli(tmp_path, monkeypatch)
    scores, broken = _planted(80, 20, seed=4)
    recs = [dict(DATA[i % len(DATA)], id=i) for i in range(scores.size)]
    src = tmp_path / "data.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    # the tiny model's scores carry no signal: plant the scores, keep the real scoring path
    real = mod.InstructionScorer.score_samples
    monkeypatch.setattr(mod.InstructionScorer, "score_samples",
                        lambda self, X: real(self, X) * 0 + scores)
    alone = mod.InstructionScorer.response_only_losses
    monkeypatch.setattr(mod.InstructionScorer, "response_only_losses",
                        lambda self, X: alone(self, X) * 0 + 2.0)  # the signal: scores / 2
    out = tmp_path / "kept.jsonl"
    # the whole set as one group (the default would cluster these five prompts)
    rc = cli.main(["prune-instructions", str(src), "--keep", "0.5", "--model", str(model_dir),
                   "--mask-ratios", "0", "--out", str(out), "--quiet", "--grouping", "none"])
    assert rc == 0
    err = capsys.readouterr().err
    summary = json.loads((tmp_path / "kept_summary.json").read_text(encoding="utf-8"))
    est = estimate_broken_share(scores / 2.0)
    assert summary["strategy"] == "auto" and summary["grouping"]["method"] == "none"
    assert summary["estimated_broken_share"] == pytest.approx(est.share)
    assert summary["n_likely_broken"] == len(summary["likely_broken"]) == est.n_flagged > 0
    lines = [s["line"] for s in summary["likely_broken"]]
    assert sorted(lines) == sorted(int(i) + 1 for i in np.flatnonzero(est.flagged))
    got = [s["signal"] for s in summary["likely_broken"]]
    assert got == sorted(got, reverse=True)  # most suspect first
    assert got == pytest.approx([s["score"] / 2 for s in summary["likely_broken"]])
    assert not any(s["kept"] for s in summary["likely_broken"])
    kept_ids = {json.loads(x)["id"] for x in out.read_text().splitlines()}
    assert len(kept_ids) == 50 and not kept_ids & {s["record"] for s in summary["likely_broken"]}
    assert f"estimated broken pairs: {est.share:.1%} ({est.n_flagged} of 100 records)" in err
    assert f"lines {lines[0]}," in err
    html = (tmp_path / "kept_report" / "report.html").read_text(encoding="utf-8")
    assert "Likely broken pairs" in html and f"{est.share:.1%}" in html
    # another strategy still reports the estimate; --no-report still writes the summary
    rc = cli.main(["prune-instructions", str(src), "--keep", "0.5", "--model", str(model_dir),
                   "--mask-ratios", "0", "--out", str(out), "--quiet", "--strategy", "flexrand",
                   "--no-report", "--grouping", "none"])
    assert rc == 0
    summary = json.loads((tmp_path / "kept_summary.json").read_text(encoding="utf-8"))
    assert summary["strategy"] == "flexrand" and summary["n_likely_broken"] == est.n_flagged
    assert not (tmp_path / "kept_report").exists()


def test_response_only_losses_is_the_loss_without_the_instruction(tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    from test_instruction import DATA, _direct_loss, _tiny_model, _tiny_tokenizer

    from skdlc import InstructionScorer
    from skdlc._instruction import encode_examples

    tok = _tiny_tokenizer()
    model = _tiny_model(len(tok))
    scorer = InstructionScorer(model, tokenizer=tok, mask_ratios=[0.0, 0.3], batch_size=2,
                               memory=tmp_path / "cache", verbose=False).fit()
    got = scorer.response_only_losses(DATA)
    enc = encode_examples([("", "", r["output"]) for r in DATA], tok, "alpaca", 512)
    want = [_direct_loss(model, ids, c) for ids, c in zip(enc.ids, enc.n_response)]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    with_prompt = scorer.path_losses(DATA)[:, 0]
    assert not np.allclose(got, with_prompt)  # the instruction changes the loss
    np.testing.assert_array_equal(got, scorer.response_only_losses(DATA))  # from the cache
    assert scorer.n_tokens_ == int(scorer.encode(DATA).lengths.sum())  # the path's, untouched
