"""score: ``{paths.predictions}/<variant>.jsonl`` -> ``metrics/scores.json``,
``metrics/scores_plot.json``, ``{paths.examples}``, ``{paths.per_dialogue}``.

Reads params ``seed``, ``baselines``, ``paths``, ``score``; scores ``base``, ``lora`` and every
baseline.

``scores.json`` holds, per variant, ROUGE-1/2/L/Lsum (0-1), BLEU (sacrebleu's 0-100), the mean
generated length and ``rougeL_shuffled``: ROUGE-L of each prediction against the references of
*another* test dialogue (a fixed, seeded derangement). A model that ignores its input (the
generic "#Person1# and #Person2# talk about..." summary) scores the same on both, so the gap
``rougeL - rougeL_shuffled`` is the evidence that a model reads the dialogue; ROUGE alone rewards
the generic shape of a summary. How each number is computed is documented in
``stages/text_metrics.py``. The per-dialogue scores are kept for significance tests;
``scores_plot.json`` is the same numbers as rows for ``dvc plots`` (ROUGE times 100, so that it
shares BLEU's 0-100 axis); the examples file puts a few dialogues, their human summaries and
each variant's output side by side for reading, every text shown as text (``stages/markdown.py``:
a model's output or a data set's dialogue can hold Markdown and HTML).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from stages import cli
from stages.atomic import write_json, write_jsonl, write_text
from stages.errors import DataError
from stages.markdown import code_block, escape
from stages.params import load_params
from stages.scoring import METRIC_LABELS, ROUGE_TYPES, SHUFFLED, derangement

log = logging.getLogger(__name__)
PARAMS = ("seed", "baselines", "paths", "score")  # sections read = dvc.yaml's `params:` (tests/test_faults.py)


def read_predictions(path: Path, variant: str) -> list[dict]:
    if not path.is_file():
        stage = f"infer@{variant}" if variant in ("base", "lora") else f"infer_baseline@{variant}"
        raise DataError(f"{path}: no {variant} predictions (run `dvc repro {stage}`)")
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def score_variant(rows: list[dict], use_stemmer: bool, seed: int) -> tuple[dict, dict]:
    """Summary scores (rounded for readable diffs) and per-dialogue scores."""
    from stages import text_metrics

    predictions, references = [r["prediction"] for r in rows], [r["references"] for r in rows]
    result = text_metrics.score(predictions, references, use_stemmer)
    summary = {k: round(result[k], 6) for k in (*ROUGE_TYPES, "bleu")}
    summary["gen_len"] = round(sum(r["gen_tokens"] for r in rows) / len(rows), 3)
    if len(rows) > 1:
        others = [references[j] for j in derangement(len(rows), seed)]
        shuffled = text_metrics.Rouge(keep_in_memory=True).compute(
            predictions=predictions, references=others, use_stemmer=use_stemmer)
        summary[SHUFFLED] = round(shuffled["rougeL"], 6)
    else:  # one test dialogue has no other dialogue to be compared with
        summary[SHUFFLED] = None
    return summary, result["per_item"]


def plot_rows(scores: dict[str, dict]) -> list[dict]:
    """One row per variant and metric, every score on 0-100 (sacrebleu's BLEU scale)."""
    return [{"metric": label, "variant": variant,
             "score": round(summary[key] * (1 if key == "bleu" else 100), 4)}
            for key, label in METRIC_LABELS.items() for variant, summary in scores.items()]


def examples_markdown(by_variant: dict[str, list[dict]], count: int) -> str:
    variants = list(by_variant)
    first = by_variant[variants[0]]
    parts = [f"# Test dialogues side by side ({', '.join(variants)} vs human)\n"]
    for i, row in enumerate(first[:count]):
        parts.append(f"## {escape(row['id'])}\n\n{code_block(row['dialogue'])}\n")
        parts.extend(f"- **human {n + 1}**: {escape(ref)}" for n, ref in enumerate(row["references"]))
        parts.extend(f"- **{v}**: {escape(by_variant[v][i]['prediction'])}" for v in variants)
        parts.append("")
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = cli.parser(__doc__).parse_args(argv)

    def body() -> None:
        params = load_params(args.params)
        paths, variants = params.paths, params.variants
        log.info("score params: seed=%s %s variants=%s", params.seed, params.score, variants)
        by_variant = {v: read_predictions(paths.predictions_file(v), v) for v in variants}
        ids = {v: [r["id"] for r in rows] for v, rows in by_variant.items()}
        if len({tuple(i) for i in ids.values()}) != 1:
            raise DataError(f"predictions of {', '.join(variants)} cover different dialogues: "
                            f"rerun their infer stages on the same test split")
        scores, per_item = {}, {}
        for variant, rows in by_variant.items():
            scores[variant], per_item[variant] = score_variant(rows, params.score.use_stemmer, params.seed)
            log.info("%s: %s", variant, scores[variant])
        write_jsonl(paths.per_dialogue, [
            {"id": dialogue_id, **{f"{v}.{k}": per_item[v][k][i] for v in per_item for k in per_item[v]}}
            for i, dialogue_id in enumerate(ids["base"])
        ])
        write_text(paths.examples, examples_markdown(by_variant, params.score.examples))
        write_json(paths.scores_plot(), plot_rows(scores))
        write_json(paths.scores(), scores)

    cli.run(body, PARAMS, args.params)


if __name__ == "__main__":
    main()
