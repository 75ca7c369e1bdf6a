"""Training throughput: the pipeline's batches vs the reference recipe's vs HF's defaults.

The three strategies differ only in how examples become batches, so the benchmark builds the
batches itself and runs the same optimizer step on each (forward, backward, clip, AdamW) on one
LoRA model made by ``stages.train_lora.add_lora``, instead of going through three Trainers whose
other machinery (logging, evaluation, checkpoints) would be timed along:

- ``pipeline``: what ``stages/finetune.py`` configures: ``DataCollatorForSeq2Seq`` (inputs
  padded to the batch's longest, labels padded with -100) and the Trainer's length-grouped order
  (``train_sampling_strategy="group_by_length"``, ``LengthGroupedSampler``'s index function);
- ``hf_defaults``: ``Seq2SeqTrainer``'s defaults: the same collator, random order;
- ``reference``: the course lab's recipe: every input and label padded to 512 with the pad id,
  random order. Padding labels with the pad id also makes the loss count padding (see
  ``loss_check``).

Batches are collated before timing (the Trainer collates in its DataLoader; that cost is small
and would only blur the comparison), from the same pool of examples for every strategy.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator

from benchmarks.memory import PeakMemory

STRATEGIES = ("pipeline", "hf_defaults", "reference")
REFERENCE_LENGTH = 512  # the lab padded inputs and labels to the tokenizer's model_max_length
LEARNING_RATE = 1e-3  # params.yaml train.learning_rate; the value does not change a step's cost
MAX_GRAD_NORM = 1.0  # params.yaml train.max_grad_norm: clipping is part of the step's cost
FIELDS = ("input_ids", "attention_mask", "labels")


def order(strategy: str, lengths: list[int], batch_size: int, seed: int) -> list[int]:
    """The order in which a strategy visits the examples."""
    import torch
    from transformers.trainer_pt_utils import get_length_grouped_indices

    generator = torch.Generator().manual_seed(seed)
    if strategy == "pipeline":
        # The Trainer sorts mega-batches of min(50, n // (4 * batch)) batches; 50 is what a
        # real-size train set gets (DialogSum's ~10k rows). A benchmark pool is smaller than one
        # mega-batch, so it is sorted as one: still less grouped than a real run, whose batches
        # come from 50 batches' worth of sorted examples.
        return get_length_grouped_indices(lengths, batch_size, mega_batch_mult=50, generator=generator)
    return torch.randperm(len(lengths), generator=generator).tolist()


def pad_to(rows: list[dict], width: int, pad_id: int, label_pad: int) -> dict:
    """Every input and label padded to ``width``: the reference recipe's fixed-size batches."""
    import torch

    def padded(key: str, value: int) -> torch.Tensor:
        return torch.tensor([r[key] + [value] * (width - len(r[key])) for r in rows])

    return {"input_ids": padded("input_ids", pad_id), "attention_mask": padded("attention_mask", 0),
            "labels": padded("labels", label_pad)}


def collate(strategy: str, rows: list[dict], tokenizer, model, pad_to_multiple_of: int | None = None) -> dict:
    from transformers import DataCollatorForSeq2Seq

    rows = [{k: r[k] for k in FIELDS} for r in rows]
    if strategy == "reference":
        return pad_to(rows, REFERENCE_LENGTH, tokenizer.pad_token_id, label_pad=tokenizer.pad_token_id)
    # Exactly the pipeline's collator (stages/finetune.py); HF's defaults use the same one.
    collator = DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100,
                                      pad_to_multiple_of=pad_to_multiple_of)
    return dict(collator(rows))


def make_batches(strategy: str, examples: list[dict], batch_size: int, tokenizer, model, seed: int,
                 pad_to_multiple_of: int | None = None) -> list[dict]:
    indices = order(strategy, [e["length"] for e in examples], batch_size, seed)
    return [collate(strategy, [examples[i] for i in indices[s:s + batch_size]], tokenizer, model,
                    pad_to_multiple_of) for s in range(0, len(indices), batch_size)]


def loss_check(model, rows: list[dict], tokenizer, device: str) -> dict:
    """One batch's loss three ways, dropout off.

    Padding is invisible to the loss only when labels are padded with -100: the dynamic batch
    and the 512-wide batch with -100 labels must agree; the reference's pad-id labels make the
    model also "predict" hundreds of pad tokens, and the mean loss changes with the padding.
    """
    import torch

    pad = tokenizer.pad_token_id
    batches = {
        "dynamic_labels_-100": collate("pipeline", rows, tokenizer, model),
        "pad512_labels_-100": pad_to(rows, REFERENCE_LENGTH, pad, label_pad=-100),
        "pad512_labels_pad_id": collate("reference", rows, tokenizer, model),
    }
    was_training = model.training
    model.eval()
    with torch.no_grad():
        losses = {name: model(**to_device(b, device)).loss.item() for name, b in batches.items()}
    model.train(was_training)
    dynamic = losses["dynamic_labels_-100"]
    return {**losses,
            "dynamic_equals_pad512": math.isclose(dynamic, losses["pad512_labels_-100"], rel_tol=1e-4),
            "pad_id_labels_differ": not math.isclose(dynamic, losses["pad512_labels_pad_id"], rel_tol=1e-3)}


def to_device(batch: dict, device: str) -> dict:
    return {k: v.to(device) for k, v in batch.items()}


def bf16_attention(device: str):
    """Where attention computes in bf16: on a CPU, sdpa's math kernel. torch 2.13's CPU flash
    attention in bf16 fails ("pack_vnni2 is only supported when avx512 is supported") on an
    AVX-512 CPU once ``stages`` pinned ``ATEN_CPU_CAPABILITY`` to avx2 (``stages/__init__.py``).
    No stage computes in bf16 on a CPU; benchmarks and tests that stand in for a GPU there do."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH) if torch.device(device).type == "cpu" else contextlib.nullcontext()


@contextlib.contextmanager
def bf16_autocast(device: str) -> Iterator[None]:
    """bf16 autocast, what the Trainer's ``bf16=True`` runs, with ``bf16_attention``."""
    import torch

    with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16), bf16_attention(device):
        yield


def train_step(model, optimizer, params: list, batch: dict, autocast: Callable) -> float:
    import torch

    with autocast():
        loss = model(**batch).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()  # waits for the GPU: the step's time is all in


def measure(model, batches: dict[str, list[dict]], device: str,
            autocast: Callable = contextlib.nullcontext) -> dict[str, dict]:
    """Time every strategy's steps, interleaved: step i of each strategy before step i+1 of any.

    Interleaving is for a shared machine: a neighbour's load that comes and goes then slows
    every strategy alike, not whichever ran at the time. The strategies share the model and one
    optimizer: a step's cost does not depend on the weights' values.
    """
    import torch

    names = list(batches)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=LEARNING_RATE)
    model.train()
    # Untimed memory round, which is also the warm-up: each strategy's largest batch once, alone
    # under the memory meter. Metering the timed steps instead would time the meter too: its
    # sampling thread, and the page faults of memory handed back to the OS before every step.
    peaks = {}
    for name in names:
        largest = max(batches[name], key=lambda b: b["input_ids"].numel() + b["labels"].numel())
        batch = to_device(largest, device)
        with PeakMemory(device) as peak:
            train_step(model, optimizer, params, batch, autocast)
        peaks[name] = peak.mb
    seconds = dict.fromkeys(names, 0.0)
    losses: dict[str, list[float]] = {n: [] for n in names}
    steps = len(batches[names[0]])
    for i in range(steps):
        for name in names[i % len(names):] + names[:i % len(names)]:  # who goes first rotates
            batch = to_device(batches[name][i], device)
            started = time.perf_counter()
            losses[name].append(train_step(model, optimizer, params, batch, autocast))
            seconds[name] += time.perf_counter() - started
    return {n: summarize(batches[n], seconds[n], peaks[n], losses[n]) for n in names}


def summarize(batches: list[dict], seconds: float, peak_mb: float, losses: list[float]) -> dict:
    samples = sum(len(b["input_ids"]) for b in batches)
    real_inputs = sum(int(b["attention_mask"].sum()) for b in batches)
    # Real summary tokens: labels other than -100, or other than pad in the reference's batches
    # (its labels end in </s>, then only pad ids).
    real_targets = sum(int(((b["labels"] != -100) & (b["labels"] != 0)).sum()) for b in batches)
    padded = sum(b["input_ids"].numel() + b["labels"].numel() for b in batches)
    return {
        "steps": len(batches),
        "samples": samples,
        "seconds": round(seconds, 3),
        "samples_per_s": samples / seconds,
        "target_tokens_per_s": real_targets / seconds,  # real summary tokens learned from per second
        "real_input_tokens": real_inputs,
        "real_target_tokens": real_targets,
        "padded_tokens": padded,  # input + label positions the model computed
        "padding_share": round(1 - (real_inputs + real_targets) / padded, 4),
        "peak_memory_mb": round(peak_mb, 1),  # during its largest batch's step
        "mean_loss": sum(losses) / len(losses),
    }


def step_timer(warmup: int, deadline: float, device: str):
    """A Trainer callback that times the optimizer steps after the first ``warmup`` (data loader
    start-up, allocator, compilation) and stops training at the first step ending past
    ``deadline`` (``time.perf_counter()``): ``.steps`` timed, ``.seconds`` they took.

    It waits for the GPU only at the window's two edges, so it adds no host sync per step."""
    from transformers import TrainerCallback

    def sync() -> None:
        if device == "cuda":
            import torch

            torch.cuda.synchronize()

    class StepTimer(TrainerCallback):
        steps, seconds, started = 0, 0.0, None

        def on_step_end(self, args, state, control, **kwargs):
            step, late = state.global_step, time.perf_counter() > deadline
            if step == warmup:
                sync()
                self.started = time.perf_counter()
            elif self.started is not None and (step >= state.max_steps or late):
                sync()
                self.steps, self.seconds = step - warmup, time.perf_counter() - self.started
            if late:
                control.should_training_stop = True

    return StepTimer()
