"""ROUGE and BLEU, computed by the libraries the hub's metric scripts wrap, offline and fast.

``evaluate.load("rouge")`` fetches its metric script from the Hugging Face hub at run time, which
no air-gapped machine can reach, and ``import evaluate`` alone costs seconds (it imports
transformers' pipelines). The scripts are thin wrappers: the numbers here are ``rouge-score``'s
and ``sacrebleu``'s own, called directly (tests/test_text_metrics.py checks them against the
libraries' plain calls, to the last digit).

Choices, all deliberate:
- Every prediction is scored against **all** of its references. ROUGE takes, per dialogue, the
  reference with the best F-measure (as ``rouge_score``'s ``score_multi``: the headline); BLEU is
  sacrebleu's multi-reference corpus BLEU (a dialogue with fewer references gets ``None`` slots,
  which sacrebleu skips).
- ROUGE-1/2/L are also reported as the mean F-measure over a dialogue's references
  (``rouge1_mean_ref`` ...): the protocol of scoring every (dialogue, reference) row of
  DialogSum's test file and averaging, as the reference lab and most write-ups do. Both come
  from the same per-reference scores.
- ROUGE is the mean F-measure over dialogues (0-1), not the bootstrap "mid" of the hub script:
  the mean is exact and deterministic, and the two differ in the fourth decimal.
- rougeLsum is computed on summaries split into sentences (one per line), which is what
  distinguishes it from rougeL; the reference lab fed unsplit text, so its rougeL == rougeLsum.
- Per-dialogue scores are returned too (``per_item``), for paired bootstrap comparisons.

Speed: ``rouge_score`` tokenizes and Porter-stems both texts of every pair it scores, and fills
its LCS tables one Python step per cell; that was most of a score run (a reference is met once
per variant, again for the human row and the shuffled baseline). Here ``Tokenizer`` runs
rouge_score's own tokenizer once per distinct text (its stemmer once per distinct word), the
n-gram scores are rouge_score's functions on those tokens, and the LCS table rows are bit vectors
read out by rouge_score's backtracking, step for step, so rougeLsum's union of LCSs is the same.
Corpus BLEU is summed from the per-dialogue statistics ``sentence_score`` computes anyway:
sacrebleu's corpus statistics are that sum, so the score is the same number.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from typing import NamedTuple

from stages.scoring import MEAN_REF, ROUGE_TYPES

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def one_sentence_per_line(text: str) -> str:
    return "\n".join(s for s in _SENTENCE_END.split(text.strip()) if s)


class Tokenized(NamedTuple):
    """What ROUGE reads of one text: its tokens, their 1- and 2-gram counts, and the tokens of
    each of its lines (rougeLsum's sentences)."""

    tokens: list[str]
    ngrams: dict[int, Counter]
    sentences: list[list[str]]


class Tokenizer:
    """``rouge_score``'s default tokenizer (lower case, alphanumeric words, Porter stems of words
    over 3 letters), run once per distinct text, the stemmer once per distinct word: the same
    tokens for a fraction of the work when texts recur. What it returns is shared: read it,
    never change it."""

    def __init__(self, use_stemmer: bool):
        from rouge_score import tokenizers

        # The stemmer rouge_score's own default tokenizer would use (nltk's Porter stemmer).
        stemmer = tokenizers.DefaultTokenizer(use_stemmer)._stemmer
        self._stem = functools.lru_cache(maxsize=None)(stemmer.stem) if use_stemmer else None
        self._texts: dict[str, Tokenized] = {}

    def tokenize(self, text: str) -> list[str]:
        from rouge_score import tokenize

        return tokenize.tokenize(text, self if self._stem else None)

    def stem(self, word: str) -> str:  # rouge_score's tokenize calls stemmer.stem(word)
        return self._stem(word)

    def __call__(self, text: str) -> Tokenized:
        found = self._texts.get(text)
        if found is None:
            from rouge_score.rouge_scorer import _create_ngrams

            tokens = self.tokenize(text)
            # rougeLsum's sentences as RougeScorer splits them: lines, the empty ones dropped.
            sentences = [self.tokenize(line) for line in text.split("\n") if line]
            found = self._texts[text] = Tokenized(tokens, {n: _create_ngrams(tokens, n) for n in (1, 2)}, sentences)
        return found


@functools.cache
def tokenizer(use_stemmer: bool) -> Tokenizer:
    """One tokenizer per setting for the whole process: a score run meets each reference once
    per variant and again in the shuffled baseline."""
    return Tokenizer(use_stemmer)


def _lcs_rows(ref: list[str], can: list[str]) -> list[int]:
    """The rows of rouge_score's LCS table ``t[i][j]`` (the LCS of ``ref[:i]`` and ``can[:j]``),
    each as one integer of ``len(can)`` bits: ``t[i][j]`` is the number of zero bits among its
    lowest ``j`` (the bit-vector LCS of Allison and Dix, 1986; Hyyrö, 2004). The same numbers as
    rouge_score's pure-Python table, one big-integer operation per row instead of one Python
    step per cell: the LCS was most of a score run's time."""
    masks: dict[str, int] = {}
    for j, token in enumerate(can):
        masks[token] = masks.get(token, 0) | (1 << j)
    full = (1 << len(can)) - 1
    row, rows = full, [full]
    for token in ref:
        match = row & masks.get(token, 0)
        row = ((row + match) | (row - match)) & full
        rows.append(row)
    return rows


def _lcs_length(ref: list[str], can: list[str]) -> int:
    return len(can) - _lcs_rows(ref, can)[-1].bit_count()


def _lcs_indices(ref: list[str], can: list[str]) -> list[int]:
    """rouge_score's ``lcs_ind``: the indices into ``ref`` of the one LCS its backtracking reads
    out (which one matters to rougeLsum's union), walking the same table the same way."""
    rows = _lcs_rows(ref, can)

    def table(i: int, j: int) -> int:
        return j - (rows[i] & ((1 << j) - 1)).bit_count()

    i, j, found = len(ref), len(can), []
    while i > 0 and j > 0:
        if ref[i - 1] == can[j - 1]:
            found.append(i - 1)
            i, j = i - 1, j - 1
        elif table(i, j - 1) > table(i - 1, j):
            j -= 1
        else:
            i -= 1
    return found[::-1]


def _rouge_l(target: list[str], prediction: list[str]):
    """rouge_score's ``_score_lcs`` F-measure (its int 0 for an empty text included)."""
    from rouge_score import scoring

    if not target or not prediction:
        return 0
    lcs = _lcs_length(target, prediction)
    return scoring.fmeasure(lcs / len(prediction), lcs / len(target))


def _rouge_lsum(target: list[list[str]], prediction: list[list[str]]):
    """rouge_score's ``_summary_level_lcs`` F-measure, step for step."""
    from rouge_score import scoring

    m, n = sum(map(len, target)), sum(map(len, prediction))
    if not target or not prediction or not n or not m:
        return 0
    left_target = Counter(token for sentence in target for token in sentence)
    left_prediction = Counter(token for sentence in prediction for token in sentence)
    hits = 0
    for ref in target:
        union = sorted(set().union(*(_lcs_indices(ref, can) for can in prediction)))
        for token in (ref[i] for i in union):  # each token counted at most as often as both hold it
            if left_prediction[token] > 0 and left_target[token] > 0:
                hits += 1
                left_prediction[token] -= 1
                left_target[token] -= 1
    return scoring.fmeasure(hits / n, hits / m)


def rouge_pair(target: Tokenized, prediction: Tokenized, types: tuple[str, ...]) -> dict:
    """F-measure per ROUGE type, as ``RougeScorer(types).score(target, prediction)`` gives it."""
    from rouge_score.rouge_scorer import _score_ngrams

    scores = {}
    for t in types:
        if t == "rougeL":
            scores[t] = _rouge_l(target.tokens, prediction.tokens)
        elif t == "rougeLsum":
            scores[t] = _rouge_lsum(target.sentences, prediction.sentences)
        else:
            n = int(t.removeprefix("rouge"))
            scores[t] = _score_ngrams(target.ngrams[n], prediction.ngrams[n]).fmeasure
    return scores


def rouge(predictions: list[str], references: list[list[str]], use_stemmer: bool,
          types: tuple[str, ...] = ROUGE_TYPES) -> dict:
    """Mean ROUGE F-measures over dialogues (best reference; and the mean over references for
    rouge1/2/L when computed), with per-dialogue scores under ``per_item``."""
    texts = tokenizer(use_stemmer)
    mean_ref = {t: key for t, key in MEAN_REF.items() if t in types}
    per_item = {t: [] for t in (*types, *mean_ref.values())}
    for prediction, refs in zip(predictions, references):
        # Newlines only matter to rougeLsum; the other types tokenize them as spaces.
        line = texts(one_sentence_per_line(prediction))
        each = [rouge_pair(texts(one_sentence_per_line(r)), line, types) for r in refs]
        for t in types:  # the first best on ties, as score_multi
            per_item[t].append(max(s[t] for s in each))
        for t, key in mean_ref.items():
            per_item[key].append(sum(s[t] for s in each) / len(each))
    means = {t: sum(v) / len(v) if v else 0.0 for t, v in per_item.items()}
    return {**means, "per_item": per_item}


def bleu(predictions: list[str], references: list[list[str]]) -> dict:
    """sacrebleu's corpus BLEU (0-100) over all references, and each dialogue's sentence BLEU
    (``sacrebleu.sentence_bleu``'s settings) under ``per_item``."""
    import sacrebleu

    sentence = sacrebleu.BLEU(effective_order=True)  # = sacrebleu.sentence_bleu's settings
    scores = [sentence.sentence_score(p, list(r)) for p, r in zip(predictions, references)]
    corpus = sacrebleu.BLEU()  # = sacrebleu.corpus_bleu's settings
    order = corpus.max_ngram_order
    # The corpus statistics are the sum of the sentences' (sacrebleu sums them the same way);
    # the n-gram counts do not depend on smoothing or effective order.
    score = corpus.compute_bleu(
        correct=[sum(s.counts[n] for s in scores) for n in range(order)],
        total=[sum(s.totals[n] for s in scores) for n in range(order)],
        sys_len=sum(s.sys_len for s in scores), ref_len=sum(s.ref_len for s in scores),
        smooth_method=corpus.smooth_method, smooth_value=corpus.smooth_value,
        effective_order=corpus.effective_order, max_ngram_order=order).score
    return {"bleu": score, "per_item": [s.score for s in scores]}


def score(predictions: list[str], references: list[list[str]], use_stemmer: bool) -> dict:
    """ROUGE and BLEU in one dict, plus per-dialogue scores under ``per_item``."""
    rouges = rouge(predictions, references, use_stemmer)
    bleus = bleu(predictions, references)
    return {
        **{t: rouges[t] for t in (*ROUGE_TYPES, *MEAN_REF.values())},
        "bleu": bleus["bleu"],
        "per_item": {**rouges["per_item"], "bleu": bleus["per_item"]},
    }
