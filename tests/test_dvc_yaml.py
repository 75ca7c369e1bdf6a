"""dvc.yaml declares what each stage really reads, so `dvc repro` reruns exactly what changed."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from stages.params import Paths, read_yaml

ROOT = Path(__file__).resolve().parents[1]
DVC_YAML = read_yaml((ROOT / "dvc.yaml").read_text())
STAGE_MODULES = {"split", "tokenize", "train_lora", "train_full", "infer", "score"}
FINETUNES = ("lora", "full")  # every value params.yaml `finetunes` may hold


def _fill(value, item: str):
    if isinstance(value, str):
        return value.replace("${item}", item)
    if isinstance(value, list):
        return [_fill(v, item) for v in value]
    if isinstance(value, dict):
        return {_fill(k, item): _fill(v, item) for k, v in value.items()}
    return value


def stage_definitions() -> dict[str, dict]:
    """Every stage dvc.yaml can generate: foreach groups expanded over every fine-tuned variant."""
    stages = {}
    for name, stage in DVC_YAML["stages"].items():
        if "foreach" in stage:
            assert stage["foreach"] == "${finetunes}", f"{name}: foreach over something else"
            stages.update({f"{name}@{v}": _fill(stage["do"], v) for v in FINETUNES})
        else:
            stages[name] = stage
    return stages


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


@pytest.mark.parametrize("name", sorted(stage_definitions()))
def test_stage_declares_every_module_it_imports(name):
    stage = stage_definitions()[name]
    module = re.search(r"python -m stages\.(\w+)", stage["cmd"]).group(1)
    needed = {f"stages/{m}.py" for m in imported_stage_modules(module)}
    declared = {d for d in stage["deps"] if d.startswith("stages/")}
    assert needed == declared, f"{name}: missing {needed - declared}, not imported {declared - needed}"


@pytest.mark.parametrize("module", sorted(STAGE_MODULES))
def test_stages_never_import_each_other(module):
    others = imported_stage_modules(module) & STAGE_MODULES - {module}
    assert not others, f"stages.{module} imports stage module(s) {others}: stages meet only through files"


@pytest.mark.parametrize("name", sorted(stage_definitions()))
def test_stage_declares_the_params_sections_it_reads(name):
    stage = stage_definitions()[name]
    module = re.search(r"python -m stages\.(\w+)", stage["cmd"]).group(1)
    modules = imported_stage_modules(module) - {"params"}
    source = "\n".join((ROOT / "stages" / f"{m}.py").read_text() for m in modules)
    read = set(re.findall(r"\bparams\.(\w+)", source)) - {"py", "yaml"}
    if "getattr(params, variant)" in source:  # the fine-tuning stages read their own section
        read.add(name.split("@")[1])
    assert read <= set(stage["params"]), f"{name} reads {read - set(stage['params'])} undeclared"


def test_every_path_comes_from_params():
    """No output or data path is written literally in dvc.yaml: they live in params.yaml."""
    for name, stage in stage_definitions().items():
        for entry in stage.get("outs", []) + stage.get("metrics", []):
            path = entry if isinstance(entry, str) else next(iter(entry))
            assert path.startswith("${"), f"{name}: output {path} is not taken from params"


@pytest.mark.parametrize("variant", FINETUNES)
def test_variant_paths_match_the_params_reader(variant):
    """dvc.yaml spells each variant's paths with ${item}; stages/params.py builds them in code."""
    paths = Paths(split="s", tokenized="t", checkpoints="${paths.checkpoints}", models="${paths.models}",
                  predictions="p", metrics="${paths.metrics}", per_dialogue="d", examples="e")
    stage = stage_definitions()[f"train@{variant}"]
    outs = {e if isinstance(e, str) else next(iter(e)) for e in stage["outs"] + stage["metrics"]}
    outs |= {e if isinstance(e, str) else next(iter(e)) for e in stage["plots"]}
    log = str(paths.train_log(variant))  # DVCLive's folder: its summary and its curves
    assert outs == {str(paths.model_dir(variant)), f"{log}/metrics.json", f"{log}/plots/metrics", str(paths.train_metrics(variant))}
    assert str(paths.model_dir(variant)) in stage_definitions()[f"infer@{variant}"]["deps"]
