"""The card stage: the adapter as it ships, with a model card that states the scores beside it."""

from __future__ import annotations

import json
import re

from ruamel.yaml import YAML

from stages import card, checksums
from stages.params import load_params


def test_the_built_adapter_ships_with_its_card(built_project):
    params = load_params(built_project / "params.yaml")
    paths = params.paths
    folder = built_project / paths.published_adapter()
    trained = built_project / paths.model_dir("lora")
    checksums.verify(folder)  # the card is the one file the manifest leaves out
    assert {p.name for p in folder.iterdir()} == {p.name for p in trained.iterdir()}
    for name in ("adapter_model.safetensors", "adapter_config.json", checksums.MANIFEST):
        assert (folder / name).read_bytes() == (trained / name).read_bytes()

    text = (folder / card.CARD).read_text()
    meta = YAML(typ="safe").load(text.split("---\n")[1])  # the hub's front matter
    config = json.loads((trained / "adapter_config.json").read_text())
    assert meta["base_model"] == config["base_model_name_or_path"] and meta["library_name"] == "peft"
    scores = json.loads((built_project / paths.scores_record()).read_text())
    for variant in ("base", "lora", "human"):  # both protocols, and the faithfulness figures
        for key in ("rougeL", "rougeL_mean_ref", "invented_numbers"):
            assert f"{scores[variant][key]:.4f}" in text, (variant, key)
    assert [m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]][2] == scores["lora"]["rougeL"]
    assert re.search(r"^- code: git commit [0-9a-f]{40}$", text, re.M)  # the built project is committed
    assert "PeftModel.from_pretrained" in text and f"r / alpha / dropout | {config['r']} /" in text


def test_the_card_names_a_hub_base_and_its_revision_and_escapes_params_text(built_project):
    params = load_params(built_project / "params.yaml")
    config = {"base_model_name_or_path": "google/flan-t5-base", "revision": "7bcac57" + "0" * 33,
              "r": 8, "lora_alpha": 16, "lora_dropout": 0.05, "target_modules": ["q", "v"]}
    hub = params.model_copy(update={"data": params.data.model_copy(
        update={"source": "hub", "hub_id": "knkarthick/dialogsum", "revision": "abc123"})})
    scores = {"lora": {"rougeL": 0.5, "dialogues": 3}}
    text = card.card_text(hub, config, scores, {}, "<b>@someone</b>")
    meta = YAML(typ="safe").load(text.split("---\n")[1])
    assert meta["base_model"] == "google/flan-t5-base" and meta["datasets"] == ["knkarthick/dialogsum"]
    assert f"revision: `{config['revision']}`" in text and "at revision `abc123`" in text
    assert f"revision={config['revision']!r}" in text  # the usage snippet loads the pinned base
    assert "<b>" not in text and "&lt;b&gt;" in text


def test_the_commit_line_names_the_files_that_changed_since(tmp_path, monkeypatch):
    from stages.card import code_commit
    from tests.conftest import git

    monkeypatch.chdir(tmp_path)
    git(tmp_path, "init", "-q")
    (tmp_path / "stages").mkdir()
    for name in ("params.yaml", "dvc.yaml", "stages/score.py", "notes.txt"):
        (tmp_path / name).write_text("one\n")
    git(tmp_path, "add", "-A")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    commit = git(tmp_path, "rev-parse", "HEAD").strip()
    assert code_commit() == commit
    (tmp_path / "notes.txt").write_text("not the pipeline\n")
    assert code_commit() == commit
    (tmp_path / "params.yaml").write_text("two\n")  # what dvc exp run -S does
    assert code_commit() == f"{commit} with uncommitted changes to params.yaml"
    (tmp_path / "stages" / "score.py").write_text("two\n")
    git(tmp_path, "add", "stages/score.py")  # staged counts too
    assert code_commit() == f"{commit} with uncommitted changes to params.yaml, stages/score.py"
