"""Groups for the broken-pair estimate when none is named: a category-like field, else
clusters of the prompts (skdlc._instruction_groups), and what the CLI does with them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from skdlc import estimate_broken_share
from skdlc._instruction_groups import cluster_prompts, find_category_field, find_instruction_groups

VOCAB = {
    "sentiment": "movie film great boring plot actor loved hated scene ending".split(),
    "arithmetic": "add sum plus numbers seven twelve three nine total digits".split(),
    "geography": "capital country river mountain city europe asia border ocean map".split(),
}
INSTRUCTIONS = {"sentiment": "Is this review positive or negative?",
                "arithmetic": "Compute the result of the numbers.",
                "geography": "Answer the geography question."}


def _records(n_per_task=50, tasks=tuple(VOCAB), seed=0):
    """Records of a few tasks, each with its own instruction and input vocabulary."""
    rng = np.random.default_rng(seed)
    out = []
    for t in tasks:
        for _ in range(n_per_task):
            out.append({"instruction": INSTRUCTIONS[t],
                        "input": " ".join(rng.choice(VOCAB[t], 6)), "output": "ok", "task": t})
    return out


# ------------------------------------------------------------------------ the field
def test_category_field_is_found_by_name_case_and_value_count():
    recs = _records(20)  # 60 records, 3 tasks: 3 <= 60 / 10
    assert find_category_field(recs) == "task"
    upper = [{**{k: v for k, v in r.items() if k != "task"}, "Source": r["task"]} for r in recs]
    assert find_category_field(upper) == "Source"
    # "category" comes before "type" whatever the key order
    both = [{"type": r["task"], **r, "category": r["task"][:3]} for r in recs]
    assert find_category_field(both) == "category"


@pytest.mark.parametrize("change", ["one value", "too many values", "missing once", "a list",
                                    "a text field"])
def test_no_category_field(change):
    recs = _records(20)
    if change == "one value":
        recs = [{**r, "task": "x"} for r in recs]
    elif change == "too many values":  # 7 values > 60 / 10
        recs = [{**r, "task": f"t{i % 7}"} for i, r in enumerate(recs)]
    elif change == "missing once":
        del recs[5]["task"]
    elif change == "a list":
        recs[5] = {**recs[5], "task": ["a", "b"]}
    else:
        recs = [{**r, "type": r["task"]} for r in recs]
        recs = [{k: v for k, v in r.items() if k != "task"} for r in recs]
        assert find_category_field(recs) == "type"
        assert find_category_field(recs, exclude=["TYPE"]) is None
        return
    assert find_category_field(recs) is None


# ----------------------------------------------------------------------- clusters
def test_clusters_recover_the_tasks_without_the_field():
    recs = _records(50)  # 150 records: k in 2..3
    texts = [f"{r['instruction']}\n\n{r['input']}" for r in recs]
    g = cluster_prompts(texts, random_state=0)
    assert g.method == "clusters" and g.detail["k"] == 3 and g.n_groups == 3
    truth = np.repeat(np.arange(3), 50)
    for t in range(3):  # each task is exactly one cluster, named in order of appearance
        assert set(g.labels[truth == t]) == {f"cluster {t}"}
    assert g.detail["silhouette"]["3"] > g.detail["silhouette"]["2"]
    again = cluster_prompts(texts, random_state=0)
    assert (again.labels == g.labels).all()
    assert "3 clusters" in g.describe()


def test_no_clusters_in_one_task_or_too_few_records():
    rng = np.random.default_rng(1)
    words = [f"w{i}" for i in range(300)]
    one = [" ".join(rng.choice(words, 8)) for _ in range(200)]
    g = cluster_prompts(one)
    assert g.method == "none" and g.labels is None and "no clusters" in g.detail["reason"]
    assert g.n_groups == 1
    few = cluster_prompts([f"{INSTRUCTIONS['sentiment']} {i}" for i in range(60)])
    assert few.method == "none" and "too few records" in few.detail["reason"]


def test_find_groups_order_and_methods():
    recs = _records(50)
    assert find_instruction_groups(recs).method == "field"
    assert find_instruction_groups(recs).field == "task"
    assert find_instruction_groups(recs, method="clusters").method == "clusters"
    assert find_instruction_groups(recs, method="none").labels is None
    nofield = [{k: v for k, v in r.items() if k != "task"} for r in recs]
    g = find_instruction_groups(nofield)
    assert g.method == "clusters" and g.to_dict()["sizes"] == {f"cluster {i}": 50 for i in range(3)}
    with pytest.raises(ValueError, match="method must be"):
        find_instruction_groups(recs, method="kmeans")


# ---------------------------------------------------------------------------- CLI
def _planted_per_task(seed=0):
    """Two tasks far apart in loss level, each with 10 broken pairs in 50 records: the
    broken ones stand out within their task, not in the whole set."""
    rng = np.random.default_rng(seed)
    scores, broken = [], []
    for level in (0.3, 2.0):
        s = np.r_[rng.lognormal(level, 0.15, 40), rng.lognormal(level + 1.2, 0.1, 10)]
        scores.append(s)
        broken.append(np.arange(50) >= 40)
    return np.concatenate(scores), np.concatenate(broken)


@pytest.mark.parametrize("with_field", [True, False])
def test_cli_default_finds_the_groups(tmp_path, monkeypatch, capsys, with_field):
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    import skdlc._instruction as mod
    from test_instruction import _tiny_cli

    cli, model_dir = _tiny_cli(tmp_path, monkeypatch)
    scores, broken = _planted_per_task()
    recs = _records(50, tasks=("sentiment", "arithmetic"), seed=2)
    if not with_field:
        recs = [{k: v for k, v in r.items() if k != "task"} for r in recs]
    src = tmp_path / "data.jsonl"
    src.write_text("".join(json.dumps(dict(r, id=i)) + "\n" for i, r in enumerate(recs)),
                   encoding="utf-8")
    real = mod.InstructionScorer.score_samples
    monkeypatch.setattr(mod.InstructionScorer, "score_samples",
                        lambda self, X: real(self, X) * 0 + scores)
    alone = mod.InstructionScorer.response_only_losses
    monkeypatch.setattr(mod.InstructionScorer, "response_only_losses",
                        lambda self, X: alone(self, X) * 0 + 1.0)
    out = tmp_path / "kept.jsonl"
    rc = cli.main(["prune-instructions", str(src), "--keep", "0.5", "--model", str(model_dir),
                   "--mask-ratios", "0", "--out", str(out), "--quiet"])
    assert rc == 0
    err = capsys.readouterr().err
    summary = json.loads((tmp_path / "kept_summary.json").read_text(encoding="utf-8"))
    grouping = summary["grouping"]
    assert grouping["method"] == ("field" if with_field else "clusters")
    assert grouping["n_groups"] == 2
    assert f"broken pairs estimated {grouping['description']}" in err
    assert ("'task'" in err) == with_field
    # the planted broken pairs are found, and none is kept
    flagged = np.zeros(scores.size, dtype=bool)
    flagged[[s["record"] for s in summary["likely_broken"]]] = True
    assert (flagged == broken).all() and summary["estimated_broken_share"] == pytest.approx(0.2)
    assert not any(s["kept"] for s in summary["likely_broken"])
    key = "category" if with_field else "group"
    assert {s[key] for s in summary["likely_broken"]} == (
        {"sentiment", "arithmetic"} if with_field else {"cluster 0", "cluster 1"})
    kept = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(kept) == 50 and not {r["id"] for r in kept} & set(np.flatnonzero(broken))
    # the whole set as one group misses them: the two tasks' levels swamp the signal
    assert not estimate_broken_share(scores).flagged[broken].all()
