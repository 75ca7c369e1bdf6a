"""The prompt is applied, nothing is padded, truncation keeps </s> and is counted."""

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
    data, stats = tokenize_frame(frame(), tokenizer, prompt)
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
    data, stats = tokenize_frame(frame(), tokenizer, prompt)
    full = [len(tokenizer(TEMPLATE.replace("{dialogue}", d))["input_ids"]) for d in frame()["dialogue"]]
    assert stats == {"rows": 2, "source_truncated": sum(n > 32 for n in full), "target_truncated": 1,
                     "source_tokens_max": 32, "target_tokens_max": 8}
    assert stats["source_truncated"] >= 1
    assert data[0]["input_ids"][-1] == tokenizer.eos_token_id
    assert data[0]["labels"][-1] == tokenizer.eos_token_id
    assert len(data[0]["labels"]) == 8
