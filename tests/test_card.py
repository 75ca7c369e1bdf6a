"""The card stage: the adapter as it ships, with a model card that states the scores beside it."""

from __future__ import annotations

import json
import re
from urllib.parse import quote

import pytest
from ruamel.yaml import YAML

from stages import card, checksums
from stages.params import load_params
from tests.conftest import ROOT


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


# A params value as a hostile pull request or `dvc exp run -S` may set it: a backtick to end the
# card's code span, then a mention, HTML and a link the hub would render live.
HOSTILE = "data/`x` @octocat <b>html</b> [link](http://x).jsonl"


def rendered_card(params, config: dict) -> str:
    """The card's Markdown below its front matter (which the hub reads as YAML, not Markdown)."""
    text = card.card_text(params, config, {"lora": {"rougeL": 0.5, "dialogues": 3}}, {}, "0" * 40)
    return text.split("---\n", 2)[2]


@pytest.mark.parametrize("source", ["file", "hub"])
def test_params_text_in_the_card_is_shown_as_text(source):
    """``data.file``, ``data.hub_id``, ``data.revision``, the base model's name and revision: each
    renders as its characters (no HTML, link or mention of them), and the card is built the same
    way as with a plain word in their place; the front matter reads back the values as given."""
    from tests.test_markdown import INLINE, Page, assert_nothing_github_links, inline_words, render, words

    params = load_params(ROOT / "params.yaml")

    def with_value(value: str) -> tuple:
        data = params.data.model_copy(update={"source": source, "file": value, "hub_id": value, "revision": value})
        config = {"base_model_name_or_path": value, "revision": value if source == "hub" else None,
                  "r": 8, "lora_alpha": 16, "lora_dropout": 0.05, "target_modules": ["q", "v"]}
        return params.model_copy(update={"data": data}), config

    hostile, plain = (rendered_card(*with_value(v)) for v in (HOSTILE, INLINE))
    hostile_page, plain_page = Page(render(hostile)), Page(render(plain))
    url = "https://huggingface.co/datasets/"
    expected = [tuple((k, v.replace(url + INLINE, url + quote(HOSTILE))) for k, v in e[2]) if e[0] == "<" else None
                for e in plain_page.elements]
    assert [e[:2] for e in hostile_page.elements] == [e[:2] for e in plain_page.elements]
    assert [e[2] if e[0] == "<" else None for e in hostile_page.elements] == expected
    shown = words("".join(plain_page.text)).replace(f"{INLINE!r}", repr(HOSTILE)).replace(INLINE, inline_words(HOSTILE))
    assert words("".join(hostile_page.text)) == shown
    assert_nothing_github_links(hostile_page, hostile)

    full = card.card_text(*with_value(HOSTILE), {}, {}, "0" * 40)
    meta = YAML(typ="safe").load(full.split("---\n")[1])
    assert meta["base_model"] == HOSTILE and meta.get("datasets", [HOSTILE]) == [HOSTILE]


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
