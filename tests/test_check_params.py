"""check_params: a bad params value is refused before DVC touches any result."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from stages.check_params import CHECKED
from stages.params import load_params, read_params_file
from tests.conftest import ROOT, commit, copy_project, dvc, git, set_params


def run_check(cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stages.check_params"], cwd=cwd, capture_output=True,
                          text=True, env={"PYTHONPATH": str(ROOT), "PATH": "", **env})


def error_line(result: subprocess.CompletedProcess) -> str:
    ours = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("error:")]
    assert len(ours) == 1, result.stdout + result.stderr
    return ours[0]


def digest(path: Path) -> str:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return hashlib.sha256(b"".join(p.relative_to(path.parent).as_posix().encode() + p.read_bytes()
                                   for p in files)).hexdigest()


def test_valid_params_write_the_same_bytes_and_a_bad_value_is_one_line(tmp_path):
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    out = tmp_path / load_params(tmp_path / "params.yaml").paths.params_check()
    assert run_check(tmp_path).returncode == 0 and out.read_text() == CHECKED
    set_params(tmp_path, lora__r=-1)
    out.unlink()
    bad = run_check(tmp_path)
    assert bad.returncode == 1 and not out.exists()
    assert bad.stderr.strip().splitlines() == [bad.stderr.strip()] and "lora.r" in bad.stderr


def test_a_bad_value_leaves_every_result_in_place(built_project, tmp_path):
    """`dvc exp run -S lora.r=-1` stops at check_params: the adapter and the training metrics
    (which DVC would remove before rerunning train_lora) are byte-identical."""
    project = copy_project(built_project, tmp_path / "p")
    paths = load_params(project / "params.yaml").paths
    kept = [project / paths.model_dir("lora"), project / paths.train_metrics("lora"),
            project / paths.predictions_file("lora"), project / paths.scores()]
    before = [digest(p) for p in kept]
    failed = dvc(project, "exp", "run", "-S", "lora.r=-1", check=False)
    assert failed.returncode != 0 and "lora.r" in error_line(failed)
    assert "Running stage 'train_lora'" not in failed.stdout
    assert [digest(p) for p in kept] == before


def test_a_valid_change_reruns_the_check_and_only_the_stages_it_concerns(built_project, tmp_path):
    project = copy_project(built_project, tmp_path / "p")
    examples = load_params(project / "params.yaml").score.examples
    set_params(project, score__examples=examples + 1)
    out = dvc(project, "repro").stdout
    assert set(re.findall(r"Running stage '([^']+)'", out)) == {"check_params", "score"}, out


def test_a_checkpoints_folder_outside_the_repository_is_refused_and_nothing_deleted(built_project, tmp_path):
    """`paths.checkpoints` naming a folder elsewhere on the machine: train_lora used to clear that
    folder's `lora/` ("written with other params or data") with the user's files in it."""
    project = copy_project(built_project, tmp_path / "p")
    theirs = tmp_path / "elsewhere" / "lora" / "notes.txt"
    theirs.parent.mkdir(parents=True)
    theirs.write_text("not the project's\n")
    failed = dvc(project, "exp", "run", "-S", f"paths.checkpoints={theirs.parent.parent}", check=False)
    assert failed.returncode != 0
    ours = [line for line in (failed.stdout + failed.stderr).splitlines() if line.startswith("error:")]
    assert len(ours) == 1 and ours[0].startswith("error: params.yaml: paths.checkpoints: must be a path inside "
                                                 "the repository"), failed.stdout + failed.stderr
    assert "Running stage 'train_lora'" not in failed.stdout
    assert theirs.read_text() == "not the project's\n"


def test_the_refusal_says_how_to_undo_only_where_params_yaml_differs_from_its_commit(tmp_path):
    with_git = {"PATH": os.path.dirname(shutil.which("git"))}
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    git(tmp_path, "init", "-q")
    commit(tmp_path, "params")
    set_params(tmp_path, lora__dropout=2.0)
    assert "undo: git checkout -- params.yaml" in error_line(run_check(tmp_path, **with_git))
    assert "git checkout" not in error_line(run_check(tmp_path))  # no git: no command it cannot run
    # a --temp or queued experiment runs in a copy: the workspace (DVC_ROOT) was never touched
    assert "git checkout" not in error_line(run_check(tmp_path, DVC_ROOT=str(ROOT), **with_git))
    commit(tmp_path, "a bad value, committed")  # nothing to undo: the line names the key to fix
    assert "git checkout" not in error_line(run_check(tmp_path, **with_git))


def test_the_printed_undo_restores_a_workspace_the_next_experiment_runs_in(built_project, tmp_path):
    """A typo that `dvc exp run -S` writes into params.yaml (`+` adds a key, as DVC's own refusal of
    `-S lora.rr=8` suggests) is refused, and stays there: the next experiment would be refused on
    it too, whatever it sets, until the printed command is run. Only check_params runs (the
    target): it is what refuses."""
    project = copy_project(built_project, tmp_path / "p")
    rank = load_params(project / "params.yaml").lora.r + 1
    refused = error_line(dvc(project, "exp", "run", "-S", "+lora.rr=8", "check_params", check=False))
    assert "lora.rr: unknown key" in refused
    assert "rr" in read_params_file(project / "params.yaml")["lora"]  # left there: every later run refused
    undo = refused.split("undo: ", 1)[1]
    subprocess.run(shlex.split(undo), cwd=project, check=True)
    dvc(project, "exp", "run", "-S", f"lora.r={rank}", "check_params")
    assert load_params(project / "params.yaml").lora.r == rank
