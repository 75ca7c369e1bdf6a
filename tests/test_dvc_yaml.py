"""dvc.yaml declares what each stage really reads and writes, so `dvc repro` reruns exactly what
changed, and its paths are the ones the stages use (stages/params.py ``Paths``).

dvc.yaml is resolved by DVC itself (templating, foreach), with every baseline switched on so
that every stage it can generate is checked.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys

import pytest

from stages.params import UNDECLARED, Paths, load_params, read_yaml
from tests.conftest import ROOT

STAGE_MODULES = {"split", "tokenize", "train_lora", "train_full", "infer", "score", "card"}
BASELINES = ["full"]  # every value params.yaml `baselines` may hold
RESOLVE = """
import json
from dvc.dependency.param import ParamsDependency
from dvc.repo import Repo

stages = {}
for stage in Repo(".").index.stages:
    params = [key for d in stage.deps if isinstance(d, ParamsDependency) for key in d.params]
    stages[stage.addressing] = {
        "cmd": stage.cmd,
        "deps": [d.def_path for d in stage.deps if not isinstance(d, ParamsDependency)],
        "params": params,
        "outs": [o.def_path for o in stage.outs],
    }
print(json.dumps(stages))
"""


@pytest.fixture(scope="module")
def stages(tmp_path_factory) -> dict[str, dict]:
    folder = tmp_path_factory.mktemp("resolve")
    (folder / "dvc.yaml").write_text((ROOT / "dvc.yaml").read_text())
    params = (ROOT / "params.yaml").read_text()
    (folder / "params.yaml").write_text(re.sub(r"(?m)^baselines: .*$", f"baselines: {BASELINES}", params))
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=folder, check=True)
    out = subprocess.run([sys.executable, "-c", RESOLVE], cwd=folder, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def paths() -> Paths:
    return load_params(ROOT / "params.yaml").paths


def module_of(stage: dict) -> str:
    return re.search(r"python -m stages\.(\w+)", stage["cmd"]).group(1)


def imported_stage_modules(module: str) -> set[str]:
    """Every ``stages.*`` module ``module`` imports, transitively, function-level imports included."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        tree = ast.parse((ROOT / "stages" / f"{current}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "stages":
                todo.extend(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("stages."):
                todo.append(node.module.split(".", 1)[1])
            elif isinstance(node, ast.Import):
                todo.extend(a.name.split(".", 1)[1] for a in node.names if a.name.startswith("stages."))
    return seen


def test_the_design_cards_stages_exist(stages):
    """split, tokenize, train_lora, infer (one per model) and score, found by their names."""
    assert set(stages) == {"check_params", "split", "tokenize", "train_lora", "infer@base", "infer@lora", "score",
                           "card", *(f"train_baseline@{b}" for b in BASELINES),
                           *(f"infer_baseline@{b}" for b in BASELINES)}
    for name in ("split", "tokenize", "train_lora", "score", "card"):
        assert module_of(stages[name]) == name  # `dvc repro X` runs stages/X.py
    assert stages["infer@base"]["cmd"].endswith("--variant base")
    assert stages["infer_baseline@full"]["cmd"].endswith("--variant full")


def test_stage_declares_every_module_it_imports(stages):
    for name, stage in stages.items():
        needed = {f"stages/{m}.py" for m in imported_stage_modules(module_of(stage))}
        declared = {d for d in stage["deps"] if d.startswith("stages/")}
        assert needed == declared, f"{name}: missing {needed - declared}, not imported {declared - needed}"


@pytest.mark.parametrize("module", sorted(STAGE_MODULES))
def test_stages_never_import_each_other(module):
    others = imported_stage_modules(module) & STAGE_MODULES - {module}
    assert not others, f"stages.{module} imports stage module(s) {others}: stages meet only through files"


def test_stage_declares_the_params_sections_it_reads(stages):
    for name, stage in stages.items():
        modules = imported_stage_modules(module_of(stage)) - {"params"}
        source = "\n".join((ROOT / "stages" / f"{m}.py").read_text() for m in modules)
        # UNDECLARED sections change no output: declaring one would make, say, a longer hub
        # timeout on a slow network or switching W&B on retrain everything.
        read = set(re.findall(r"\bparams\.(\w+)", source)) - {"py", "yaml", "variants", *UNDECLARED}
        if "params.variants" in source:  # base, lora and the baselines
            read.add("baselines")
        if "getattr(params, variant)" in source:  # a fine-tuning stage reads its own section
            read.add("lora" if name == "train_lora" else name.split("@")[1])
        assert read <= set(stage["params"]), f"{name} reads {read - set(stage['params'])} undeclared"


def test_outputs_and_data_inputs_are_the_paths_the_stages_use(stages, paths):
    """Every output and every data input in dvc.yaml is what stages/params.py ``Paths`` names."""
    def outs(name: str) -> set[str]:
        return set(stages[name]["outs"])

    def data(name: str) -> set[str]:
        return {d for d in stages[name]["deps"] if not d.startswith("stages/")} - {str(paths.params_check())}

    def trained(variant: str) -> set[str]:
        log = paths.train_log(variant)  # DVCLive's folder: its summary and its curves
        return {str(paths.model_dir(variant)), f"{log}/metrics.json", f"{log}/plots/metrics",
                str(paths.train_metrics(variant)), str(paths.train_record(variant))}

    assert outs("check_params") == {str(paths.params_check())} and not data("check_params")
    for name in set(stages) - {"check_params"}:  # every stage waits for the params check
        assert str(paths.params_check()) in stages[name]["deps"], name
    assert outs("split") == {paths.split, str(paths.split_record())}
    assert outs("tokenize") == {paths.tokenized, str(paths.tokenize_record())}
    assert data("tokenize") == {str(paths.split_file("train")), str(paths.split_file("validation"))}
    for variant, name in [("lora", "train_lora"), *((b, f"train_baseline@{b}") for b in BASELINES)]:
        assert outs(name) == trained(variant) and data(name) == {paths.tokenized}
    for variant, name in [("base", "infer@base"), ("lora", "infer@lora"),
                          *((b, f"infer_baseline@{b}") for b in BASELINES)]:
        assert outs(name) == {str(paths.predictions_file(variant)), str(paths.infer_metrics(variant)),
                              str(paths.infer_record(variant))}
        weights = set() if variant == "base" else {str(paths.model_dir(variant))}
        assert data(name) == {str(paths.split_file("test")), *weights}, name
    assert outs("score") == {paths.per_dialogue, paths.examples, str(paths.scores_plot()), str(paths.scores()),
                             str(paths.scores_record())}
    assert data("score") == {paths.predictions, str(paths.split_file("test"))}
    assert outs("card") == {str(paths.published_adapter())}
    assert data("card") == {str(paths.model_dir("lora")), str(paths.scores_record()), str(paths.train_record("lora"))}


def test_no_path_is_written_literally_in_dvc_yaml():
    """Outputs and data inputs are templated from params.yaml `paths`, never spelled out."""
    raw = read_yaml((ROOT / "dvc.yaml").read_text())
    for name, stage in raw["stages"].items():
        body = stage.get("do", stage)
        for entry in body.get("outs", []) + body.get("metrics", []) + body.get("plots", []):
            path = entry if isinstance(entry, str) else next(iter(entry))
            assert path.startswith("${"), f"{name}: output {path} is not taken from params"
        for dep in body["deps"]:
            assert dep.startswith(("stages/", "${")), f"{name}: dependency {dep} is not taken from params"


def test_settings_that_change_no_output_rerun_nothing(built_project, tmp_path):
    """Waiting longer for the hub, loading batches with more workers, switching W&B on, sampling
    the review report differently: the pipeline stays up to date."""
    from tests.conftest import copy_project, dvc, set_params

    project = set_params(copy_project(built_project, tmp_path / "p"), hub__timeout_s=99,
                         runtime__dataloader_workers=3, tracking__wandb=True,
                         tracking__wandb_project="another", review__bootstrap_resamples=7)
    assert set(load_params(project / "params.yaml").model_dump()) - set(UNDECLARED) == {
        "seed", "baselines", "paths", "model", "data", "split", "prompt", "lora", "full", "train",
        "generate", "score"}  # a new section is declared by some stage, or listed in UNDECLARED
    status = dvc(project, "status", "--json").stdout
    assert json.loads(status) == {}, status


def test_the_lora_adapter_artifact_is_the_card_stages_output(paths):
    """What `dvc artifacts get <repo> lora-adapter` delivers is the adapter with its card."""
    artifact = read_yaml((ROOT / "dvc.yaml").read_text())["artifacts"]["lora-adapter"]["path"]
    assert artifact.replace("${paths.models}", paths.models) == str(paths.published_adapter())
