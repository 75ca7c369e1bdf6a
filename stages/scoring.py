"""What the scores are called and how multi-reference data is laid out.

Shared by the score stage, ``stages/text_metrics.py`` and the review report; it imports nothing
heavy, so ``review/`` can use it without loading ``rouge-score`` or ``sacrebleu``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")

# How scores.json's keys are named for people: in the plot and in the review report.
METRIC_LABELS = {"rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L", "rougeLsum": "ROUGE-Lsum",
                 "bleu": "BLEU"}
SHUFFLED = "rougeL_shuffled"  # ROUGE-L against another dialogue's references (see derangement)
# ROUGE as the mean over a dialogue's references: the protocol of scoring every (dialogue,
# reference) row and averaging (stages/text_metrics.py); the keys above are the best reference.
MEAN_REF = {t: f"{t}_mean_ref" for t in ("rouge1", "rouge2", "rougeL")}
# What a summary invents, and its shape (stages/faithfulness.py defines each): shares of summaries.
FAITHFULNESS = ("invented_numbers", "invented_names", "speaker_errors", "novel_bigrams")
REPEATED = "repeated_trigrams"
HIT_MAX = "hit_max_tokens"  # how many predictions used all of generate.max_new_tokens
DIALOGUES = "dialogues"  # test dialogues scored
HUMAN = "human"  # the first human summary of each dialogue, scored as a variant is
HUMAN_ROUGE_DIALOGUES = "rouge_dialogues"  # the human row's ROUGE: dialogues with a second summary

# Which way is better, where one is: ROUGE and BLEU up; what summaries invent, repeated 3-grams
# and cut-off summaries down. Neither for the rest: novel bigrams say how abstractive a summary
# is (a human writes 0.6 here), ROUGE-L shuffled is read as its gap to ROUGE-L (up: reading the
# dialogue), gen_len is length, dialogues a count.
HIGHER_IS_BETTER = (*ROUGE_TYPES, "bleu", *MEAN_REF.values())
LOWER_IS_BETTER = ("invented_numbers", "invented_names", "speaker_errors", REPEATED, HIT_MAX)

# How every key of scores.json reads in tables (the review report, the demo), in table order.
SCORE_LABELS = {**METRIC_LABELS, SHUFFLED: "ROUGE-L shuffled",
                **{key: f"{METRIC_LABELS[t]} mean of refs" for t, key in MEAN_REF.items()},
                "invented_numbers": "invented numbers", "invented_names": "invented names",
                "speaker_errors": "speaker errors", "novel_bigrams": "novel bigrams",
                "gen_len": "gen_len", HIT_MAX: "hit max tokens", REPEATED: "repeated 3-gram",
                DIALOGUES: "dialogues", HUMAN_ROUGE_DIALOGUES: "dialogues (ROUGE)"}


def reference_streams(references: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """sacrebleu's layout: stream ``i`` holds every dialogue's ``i``-th reference. A dialogue with
    fewer references gets ``None`` there, which sacrebleu skips."""
    width = max(len(refs) for refs in references)
    return [[refs[i] if i < len(refs) else None for refs in references] for i in range(width)]


def derangement(n: int, seed: int) -> list[int]:
    """A seeded permutation with no fixed point: ``perm[i] != i`` for every ``i`` (``n >= 2``).

    Scoring prediction ``i`` against the references of dialogue ``perm[i]`` measures what a model
    earns without reading its input: a model that writes the same generic summary everywhere
    scores as well against another dialogue's references as against its own. A random order
    closed into one cycle is always a derangement.
    """
    if n < 2:
        raise ValueError(f"a derangement needs at least 2 items (got {n})")
    order = np.random.default_rng(seed).permutation(n)
    perm = [0] * n
    for position, item in enumerate(order):
        perm[int(item)] = int(order[(position + 1) % n])
    return perm
