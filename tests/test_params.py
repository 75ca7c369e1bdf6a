"""The params reader: the shipped recipe loads, and every kind of bad params names file and key."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from demo.run import demo_params
from stages.params import ParamsError, load_params, parse_params, read_yaml
from tests.conftest import ROOT

PARAMS = ROOT / "params.yaml"


def shipped() -> dict:
    return read_yaml(PARAMS.read_text(encoding="utf-8"))


def write_yaml(path: Path, raw: object) -> Path:
    with path.open("w", encoding="utf-8") as f:
        YAML(typ="safe", pure=True).dump(raw, f)
    return path


def subprocess_env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")


def test_shipped_params_load_and_validate() -> None:
    """The committed params.yaml passes the schema (load_params raises, naming file and key, on
    anything it refuses). No recipe value is asserted: a pull request is free to change them, and
    data.revision is `main` until `python -m stages.hub pin` writes a commit (both are valid)."""
    p = load_params(PARAMS)
    assert set(shipped()) == set(type(p).model_fields)  # every section there, none unknown
    assert parse_params(p.model_dump(), "resolved") == p  # what the stages log loads again


def test_split_refuses_a_branch_revision_and_names_the_pin_command(tmp_path: Path) -> None:
    """An unpinned params.yaml (what `python -m stages.hub pin` is there to fix) stops the split
    stage in one line, offline, before anything is downloaded or written."""
    raw = shipped()
    raw["data"].update(source="hub", revision="main")
    path = write_yaml(tmp_path / "params.yaml", raw)
    env = subprocess_env() | {"HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run([sys.executable, "-m", "stages.split", "--params", str(path)], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: data.revision: 'main' is a branch or tag of {raw['data']['hub_id']}, and DVC "
                      "cannot see it move; run `python -m stages.hub pin` on a machine with hub access and "
                      "commit params.yaml"], result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == [path]  # no hub cache, no data/split, no metrics


def test_demo_overlay_merged_with_params_validates() -> None:
    p = parse_params(demo_params(), "params.yaml + demo/params.yaml")
    recipe = load_params(PARAMS)
    overlay = read_yaml((ROOT / "demo" / "params.yaml").read_text(encoding="utf-8"))
    assert overlay  # the check below must have something to check
    for section in type(recipe).model_fields:
        merged, kept = getattr(p, section), getattr(recipe, section)
        if not hasattr(kept, "model_fields"):  # a top-level value (seed, baselines)
            assert merged == overlay.get(section, kept), section
            continue
        for key in type(kept).model_fields:  # the overlay's keys applied, the others kept from params.yaml
            expected = overlay.get(section, {}).get(key, getattr(kept, key))
            assert getattr(merged, key) == expected, f"{section}.{key}"


def _set(dotted: str, value: object) -> Callable[[dict], None]:
    *parents, last = dotted.split(".")

    def mutate(raw: dict) -> None:
        node = raw
        for key in parents:
            node = node[key]
        node[last] = value

    return mutate


def _delete(dotted: str) -> Callable[[dict], None]:
    *parents, last = dotted.split(".")

    def mutate(raw: dict) -> None:
        node = raw
        for key in parents:
            node = node[key]
        del node[last]

    return mutate


# (mutation, dotted key the message must name right after the file, a phrase it must contain)
BAD = {
    "unknown top-level key": (_set("extras", 1), "extras", "unknown key"),
    "unknown nested key": (_set("train.lerning_rate", 1e-3), "train.lerning_rate", "unknown key"),
    "missing key": (_delete("lora.alpha"), "lora.alpha", "missing"),
    "missing section": (_delete("generate"), "generate", "missing"),
    "quoted number is not an int": (_set("lora.r", "32"), "lora.r", "integer"),
    "rank 0": (_set("lora.r", 0), "lora.r", "greater than or equal to 1"),
    "dropout above 1": (_set("lora.dropout", 1.5), "lora.dropout", "less than 1"),
    "fractions sum to 1.1": (_set("split.fractions.train", 0.9), "split.fractions", "sum to 1"),
    "fraction 0": (_set("split.fractions", {"train": 0.9, "validation": 0.1, "test": 0.0}),
                   "split.fractions.test", "greater than 0"),
    "template without slot": (_set("prompt.template", "Summarize: {text}"), "prompt.template", "{dialogue}"),
    "no new tokens": (_set("generate.max_new_tokens", 0), "generate.max_new_tokens", "greater than"),
    "bf16 yes": (_set("train.bf16", "yes"), "train.bf16", "'yes'"),
    "unknown strategy": (_set("split.strategy", "random"), "split.strategy", "'random'"),
    "unknown source": (_set("data.source", "s3"), "data.source", "'s3'"),
    "hub timeout 0": (_set("hub.timeout_s", 0), "hub.timeout_s", "greater than 0"),
    "hub timeout as text": (_set("hub.timeout_s", "20"), "hub.timeout_s", "number"),
    "empty topic column": (_set("data.columns.topic", ""), "data.columns.topic", "at least 1"),
    "no target modules": (_set("lora.target_modules", []), "lora.target_modules", "at least 1"),
    "unknown bias": (_set("lora.bias", "some"), "lora.bias", "'some'"),
    "unknown baseline": (_set("baselines", ["full", "qlora"]), "baselines.1", "'qlora'"),
    "lora is no baseline": (_set("baselines", ["lora"]), "baselines.0", "'lora'"),
    "baseline twice": (_set("baselines", ["full", "full"]), "baselines", "twice"),
    "full learning rate 0": (_set("full.learning_rate", 0.0), "full.learning_rate", "greater than 0"),
    "no bootstrap resamples": (_set("review.bootstrap_resamples", 0), "review.bootstrap_resamples",
                               "greater than or equal to 1"),
    # Every path a stage writes stays inside the repository (issue: a checkpoints folder outside
    # it was cleared, an examples file outside it overwritten, metrics written under /etc).
    "checkpoints outside": (_set("paths.checkpoints", "/tmp/elsewhere"), "paths.checkpoints",
                            "inside the repository"),
    "examples climbing out": (_set("paths.examples", "../victim.md"), "paths.examples", "'..'"),
    "metrics under /etc": (_set("paths.metrics", "/etc"), "paths.metrics", "no absolute path"),
    "climbing out after a detour": (_set("paths.models", "models/../../models"), "paths.models", "'..'"),
    "the repository itself": (_set("paths.predictions", "data/.."), "paths.predictions", "not the repository"),
    "inside .git": (_set("paths.tokenized", ".git/hooks"), "paths.tokenized", ".git"),
}


@pytest.mark.parametrize("mutate, key, phrase", BAD.values(), ids=BAD.keys())
def test_bad_params_name_file_and_key(tmp_path: Path, mutate: Callable[[dict], None], key: str,
                                      phrase: str) -> None:
    raw = copy.deepcopy(shipped())
    mutate(raw)
    path = write_yaml(tmp_path / "bad.yaml", raw)
    with pytest.raises(ParamsError) as caught:
        load_params(path)
    message = str(caught.value)
    assert f"{path}: {key}" in message
    assert phrase in message
    assert len(message.splitlines()) == 1, message  # one line per problem


@pytest.mark.parametrize("text, phrase", [
    ("- seed\n- paths\n", "expected a mapping of sections, got list"),
    ("seed: [1, 2\n", "line 2, column 1: not valid YAML: expected ',' or ']'"),
    ("", "expected a mapping of sections, got NoneType"),
], ids=["yaml list", "invalid yaml", "empty file"])
def test_unusable_params_file(tmp_path: Path, text: str, phrase: str) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ParamsError, match=re.escape(f"{path}: {phrase}")):
        load_params(path)


def test_missing_params_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ParamsError, match=re.escape(f"{path}: no such params file")):
        load_params(path)


def test_exponent_without_dot_is_a_float(tmp_path: Path) -> None:
    # `dvc exp run -S train.learning_rate=5e-3` writes YAML 1.2 style; YAML 1.1 reads it as a string
    text = PARAMS.read_text(encoding="utf-8")
    text, replaced = re.subn(r"learning_rate: \S+", "learning_rate: 5e-3", text)
    assert replaced == 2  # full.learning_rate and train.learning_rate
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")
    assert load_params(path).train.learning_rate == load_params(path).full.learning_rate == 0.005


def test_params_cli_prints_resolved_params_that_load_again() -> None:
    result = subprocess.run([sys.executable, "-m", "stages.params"], cwd=ROOT, env=subprocess_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert parse_params(read_yaml(result.stdout)) == load_params(PARAMS)


def test_stage_with_bad_params_fails_in_one_line_and_writes_nothing(tmp_path: Path) -> None:
    raw = shipped()
    raw["lora"]["r"] = 0
    bad = write_yaml(tmp_path / "bad.yaml", raw)
    result = subprocess.run([sys.executable, "-m", "stages.split", "--params", str(bad)],
                            cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {bad}: lora.r: ")
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == [bad]  # no data/split, no metrics


def test_params_and_split_import_without_torch() -> None:
    code = ("import sys, stages.params, stages.sources, stages.split\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=subprocess_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_topic_column_may_be_null(tmp_path: Path) -> None:
    raw = shipped()
    raw["data"]["columns"]["topic"] = None  # SAMSum and most exports have no topic
    assert load_params(write_yaml(tmp_path / "params.yaml", raw)).data.columns.topic is None


# --- a file that is not UTF-8 YAML: one line naming the file, the line and what is wrong ------

def _lines(text: str) -> list[str]:
    return text.split("\n")


def _broken(kind: str, path: Path) -> tuple[Path, str]:
    """The shipped params.yaml broken one way (each one DVC refuses too), and what the line says."""
    text = PARAMS.read_text(encoding="utf-8")
    lines = _lines(text)
    if kind == "tab":
        n = next(i for i, line in enumerate(lines) if line.startswith("  r: "))
        lines[n] = "\t" + lines[n][2:]
        path.write_text("\n".join(lines), encoding="utf-8")
        return path, f"line {n + 1}: a tab (column 1); YAML indents with spaces only"
    if kind == "latin-1":
        n = next(i for i, line in enumerate(lines) if line.startswith("seed:"))
        column = len(lines[n]) + 6  # 1-based, after "  # s"
        lines[n] += "  # s\u00e9ed"  # written by an editor set to Latin-1
        path.write_bytes("\n".join(lines).encode("latin-1"))
        return path, f"line {n + 1}: byte 0xe9 (column {column}) is not UTF-8; save the file as UTF-8"
    first = next(i for i, line in enumerate(lines) if line.startswith("lora:"))
    path.write_text(text + "lora:\n  r: 8\n", encoding="utf-8")  # appended by hand, the first forgotten
    return path, (f"line {len(lines)}: duplicate key 'lora' (first at line {first + 1}); "
                  "a key may appear once, remove one")


KINDS = ["tab", "latin-1", "duplicate key"]


@pytest.mark.parametrize("kind", KINDS)
def test_params_that_are_not_yaml_are_one_line(tmp_path: Path, kind: str) -> None:
    path, what = _broken(kind, tmp_path / "params.yaml")
    with pytest.raises(ParamsError) as refused:
        load_params(path)
    assert str(refused.value) == f"{path}: {what}"


@pytest.mark.parametrize("module", ["stages.params", "stages.split", "stages.score"])
@pytest.mark.parametrize("kind", KINDS)
def test_commands_refuse_params_that_are_not_yaml_in_one_line(tmp_path: Path, monkeypatch, capsys,
                                                               kind: str, module: str) -> None:
    """The validator and the stages (whose guard reads params.yaml before the stage body does)
    end in the same one line, never a traceback or a silent choice between two keys."""
    import importlib

    path, what = _broken(kind, tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    argv = [str(path)] if module == "stages.params" else ["--params", str(path)]
    with pytest.raises(SystemExit) as exit_:
        importlib.import_module(module).main(argv)
    assert exit_.value.code == f"error: {path}: {what}"
    assert "Traceback" not in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # nothing written


def test_no_params_value_holds_a_newline_and_the_template_is_the_recipes() -> None:
    """`dvc exp show` prints each param in a table cell: a value with newlines breaks its row.
    The template is written as its lines and joined back, into the recipe's prompt."""
    def leaves(tree: object) -> list[object]:
        if isinstance(tree, dict):
            return [leaf for value in tree.values() for leaf in leaves(value)]
        if isinstance(tree, list):
            return [leaf for value in tree for leaf in leaves(value)]
        return [tree]

    for name in ("params.yaml", "demo/params.yaml"):
        raw = read_yaml((ROOT / name).read_text(encoding="utf-8"))
        assert not [v for v in leaves(raw) if isinstance(v, str) and "\n" in v], name
    template = load_params(ROOT / "params.yaml").prompt.template
    assert template == "Summarize the following conversation.\n\n{dialogue}\n\nSummary: "


def test_target_modules_are_checked_against_the_models_own_layers(tmp_path: Path, monkeypatch) -> None:
    """Before any stage runs (check_params): from the local model's weights (the demo's gated
    tiny T5 has wi_0 and wi_1, no wi), from the snapshot in the hub cache, else from T5's names."""
    raw = demo_params()
    raw["lora"]["target_modules"] = ["q", "wi_0", "lm_head", "shared"]
    parse_params(raw)  # its own layers (lm_head: tied to shared, stored once)
    raw["lora"]["target_modules"] = ["q", "wi"]
    with pytest.raises(ParamsError, match=r"^p: lora.target_modules: demo/tiny-t5 has no layer named wi "
                                          r"\(its linear layers: k, lm_head, o, q, v, wi_0, wi_1, wo\)$"):
        parse_params(raw, "p")

    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    hub = shipped()
    hub["model"] = {"name": "org/gated-t5", "revision": "a" * 40}
    hub["lora"]["target_modules"] = ["q", "wi"]
    with pytest.raises(ParamsError, match=r"org/gated-t5 has no layer named x \(its linear layers: k, lm_head, "
                                          r"o, q, v, wi, wi_0, wi_1, wo\)"):
        parse_params({**hub, "lora": {**hub["lora"], "target_modules": ["x"]}})
    parse_params(hub)  # not cached: any T5 layer
    snapshot = tmp_path / "models--org--gated-t5" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        (snapshot / name).write_bytes((ROOT / "demo" / "tiny-t5" / name).read_bytes())
    with pytest.raises(ParamsError, match=r"org/gated-t5 has no layer named wi \(its linear layers: k, lm_head, "
                                          r"o, q, v, wi_0, wi_1, wo\)"):
        parse_params(hub)
    hub["model"]["name"] = "org/not-a-t-five"  # unknown architecture, not cached: train_lora checks
    parse_params({**hub, "lora": {**hub["lora"], "target_modules": ["anything"]}})
