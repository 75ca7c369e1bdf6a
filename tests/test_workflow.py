"""The GitHub workflows pass actionlint (syntax, expressions, action versions, permissions), and
the review workflow does what the README says: report against the base branch, comment on the PR."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.conftest import ROOT

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
REVIEW = ROOT / ".github" / "workflows" / "review.yml"


def actionlint(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    # The wheel puts the binary next to this interpreter, which need not be on PATH.
    local = Path(sys.executable).parent / "actionlint"
    binary = str(local) if local.is_file() else shutil.which("actionlint")
    if binary is None:
        pytest.fail("actionlint is not installed: make setup installs it (the test extra)")
    return subprocess.run([binary, "-no-color", *args], cwd=ROOT, input=stdin, capture_output=True, text=True)


def test_actionlint_reports_a_broken_workflow():
    # Guards the test below against a linter that passes everything.
    broken = "on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ matrix.nope }}\n"
    result = actionlint("-", stdin=broken)
    assert result.returncode != 0 and "nope" in result.stdout


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_is_clean(workflow):
    result = actionlint(str(workflow.relative_to(ROOT)))
    assert result.returncode == 0, result.stdout + result.stderr


def test_review_workflow_comments_the_report_on_pull_requests():
    workflow = YAML(typ="safe", pure=True).load(REVIEW.read_text(encoding="utf-8"))
    assert "pull_request" in workflow["on"]
    assert workflow["permissions"]["pull-requests"] == "write"
    steps = workflow["jobs"]["report"]["steps"]
    checkout = next(s for s in steps if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["fetch-depth"] == 0  # the base branch must be there to compare with
    runs = "\n".join(s.get("run", "") for s in steps)
    assert "dvc pull" in runs and "dvc repro" not in runs  # nothing is trained on the runner
    assert 'python -m review.report --rev "origin/$BASE_REF" --out report.md' in runs
    comment = next(s for s in steps if "gh pr comment" in s.get("run", ""))
    assert "--body-file report.md" in comment["run"] and comment["env"]["GH_TOKEN"] == "${{ github.token }}"


# --- the review job's own steps, run here as the runner runs them ------------------------------

# What GitHub Actions runs a `run:` step with (its default shell on Linux runners).
SHELL = ["bash", "--noprofile", "--norc", "-eo", "pipefail"]
# The lines a data set slips into dialogues: in a log, each would be a command to the runner.
COMMANDS = ["::add-mask::x", "::error title=from the data::x", "::warning::x", "::stop-commands::x"]


def run_step(name: str, cwd: Path, context: dict[str, str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run the review workflow's step ``name`` as the runner would: its script in bash, its
    ``env:`` with the ``${{ ... }}`` expressions of ``context`` filled in, stdout and stderr
    together, as the job's log has them."""
    import re

    workflow = YAML(typ="safe", pure=True).load(REVIEW.read_text(encoding="utf-8"))
    step = next(s for s in workflow["jobs"]["report"]["steps"] if s.get("name") == name)

    def filled(value: str) -> str:
        return re.sub(r"\$\{\{\s*([\w.]+)\s*\}\}", lambda m: context[m.group(1)], value)

    assert "${{" not in step["run"]  # expressions reach a script through env only
    script = cwd / f".step-{name.replace(' ', '-')}.sh"
    script.write_text(step["run"])
    step_env = env | {key: filled(str(value)) for key, value in step.get("env", {}).items()}
    return subprocess.run([*SHELL, str(script)], cwd=cwd, env=step_env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def test_data_never_becomes_a_workflow_command_in_the_review_log(built_project, tmp_path):
    """Dialogues holding `::add-mask::x` and `::error ...::x` lines reach the review report
    verbatim (a code block), and the report step's log has no line from them that the runner
    would run: no line of it starts with `::`."""
    import json

    from demo.run import stage_env
    from tests.conftest import copy_project, git

    project = copy_project(built_project, tmp_path / "p")
    git(project, "update-ref", "refs/remotes/origin/main", "HEAD")  # what the checkout's fetch-depth 0 gives
    predictions = project / "data" / "predictions" / "lora.jsonl"
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    for row in rows:  # every dialogue, so whichever the report shows carries them
        row["dialogue"] = "\n".join(COMMANDS) + "\n" + row["dialogue"]
        row["prediction"] += " changed"
    predictions.write_text("".join(json.dumps(row) + "\n" for row in rows))

    result = run_step("Review report", project, {"github.base_ref": "main"}, stage_env())
    assert result.returncode == 0, result.stdout[-3000:]
    report = (project / "report.md").read_text()
    assert all(f"\n{line}\n" in report for line in COMMANDS)  # the data did reach the report
    assert [line for line in result.stdout.splitlines() if line.lstrip().startswith("::")] == []
