"""The prompt is applied, nothing is padded, a long dialogue is cut (never the instruction, never
</s>) the same way as at inference, and truncation is counted."""

from __future__ import annotations

import pandas as pd
import pytest

from stages import modeling
from stages.params import Prompt
from stages.tokenize import tokenize_frame

TEMPLATE = "Summarize the following conversation.\n\n{dialogue}\n\nSummary: "


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    return modeling.load_tokenizer(tiny_model)


def frame() -> pd.DataFrame:
    return pd.DataFrame({
        "dialogue": ["#Person1#: Hi.\n#Person2#: Hello there, how are you today? " * 10,
                     "#Person1#: Bye.\n#Person2#: Bye."],
        "summary": ["#Person1# and #Person2# greet each other at length. " * 5, "They say goodbye."],
    })


def test_prompt_applied_without_padding(tokenizer):
    prompt = Prompt(template=TEMPLATE, max_source_length=512, max_target_length=128)
    data, stats = tokenize_frame(frame(), tokenizer, prompt, "pin")
    assert data.column_names == ["input_ids", "attention_mask", "labels", "length"]
    first, second = data[0], data[1]
    assert tokenizer.decode(second["input_ids"], skip_special_tokens=True).startswith(
        "Summarize the following conversation.")
    assert len(first["input_ids"]) != len(second["input_ids"])  # no padding to a common length
    assert tokenizer.pad_token_id not in second["input_ids"] + second["labels"]
    assert second["attention_mask"] == [1] * len(second["input_ids"])
    assert second["length"] == len(second["input_ids"])
    assert stats["source_truncated"] == 0 and stats["target_truncated"] == 0


def test_truncation_keeps_eos_and_is_counted(tokenizer):
    prompt = Prompt(template=TEMPLATE, max_source_length=32, max_target_length=8)
    data, stats = tokenize_frame(frame(), tokenizer, prompt, "pin")
    full = [len(tokenizer(TEMPLATE.replace("{dialogue}", d))["input_ids"]) for d in frame()["dialogue"]]
    assert {k: v for k, v in stats.items() if k != "source_tokens_max"} == {
        "rows": 2, "source_truncated": sum(n > 32 for n in full), "target_truncated": 1,
        "target_tokens_max": 8}
    assert stats["source_truncated"] >= 1 and 28 <= stats["source_tokens_max"] <= 32
    assert data[0]["input_ids"][-1] == tokenizer.eos_token_id
    assert data[0]["labels"][-1] == tokenizer.eos_token_id
    assert len(data[0]["labels"]) == 8


def test_a_long_dialogue_keeps_its_instruction_as_at_inference(tokenizer):
    """The dialogue is cut, not the prompt: the cue the model answers (``Summary: ``) and the
    closing </s> stay, and the ids are those the infer stage feeds the model (prompt.fit)."""
    from stages import prompt as prompt_module

    prompt = Prompt(template=TEMPLATE, max_source_length=40, max_target_length=8)
    long_dialogue = frame()["dialogue"][0]
    data, stats = tokenize_frame(frame(), tokenizer, prompt, "pin")
    ids = data[0]["input_ids"]
    assert len(ids) <= 40 and ids[-1] == tokenizer.eos_token_id
    text = tokenizer.decode(ids, skip_special_tokens=True)
    assert text.startswith("Summarize the following conversation.")
    assert text.rstrip().endswith("Summary:")
    assert "#Person1#: Hi." in text  # the dialogue's start is kept
    # Inference fits the same way: identical ids for the same dialogue.
    texts, cut = prompt_module.fit(tokenizer, prompt, [long_dialogue, "#Person1#: Bye."])
    assert cut == [True, False]
    assert tokenizer(texts[0])["input_ids"] == ids
    assert texts[1] == prompt_module.build(prompt, "#Person1#: Bye.")  # a prompt that fits is untouched


def test_a_template_longer_than_the_limit_is_refused(tokenizer):
    from stages import prompt as prompt_module
    from stages.errors import InputError

    prompt = Prompt(template=TEMPLATE, max_source_length=4, max_target_length=8)
    with pytest.raises(InputError, match="prompt.max_source_length: 4 tokens cannot hold the template"):
        prompt_module.fit(tokenizer, prompt, [frame()["dialogue"][0]])


def test_tokenized_bytes_do_not_depend_on_where_the_tokenizer_is(tiny_model, tmp_path):
    """The saved data's fingerprint names the tokenizer by content: two copies of the model in
    different folders (two cache folders) give byte-identical tokenized data."""
    import shutil

    import datasets

    from stages.modeling import folder_hash

    prompt = Prompt(template=TEMPLATE, max_source_length=64, max_target_length=16)
    saved = []
    for name in ("cache-a", "cache-b"):
        folder = shutil.copytree(tiny_model, tmp_path / name / "tiny-t5")
        data, _ = tokenize_frame(frame(), modeling.load_tokenizer(folder), prompt, folder_hash(folder))
        datasets.DatasetDict({"train": data}).save_to_disk(str(tmp_path / f"out-{name}"))
        saved.append({p.relative_to(tmp_path / f"out-{name}"): p.read_bytes()
                      for p in sorted((tmp_path / f"out-{name}").rglob("*")) if p.is_file()})
    assert saved[0] == saved[1]
