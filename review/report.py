"""Reviewing a change: a markdown report fit for a pull-request comment.

    python -m review.report [--rev main] [--bootstrap N] [--seed N] [--examples N] [--out report.md]
    python -m review.report --rev-a A --rev-b B    # two revisions; experiment names work too

Compares the workspace (or ``--rev-b``) with a git revision (``--rev``, alias ``--rev-a``), under a
verdict line (which scores moved beyond their 95 % interval between the revisions, which way):

1. params that changed, and every variant's scores (ROUGE-1/2/L/Lsum, BLEU, ROUGE as the mean of
   the references, what the summaries invent, length; and the human row) with the cost of
   training and inference: old, new, absolute and relative change, from DVC's params diff and
   its diff of each stage's whole record (``metrics/records/``, ``stages/records.py``; a revision
   without records: its metrics files, ``review.revisions.metrics_diff``); unchanged rows folded,
   cost figures that depend on the machine's load flagged;
2. significance by paired bootstrap over test dialogues (``review/bootstrap.py``) of ROUGE, BLEU
   and the invented numbers, names, speakers and novel bigrams: every variant against base in the
   new revision, and each variant whose outputs changed, new against old;
3. the test dialogues whose LoRA summaries changed most (ROUGE-L), old and new side by side.

Dialogues, human summaries and model outputs are untrusted text: they are shown as text, never as
markup, links or mentions (``stages/markdown.py``), and so are params values.

The bootstrap's resample count and seed and the number of examples come from params.yaml
``review`` (of the new revision); the flags override them for one report.

Reads the per-dialogue scores and predictions of both revisions (``paths`` in params.yaml) with
``dvc.api.open``: run ``dvc repro`` (or ``dvc pull``) first. Prints the report, or with ``--out``
writes it there instead and prints one line saying so: the report quotes dialogues verbatim at
the start of a line, and in a CI log (GitHub Actions) a line starting with ``::`` is a command to
the runner (``::add-mask::``, ``::error::``, ``::stop-commands::``), so a data set would command
the CI job whose log it reached. A revision that does not exist or lacks the outputs is one
``error:`` line, exit 1.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from review import bootstrap
from review.revisions import (
    ReviewError,
    Revision,
    metrics_diff,
    open_repo,
    params_diff,
    read_jsonl,
    resolve,
    revision_params,
)
from stages.markdown import code_block, escape
from stages.scoring import (
    FAITHFULNESS,
    HIGHER_IS_BETTER,
    HUMAN,
    LOWER_IS_BETTER,
    MEAN_REF,
    REPEATED,
    ROUGE_TYPES,
    SCORE_LABELS,
    SHUFFLED,
)

if TYPE_CHECKING:
    from dvc.repo import Repo

    from stages.params import Paths

FOUR_DECIMALS = (*ROUGE_TYPES, SHUFFLED, *MEAN_REF.values(), *FAITHFULNESS, REPEATED)
# Every key of scores.json (stages/score.py): ROUGE of the best and the mean of the references,
# rougeL_shuffled (ROUGE-L against another dialogue's references; the gap to ROUGE-L is what a
# model earns by reading its dialogue), what summaries invent, their length, the dialogues scored.
SCORES = SCORE_LABELS
BOOTSTRAPPED = (*ROUGE_TYPES, *FAITHFULNESS)  # means of per-dialogue scores (BLEU apart: a corpus score)
TRAIN_COST = ("wall_time_s", "samples_per_second", "input_tokens_per_second", "peak_memory_mb",
              "trainable_params", "weights_mb")
INFER_COST = ("wall_time_s", "dialogues_per_second", "generated_tokens_per_second", "peak_memory_mb")
# Cost figures that depend on the machine and what else ran on it: one run on each side is not a
# result (a busy machine moved a wall time by +70 %); trainable_params and weights_mb are exact.
MACHINE_DEPENDENT = ("wall_time_s", "samples_per_second", "input_tokens_per_second", "peak_memory_mb",
                     "dialogues_per_second", "generated_tokens_per_second")
UP, DOWN, STILL = "▲", "▼", "–"  # moved beyond the 95 % interval up or down; within it
BASE = "base"  # the variant without fine-tuning, which every other variant is tested against
EXAMPLE_VARIANT = "lora"
DIALOGUE_LINES, DIALOGUE_CHARS = 12, 900  # enough to follow a dialogue in a PR comment


@dataclass(frozen=True)
class Side:
    """One revision's test outputs, keyed by dialogue id."""

    revision: Revision
    scores: dict[str, dict]  # id -> {"<variant>.<metric>": per-dialogue score}
    predictions: dict[str, dict[str, dict]]  # variant -> id -> prediction row

    @property
    def variants(self) -> list[str]:
        return list(self.predictions)


def ordered(variants: set[str]) -> list[str]:
    """base first, the human ceiling last."""
    return sorted(variants, key=lambda v: (v != BASE, v == HUMAN, v))


def load_side(repo: Repo, paths: Paths, revision: Revision) -> Side:
    scores = {row["id"]: row for row in read_jsonl(repo, paths.per_dialogue, revision)}
    first = next(iter(scores.values()), {})
    variants = ordered({key.split(".", 1)[0] for key in first if key != "id"})
    predictions = {v: {row["id"]: row for row in read_jsonl(repo, str(paths.predictions_file(v)), revision)}
                   for v in variants}
    return Side(revision, scores, predictions)


# --- numbers -----------------------------------------------------------------------------------

def number(value: object, key: str) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.4f}" if key in FOUR_DECIMALS else f"{value:,.2f}"


def signed(value: float | None, key: str) -> str:
    text = number(value, key)
    return text if value is None or value < 0 else f"+{text}"


def relative(change: dict) -> str:
    old, diff = change.get("old"), change.get("diff")
    if not isinstance(old, int | float) or not isinstance(diff, int | float) or old == 0:
        return "—"
    return f"{diff / old:+.1%}"


# --- sections ----------------------------------------------------------------------------------

def params_section(changes: dict[str, dict]) -> list[str]:
    if not changes:
        return ["### Params", "", "No params changed.", ""]
    lines = ["### Params", "", "| param | old | new |", "|---|---|---|"]
    lines += [f"| `{key}` | {escape(str(c.get('old', '—')))} | {escape(str(c.get('new', '—')))} |"
              for key, c in sorted(changes.items())]
    return [*lines, ""]


def unchanged(change: dict) -> bool:
    return change.get("old") == change.get("new")


def metric_table(title: str, group: str, rows: list[tuple[str, str, dict]], old: Revision,
                 new: Revision, note: str = "") -> list[str]:
    """The rows that changed; the unchanged ones folded below them (GitHub's <details>)."""
    head = [f"| {group} | metric | {escape(old.label)} | {escape(new.label)} | Δ | Δ % |",
            "|---|---|---:|---:|---:|---:|"]

    def line(group: str, key: str, change: dict) -> str:
        flag = " †" if key in MACHINE_DEPENDENT and not unchanged(change) else ""
        return (f"| {group} | {SCORES.get(key, key)} | {number(change.get('old'), key)} "
                f"| {number(change.get('new'), key)} | {signed(change.get('diff'), key)} | {relative(change)}{flag} |")

    changed = [line(*row) for row in rows if not unchanged(row[2])]
    same = [line(*row) for row in rows if unchanged(row[2])]
    lines = [f"### {title}", "", *([*head, *changed, ""] if changed else ["Nothing changed.", ""])]
    if changed and note and any(" † |" in row for row in changed):
        lines += [note, ""]
    if same:
        lines += [f"<details><summary>{len(same)} unchanged</summary>", "", *head, *same, "", "</details>", ""]
    return lines


def score_rows(diff: dict, paths: Paths) -> list[tuple[str, str, dict]]:
    scores = diff.get(str(paths.scores()), {})
    variants = ordered({key.split(".", 1)[0] for key in scores})
    return [(v, key, scores.get(f"{v}.{key}", {})) for v in variants for key in SCORES]


def cost_rows(diff: dict, paths: Paths, variants: list[str]) -> list[tuple[str, str, dict]]:
    rows = []
    for v in variants:
        if v != BASE:
            train = diff.get(str(paths.train_metrics(v)), {})
            rows += [(stage_name("train", v), key, train.get(key, {})) for key in TRAIN_COST]
    for v in variants:
        infer = diff.get(str(paths.infer_metrics(v)), {})
        rows += [(stage_name("infer", v), key, infer.get(key, {})) for key in INFER_COST]
    return rows


def stage_name(kind: str, variant: str) -> str:
    """dvc.yaml's name of a variant's train or infer stage."""
    if kind == "train":
        return "train_lora" if variant == "lora" else f"train_baseline@{variant}"
    return f"infer@{variant}" if variant in (BASE, "lora") else f"infer_baseline@{variant}"


def check_scores(diff: dict, paths: Paths, old: Revision, new: Revision) -> None:
    scores = diff.get(str(paths.scores()), {}).values()
    for side, revision in (("old", old), ("new", new)):
        if not any(change.get(side) is not None for change in scores):
            raise ReviewError(f"{revision.label} has no {paths.scores()}: run `dvc repro` there "
                              f"(and commit it), or `dvc pull` it")


# --- significance ------------------------------------------------------------------------------

def compare(ids: list[str], a: Side, a_variant: str, b: Side, b_variant: str, resamples: int,
            seed: int) -> dict[str, bootstrap.Comparison]:
    """``b_variant`` of ``b`` against ``a_variant`` of ``a`` on the dialogues ``ids``: ROUGE, what
    the summaries invent (where both revisions scored it per dialogue) and BLEU."""
    keys = [key for key in BOOTSTRAPPED
            if all(f"{a_variant}.{key}" in a.scores[i] and f"{b_variant}.{key}" in b.scores[i] for i in ids)]
    result = {key: bootstrap.paired_mean([a.scores[i][f"{a_variant}.{key}"] for i in ids],
                                         [b.scores[i][f"{b_variant}.{key}"] for i in ids], resamples, seed)
              for key in keys}
    result["bleu"] = bootstrap.paired_corpus_bleu(
        [a.predictions[a_variant][i]["prediction"] for i in ids],
        [b.predictions[b_variant][i]["prediction"] for i in ids],
        [b.predictions[b_variant][i]["references"] for i in ids], resamples, seed)
    return result


def mark(c: bootstrap.Comparison) -> str:
    return (UP if c.diff > 0 else DOWN) if c.significant else STILL


def judged(key: str, diff: float) -> str:
    """' (better)' or ' (worse)' for a metric with a better direction; novel bigrams (how
    abstractive a summary is) have none: ' (more abstractive)' or ' (more extractive)'."""
    if key in HIGHER_IS_BETTER or key in LOWER_IS_BETTER:
        return f" ({'better' if (diff > 0) == (key in HIGHER_IS_BETTER) else 'worse'})"
    if key == "novel_bigrams":
        return f" ({'more abstractive' if diff > 0 else 'more extractive'})"
    return ""


def moved(comparisons: dict[str, bootstrap.Comparison]) -> list[str]:
    """The metrics that moved beyond their interval: 'ROUGE-L ▼ -0.0123 (worse)'."""
    return [f"{SCORES[key]} {mark(c)} {signed(c.diff, key)}{judged(key, c.diff)}"
            for key, c in comparisons.items() if c.significant]


def significance_rows(title: str, comparisons: dict[str, bootstrap.Comparison]) -> list[str]:
    rows = []
    for key, c in comparisons.items():
        rows.append(f"| {title} | {SCORES[key]} | {number(c.a, key)} | {number(c.b, key)} | {signed(c.diff, key)} "
                    f"| [{signed(c.low, key)}, {signed(c.high, key)}] | {mark(c)} |")
    return rows


def significance_section(old: Side, new: Side, resamples: int, seed: int) -> tuple[list[str], str]:
    """The section, and the verdict: what moved beyond its interval between the revisions."""
    ids = list(new.scores)
    lines = [f"### Significance (paired bootstrap, {resamples} resamples, 95 % interval)", "",
             f"{UP} / {DOWN}: B − A went up / down and its 95 % interval excludes 0; {STILL}: within "
             "the interval. Higher is better for ROUGE and BLEU, lower for invented numbers, names and "
             "speakers; novel bigrams say how abstractive a summary is, neither better nor worse.", "",
             "| B vs A | metric | A | B | B − A | 95 % interval | moved |",
             "|---|---|---:|---:|---:|---|:---:|"]
    notes, verdict = [], []
    for v in new.variants:
        if v != BASE and BASE in new.variants:
            lines += significance_rows(f"{v} vs {BASE} ({new.revision.label}, {len(ids)} dialogues)",
                                       compare(ids, new, BASE, new, v, resamples, seed))
    for v in new.variants:
        common = [i for i in ids if i in old.scores]
        if v not in old.variants or not common:
            notes.append(f"- {v}: not comparable across revisions (absent, or no test dialogue in common)")
        elif all(old.predictions[v][i]["prediction"] == new.predictions[v][i]["prediction"] for i in common):
            notes.append(f"- {v}: outputs identical in both revisions")
        else:
            title = f"{v}: {new.revision.label} vs {old.revision.label} ({len(common)} dialogues)"
            comparisons = compare(common, old, v, new, v, resamples, seed)
            lines += significance_rows(title, comparisons)
            verdict += [f"{v} {', '.join(moved(comparisons))}"] if moved(comparisons) else []
    summary = (f"**Verdict:** beyond the 95 % interval, {new.revision.label} vs {old.revision.label}: "
               + "; ".join(verdict) if verdict else
               f"**Verdict:** no score moved beyond its 95 % interval ({new.revision.label} vs {old.revision.label}).")
    return ([*lines, "", *notes, ""] if notes else [*lines, ""]), summary


# --- examples ----------------------------------------------------------------------------------

def most_changed(old: Side, new: Side, variant: str, count: int) -> list[str]:
    """Dialogues whose ``variant`` summaries differ, largest ROUGE-L change first."""
    key = f"{variant}.rougeL"
    changed = [i for i in new.scores if i in old.scores
               and old.predictions[variant][i]["prediction"] != new.predictions[variant][i]["prediction"]]
    return sorted(changed, key=lambda i: -abs(new.scores[i][key] - old.scores[i][key]))[:count]


def truncated(dialogue: str) -> str:
    lines = dialogue.strip().splitlines()
    text = "\n".join(lines[:DIALOGUE_LINES])
    if len(text) > DIALOGUE_CHARS:
        text = text[:DIALOGUE_CHARS].rsplit(" ", 1)[0] + " …"
    hidden = len(lines) - DIALOGUE_LINES
    return text + (f"\n… ({hidden} more lines)" if hidden > 0 else "")


def example(dialogue_id: str, old: Side, new: Side, variant: str) -> list[str]:
    row, key = new.predictions[variant][dialogue_id], f"{variant}.rougeL"
    before, after = old.scores[dialogue_id][key], new.scores[dialogue_id][key]
    lines = [f"#### {escape(dialogue_id)}: ROUGE-L {before:.4f} → {after:.4f}", "",
             code_block(truncated(row["dialogue"])), "", "| | summary |", "|---|---|"]
    lines += [f"| human {n} | {escape(ref)} |" for n, ref in enumerate(row["references"], 1)]
    lines += [f"| {escape(side.revision.label)} | {escape(side.predictions[variant][dialogue_id]['prediction'])} |"
              for side in (old, new)]
    return [*lines, ""]


def examples_section(old: Side, new: Side, count: int) -> list[str]:
    title = f"### Test dialogues where the {EXAMPLE_VARIANT} summaries differ most"
    if EXAMPLE_VARIANT not in old.variants or EXAMPLE_VARIANT not in new.variants:
        return [title, "", f"No {EXAMPLE_VARIANT} outputs in both revisions.", ""]
    ids = most_changed(old, new, EXAMPLE_VARIANT, count)
    if not ids:
        return [title, "", f"The {EXAMPLE_VARIANT} summaries are identical.", ""]
    return [title, "", *(line for i in ids for line in example(i, old, new, EXAMPLE_VARIANT))]


# --- the report --------------------------------------------------------------------------------

def build_report(repo: Repo, old: Revision, new: Revision, resamples: int | None = None,
                 seed: int | None = None, examples: int | None = None) -> str:
    """The report; ``None`` settings come from the new revision's params.yaml ``review``."""
    if old.sha is not None and old.sha == new.sha:
        raise ReviewError(f"{old.label} and {new.label} are the same commit: nothing to compare")
    paths, settings = revision_params(repo, new)
    resamples = settings.bootstrap_resamples if resamples is None else resamples
    seed = settings.bootstrap_seed if seed is None else seed
    examples = settings.examples if examples is None else examples
    diff = metrics_diff(repo, old, new, paths)
    check_scores(diff, paths, old, new)
    old_side, new_side = load_side(repo, paths, old), load_side(repo, paths, new)
    short = {r.label: f" ({r.sha[:7]})" if r.sha else "" for r in (old, new)}
    significance, verdict = significance_section(old_side, new_side, resamples, seed)
    lines = [f"## Review: `{old.label}`{short[old.label]} → `{new.label}`{short[new.label]}", "", verdict, "",
             *params_section(params_diff(repo, old, new)),
             *metric_table("Scores (test set)", "variant", score_rows(diff, paths), old, new),
             *metric_table("Cost", "stage", cost_rows(diff, paths, new_side.variants), old, new,
                           note="†: depends on the machine and its load; one run on each side is not a "
                                "result until the change repeats."),
             *significance,
             *examples_section(old_side, new_side, examples)]
    return "\n".join(lines).rstrip() + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m review.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rev", "--rev-a", dest="rev_a", default="main", metavar="REV",
                        help="old revision: branch, tag, commit or experiment (default: %(default)s)")
    parser.add_argument("--rev-b", default=None, metavar="REV", help="new revision (default: the workspace)")
    parser.add_argument("--bootstrap", type=int, metavar="N", help="resamples (default: review.bootstrap_resamples)")
    parser.add_argument("--seed", type=int, help="bootstrap seed (default: review.bootstrap_seed)")
    parser.add_argument("--examples", type=int, metavar="N", help="dialogues shown (default: review.examples)")
    parser.add_argument("--out", type=Path, help="write the report to this file instead of printing it")
    args = parser.parse_args(argv)
    if (args.bootstrap is not None and args.bootstrap < 1) or (args.examples is not None and args.examples < 0):
        parser.error("--bootstrap must be >= 1 and --examples >= 0")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        repo = open_repo()
        old, new = resolve(repo, args.rev_a), resolve(repo, args.rev_b)
        report = build_report(repo, old, new, args.bootstrap, args.seed, args.examples)
    except ReviewError as exc:
        sys.exit(f"error: {exc}")
    if args.out is None:
        print(report, end="")
        return
    # Not printed as well: see the module (a CI log runs lines that start with "::").
    args.out.write_text(report, encoding="utf-8")
    print(f"review report written to {args.out} ({len(report.splitlines())} lines)")


if __name__ == "__main__":
    main()
