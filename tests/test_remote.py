"""Results travel, reviewers don't retrain: the DVC remote round trip, end to end.

A "GPU box" clone holds a trained, committed project (a copy of conftest's shared
``built_project``); it tags the adapter as an artifact
version and pushes: outputs to a local-folder DVC remote, git to a bare repository standing in for
GitHub. Fresh clones of that repository `dvc pull` and must get everything without running a
stage. The second test runs the steps of `.github/workflows/review.yml`, read from the workflow
file, in a pull request's clone. Nothing is trained after the first run (~1 min on top of it).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.conftest import ROOT, commit, copy_project, dvc, git, ran, run

WORKFLOW = ROOT / ".github" / "workflows" / "review.yml"
ARTIFACT, VERSION = "lora-adapter", "v1.0.0"
# The workflow's `${{ }}` expressions, as the runner would fill them in (through env only).
EXPRESSIONS = {"${{ secrets.DVC_REMOTE_ACCESS_KEY_ID }}": "test-key-id",
               "${{ secrets.DVC_REMOTE_SECRET_ACCESS_KEY }}": "test-secret",
               "${{ github.base_ref }}": "main"}


def tree(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` (or ``path`` itself) by relative name, with its bytes."""
    if path.is_file():
        return {path.name: path.read_bytes()}
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def clone(source: Path, target: Path, *args: str) -> Path:
    git(target.parent, "clone", "-q", *args, str(source), str(target))
    return target


def report(project: Path, *args: str) -> str:
    return run([sys.executable, "-m", "review.report", *args], project).stdout


def read_paths(project: Path) -> dict:
    return YAML(typ="safe").load((project / "params.yaml").read_text())["paths"]


def checkpoints_written(project: Path, paths: dict) -> list[Path]:
    """Trainer checkpoints: what a training run writes (git-ignored, cleared at its end)."""
    return list((project / paths["checkpoints"]).rglob("checkpoint-*"))


@dataclass(frozen=True)
class Pushed:
    hub: Path  # bare git repository: GitHub
    gpu: Path  # the clone that trained and pushed
    paths: dict  # params.yaml's paths

    @property
    def adapter(self) -> str:
        return f"{self.paths['models']}/lora"

    @property
    def published(self) -> str:
        """The card stage's output, the ``lora-adapter`` artifact: the adapter and its model card."""
        return f"{self.paths['models']}/lora-adapter"

    @property
    def pulled(self) -> list[str]:
        """The DVC-cached outputs a reviewer needs: predictions, per-dialogue scores, adapter."""
        predictions = self.paths["predictions"]
        return [f"{predictions}/base.jsonl", f"{predictions}/lora.jsonl", self.paths["per_dialogue"], self.adapter,
                self.published]


@pytest.fixture(scope="module")
def pushed(built_project, tmp_path_factory) -> Pushed:
    tmp = tmp_path_factory.mktemp("remote")
    hub = tmp / "hub.git"
    git(tmp, "init", "-q", "--bare", "-b", "main", str(hub))
    gpu = copy_project(built_project, tmp / "gpu")  # dvc repro'd and committed (git add -A)
    git(gpu, "branch", "-M", "main")
    dvc(gpu, "remote", "add", "-d", "storage", str(tmp / "dvc-remote"))
    commit(gpu, "share: DVC remote")
    git(gpu, "-c", "user.name=t", "-c", "user.email=t@t", "tag", "-a", f"{ARTIFACT}@{VERSION}", "-m", "adapter")
    dvc(gpu, "push")
    assert json.loads(dvc(gpu, "status", "--cloud", "--json").stdout) == {}  # all of it on the remote
    git(gpu, "remote", "add", "origin", str(hub))
    git(gpu, "push", "-q", "origin", "main", "--tags")
    return Pushed(hub, gpu, read_paths(gpu))


def test_a_fresh_clone_pulls_the_results_without_training(pushed, tmp_path):
    fresh = clone(pushed.hub, tmp_path / "fresh")
    assert not any((fresh / path).exists() for path in pushed.pulled)
    dvc(fresh, "pull")

    # Up to date without `dvc repro`, and a repro has nothing to do.
    assert json.loads(dvc(fresh, "status", "--json").stdout) == {}
    repro = dvc(fresh, "repro").stdout
    assert ran(repro) == set() and "Data and pipelines are up to date." in repro
    assert checkpoints_written(fresh, pushed.paths) == [] and git(fresh, "status", "--porcelain") == ""

    def metrics(project: Path) -> dict:
        return json.loads(dvc(project, "metrics", "show", "--json").stdout)

    assert metrics(fresh) == metrics(pushed.gpu)
    for path in pushed.pulled:
        assert tree(fresh / path) == tree(pushed.gpu / path), path
    assert report(fresh, "--rev", "HEAD") == report(pushed.gpu, "--rev", "HEAD")

    # The adapter by artifact name: dvc.yaml's `artifacts:` + the git tag lora-adapter@v1.0.0
    # (DVC resolves an artifact's latest version through GTO tags; without one it is "not found").
    head = git(fresh, "rev-parse", "HEAD").strip()
    for version in (None, VERSION):
        code = ("import json, sys, dvc.api; print(json.dumps(dvc.api.artifacts_show("
                f"{ARTIFACT!r}, version={version!r}, repo=sys.argv[1])))")
        shown = json.loads(run([sys.executable, "-c", code, str(fresh)], fresh).stdout)
        assert shown == {"rev": head, "path": pushed.published}
    assert tree(fresh / shown["path"]) == tree(pushed.gpu / pushed.published)
    # ... and fetched from the git repository alone: a temporary clone that reads the DVC remote.
    (tmp_path / "download").mkdir()
    dvc(tmp_path / "download", "artifacts", "get", str(pushed.hub), ARTIFACT, "-o", "adapter")
    delivered = tmp_path / "download" / "adapter"
    assert tree(delivered) == tree(pushed.gpu / pushed.published)
    assert "## Test scores" in (delivered / "README.md").read_text()  # the card, beside the adapter
    # It loads with peft alone, on the base it names, with another cache folder (another machine).
    load = ("import json, sys; from peft import PeftModel; from transformers import AutoModelForSeq2SeqLM; "
            "base = json.load(open(sys.argv[1] + '/adapter_config.json'))['base_model_name_or_path']; "
            "model = PeftModel.from_pretrained(AutoModelForSeq2SeqLM.from_pretrained(base), sys.argv[1]); "
            "print(sum('lora_' in n for n, _ in model.named_parameters()))")
    from demo.run import stage_env

    env = {**stage_env(), "HF_HOME": str(tmp_path / "other-hf-home")}
    loaded = subprocess.run([sys.executable, "-c", load, str(delivered)], cwd=fresh, env=env,
                            capture_output=True, text=True)
    assert loaded.returncode == 0 and int(loaded.stdout) > 0, loaded.stderr


def workflow_steps() -> dict[str, dict]:
    workflow = YAML(typ="safe").load(WORKFLOW.read_text())
    return {step["name"]: step for step in workflow["jobs"]["report"]["steps"] if "name" in step}


def run_step(step: dict, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """A step's ``run:`` script as the runner runs it (``bash -e``), its ``env:`` filled in."""
    from demo.run import stage_env  # PATH starts with this interpreter's bin: the Install step's .venv

    script = step["run"]
    assert "${{" not in script, f"{step['name']}: expressions belong in env, not in the script"
    env = stage_env()
    for key, expression in step.get("env", {}).items():
        assert expression in EXPRESSIONS, f"{step['name']}: no local value for {key}: {expression}"
        env[key] = EXPRESSIONS[expression]
    result = subprocess.run(["bash", "--noprofile", "--norc", "-e", "-c", script], cwd=cwd, env=env,
                            capture_output=True, text=True)
    if check and result.returncode != 0:
        pytest.fail(f"step {step['name']!r} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def test_the_review_workflow_runs_on_a_pull_requests_clone(pushed, tmp_path):
    steps = workflow_steps()

    # The pull request: a developer clone pulls, changes a param, reruns what it touches, pushes.
    dev = clone(pushed.hub, tmp_path / "dev")
    dvc(dev, "pull")
    git(dev, "checkout", "-q", "-b", "pr")
    yaml = YAML()  # round trip: comments and layout survive
    params = yaml.load((dev / "params.yaml").read_text())
    examples = params["score"]["examples"]
    params["score"]["examples"] = examples - 2
    with (dev / "params.yaml").open("w") as f:
        yaml.dump(params, f)
    assert ran(dvc(dev, "repro").stdout) == {"score"}
    commit(dev, "fewer examples")
    dvc(dev, "push")
    git(dev, "push", "-q", "origin", "pr")
    params_row = f"| `score.examples` | {examples} | {examples - 2} |"

    # The runner: actions/checkout of the PR with the base branch's history (origin/main).
    ci = clone(pushed.hub, tmp_path / "ci", "-b", "pr")

    # "Configure the DVC remote" writes S3 keys for an S3 default remote only: DVC refuses them
    # for any other type ("extra keys not allowed"), so on the folder remote it writes nothing.
    configure = steps["Configure the DVC remote"]
    run_step(configure, ci)
    assert not (ci / ".dvc" / "config.local").exists()
    # Where it is meant to run, an S3 default remote (dvc-s3 is not needed to configure one), it
    # writes the keys into the git-ignored .dvc/config.local only.
    dvc(ci, "remote", "add", "--local", "-d", "s3", "s3://bucket/dialogsum")
    run_step(configure, ci)
    local = (ci / ".dvc" / "config.local").read_text()
    assert "access_key_id = test-key-id" in local and "secret_access_key = test-secret" in local
    assert git(ci, "status", "--porcelain") == ""
    (ci / ".dvc" / "config.local").unlink()  # back to the committed default: the folder remote

    # Nothing pulled yet: the report streams both revisions' outputs from the remote.
    assert not (ci / ".dvc" / "cache").exists()
    assert params_row in report(ci, "--rev", "origin/main", "--rev-b", "HEAD")

    run_step(steps["Pull the PR's outputs"], ci)
    assert json.loads(dvc(ci, "status", "--json").stdout) == {}
    run_step(steps["Review report"], ci)
    markdown = (ci / "report.md").read_text()
    assert markdown.startswith("## Review: `origin/main`") and params_row in markdown
    for section in ("### Params", "### Scores (test set)", "### Cost", "### Significance"):
        assert section in markdown, section
    for variant in ("base", "lora"):
        assert re.search(rf"^\| {variant} \| ROUGE-L \| [\d.]+ \| [\d.]+ \| [+-][\d.]+ \| ", markdown, re.M)
    assert checkpoints_written(ci, pushed.paths) == checkpoints_written(dev, pushed.paths) == []
    # The last step posts that file; here it is only checked to be the one it posts.
    assert "--body-file report.md" in steps["Comment on the pull request"]["run"]
