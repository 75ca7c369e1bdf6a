"""The recipe's automatic batch size, made unable to change the result.

``train.auto_find_batch_size`` asks for the largest per-device batch that fits the GPU. The
Trainer's own version (accelerate's ``find_executable_batch_size``) retries the whole training
with the batch multiplied by 0.9 after each out-of-memory error: it restarts from step 0, keeps
gradient accumulation as it was, so the effective batch (and the result) depends on the GPU and
on whatever else runs on it, and under DDP one rank's retry deadlocks the others.

Here the batch is settled once, before training: a probe runs forward, backward and an optimizer
step (learning rate 0: the weights do not move, the optimizer's state is allocated) on a batch of
the longest source and the longest target of the training data at each candidate size, largest
first. The candidates are the divisors of the effective batch ``batch_size x
gradient_accumulation_steps``, from the whole effective batch down: where it fits, a step is one
micro-batch (64 x 1 on a big GPU, for 32 x 2 in params), half the kernel launches and Python work
per example of 32 x 2, and accumulation falls or rises to match, so the effective batch params
state never changes (64 x 1, 32 x 2 or 16 x 4). Each micro-batch's loss is its own tokens' mean,
as before (T5 ignores the Trainer's token count, see ``stages/train_lora.py``), so another split
of the same 64 examples weighs them slightly differently: the same kind of difference as 16 x 4
against 32 x 2. Under DDP every rank probes its own GPU and the ranks agree on the smallest size
any of them settled on. The batch and accumulation used are recorded in the training metrics.

Only on a GPU: on the CPU there is no out-of-memory error to catch (the kernel kills the process
instead), so ``batch_size`` is used as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from stages.errors import ModelError

log = logging.getLogger(__name__)


def candidates(batch_size: int, accumulation: int) -> list[int]:
    """Per-device batches that keep ``batch_size x accumulation`` examples per optimizer step,
    largest first: the whole effective batch in one micro-batch down to one example."""
    total = batch_size * accumulation
    return [b for b in range(total, 0, -1) if total % b == 0]


def settle(fits: Callable[[int], None], batch_size: int, accumulation: int,
           agree: Callable[[int], int] = lambda b: b) -> tuple[int, int]:
    """The largest candidate batch for which ``fits(batch)`` raises no out-of-memory error, agreed
    across processes by ``agree`` (the minimum over ranks), and the accumulation that keeps the
    effective batch: ``(batch, accumulation)``."""
    from accelerate.utils import find_executable_batch_size

    sizes = iter(candidates(batch_size, accumulation))
    first = next(sizes)

    def probe(batch: int) -> int:
        fits(batch)
        return batch

    def smaller() -> int:
        batch = next(sizes, 0)  # 0: accelerate stops with "No executable batch size found"
        log.info("batch size: out of memory, trying %d", batch)
        return batch

    try:
        found = find_executable_batch_size(probe, starting_batch_size=first, reduce_batch_size_fn=smaller)()
    except RuntimeError as exc:
        if "No executable batch size found" not in str(exc):
            raise
        raise ModelError("train.batch_size: not even one example per device fits in GPU memory "
                         "(try train.gradient_checkpointing: true, or a smaller model)") from None
    batch = agree(found)
    total = batch_size * accumulation
    log.info("batch size: %d per device x %d accumulation (params: %d x %d)",
             batch, total // batch, batch_size, accumulation)
    return batch, total // batch


def worst_case(dataset) -> dict:
    """The longest source of a tokenized split with its longest target: the example whose
    training step takes the most memory."""
    sources, targets = dataset["input_ids"], dataset["labels"]
    source = max(sources, key=len)
    return {"input_ids": source, "attention_mask": [1] * len(source), "labels": max(targets, key=len)}


def ddp_headroom(model) -> int:
    """Bytes DDP takes beside one process's training step: its gradient buckets, a second copy of
    every trained weight's gradient (a full fine-tune: the whole model's, in fp32)."""
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


def release(device) -> None:
    """After settling on a GPU: return to the driver what the probe's failed candidates left in
    torch's cache (NCCL allocates its buffers outside that cache, at the first collective, and
    could find too little), and restart the peak count, so the recorded peak is training's."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def worst_case_probe(model, worst: dict, collator, device, bf16: bool,
                     checkpointing: bool, reserve: int = 0) -> Callable[[int], None]:
    """``fits(batch)``: one training step's memory at ``batch`` copies of ``worst``, with the
    optimizer's state allocated and ``reserve`` bytes held beside it (``ddp_headroom``); nothing
    in the model changes."""
    import torch

    trainable = [p for p in model.parameters() if p.requires_grad]
    if checkpointing:  # as the Trainer will: the memory it saves is what lets a larger batch fit
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model.to(device).train()

    def fits(batch: int) -> None:
        optimizer = torch.optim.AdamW(trainable, lr=0.0, weight_decay=0.0)
        held = torch.empty(reserve, dtype=torch.uint8, device=device) if reserve else None  # noqa: F841
        try:
            inputs = {k: v.to(device) for k, v in collator([worst] * batch).items()}
            with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
                loss = model(**inputs).loss
            loss.backward()
            optimizer.step()
        finally:
            optimizer.zero_grad(set_to_none=True)
            del optimizer, held

    return fits


def agree_across_ranks(batch: int) -> int:
    """The smallest of every rank's batch (all ranks must train the same one)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return batch
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    value = torch.tensor([batch], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return int(value.item())
