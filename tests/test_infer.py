"""Inference: one row per dialogue with all references; batching never changes outputs."""

from __future__ import annotations

import pandas as pd

from stages import modeling
from stages.infer import generate, group_references
from stages.params import Generate, Prompt

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
    one = Generate(max_new_tokens=12, num_beams=1, no_repeat_ngram_size=0, batch_size=1, merge_lora=False,
                   processes=1)
    texts_one, counts_one = generate(model, tokenizer, dialogues, PROMPT, one, "cpu")
    batched = one.model_copy(update={"batch_size": 3})
    texts_batched, counts_batched = generate(model, tokenizer, dialogues, PROMPT, batched, "cpu")
    assert texts_one == texts_batched
    assert counts_one == counts_batched
    assert all(0 < c <= 13 for c in counts_one)  # at most max_new_tokens + the start token
