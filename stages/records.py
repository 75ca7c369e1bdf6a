"""What each stage records, and which part of it people compare.

A stage writes the whole record of its run to ``{paths.metrics}/records/<name>.json``: counts,
every figure, which devices, the digest of the params it read (``params_sha256``), library
versions. That is for a person asking what exactly a run did, and for tools (the review report,
the model card, the demo's table). The figures a person compares between revisions and
experiments (the scores, and the cost a reviewer weighs against them) also go to
``{paths.metrics}/<name>.json``, which ``dvc.yaml`` declares as DVC metrics, so that
``dvc metrics show`` holds a few dozen values and ``dvc exp show`` a few dozen metric columns
rather than every hash and count. Both files are written in the stage's transaction: they agree.

Split and tokenize keep records only: their counts change with the data, which the params diff
and ``dvc status`` already say, and nobody ranks experiments by them.
"""

from __future__ import annotations

from pathlib import Path

from stages.atomic import write_json
from stages.scoring import HUMAN, METRIC_LABELS

# Per variant: ROUGE-1/2/L/Lsum and BLEU, what summaries invent most often, and their length.
SCORES = (*METRIC_LABELS, "invented_numbers", "invented_names", "gen_len")
HUMAN_SCORES = tuple(METRIC_LABELS)  # the ceiling: the human summaries' ROUGE and BLEU
# Training: where it ended, what it cost, and what automatic batch sizing settled on.
TRAIN = ("best_eval_loss", "steps", "wall_time_s", "samples_per_second", "peak_memory_mb", "trainable_params",
         "batch_size", "gradient_accumulation_steps")
INFER = ("wall_time_s", "generated_tokens_per_second", "peak_memory_mb")


def compared(record: dict, keys: tuple[str, ...]) -> dict:
    return {key: record[key] for key in keys if key in record}


def write(record_file: Path, record: dict, metrics_file: Path | None = None, keys: tuple[str, ...] = ()) -> None:
    """The record, and where ``metrics_file`` is given its ``keys`` as the stage's DVC metrics."""
    write_json(record_file, record)
    if metrics_file is not None:
        write_json(metrics_file, compared(record, keys))


def write_scores(record_file: Path, metrics_file: Path, scores: dict[str, dict]) -> None:
    write_json(record_file, scores)
    write_json(metrics_file, {variant: compared(row, HUMAN_SCORES if variant == HUMAN else SCORES)
                              for variant, row in scores.items()})
