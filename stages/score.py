"""score: ``{paths.predictions}/<variant>.jsonl`` -> ``metrics/scores.json``,
``metrics/scores_plot.json``, ``{paths.examples}``, ``{paths.per_dialogue}``.

Reads params ``finetunes``, ``paths``, ``score``; scores ``base`` and every fine-tuned variant.

``scores.json`` holds ROUGE-1/2/L/Lsum (0-1) and BLEU (sacrebleu's 0-100) and the mean generated
length per variant, so ``dvc metrics diff`` shows base and LoRA side by side. How each number is
computed is documented in ``stages/text_metrics.py``. The per-dialogue scores are kept for
significance tests; ``scores_plot.json`` is the same numbers as rows for ``dvc plots`` (ROUGE
times 100, so that it shares BLEU's 0-100 axis); the examples file puts a few dialogues, their human summaries and each
variant's output side by side for reading.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from stages import cli
from stages.atomic import write_json, write_jsonl, write_text
from stages.errors import DataError
from stages.params import load_params

log = logging.getLogger(__name__)


def read_predictions(folder: str, variant: str) -> list[dict]:
    path = Path(folder) / f"{variant}.jsonl"
    if not path.is_file():
        stage = "infer_base" if variant == "base" else f"infer@{variant}"
        raise DataError(f"{path}: no {variant} predictions (run `dvc repro {stage}`)")
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def score_variant(rows: list[dict], use_stemmer: bool) -> tuple[dict, dict]:
    """Summary scores (rounded for readable diffs) and per-dialogue scores."""
    from stages import text_metrics

    result = text_metrics.score([r["prediction"] for r in rows], [r["references"] for r in rows],
                                use_stemmer)
    summary = {k: round(result[k], 6) for k in (*text_metrics.ROUGE_TYPES, "bleu")}
    summary["gen_len"] = round(sum(r["gen_tokens"] for r in rows) / len(rows), 3)
    return summary, result["per_item"]


# How scores.json's keys are named for people: in the plot and in the review report.
METRIC_LABELS = {"rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L", "rougeLsum": "ROUGE-Lsum",
                 "bleu": "BLEU"}


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
        parts.append(f"## {row['id']}\n\n```text\n{row['dialogue']}\n```\n")
        parts.extend(f"- **human {n + 1}**: {ref}" for n, ref in enumerate(row["references"]))
        parts.extend(f"- **{v}**: {by_variant[v][i]['prediction']}" for v in variants)
        parts.append("")
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = cli.parser(__doc__).parse_args(argv)

    def body() -> None:
        params = load_params(args.params)
        variants = ["base", *params.finetunes]
        log.info("score params: %s variants=%s", params.score, variants)
        by_variant = {v: read_predictions(params.paths.predictions, v) for v in variants}
        ids = {v: [r["id"] for r in rows] for v, rows in by_variant.items()}
        if len({tuple(i) for i in ids.values()}) != 1:
            raise DataError(f"predictions of {', '.join(variants)} cover different dialogues: "
                            f"rerun their infer stages on the same test split")
        scores, per_item = {}, {}
        for variant, rows in by_variant.items():
            scores[variant], per_item[variant] = score_variant(rows, params.score.use_stemmer)
            log.info("%s: %s", variant, scores[variant])
        first_ids = ids["base"]
        write_jsonl(params.paths.per_dialogue, [
            {"id": dialogue_id, **{f"{v}.{k}": per_item[v][k][i] for v in per_item for k in per_item[v]}}
            for i, dialogue_id in enumerate(first_ids)
        ])
        write_text(params.paths.examples, examples_markdown(by_variant, params.score.examples))
        write_json(f"{params.paths.metrics}/scores_plot.json", plot_rows(scores))
        write_json(f"{params.paths.metrics}/scores.json", scores)

    cli.run(body)


if __name__ == "__main__":
    main()
