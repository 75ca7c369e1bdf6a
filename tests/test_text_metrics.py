"""ROUGE and BLEU offline, the very numbers of the libraries they wrap (rouge-score, sacrebleu)."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest
import sacrebleu
from rouge_score import rouge_scorer

from stages import text_metrics
from tests.conftest import ROOT

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
        assert result[key] == sum(per_dialogue) / 2  # to the last digit
        assert result["per_item"][key] == per_dialogue


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
    assert result["bleu"] == expected  # summed from the sentences' statistics: the same number
    assert 0 < result["bleu"] < 100
    assert result["per_item"]["bleu"] == [sacrebleu.sentence_bleu(p, refs).score
                                          for p, refs in zip(PREDICTIONS, REFERENCES)]


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


def test_rouge_is_rouge_scorers_score_to_the_last_digit_on_random_texts():
    """The cached tokens and the bit-vector LCS give rouge_score's F-measures exactly, for every
    type, including rougeLsum's union of LCSs (which LCS is read out matters) and its empty
    texts (rouge_score's int 0)."""
    words = "The cat sat on a mat . running runner ran dogs dog talked talking ! ? 7 pm #Person1# , ".split(" ")
    rng = random.Random(0)

    def text() -> str:
        return " ".join(rng.choice(words) for _ in range(rng.randint(0, 30)))

    scorer = rouge_scorer.RougeScorer(list(text_metrics.ROUGE_TYPES), use_stemmer=True)
    for _ in range(400):
        target, prediction = (text_metrics.one_sentence_per_line(text()) for _ in range(2))
        expected = scorer.score(target, prediction)
        tokenize = text_metrics.tokenizer(True)
        got = text_metrics.rouge_pair(tokenize(target), tokenize(prediction), text_metrics.ROUGE_TYPES)
        for key in text_metrics.ROUGE_TYPES:
            assert (got[key], type(got[key])) == (expected[key].fmeasure, type(expected[key].fmeasure)), \
                (target, prediction, key)


def test_scoring_imports_neither_evaluate_nor_transformers_nor_pandas():
    """`import evaluate` imports transformers' pipelines: seconds of every score run for nothing;
    pandas was imported for one helper of stages.sources."""
    code = ("import sys, stages.score, stages.text_metrics; stages.text_metrics.score(['a b'], [['a b']], True); "
            "print(sorted(m for m in ('evaluate', 'transformers', 'datasets', 'torch', 'pandas') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
