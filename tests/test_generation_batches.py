"""Generation batches sized by memory: within the budget, in order, every dialogue once."""

from __future__ import annotations

import pytest

from stages import generation_batches as gb

BASE = gb.Shape(encoder_layers=12, decoder_layers=12, d_model=768, heads=12, d_kv=64, d_ff=2048, vocab=32128)


def test_each_batch_fits_the_budget_and_every_dialogue_is_planned_once_in_order():
    lengths = sorted([512, 480, 300, 300, 250, 200, 120, 90, 60, 40] * 7, reverse=True)
    each = gb.sequence_bytes(BASE, 300, 200, 1, 2)
    budget = 10 * each
    sizes = gb.plan(lengths, budget, BASE, 200, 1, 2)
    assert sum(sizes) == len(lengths)
    start = 0
    for size in sizes:  # the batch's first (longest) prompt pads the others
        assert size * gb.sequence_bytes(BASE, lengths[start], 200, 1, 2) <= budget
        start += size
    assert max(sizes) > 10  # short prompts share a batch with more of their kind
    assert sizes[0] < 10


@pytest.mark.parametrize("budget, expected", [(1, [1, 1, 1]), (10**15, [3])])
def test_a_budget_below_one_dialogue_still_plans_one_and_a_large_one_plans_all(budget, expected):
    assert gb.plan([400, 300, 10], budget, BASE, 200, 1, 2) == expected


def test_memory_grows_with_prompt_new_tokens_beams_and_value_size():
    one = gb.sequence_bytes(BASE, 200, 100, 1, 2)
    assert gb.sequence_bytes(BASE, 400, 100, 1, 2) > one
    assert gb.sequence_bytes(BASE, 200, 200, 1, 2) > one
    assert gb.sequence_bytes(BASE, 200, 100, 4, 2) == 4 * one
    assert gb.sequence_bytes(BASE, 200, 100, 1, 4) == pytest.approx(2 * one, rel=0.05)  # fp32 logits either way


def test_on_the_cpu_batches_are_batch_size_whatever_the_memory_setting():
    assert gb.batch_sizes(None, [100] * 70, 32, 0.8, 200, 1, "cpu") == [32, 32, 6]
    assert gb.fixed(64, 32) == [32, 32]


def test_decode_steps_are_each_batchs_longest_summary():
    assert gb.decode_steps([2, 3], [5, 9, 1, 4, 2]) == 9 + 4
