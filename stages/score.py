"""score: ``{paths.predictions}/<variant>.jsonl`` and ``{paths.split}/test.parquet`` ->
``metrics/scores.json`` (and its record), ``metrics/scores_plot.json``, ``{paths.examples}``, ``{paths.per_dialogue}``.

Reads params ``seed``, ``baselines``, ``paths``, ``score``, ``generate`` (``max_new_tokens``, for
``hit_max_tokens``); scores ``base``, ``lora`` and every baseline, and the ``human`` row. With
``tracking.wandb`` (read, not declared: it changes no output) the scores and every dialogue's
summaries side by side also go to a W&B run (``stages/wandb_runs.py``).

Every variant's predictions must cover the test split, each dialogue once: a file that misses
dialogues (or predicts others) is refused, naming it and what is missing, and nothing is written.

The scores record (``metrics/records/scores.json``; ``scores.json``, the DVC metrics, holds the
figures people compare of it: ``stages/records.py``) has, per variant, ROUGE-1/2/L/Lsum (0-1,
the best of a dialogue's references), BLEU (sacrebleu's 0-100), ``rougeL_shuffled``, ROUGE-1/2/L
as the mean over the references (``rouge1_mean_ref`` ...: the protocol of scoring every (dialogue, reference) row), the
faithfulness figures (``invented_numbers``, ``invented_names``, ``speaker_errors``,
``novel_bigrams``, ``repeated_trigrams``: shares of summaries, ``stages/faithfulness.py``), the mean
generated length, ``hit_max_tokens`` and ``dialogues``, the number of test dialogues scored.
``rougeL_shuffled`` is ROUGE-L of each prediction against the references of *another* test
dialogue (a fixed, seeded derangement). A model that ignores its input (the generic "#Person1#
and #Person2# talk about..." summary) scores the same on both, so the gap ``rougeL -
rougeL_shuffled`` is the evidence that a model reads the dialogue; ROUGE alone rewards the generic
shape of a summary. How each number is computed is documented in ``stages/text_metrics.py``.

The ``human`` row is the ceiling beside the models: the first human summary of each dialogue,
scored against the dialogue's other summaries (ROUGE and BLEU over the ``rouge_dialogues`` that
have a second one; ``None`` where none has) and through the same faithfulness figures (over
every dialogue). It generated nothing: its ``gen_len`` and ``hit_max_tokens`` are ``None``.

The per-dialogue scores (every figure that is a mean over dialogues) are kept for significance
tests; ``scores_plot.json`` is ROUGE and BLEU as rows for ``dvc plots`` (ROUGE times 100, so that
it shares BLEU's 0-100 axis); the examples file puts a few dialogues, their human summaries and
each variant's output side by side for reading, each summary followed by what it invents, every
text shown as text (``stages/markdown.py``: a model's output or a data set's dialogue can hold
Markdown and HTML).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from stages import cli, faithfulness, records
from stages.atomic import after_commit, write_json, write_jsonl, write_text
from stages.errors import DataError
from stages.markdown import code_block, escape
from stages.params import load_params
from stages.scoring import (
    DIALOGUES,
    HIT_MAX,
    HUMAN,
    HUMAN_ROUGE_DIALOGUES,
    MEAN_REF,
    METRIC_LABELS,
    ROUGE_TYPES,
    SCORE_LABELS,
    SHUFFLED,
    derangement,
)
from stages.sources import dialogue_key, read_parquet_columns

log = logging.getLogger(__name__)
# The sections read = dvc.yaml's `params:` (tests/test_faults.py); generate for its max_new_tokens.
PARAMS = ("seed", "baselines", "paths", "score", "generate")
SHOWN = 3  # ids named in a refusal


def infer_stage(variant: str) -> str:
    return f"infer@{variant}" if variant in ("base", "lora") else f"infer_baseline@{variant}"


def read_predictions(path: Path, variant: str) -> list[dict]:
    if not path.is_file():
        raise DataError(f"{path}: no {variant} predictions (run `dvc repro {infer_stage(variant)}`)")
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def split_dialogues(path: Path) -> dict[str, str]:
    """The test split's dialogues, each once: its key (``sources.dialogue_key``) -> the id of its
    first row, which is the id infer gives the dialogue's prediction."""
    columns = read_parquet_columns(path, ["id", "dialogue"])
    dialogues: dict[str, str] = {}
    for dialogue_id, dialogue in zip(columns["id"], columns["dialogue"]):
        dialogues.setdefault(dialogue_key(dialogue), dialogue_id)
    return dialogues


def _named(ids: list[str]) -> str:
    return ", ".join(ids[:SHOWN]) + (", ..." if len(ids) > SHOWN else "")


def check_coverage(path: Path, rows: list[dict], expected: dict[str, str], variant: str, split: Path) -> None:
    """Refuse predictions that miss a test dialogue, predict another, or predict one twice."""
    keys = [dialogue_key(r["dialogue"]) for r in rows]
    rerun = f"rerun `dvc repro {infer_stage(variant)}`"
    predicted = set(keys)
    missing = [dialogue_id for key, dialogue_id in expected.items() if key not in predicted]
    if missing:
        raise DataError(f"{path}: {len(missing)} of the {len(expected)} dialogues of {split} have no "
                        f"prediction ({_named(missing)}): {rerun}")
    extra = [r["id"] for r, key in zip(rows, keys) if key not in expected]
    if extra:
        raise DataError(f"{path}: {len(extra)} predictions of dialogues not in {split} ({_named(extra)}): {rerun}")
    if len(keys) != len(expected):
        raise DataError(f"{path}: {len(keys) - len(expected)} dialogues predicted more than once: {rerun}")


def rouge_bleu(predictions: list[str], references: list[list[str]], use_stemmer: bool,
               seed: int) -> tuple[dict, dict]:
    """ROUGE (best and mean of the references), BLEU and rougeL_shuffled; and per dialogue."""
    from stages import text_metrics

    result = text_metrics.score(predictions, references, use_stemmer)
    summary = {k: round(result[k], 6) for k in (*ROUGE_TYPES, "bleu", *MEAN_REF.values())}
    if len(predictions) > 1:
        others = [references[j] for j in derangement(len(predictions), seed)]
        shuffled = text_metrics.rouge(predictions, others, use_stemmer, types=("rougeL",))
        summary[SHUFFLED] = round(shuffled["rougeL"], 6)
    else:  # one test dialogue has no other dialogue to be compared with
        summary[SHUFFLED] = None
    return summary, result["per_item"]


def faithfulness_scores(summaries: list[str], dialogues: list[str]) -> tuple[dict, dict]:
    per_item = faithfulness.per_summary(summaries, dialogues)
    return {k: round(sum(v) / len(v), 6) for k, v in per_item.items()}, per_item


def in_order(summary: dict) -> dict:
    return {key: summary[key] for key in SCORE_LABELS if key in summary}


def score_variant(rows: list[dict], use_stemmer: bool, seed: int, max_new_tokens: int) -> tuple[dict, dict]:
    """Summary scores (rounded for readable diffs) and per-dialogue scores."""
    predictions = [r["prediction"] for r in rows]
    summary, per_item = rouge_bleu(predictions, [r["references"] for r in rows], use_stemmer, seed)
    figures, per_summary = faithfulness_scores(predictions, [r["dialogue"] for r in rows])
    summary |= figures | {
        "gen_len": round(sum(r["gen_tokens"] for r in rows) / len(rows), 3),
        # infer counts the tokens generated, end of sequence included: a summary at the cap was cut
        # off, or ended on the last token allowed.
        HIT_MAX: sum(r["gen_tokens"] >= max_new_tokens for r in rows),
        DIALOGUES: len(rows)}
    return in_order(summary), per_item | per_summary


def score_human(rows: list[dict], use_stemmer: bool, seed: int) -> dict:
    """The first human summary of each dialogue as a variant: against the dialogue's other
    summaries where it has some, and through the faithfulness figures everywhere."""
    several = [r for r in rows if len(r["references"]) > 1]
    if several:
        summary, _ = rouge_bleu([r["references"][0] for r in several], [r["references"][1:] for r in several],
                                use_stemmer, seed)
    else:
        summary = dict.fromkeys((*ROUGE_TYPES, "bleu", *MEAN_REF.values(), SHUFFLED))
    figures, _ = faithfulness_scores([r["references"][0] for r in rows], [r["dialogue"] for r in rows])
    summary |= figures | {"gen_len": None, HIT_MAX: None, DIALOGUES: len(rows), HUMAN_ROUGE_DIALOGUES: len(several)}
    return in_order(summary)


def plot_rows(scores: dict[str, dict]) -> list[dict]:
    """One row per variant and metric, every score on 0-100 (sacrebleu's BLEU scale)."""
    return [{"metric": label, "variant": variant,
             "score": round(summary[key] * (1 if key == "bleu" else 100), 4)}
            for key, label in METRIC_LABELS.items() for variant, summary in scores.items()
            if summary.get(key) is not None]


def marked(summary: str, dialogue: str) -> str:
    """A summary as Markdown text, followed by what it invents (``stages/faithfulness.py``)."""
    invented = faithfulness.check(summary, dialogue).invented()
    return escape(summary) + (f" ⚠ invented: {'; '.join(escape(i) for i in invented)}" if invented else "")


def examples_markdown(by_variant: dict[str, list[dict]], count: int) -> str:
    variants = list(by_variant)
    first = by_variant[variants[0]]
    parts = [f"# Test dialogues side by side ({', '.join(variants)} vs human)\n",
             "After a summary: the numbers, names and speakers it states that its dialogue does not "
             "(stages/faithfulness.py).\n"]
    for i, row in enumerate(first[:count]):
        dialogue = row["dialogue"]
        parts.append(f"## {escape(row['id'])}\n\n{code_block(dialogue)}\n")
        parts.extend(f"- **human {n + 1}**: {marked(ref, dialogue)}" for n, ref in enumerate(row["references"]))
        parts.extend(f"- **{v}**: {marked(by_variant[v][i]['prediction'], dialogue)}" for v in variants)
        parts.append("")
    return "\n".join(parts) + "\n"


def headline(variant: str, scores: dict) -> str:
    """One log line of a variant's scores: ROUGE, BLEU and what its summaries invent."""
    shown = [f"{METRIC_LABELS[key]} {scores[key]:.{2 if key == 'bleu' else 4}f}" for key in (*ROUGE_TYPES, "bleu")
             if scores.get(key) is not None]
    shown += [f"{key} {scores[key]:.3f}" for key in ("invented_numbers", "invented_names")]
    return f"{variant}: {', '.join(shown)}"


def main(argv: list[str] | None = None) -> None:
    args = cli.parser(__doc__).parse_args(argv)

    def body() -> None:
        params = load_params(args.params)
        paths, variants = params.paths, params.variants
        log.debug("score params: seed=%s %s max_new_tokens=%s variants=%s", params.seed, params.score,
                 params.generate.max_new_tokens, variants)
        by_variant = {v: read_predictions(paths.predictions_file(v), v) for v in variants}
        expected = split_dialogues(paths.split_file("test"))
        for v, rows in by_variant.items():
            check_coverage(paths.predictions_file(v), rows, expected, v, paths.split_file("test"))
        ids = {v: [r["id"] for r in rows] for v, rows in by_variant.items()}
        if len({tuple(i) for i in ids.values()}) != 1:
            raise DataError(f"predictions of {', '.join(variants)} list the test dialogues in different "
                            f"orders: rerun their infer stages on the same test split")
        scores, per_item = {}, {}
        for variant, rows in by_variant.items():
            scores[variant], per_item[variant] = score_variant(rows, params.score.use_stemmer, params.seed,
                                                               params.generate.max_new_tokens)
            log.info("%s", headline(variant, scores[variant]))
        scores[HUMAN] = score_human(by_variant["base"], params.score.use_stemmer, params.seed)
        log.info("%s", headline(HUMAN, scores[HUMAN]))
        write_jsonl(paths.per_dialogue, [
            {"id": dialogue_id, **{f"{v}.{k}": per_item[v][k][i] for v in per_item for k in per_item[v]}}
            for i, dialogue_id in enumerate(ids["base"])
        ])
        write_text(paths.examples, examples_markdown(by_variant, params.score.examples))
        write_json(paths.scores_plot(), plot_rows(scores))
        records.write_scores(paths.scores_record(), paths.scores(), scores)
        if params.tracking.wandb:  # read, never declared: switching W&B on or off reruns nothing
            from stages import wandb_runs

            def to_wandb() -> None:
                run = wandb_runs.start(params, params.tracking.wandb_project, "score")
                wandb_runs.log_scores(run, scores, by_variant)

            after_commit(to_wandb)  # once the outputs are in place

    cli.run(body, PARAMS, args.params)


if __name__ == "__main__":
    main()
