"""ROUGE and BLEU as ``evaluate`` metrics that work offline.

``evaluate.load("rouge")`` fetches its metric script from the Hugging Face hub at run time, which
no machine of ours can reach (it fails with a misleading "Couldn't find a module script"). The
same API works offline with metric classes defined locally: these are ``evaluate.Metric``
subclasses, used as ``Rouge().compute(predictions=..., references=...)``, backed by the very
libraries the hub scripts wrap (``rouge-score``, ``sacrebleu``), so the numbers are theirs.

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
"""

from __future__ import annotations

import re

import datasets
import evaluate

from stages.scoring import MEAN_REF, ROUGE_TYPES, reference_streams

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")

_MULTI_REF = datasets.Features({
    "predictions": datasets.Value("string"),
    "references": datasets.Sequence(datasets.Value("string")),
})


def one_sentence_per_line(text: str) -> str:
    return "\n".join(s for s in _SENTENCE_END.split(text.strip()) if s)


class Rouge(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="ROUGE-1/2/L/Lsum F-measure (rouge-score), best of and mean over multiple references.",
            citation="Lin, 2004. ROUGE: A Package for Automatic Evaluation of Summaries.",
            features=_MULTI_REF,
        )

    def _compute(self, predictions, references, use_stemmer: bool = True) -> dict:
        from rouge_score import rouge_scorer

        scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=use_stemmer)
        per_item = {t: [] for t in (*ROUGE_TYPES, *MEAN_REF.values())}
        for prediction, refs in zip(predictions, references):
            # Newlines only matter to rougeLsum; the other types tokenize them as spaces.
            line = one_sentence_per_line(prediction)
            each = [scorer.score(one_sentence_per_line(r), line) for r in refs]
            for t in ROUGE_TYPES:  # the first best on ties, as score_multi
                per_item[t].append(max(s[t].fmeasure for s in each))
            for t, key in MEAN_REF.items():
                per_item[key].append(sum(s[t].fmeasure for s in each) / len(each))
        means = {t: sum(v) / len(v) if v else 0.0 for t, v in per_item.items()}
        return {**means, "per_item": per_item}


class Bleu(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="sacrebleu corpus BLEU (0-100) with multiple references per prediction.",
            citation="Post, 2018. A Call for Clarity in Reporting BLEU Scores.",
            features=_MULTI_REF,
        )

    def _compute(self, predictions, references) -> dict:
        import sacrebleu

        corpus = sacrebleu.corpus_bleu(list(predictions), reference_streams(references))
        per_item = [sacrebleu.sentence_bleu(p, list(r)).score for p, r in zip(predictions, references)]
        return {"bleu": corpus.score, "per_item": per_item}


def score(predictions: list[str], references: list[list[str]], use_stemmer: bool) -> dict:
    """ROUGE and BLEU in one dict, plus per-dialogue scores under ``per_item``."""
    rouge = Rouge(keep_in_memory=True).compute(predictions=predictions, references=references,
                                               use_stemmer=use_stemmer)
    bleu = Bleu(keep_in_memory=True).compute(predictions=predictions, references=references)
    return {
        **{t: rouge[t] for t in (*ROUGE_TYPES, *MEAN_REF.values())},
        "bleu": bleu["bleu"],
        "per_item": {**rouge["per_item"], "bleu": bleu["per_item"]},
    }
