"""The real `dvc` commands on the offline sample, in a temporary git repository.

One project is built per module and the tests run in file order: the first `dvc repro` is the
expensive part (~1 min on 2 cores), the rest reuse it. Training is cut to a few steps: these
tests check the pipeline's wiring and DVC's rerun behaviour, not the model's quality (that is
what `make demo` shows).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.conftest import commit, dvc, make_project

ALL_STAGES = {"split", "tokenize", "train_lora", "infer@base", "infer@lora", "score"}
METRIC_KEYS = {"rouge1", "rouge2", "rougeL", "rougeLsum", "bleu", "gen_len"}


def ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def set_params(project: Path, **changes) -> None:
    yaml = YAML()
    params = yaml.load((project / "params.yaml").read_text())
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        params[section][key] = value
    with (project / "params.yaml").open("w") as f:
        yaml.dump(params, f)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return make_project(tmp_path_factory.mktemp("project"))


@pytest.fixture(scope="module")
def first_repro(project) -> str:
    return dvc(project, "repro").stdout


def test_repro_runs_every_stage(project, first_repro):
    assert ran(first_repro) == ALL_STAGES
    scores = json.loads((project / "metrics" / "scores.json").read_text())
    assert set(scores) == {"base", "lora"}
    for variant in scores.values():
        assert set(variant) == METRIC_KEYS
        assert all(0 <= variant[k] <= 1 for k in ("rouge1", "rouge2", "rougeL", "rougeLsum"))
    train = json.loads((project / "metrics" / "train.json").read_text())
    assert train["steps"] == 20 and train["best_step"] in (10, 20)
    assert (project / "models" / "lora" / "adapter_model.safetensors").is_file()
    assert (project / "metrics" / "examples.md").read_text().count("- **lora**") == 5


def test_second_repro_reruns_nothing(project, first_repro):
    out = dvc(project, "repro").stdout
    assert ran(out) == set()
    assert "didn't change" in out or "up to date" in out.lower()


def test_lora_change_reruns_only_lora_stages(project, first_repro):
    commit(project, "first run")
    set_params(project, lora__r=8)
    out = dvc(project, "repro").stdout
    assert ran(out) == {"train_lora", "infer@lora", "score"}


def test_metrics_diff_between_commits_shows_rouge_and_bleu(project, first_repro):
    commit(project, "lora.r=8")
    table = dvc(project, "metrics", "diff", "HEAD~1", "--all", "--md", "--precision", "4").stdout
    diff = json.loads(dvc(project, "metrics", "diff", "HEAD~1", "--all", "--json").stdout)
    scores = diff["metrics/scores.json"]
    for variant in ("base", "lora"):
        for key in ("rouge1", "rouge2", "rougeL", "rougeLsum", "bleu"):
            assert f"{variant}.{key}" in scores and f"{variant}.{key}" in table
            assert {"old", "new"} <= set(scores[f"{variant}.{key}"])
    # base inference did not rerun, so its scores cannot have moved
    assert all(scores[f"base.{k}"]["old"] == scores[f"base.{k}"]["new"] for k in METRIC_KEYS)
    train = diff["metrics/train.json"]["trainable_params"]
    assert train["old"] == 4 * train["new"]  # r 32 -> 8: a quarter of the LoRA weights
    params = dvc(project, "params", "diff", "HEAD~1", "--md").stdout
    assert "lora.r" in params


def test_plots_show_draws_the_loss_curves(project, first_repro):
    dvc(project, "plots", "show", "-o", "plots_html")
    html = (project / "plots_html" / "index.html").read_text()
    assert "train/loss.tsv" in html and "eval/loss.tsv" in html
    rows = (project / "metrics" / "train" / "plots" / "metrics" / "eval" / "loss.tsv").read_text().splitlines()
    assert rows[0].split("\t")[:2] == ["step", "loss"]
    assert [int(r.split("\t")[0]) for r in rows[1:]] == [10, 20]  # x is the trainer's step
