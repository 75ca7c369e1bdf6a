"""What the faithfulness figures and the human row add to the score stage, at DialogSum's test size.

    python -m benchmarks.faithfulness [--dialogues 500] [--repeats 3]

DialogSum's test split is 1,500 rows: 500 dialogues with three human summaries each. This builds
that shape from the bundled sample (``data/sample/``: its dialogues, each with its own summary and
two others' as the second and third references, so that every text has a real summary's length)
and times, best of ``--repeats`` (the least disturbed by a busy machine), in one process:

- ``faithfulness``: ``stages.faithfulness`` on the base and LoRA predictions (here: each dialogue's
  own summary) and on the human row's first summaries, 3 x 500 (summary, dialogue) pairs;
- ``human row``: ``stages.score.score_human``, the first summary against the two others (ROUGE,
  its mean over references, BLEU, rougeL_shuffled) and through the faithfulness figures;
- ``one variant``: ``stages.score.score_variant`` as the stage runs it per variant, for scale.
  ROUGE's mean over references costs nothing apart: it is read from the per-reference scores the
  best-of-references ROUGE computes anyway.

What the issue's 10 s bounds is the first two for a run that scores base and LoRA: the
faithfulness of 2 x 500 predictions plus the human row (printed as ``added``).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

from stages import faithfulness
from stages.score import score_human, score_variant

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample" / "dialogsum_sample.jsonl"


def dialogsum_shaped_rows(dialogues: int) -> list[dict]:
    """``dialogues`` test dialogues with three references each, as infer writes them."""
    sample = [json.loads(line) for line in SAMPLE.open(encoding="utf-8")]
    if not 1 <= dialogues <= len(sample) // 3:
        raise SystemExit(f"error: --dialogues must be 1 to {len(sample) // 3} (the sample has {len(sample)} rows)")
    return [{"id": row["id"], "dialogue": row["dialogue"], "prediction": row["summary"], "gen_tokens": 30,
             "references": [row["summary"], sample[i + dialogues]["summary"], sample[i + 2 * dialogues]["summary"]]}
            for i, row in enumerate(sample[:dialogues])]


def best_of(repeats: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def measure(dialogues: int, repeats: int) -> dict[str, float]:
    rows = dialogsum_shaped_rows(dialogues)
    summaries = [r["prediction"] for r in rows] * 2 + [r["references"][0] for r in rows]
    texts = [r["dialogue"] for r in rows] * 3
    times = {
        "faithfulness": best_of(repeats, lambda: faithfulness.per_summary(summaries, texts)),
        "faithfulness, base + lora": best_of(repeats, lambda: faithfulness.per_summary(summaries[:2 * len(rows)],
                                                                                       texts[:2 * len(rows)])),
        "human row": best_of(repeats, lambda: score_human(rows, use_stemmer=True, seed=42)),
        "one variant": best_of(repeats, lambda: score_variant(rows, use_stemmer=True, seed=42, max_new_tokens=200)),
    }
    times["added"] = times["faithfulness, base + lora"] + times["human row"]
    return {key: round(value, 3) for key, value in times.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dialogues", type=int, default=500, help="test dialogues, 3 references each (default: 500)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each, best kept (default: 3)")
    args = parser.parse_args(argv)
    times = measure(args.dialogues, args.repeats)
    print(f"{args.dialogues} dialogues x 3 references ({3 * args.dialogues:,} rows), best of {args.repeats}:\n")
    print("| what | seconds |\n|---|---:|")
    for key, value in times.items():
        print(f"| {key} | {value:.3f} |")


if __name__ == "__main__":
    main()
