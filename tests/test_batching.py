"""The automatic batch size keeps the effective batch: the largest micro-batch that fits, up to the
whole effective batch, with accumulation lowered or raised to match; ranks agree; probing changes
no weight."""

from __future__ import annotations

import pytest
import torch

from stages import batching, modeling
from stages.errors import ModelError
from stages.params import Lora
from stages.train_lora import add_lora

LORA = Lora(r=4, alpha=8, dropout=0.0, target_modules=["q", "v"], bias="none", task_type="SEQ_2_SEQ_LM")


def oom_above(limit: int):
    """A ``fits`` that runs out of memory above ``limit`` examples, as CUDA reports it."""
    tried = []

    def fits(batch: int) -> None:
        tried.append(batch)
        if batch > limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    return fits, tried


def test_candidates_keep_the_examples_per_step():
    assert batching.candidates(32, 2) == [64, 32, 16, 8, 4, 2, 1]
    assert batching.candidates(24, 2) == [48, 24, 16, 12, 8, 6, 4, 3, 2, 1]
    assert batching.candidates(8, 1) == [8, 4, 2, 1]


def test_an_oom_lowers_the_batch_and_raises_accumulation():
    fits, tried = oom_above(8)
    assert batching.settle(fits, 32, 2) == (8, 8)  # 32 x 2 = 8 x 8: the same 64 examples a step
    assert tried == [64, 32, 16, 8]  # largest first, then settled once


def test_a_gpu_that_holds_the_effective_batch_takes_it_in_one_micro_batch():
    fits, tried = oom_above(64)
    assert batching.settle(fits, 32, 2) == (64, 1) and tried == [64]  # 32 x 2 in params, 64 x 1 run


def test_the_largest_divisor_that_fits_is_taken():
    fits, tried = oom_above(48)  # 48 examples fit, but 48 does not divide 64: 32 x 2
    assert batching.settle(fits, 32, 2) == (32, 2) and tried == [64, 32]


def test_the_ranks_agree_on_the_smallest_batch():
    fits, _ = oom_above(16)
    assert batching.settle(fits, 32, 2, agree=lambda b: min(b, 4)) == (4, 16)


def test_not_even_one_example_is_one_line():
    fits, _ = oom_above(0)
    with pytest.raises(ModelError, match=r"^train.batch_size: not even one example per device fits"):
        batching.settle(fits, 4, 2)


def test_other_errors_are_not_taken_for_oom():
    def fits(batch: int) -> None:
        raise ValueError("a real bug")

    with pytest.raises(ValueError, match="a real bug"):
        batching.settle(fits, 4, 2)


def test_the_probe_runs_the_worst_case_step_and_changes_no_weight(tiny_model, monkeypatch):
    """The real probe on the tiny model, with an OOM injected into its forward above 2 examples:
    it settles on 2, its batches hold the longest source and target, and no weight moved."""
    from transformers import DataCollatorForSeq2Seq

    tokenizer = modeling.load_tokenizer(tiny_model)
    model = add_lora(modeling.load_model(tiny_model, dropout_rate=0.0), LORA, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sources = tokenizer(["short one", "a much longer dialogue with many more words in it", "mid length"])
    targets = tokenizer(text_target=["a long summary of many words here", "short", "mid"])
    dataset = {"input_ids": sources["input_ids"], "labels": targets["input_ids"]}
    worst = batching.worst_case(dataset)
    assert worst["input_ids"] == sources["input_ids"][1] and worst["labels"] == targets["input_ids"][0]

    shapes = []
    forward = type(model).forward

    def forward_with_oom(self, *args, **kwargs):
        shapes.append(tuple(kwargs["input_ids"].shape))
        if kwargs["input_ids"].shape[0] > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(type(model), "forward", forward_with_oom)
    fits = batching.worst_case_probe(model, worst, DataCollatorForSeq2Seq(tokenizer, model=model), "cpu",
                                     bf16=False, checkpointing=False)
    assert batching.settle(fits, 8, 2) == (2, 8)
    assert shapes == [(n, len(worst["input_ids"])) for n in (16, 8, 4, 2)]
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.parameters())


def _rank(rank: int, init: str, limits: list[int], results) -> None:
    import torch.distributed as dist

    from stages import launch

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=len(limits))
    try:
        fits, _ = oom_above(limits[rank])
        # The peak memory recorded is the largest of any rank's (here: its limit, in MB).
        results[rank] = (*batching.settle(fits, 32, 2, batching.agree_across_ranks),
                         launch.largest(float(limits[rank])))
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_settle_on_the_same_batch(tmp_path):
    """Rank 0 fits 16, rank 1 only 4: both train 4 x 16 (a rank alone at 16 would deadlock DDP);
    both record the larger peak."""
    import torch.multiprocessing as mp

    results = mp.Manager().dict()
    mp.spawn(_rank, args=(f"file://{tmp_path / 'rendezvous'}", [16, 4], results), nprocs=2, join=True)
    assert dict(results) == {0: (4, 16, 16.0), 1: (4, 16, 16.0)}


def test_the_probe_holds_ddps_buckets_and_hands_its_memory_back(tiny_model, monkeypatch):
    """Under DDP (a full fine-tune without FSDP) each candidate must fit beside DDP's gradient
    buckets, a second copy of the trained weights' gradients; after settling, what the failed
    candidates left in torch's cache goes back and the peak count restarts (so the recorded peak
    is training's, and NCCL's buffers find room)."""
    from transformers import DataCollatorForSeq2Seq

    tokenizer = modeling.load_tokenizer(tiny_model)
    model = modeling.load_model(tiny_model, dropout_rate=0.0)
    reserve = batching.ddp_headroom(model)
    assert reserve == 4 * sum(p.numel() for p in model.parameters())  # every weight trains, in fp32
    assert batching.ddp_headroom(add_lora(modeling.load_model(tiny_model), LORA, seed=0)) < reserve / 10

    held = []
    empty = torch.empty
    monkeypatch.setattr(torch, "empty", lambda *a, **k: held.append((a, k.get("dtype"))) or empty(*a, **k))
    worst = batching.worst_case({"input_ids": tokenizer(["a short dialogue"])["input_ids"],
                                 "labels": tokenizer(text_target=["short"])["input_ids"]})
    fits = batching.worst_case_probe(model, worst, DataCollatorForSeq2Seq(tokenizer, model=model), "cpu",
                                     bf16=False, checkpointing=False, reserve=reserve)
    fits(2)
    assert ((reserve,), torch.uint8) in held

    calls = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append("empty_cache"))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: calls.append("reset_peak"))
    batching.release("cpu")
    assert calls == []
    batching.release(torch.device("cuda", 0))
    assert calls == ["empty_cache", "reset_peak"]
