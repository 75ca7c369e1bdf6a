"""Inference: one row per dialogue with all references; batching never changes outputs."""

from __future__ import annotations

import pandas as pd
import pytest

from stages import checksums, modeling
from stages.infer import generate, group_references
from stages.params import Generate, Prompt
from stages.prompt import build_all

PROMPT = Prompt(template="Summarize the following conversation.\n\n{dialogue}\n\nSummary: ",
                max_source_length=512, max_target_length=128)


def test_group_references_keeps_every_summary_once_per_dialogue():
    frame = pd.DataFrame({
        "id": ["t_1_1", "t_2", "t_1_2", "t_1_3"],
        "dialogue": ["#Person1#: A.", "#Person1#: B.", "#Person1#:  A. ", "#Person1#: A."],
        "summary": ["s1", "s2", "s1b", "s1c"],
        "topic": ["x", "y", "x", "x"],
    })
    grouped = group_references(frame)
    assert grouped["id"].tolist() == ["t_1_1", "t_2"]
    assert grouped["references"].tolist() == [["s1", "s1b", "s1c"], ["s2"]]


def test_length_sorted_batches_return_outputs_in_input_order(tiny_model):
    from demo.make_sample import generate as make_rows

    dialogues = [r["dialogue"] for r in make_rows(12, seed=5)][:7]
    tokenizer = modeling.load_tokenizer(tiny_model)
    model = modeling.load_variant(tiny_model, "base", tiny_model, merge=False)
    one = Generate(max_new_tokens=12, num_beams=1, no_repeat_ngram_size=0, batch_size=1, batch_memory=0.0,
                   static_cache=False, merge_lora=False, processes=1, bf16=False)
    prompts = build_all(PROMPT, dialogues)
    texts_one, counts_one = generate(model, tokenizer, prompts, one, "cpu")
    batched = one.model_copy(update={"batch_size": 3})
    texts_batched, counts_batched = generate(model, tokenizer, prompts, batched, "cpu")
    assert texts_one == texts_batched
    assert counts_one == counts_batched
    static = batched.model_copy(update={"static_cache": True})  # generate.static_cache: the same tokens
    assert generate(model, tokenizer, prompts, static, "cpu") == (texts_one, counts_one)
    assert all(0 < c <= 13 for c in counts_one)  # at most max_new_tokens + the start token


def test_a_batch_out_of_memory_is_split_and_the_outputs_stay_the_same(tiny_model):
    """A batch planned by memory can still meet less of it (another process took some): it is
    halved and generated again, the outputs unchanged; the batches and decode steps are reported."""
    import torch

    from demo.make_sample import generate as make_rows

    prompts = build_all(PROMPT, [r["dialogue"] for r in make_rows(12, seed=5)][:5])
    tokenizer = modeling.load_tokenizer(tiny_model)
    model = modeling.load_variant(tiny_model, "base", tiny_model, merge=False)
    cfg = Generate(max_new_tokens=8, num_beams=1, no_repeat_ngram_size=0, batch_size=5, batch_memory=0.0,
                   static_cache=False, merge_lora=False, processes=1, bf16=False)
    expected, _ = generate(model, tokenizer, prompts, cfg.model_copy(update={"batch_size": 1}), "cpu")
    real = model.generate

    def small_memory(**kwargs):
        if kwargs["input_ids"].shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real(**kwargs)

    model.generate = small_memory
    batches: list = []
    texts, _ = generate(model, tokenizer, prompts, cfg, "cpu", batches)
    assert texts == expected
    assert [size for size, _ in batches] == [2, 1, 2]  # 5 -> 2 + 3 -> 2 + (1 + 2)
    assert all(0 < steps <= 8 for _, steps in batches)


def infer_project(folder, tiny_model, prompt: dict | None = None, **generate) -> None:
    """A folder holding what the infer stage reads for ``--variant base``: params (the demo's,
    with the tiny model by absolute path and ``generate`` updated) and a four-row test split."""
    import os

    from ruamel.yaml import YAML

    from demo.make_sample import generate as make_rows
    from demo.run import demo_params

    params = demo_params()
    params["model"]["name"] = str(tiny_model)
    params["generate"].update(max_new_tokens=4, batch_size=4, **generate)
    params["prompt"].update(prompt or {})
    with open(os.path.join(folder, "params.yaml"), "w") as f:
        YAML(typ="safe", pure=True).dump(params, f)
    split = folder / params["paths"]["split"]
    split.mkdir(parents=True)
    rows = pd.DataFrame(make_rows(8, seed=3))[["id", "dialogue", "summary", "topic"]].head(4)
    rows.to_parquet(split / "test.parquet", index=False)


@pytest.mark.parametrize("setting, recorded", [(False, "float32"), ("auto", "float32")])
def test_generate_bf16_setting_is_recorded_on_cpu(tmp_path, monkeypatch, tiny_model, setting, recorded):
    import json

    from stages import infer

    infer_project(tmp_path, tiny_model, bf16=setting)
    monkeypatch.chdir(tmp_path)
    infer.main(["--variant", "base"])
    metrics = json.loads((tmp_path / "metrics" / "records" / "infer_base.json").read_text())
    assert metrics["dtype"] == recorded  # auto: fp32 where there is no GPU with bf16
    assert metrics["devices"] == "cpu" and metrics["source_truncated"] == 0
    assert len((tmp_path / "data" / "predictions" / "base.jsonl").read_text().splitlines()) == 4


def test_generate_bf16_true_without_a_bf16_gpu_is_one_line_naming_the_key(tmp_path, monkeypatch, tiny_model):
    from stages import infer

    infer_project(tmp_path, tiny_model, bf16=True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        infer.main(["--variant", "base"])
    assert str(exit_.value) == "error: generate.bf16: true, but this machine has no GPU with bf16 support"
    assert not (tmp_path / "data" / "predictions").exists() and not (tmp_path / "metrics").exists()


def test_bf16_cast_of_a_merged_adapter_generates_on_cpu(tmp_path, tiny_model):
    """The path ``generate.bf16`` takes on a GPU, forced through load_variant's argument."""
    import torch

    from stages.params import load_params
    from stages.train_lora import add_lora, save_adapter
    from tests.conftest import ROOT

    lora = add_lora(modeling.load_model(tiny_model), load_params(ROOT / "params.yaml").lora, seed=0)
    with torch.no_grad():  # a "trained" adapter, so that merging changes the weights
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.02, generator=torch.Generator().manual_seed(1))
    save_adapter(lora, tmp_path / "lora")
    checksums.write(tmp_path / "lora")  # as train_lora writes it: load_variant checks it first
    model = modeling.load_variant(tiny_model, "lora", tmp_path / "lora", merge=True, dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert not any("lora" in name for name, _ in model.named_parameters())  # merged, not wrapped
    tokenizer = modeling.load_tokenizer(tiny_model)
    cfg = Generate(max_new_tokens=6, num_beams=1, no_repeat_ngram_size=0, batch_size=2, batch_memory=0.0,
                   static_cache=False, merge_lora=True, processes=1, bf16=True)
    texts, counts = generate(model, tokenizer, build_all(PROMPT, ["#Person1#: Hello.\n#Person2#: Hi."] * 3), cfg, "cpu")
    assert len(texts) == 3 and all(0 < c <= 7 for c in counts)


def test_truncated_test_dialogues_are_counted_and_keep_their_instruction(tmp_path, monkeypatch, tiny_model):
    import json

    from stages import infer

    infer_project(tmp_path, tiny_model, prompt={"max_source_length": 48})
    monkeypatch.chdir(tmp_path)
    fed = []
    real = infer.generate
    monkeypatch.setattr(infer, "generate",
                        lambda model, tok, texts, *a: fed.extend(texts) or real(model, tok, texts, *a))
    infer.main(["--variant", "base"])
    metrics = json.loads((tmp_path / "metrics" / "records" / "infer_base.json").read_text())
    assert metrics["source_truncated"] == 4  # the sample's dialogues are all longer than 48 tokens
    assert len(fed) == 4 and all(text.endswith("\n\nSummary: ") for text in fed)
