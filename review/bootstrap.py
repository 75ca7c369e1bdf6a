"""Paired bootstrap over test dialogues: is system B really better than system A?

Both systems are scored on the same dialogues (aligned by id by the caller). Each resample
draws dialogues with replacement and recomputes the difference B - A on the draw; the 95 %
interval is the 2.5th to 97.5th percentile of those differences, and the difference is called
significant when the interval excludes 0 (Koehn, 2004, "Statistical Significance Tests for
Machine Translation Evaluation").

- ROUGE is a mean of per-dialogue F-measures, so a resample's difference is the mean of the
  drawn dialogues' differences.
- BLEU is a corpus statistic (n-gram matches and lengths are summed over the corpus before the
  precisions and the brevity penalty are taken), not a mean of sentence BLEU, so each resample
  recomputes sacrebleu's corpus BLEU from the drawn dialogues' sufficient statistics.

Both draw the same resamples for the same seed and dialogue count, so every metric in one
comparison is judged on the same draws.

Why not sacrebleu's own ``sacrebleu.significance.PairedTest``: it tests sacrebleu's metrics only
(not ROUGE), reports each system's interval and a p-value rather than the interval of the
difference B - A, draws its own resamples per metric, and takes its seed from an environment
variable. The BLEU parts here use sacrebleu's public pieces (sentence statistics,
``BLEU.compute_bleu``), so the numbers are sacrebleu's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95


@dataclass(frozen=True)
class Comparison:
    """B vs A on one metric: point estimates on all dialogues and the bootstrap interval of B - A."""

    a: float
    b: float
    low: float
    high: float
    dialogues: int
    resamples: int

    @property
    def diff(self) -> float:
        return self.b - self.a

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0


def resample_counts(dialogues: int, resamples: int, seed: int) -> np.ndarray:
    """How often each dialogue is drawn in each resample: shape (resamples, dialogues).

    Counts instead of index arrays, so a resample's sums are one matrix product and memory
    stays resamples x dialogues however many statistics a dialogue carries.
    """
    if dialogues < 1 or resamples < 1:
        raise ValueError(f"need at least one dialogue and one resample (got {dialogues}, {resamples})")
    draws = np.random.default_rng(seed).integers(0, dialogues, size=(resamples, dialogues))
    rows = np.repeat(np.arange(resamples), dialogues)
    flat = np.bincount(rows * dialogues + draws.ravel(), minlength=resamples * dialogues)
    return flat.reshape(resamples, dialogues)


def _interval(differences: np.ndarray) -> tuple[float, float]:
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(differences, [tail, 100 - tail])
    return float(low), float(high)


def paired_mean(scores_a: Sequence[float], scores_b: Sequence[float], resamples: int = 1000,
                seed: int = 0) -> Comparison:
    """Bootstrap of the mean per-dialogue score difference (ROUGE F-measures)."""
    a, b = np.asarray(scores_a, dtype=float), np.asarray(scores_b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"scores must be two aligned 1-d sequences (got {a.shape} and {b.shape})")
    counts = resample_counts(len(a), resamples, seed)
    differences = counts @ (b - a) / len(a)
    return Comparison(float(a.mean()), float(b.mean()), *_interval(differences), len(a), resamples)


def bleu_statistics(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> np.ndarray:
    """sacrebleu's per-dialogue sufficient statistics: (dialogues, 2 + 2 x 4) numbers, laid out
    as sacrebleu lays them out: hypothesis length, closest reference length, matching n-grams
    (n = 1..4), hypothesis n-grams (n = 1..4).

    Read from the public ``BLEU.sentence_score`` result (its counts do not depend on smoothing),
    with the tokenizer and settings of ``sacrebleu.corpus_bleu`` (and ``stages/text_metrics.py``),
    each dialogue against all of its own references.
    """
    import sacrebleu

    metric = sacrebleu.BLEU(effective_order=True)  # sentence level; changes the score, not the counts
    rows = []
    for prediction, refs in zip(predictions, references):
        s = metric.sentence_score(prediction, list(refs))
        rows.append([s.sys_len, s.ref_len, *s.counts, *s.totals])
    return np.asarray(rows)


def corpus_bleu_from_statistics(statistics: np.ndarray) -> np.ndarray:
    """Corpus BLEU (0-100) of each row of summed statistics: (k, 10) -> (k,), with the settings
    of ``sacrebleu.corpus_bleu`` (exponential smoothing, 4-grams)."""
    import sacrebleu

    metric = sacrebleu.BLEU()
    order = metric.max_ngram_order
    return np.array([
        metric.compute_bleu(correct=row[2:2 + order].tolist(), total=row[2 + order:].tolist(),
                            sys_len=int(row[0]), ref_len=int(row[1]), smooth_method=metric.smooth_method,
                            smooth_value=metric.smooth_value, effective_order=metric.effective_order,
                            max_ngram_order=order).score
        for row in statistics])


def paired_corpus_bleu(predictions_a: Sequence[str], predictions_b: Sequence[str],
                       references: Sequence[Sequence[str]], resamples: int = 1000,
                       seed: int = 0) -> Comparison:
    """Bootstrap of the corpus BLEU difference, recomputing corpus BLEU on every resample."""
    if not len(predictions_a) == len(predictions_b) == len(references):
        raise ValueError("predictions and references must be aligned lists of the same length")
    stats_a = bleu_statistics(predictions_a, references)
    stats_b = bleu_statistics(predictions_b, references)
    counts = resample_counts(len(references), resamples, seed)
    full_a, full_b = corpus_bleu_from_statistics(np.stack([stats_a.sum(0), stats_b.sum(0)]))
    differences = corpus_bleu_from_statistics(counts @ stats_b) - corpus_bleu_from_statistics(counts @ stats_a)
    return Comparison(float(full_a), float(full_b), *_interval(differences), len(references), resamples)
