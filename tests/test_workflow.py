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
