"""``python -m review.report`` end to end: two real runs of the pipeline, reviewed.

The project runs ``dvc repro``, is committed, runs again with ``lora.r: 8``, and the report
compares the workspace with ``HEAD`` (~2-3 min on 2 cores, most of it the two runs).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from review.report import INFER_COST, TRAIN_COST
from stages.params import read_yaml
from tests.conftest import copy_project, dvc, git, set_params

VARIANTS = ("base", "lora")
INVENTED = ("invented numbers", "invented names", "speaker errors", "novel bigrams")
SCORES = ("ROUGE-1", "ROUGE-2", "ROUGE-L", "ROUGE-Lsum", "BLEU", *INVENTED)  # bootstrapped
SHOWN = (*SCORES, "ROUGE-L shuffled", "ROUGE-1 mean of refs", "ROUGE-2 mean of refs", "ROUGE-L mean of refs",
         "gen_len", "hit max tokens", "repeated 3-gram", "dialogues")
COST = {"train_lora": TRAIN_COST, "infer@base": INFER_COST, "infer@lora": INFER_COST}
INTERVAL = r"\| [+-][\d.]+ \| \[[+-][\d.]+, [+-][\d.]+\] \| [▲▼–] \|"


def report(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(project), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "review.report", *args], cwd=project, env=env,
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def reviewed(built_project, tmp_path_factory) -> tuple[Path, str]:
    project = copy_project(built_project, tmp_path_factory.mktemp("review") / "project")
    set_params(project, lora__r=8)
    dvc(project, "repro")
    result = report(project, "--rev", "HEAD", "--bootstrap", "500", "--out", "report.md")
    assert result.returncode == 0, result.stderr
    markdown = (project / "report.md").read_text()
    # Written, not printed: a CI log would run the report's lines that start with "::"
    assert result.stdout == f"review report written to report.md ({len(markdown.splitlines())} lines)\n"
    return project, markdown


def test_report_compares_the_workspace_with_a_revision(reviewed):
    project, markdown = reviewed
    recipe_r = read_yaml(git(project, "show", "HEAD:params.yaml"))["lora"]["r"]
    assert f"| `lora.r` | {recipe_r} | 8 |" in markdown

    scores = json.loads((project / "metrics" / "records" / "scores.json").read_text())
    for variant in VARIANTS:
        for name in SHOWN:
            assert re.search(rf"^\| {variant} \| {name} \| [\d.]+ \| [\d.]+ \| [+-][\d.]+ \| ", markdown, re.M), \
                (variant, name)
    assert "| lora | ROUGE-1 | " in markdown and f" | {scores['lora']['rouge1']:.4f} | " in markdown
    # The human ceiling beside the models, the same in both revisions
    for name in (*SCORES, "dialogues", "dialogues (ROUGE)"):
        assert re.search(rf"^\| human \| {re.escape(name)} \| [\d.]+ \| [\d.]+ \| \+0(\.0+)? \| ", markdown, re.M), name
    assert re.search(r"^\| human \| gen_len \| — \| — \| — \| — \|$", markdown, re.M)

    old = json.loads(git(project, "show", "HEAD:metrics/train_lora.json"))
    new = json.loads((project / "metrics" / "train_lora.json").read_text())
    assert new["trainable_params"] * recipe_r == old["trainable_params"] * 8  # LoRA's weights scale with r
    change = new["trainable_params"] - old["trainable_params"]
    assert f"| train_lora | trainable_params | {old['trainable_params']:,} | {new['trainable_params']:,} |" \
           f" {change:,} | {change / old['trainable_params']:+.1%} |" in markdown
    for stage, keys in COST.items():
        for key in keys:
            assert f"| {stage} | {key} | " in markdown, (stage, key)

    # (a) LoRA vs base within the workspace, (b) the workspace's LoRA vs HEAD's; base did not rerun
    for name in SCORES:
        assert re.search(rf"^\| lora vs base \(workspace, \d+ dialogues\) \| {name} \| .*{INTERVAL}$", markdown, re.M)
        assert re.search(rf"^\| lora: workspace vs HEAD \(\d+ dialogues\) \| {name} \| .*{INTERVAL}$", markdown, re.M)
    assert "- base: outputs identical in both revisions" in markdown
    assert "✅" not in markdown and "❌" not in markdown

    # The verdict first: what moved between the revisions beyond its interval, and which way
    verdict = markdown.splitlines()[2]
    moved = re.findall(r"^\| lora: workspace vs HEAD .*\| ([▲▼]) \|$", markdown, re.M)
    if moved:
        assert verdict.startswith("**Verdict:** beyond the 95 % interval, workspace vs HEAD: lora ")
        assert verdict.count("▲") + verdict.count("▼") == len(moved)
    else:
        assert verdict == "**Verdict:** no score moved beyond its 95 % interval (workspace vs HEAD)."
    # Unchanged rows folded (the human row never changes), machine-dependent cost flagged
    scores_section = markdown.split("### Scores (test set)")[1].split("### Cost")[0]
    folded = scores_section.split("<details>")[1]
    assert "| human | ROUGE-1 |" in folded and "| lora | ROUGE-1 |" not in folded
    assert re.search(r"^\| train_lora \| wall_time_s \| .* †", markdown, re.M)
    assert not re.search(r"^\| train_lora \| trainable_params \| .* †", markdown, re.M)

    examples = markdown.split("### Test dialogues where the lora summaries differ most")[1]
    assert examples.count("\n#### ") == 3 and examples.count("```text") == 3
    assert examples.count("| human 1 |") == 3 and examples.count("| HEAD |") == 3
    assert examples.count("| workspace |") == 3


def test_bad_revisions_are_one_line_errors(reviewed):
    project, _ = reviewed
    unknown = report(project, "--rev", "no-such-branch")
    assert unknown.returncode == 1 and unknown.stderr.strip().splitlines() == [
        "error: unknown revision 'no-such-branch': not a branch, tag, commit or experiment"]
    before_any_run = report(project, "--rev", "HEAD~1")  # make_project's commit: no outputs yet
    assert before_any_run.returncode == 1
    assert before_any_run.stderr.strip().splitlines() == [
        "error: HEAD~1 has no metrics/scores.json: run `dvc repro` there (and commit it), or `dvc pull` it"]


def test_the_verdict_judges_only_what_has_a_better_direction():
    """Fewer novel bigrams is more extractive, not better (they say how abstractive a summary is);
    more invented names is worse, more ROUGE better."""
    from review.bootstrap import Comparison
    from review.report import moved

    def up(a: float, b: float) -> Comparison:
        return Comparison(a=a, b=b, low=b - a - 0.01, high=b - a + 0.01, dialogues=10, resamples=100)

    assert moved({"rougeL": up(0.30, 0.35), "invented_names": up(0.2, 0.3), "novel_bigrams": up(0.8, 0.6),
                  "bleu": up(20.0, 18.0)}) == [
        "ROUGE-L ▲ +0.0500 (better)", "invented names ▲ +0.1000 (worse)", "novel bigrams ▼ -0.2000 (more extractive)",
        "BLEU ▼ -2.00 (worse)"]
