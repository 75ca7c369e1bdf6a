"""What the scores are called and how multi-reference data is laid out.

Shared by the score stage, ``stages/text_metrics.py`` and the review report; it imports nothing
heavy, so ``review/`` can use it without loading ``datasets`` or ``evaluate``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")

# How scores.json's keys are named for people: in the plot and in the review report.
METRIC_LABELS = {"rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L", "rougeLsum": "ROUGE-Lsum",
                 "bleu": "BLEU"}
SHUFFLED = "rougeL_shuffled"  # ROUGE-L against another dialogue's references (see derangement)


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
