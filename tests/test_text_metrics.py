"""ROUGE and BLEU through evaluate's API, offline, matching the libraries they wrap."""

from __future__ import annotations

import pytest
import sacrebleu
from rouge_score import rouge_scorer

from stages import text_metrics

PREDICTIONS = [
    "#Person1# books a table for four at Luigi's at 7 pm. #Person2# confirms.",
    "Tom asks Mary about the train to Boston.",
]
REFERENCES = [
    ["#Person1# reserves a table for four at Luigi's for 7 pm on Friday.",
     "#Person2# takes #Person1#'s booking for four people at 7 pm."],
    ["Tom asks Mary when the train to Boston leaves."],
]


def test_rouge_is_rouge_score_best_reference_mean():
    result = text_metrics.score(PREDICTIONS, REFERENCES, use_stemmer=True)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    for key in ("rouge1", "rouge2", "rougeL"):
        per_dialogue = [max(scorer.score(r, p)[key].fmeasure for r in refs)
                        for p, refs in zip(PREDICTIONS, REFERENCES)]
        assert result[key] == pytest.approx(sum(per_dialogue) / 2)
        assert result["per_item"][key] == pytest.approx(per_dialogue)


def test_rouge_lsum_splits_sentences():
    prediction = ["The cat sat. The dog ran."]
    reference = [["The dog ran. The cat sat."]]
    result = text_metrics.score(prediction, reference, use_stemmer=False)
    assert result["rougeLsum"] == pytest.approx(1.0)  # sentence-level LCS: order of sentences free
    assert result["rougeL"] < 1.0


def test_bleu_is_sacrebleu_corpus_bleu_with_variable_references():
    result = text_metrics.score(PREDICTIONS, REFERENCES, use_stemmer=True)
    expected = sacrebleu.corpus_bleu(PREDICTIONS, [[REFERENCES[0][0], REFERENCES[1][0]],
                                                   [REFERENCES[0][1], None]]).score
    assert result["bleu"] == pytest.approx(expected)
    assert 0 < result["bleu"] < 100


def test_perfect_predictions_score_top_marks():
    refs = [[p] for p in PREDICTIONS]
    result = text_metrics.score(PREDICTIONS, refs, use_stemmer=True)
    assert all(result[k] == pytest.approx(1.0) for k in text_metrics.ROUGE_TYPES)
    assert result["bleu"] == pytest.approx(100.0)


def test_more_references_never_lower_rouge():
    one = text_metrics.score(PREDICTIONS[:1], [REFERENCES[0][:1]], use_stemmer=True)
    two = text_metrics.score(PREDICTIONS[:1], [REFERENCES[0]], use_stemmer=True)
    assert all(two[k] >= one[k] for k in text_metrics.ROUGE_TYPES)


def test_rouge_mean_of_references_is_the_per_row_protocol():
    """rouge*_mean_ref: the mean F-measure over a dialogue's references, as scoring every
    (dialogue, reference) row and averaging per dialogue; never above the best reference."""
    result = text_metrics.score(PREDICTIONS, REFERENCES, use_stemmer=True)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    for key in ("rouge1", "rouge2", "rougeL"):
        per_dialogue = [sum(scorer.score(r, p)[key].fmeasure for r in refs) / len(refs)
                        for p, refs in zip(PREDICTIONS, REFERENCES)]
        assert result["per_item"][f"{key}_mean_ref"] == pytest.approx(per_dialogue)
        assert result[f"{key}_mean_ref"] == pytest.approx(sum(per_dialogue) / 2)
        assert result[f"{key}_mean_ref"] < result[key]  # the first dialogue's references differ
