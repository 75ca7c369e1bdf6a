"""Paired bootstrap: known answers for ROUGE-style means and corpus BLEU."""

from __future__ import annotations

import numpy as np
import pytest
import sacrebleu

from review import bootstrap
from stages.scoring import reference_streams as streams

SCORES = np.random.default_rng(7).uniform(0.1, 0.5, size=150)  # one system's ROUGE per dialogue


def noise(seed: int, mean: float = 0.0, scale: float = 0.05) -> np.ndarray:
    return np.random.default_rng(seed).normal(mean, scale, size=SCORES.size)

PREDICTIONS = [
    "#Person1# books a table for four at Luigi's at 7 pm.",
    "Tom asks Mary about the train to Boston.",
    "#Person2# buys navy blue loafers for $120.",
    "The doctor prescribes an ointment for the rash.",
]
BETTER = [
    "#Person1# reserves a table for four at Luigi's for 7 pm on Friday.",
    "Tom asks Mary when the train to Boston leaves.",
    "#Person1# buys the navy blue loafers for $120 and can return them within 14 days.",
    "The doctor prescribes an ointment, twice a day for seven days, for the rash on the arm.",
]
REFERENCES = [
    ["#Person1# reserves a table for four at Luigi's for 7 pm on Friday.",
     "#Person2# takes #Person1#'s booking for four people at 7 pm."],
    ["Tom asks Mary when the train to Boston leaves."],
    ["#Person1# buys the navy blue loafers for $120 and can return them within 14 days.",
     "#Person1# buys loafers in navy blue.", "Loafers for $120."],
    ["The doctor prescribes an ointment, twice a day for seven days, for the rash on the arm."],
]


def test_identical_systems_are_not_significant():
    result = bootstrap.paired_mean(SCORES, SCORES, resamples=500, seed=0)
    assert result.diff == 0 and result.low <= 0 <= result.high
    assert not result.significant


def test_noise_around_zero_is_not_significant():
    noisy = SCORES + noise(1)
    noisy -= noisy.mean() - SCORES.mean()  # no systematic change at all
    result = bootstrap.paired_mean(SCORES, noisy, resamples=1000, seed=0)
    assert result.low < 0 < result.high and not result.significant


def test_better_on_every_dialogue_is_significant():
    result = bootstrap.paired_mean(SCORES, SCORES + 0.05, resamples=1000, seed=0)
    assert result.diff == pytest.approx(0.05)
    assert result.low == pytest.approx(0.05) and result.high == pytest.approx(0.05)
    assert result.significant
    worse = bootstrap.paired_mean(SCORES, SCORES - np.abs(noise(2, 0.05, 0.02)), seed=0)
    assert worse.high < 0 and worse.significant  # significance goes both ways


def test_interval_holds_the_mean_difference():
    better = SCORES + noise(3, mean=0.03)
    result = bootstrap.paired_mean(SCORES, better, resamples=1000, seed=0)
    assert result.a == pytest.approx(SCORES.mean()) and result.b == pytest.approx(better.mean())
    assert result.low < result.diff < result.high
    # about mean +- 1.96 standard errors for 150 dialogues
    half_width = 1.96 * np.std(better - SCORES, ddof=1) / np.sqrt(SCORES.size)
    assert (result.high - result.low) / 2 == pytest.approx(half_width, rel=0.15)


def test_same_seed_same_interval_other_seed_other_draws():
    noisy = SCORES + noise(4)
    first = bootstrap.paired_mean(SCORES, noisy, resamples=300, seed=3)
    assert bootstrap.paired_mean(SCORES, noisy, resamples=300, seed=3) == first
    assert bootstrap.paired_mean(SCORES, noisy, resamples=300, seed=4) != first


def test_resample_counts_draw_every_dialogue_count_times():
    counts = bootstrap.resample_counts(dialogues=5, resamples=200, seed=0)
    assert counts.shape == (200, 5) and (counts.sum(axis=1) == 5).all()
    assert (counts.mean(axis=0) > 0.7).all()  # each dialogue drawn about once per resample


def test_misaligned_scores_are_refused():
    with pytest.raises(ValueError, match="aligned"):
        bootstrap.paired_mean([0.1, 0.2], [0.1])


def test_bleu_point_estimates_are_sacrebleu_corpus_bleu():
    result = bootstrap.paired_corpus_bleu(PREDICTIONS, BETTER, REFERENCES, resamples=200, seed=0)
    assert result.a == pytest.approx(sacrebleu.corpus_bleu(PREDICTIONS, streams(REFERENCES)).score)
    assert result.b == pytest.approx(sacrebleu.corpus_bleu(BETTER, streams(REFERENCES)).score)
    assert result.b == pytest.approx(100.0)  # BETTER copies a reference of every dialogue


def test_bleu_is_recomputed_per_resample_not_averaged():
    # A resample of the whole corpus drawn once each is the corpus itself: corpus BLEU, which
    # differs from the mean of sentence BLEU.
    stats = bootstrap.bleu_statistics(PREDICTIONS, REFERENCES)
    whole = bootstrap.corpus_bleu_from_statistics(stats.sum(0, keepdims=True))[0]
    sentence_mean = np.mean([sacrebleu.sentence_bleu(p, r).score for p, r in zip(PREDICTIONS, REFERENCES)])
    assert whole == pytest.approx(sacrebleu.corpus_bleu(PREDICTIONS, streams(REFERENCES)).score)
    assert whole != pytest.approx(sentence_mean)


def test_bleu_bootstrap_significance():
    many = 40  # 160 dialogues: the better system wins clearly, an identical one not at all
    predictions, better, references = PREDICTIONS * many, BETTER * many, REFERENCES * many
    result = bootstrap.paired_corpus_bleu(predictions, better, references, resamples=1000, seed=0)
    assert result.low > 0 and result.significant
    same = bootstrap.paired_corpus_bleu(predictions, predictions, references, resamples=200, seed=0)
    assert same.diff == 0 and same.low == same.high == 0 and not same.significant
