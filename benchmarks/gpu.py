"""One GPU, the rehearsal's data shape: the project's training step and generation beside their
peers and the variants that could make them faster, in one table, with MFU.

    python -m benchmarks.gpu [--budget-s 450] [--out benchmarks/results]   # one GPU, under 8 minutes
    python -m benchmarks.gpu --tiny                                       # CPU, demo/tiny-t5, seconds
    python -m benchmarks.gpu --only project,generate@all                  # some phases again

Writes ``<out>/gpu.{json,md}`` (``gpu-tiny.*`` with ``--tiny``) after every phase, so a run cut
by a time limit still leaves the rows it finished, headed ``Incomplete: written as <phase>
started``. Each phase catches its own failure (out of memory, a variant this stack does not
support) and records it as its row; one that would not finish within ``--budget-s`` is skipped,
and says so. A phase that needs CUDA (``torch.compile``'s training graph: minutes of inductor on a
CPU) is skipped on a CPU with that reason.

The data are the rehearsal's (``benchmarks/synthetic.py``): random token ids with DialogSum's
lengths (12,460 training examples, 500 validation, 500 test dialogues), and a random model of
flan-t5-base's exact shape with the recipe's LoRA (``add_lora``, params.yaml's ``lora``).
Speed depends on shapes, not on what the weights know.

Training, each row ``warmup_steps`` untimed optimizer steps then ``steps`` timed ones, the
recipe's effective batch (32 x 2 = 64 examples) in every row:

- peers: ``project``, the Trainer exactly as ``stages.finetune.training_args`` configures it
  (bf16 autocast where the GPU has it, length-grouped batches, ``DataCollatorForSeq2Seq`` padding
  to a multiple of 8, the data loader workers of ``runtime``), evaluation and checkpoints left out
  (``eval_checkpoint`` times them); ``hf_defaults``, ``Seq2SeqTrainer`` with its defaults at the
  recipe's batch, learning rate and steps (fp32, random order, no workers); ``bare_loop``, the
  project's batches in a plain PyTorch loop (autocast, accumulation, clipping, fused AdamW, no
  host sync per step): what the model costs with nothing around it;
- variants of ``project`` (whose frozen base is ``train.base_weights`` as the train stage resolves
  it: ``auto`` is bf16 under bf16 autocast, with its ``fewer_bf16_kernels``), one change each: the
  frozen base in fp32 (what the stage did before ``auto``), micro-batch 64 x 1, eager attention
  instead of sdpa, ``torch.compile`` with dynamic shapes (one graph for every batch length;
  bucketing the lengths instead compiles a graph per bucket, minutes each), and the cost of one
  evaluation (the validation set) and one checkpoint, scaled to the recipe's ``max_steps /
  eval_steps`` of each.

Generation (``stages.infer.generate``: length-sorted batches, the adapter merged, bf16 weights
where the GPU has them, as ``generate.bf16: auto``), exactly ``new_tokens`` per dialogue (random
weights never stop on their own; 64 is about the longest summary of a 32-dialogue batch at
DialogSum's lengths, where a real batch stops): batch 32, 128 and all 500 in one; the course lab's
one-at-a-time loop on a few dialogues; the static cache with CUDA graphs (transformers compiles
the decoder step with ``mode="reduce-overhead"`` when the cache is static), its outputs compared
with the dynamic cache's at the same batch (a wrong graph replay shows there, not in the speed);
and ``decode_profile``: torch.profiler's top ops of one decode step.

MFU = model FLOPs / (seconds x the card's peak), the peak being what the card's datasheet gives
for dense bf16 tensor-core math (never the sparsity figure), looked up by the name torch reports
(``PEAK_BF16``), or ``--peak-tflops``; on a GPU in neither MFU is not reported, and the table
says so. Model FLOPs count real tokens only (padding is waste, not work) and the linear layers
each token passes through, embeddings excluded (a lookup, not a matmul) and attention scores
omitted (a few % at these lengths):
training ``6 * (N_src * T_src + N_tgt * T_tgt)``, inference ``2 * (N_src * T_src + N_tgt * T_gen)``,
where T_src is the prompt tokens, T_tgt the summary tokens, T_gen the generated tokens, N_src the
weights a source token meets (the encoder's, and the decoder's cross-attention ``k`` and ``v``,
which project the encoder's output: once per source token and decoder layer, whatever the
target's length) and N_tgt the rest of the decoder's plus lm_head (LoRA's included):
``weights_per_token``. A training row's tokens are its examples times the training set's mean
source and target lengths, as the train stage's record counts them. With LoRA the backward pass
skips the frozen weights' gradients, so a step really does ~4N, not 6N, per token: the 6N figure
is the convention, comparable with other reports; the executed share is 2/3 of it.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import json
import logging
import math
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks import inference, synthetic, training
from benchmarks.memory import PeakMemory

log = logging.getLogger(__name__)
SEED = 42

# The datasheets' dense bf16 tensor-core peak, FLOP/s, by a pattern of the device name torch or
# nvidia-smi reports ("NVIDIA H200", "NVIDIA A100-SXM4-80GB", "NVIDIA L4"). First match wins, so
# the PCIe and NVL variants come before their SXM part; \b keeps "L4" from matching "L40S".
PEAK_BF16 = (
    (r"\bH100 PCIe", 756e12),
    (r"\bH100 NVL", 835e12),
    (r"\bH200 NVL", 835e12),
    (r"\b(H100|H200|GH200)\b", 989e12),  # SXM (and Grace Hopper)
    (r"\bA100\b", 312e12),  # SXM and PCIe alike
    (r"\bL40S\b", 362e12),
    (r"\bL4\b", 121e12),
)


def peak_flops(device_name: str) -> float | None:
    """The datasheet's dense bf16 peak of the GPU named ``device_name``; None when unknown."""
    return next((peak for pattern, peak in PEAK_BF16 if re.search(pattern, device_name)), None)


def peak_note(device: str, peak: float | None, source: str | None = None) -> str:
    """What MFU is stated against, for a table's caption; ``source`` names a peak not from PEAK_BF16."""
    if peak is None:
        return f"MFU not reported: no datasheet dense bf16 peak known for {device}"
    return f"MFU against {peak / 1e12:.0f} TFLOP/s ({source or 'the datasheet dense bf16 peak'})"


# Decoder layers' cross-attention keys and values: they project the encoder's output, so they
# run once per source token (per layer), not once per target token.
CROSS_KV = re.compile(r"(^|\.)EncDecAttention\.[kv](\.|$)")


def weights_per_token(model) -> tuple[int, int]:
    """(N_src, N_tgt): the weights of the linear layers a source token's and a target token's
    forward pass multiplies by. Source: the encoder's, and the decoder's cross-attention ``k`` and
    ``v``; target: the rest of the decoder's, and lm_head. Counted over ``nn.Linear`` modules (a
    LoRA adapter's A and B included; embedding lookups and relative position biases are not
    matmuls), so a tied lm_head counts too and a model on the meta device works."""
    import torch

    source = target = 0
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        if ".encoder." in f".{name}." or CROSS_KV.search(name):
            source += module.weight.numel()
        elif ".decoder." in f".{name}." or name.rsplit(".", 1)[-1] == "lm_head":
            target += module.weight.numel()
    return source, target


@dataclasses.dataclass(frozen=True)
class Workload:
    train_examples: int  # the synthetic training set the Trainer samples from
    eval_examples: int  # the validation set one evaluation runs over
    batch_size: int  # the recipe's micro-batch; x accumulation = the effective batch of every row
    accumulation: int
    warmup_steps: int  # untimed optimizer steps before the timed ones
    steps: int  # timed optimizer steps
    compile_warmup_steps: int  # torch.compile's first steps compile, and a new shape may recompile
    dialogues: int  # test dialogues generated
    generate_batches: tuple[int, int]  # the infer stage's batch today, a larger one; then all in one
    new_tokens: int  # generated per dialogue, exactly
    loop_dialogues: int  # for the one-at-a-time loop
    profile_batch: int  # dialogues in the profiled decode step


# GPU: DialogSum's sizes and the recipe's batch. --tiny: every line on a CPU in seconds.
FULL = Workload(train_examples=12_460, eval_examples=500, batch_size=32, accumulation=2, warmup_steps=3, steps=20,
                compile_warmup_steps=8, dialogues=500, generate_batches=(32, 128), new_tokens=64,
                loop_dialogues=8, profile_batch=128)
TINY = Workload(train_examples=64, eval_examples=8, batch_size=2, accumulation=2, warmup_steps=1, steps=2,
                compile_warmup_steps=1, dialogues=8, generate_batches=(2, 4), new_tokens=4, loop_dialogues=2,
                profile_batch=4)


class OutOfTime(Exception):
    """The time budget ran out inside a phase, before it had measured anything."""


@dataclasses.dataclass
class Bench:
    """What the phases share: the machine, the workload, the data and the clock."""
    tiny: bool
    device: str
    w: Workload
    params: object  # stages.params.Params
    tokenizer: object
    train: object  # datasets.Dataset, as the tokenize stage writes it
    validation: object
    dialogues: list[str]
    peak: float | None
    bf16: bool  # the project's train.bf16 and generate.bf16 (auto) on this machine
    started: float  # time.perf_counter() when the run began (the budget counts from here)
    deadline: float  # and when the budget ends
    scratch: Path  # the Trainers' output_dir
    shared: dict = dataclasses.field(default_factory=dict)  # the generation model and outputs, built once

    @functools.cached_property
    def mean_lengths(self) -> tuple[float, float]:
        """The training set's mean source and target tokens per example (padding excluded)."""
        return statistics.fmean(self.train["length"]), statistics.fmean(len(x) for x in self.train["labels"])


# -- training ---------------------------------------------------------------------------------

def lora_model(b: Bench, base_weights: str = "fp32", attention: str | None = None):
    """A fresh model of the workload's shape (flan-t5-base's, or demo/tiny-t5) with the recipe's
    LoRA adapter (fp32, peft's default even on a bf16 base), on the device; a bf16 base under bf16
    autocast with the train stage's ``fewer_bf16_kernels``."""
    import torch

    from stages.train_lora import add_lora, fewer_bf16_kernels

    base = synthetic.load_shape("tiny", SEED)[0] if b.tiny else synthetic.base_shape_model(SEED, device=b.device)
    if attention:
        base.set_attn_implementation(attention)
    if base_weights == "bf16":
        base.to(torch.bfloat16)  # what train.base_weights: bf16 loads
    model = add_lora(base, b.params.lora, SEED).to(b.device)
    if base_weights == "bf16" and b.bf16:  # as stages.train_lora.trainable_model
        fewer_bf16_kernels(model)
    return model


def project_args(b: Bench, batch: int, accumulation: int, max_steps: int):
    """``stages.finetune.training_args`` at this batch and length; evaluation and checkpoints off."""
    from stages import finetune

    train = b.params.train.model_copy(update={"max_steps": max_steps, "batch_size": batch,
                                              "gradient_accumulation_steps": accumulation})
    args = finetune.training_args(train, train.learning_rate, b.scratch, b.params.seed, b.bf16, [],
                                  b.params.runtime.dataloader_workers)
    return dataclasses.replace(args, eval_strategy="no", save_strategy="no", load_best_model_at_end=False)


def project_collator(b: Bench, model):
    """The collator ``stages.finetune.make_trainer`` builds."""
    from transformers import DataCollatorForSeq2Seq

    return DataCollatorForSeq2Seq(b.tokenizer, model=model, label_pad_token_id=-100,
                                  pad_to_multiple_of=8 if b.bf16 else None)


def trainer(b: Bench, model, args, collator, callbacks=()):
    from transformers import PrinterCallback, ProgressCallback, Seq2SeqTrainer

    t = Seq2SeqTrainer(model=model, args=args, train_dataset=b.train, eval_dataset=b.validation,
                       data_collator=collator, processing_class=b.tokenizer, callbacks=list(callbacks))
    for chatter in (PrinterCallback, ProgressCallback):  # a dict of figures printed per run
        t.remove_callback(chatter)
    return t


def training_figures(b: Bench, model, steps: int, seconds: float, peak_mb: float) -> dict:
    n_src, n_tgt = weights_per_token(model)
    source, target = b.mean_lengths
    examples = steps * b.w.batch_size * b.w.accumulation
    flops = 6 * examples * (n_src * source + n_tgt * target)
    return {"steps": steps, "examples": examples, "seconds": round(seconds, 3),
            "seconds_per_step": round(seconds / steps, 4), "samples_per_s": examples / seconds,
            "tokens_per_s": examples * (source + target) / seconds, "model_tflops": flops / seconds / 1e12,
            "mfu": flops / seconds / b.peak if b.peak else None, "peak_memory_mb": round(peak_mb, 1)}


def timed_trainer(b: Bench, model, args, collator, warmup: int) -> dict:
    """Train ``warmup`` + ``steps`` optimizer steps with the Trainer; the figures of the timed ones."""
    timer = training.step_timer(warmup, b.deadline, b.device)
    with PeakMemory(b.device) as memory:
        trainer(b, model, args, collator, [timer]).train()
    if not timer.steps:
        raise OutOfTime(f"it ran out within the {warmup} untimed warm-up steps")
    return training_figures(b, model, timer.steps, timer.seconds, memory.mb)


def describe(b: Bench, batch: int, accumulation: int, base: str = "fp32", attention: str = "sdpa",
             extra: str = "") -> str:
    autocast = "bf16 autocast" if b.bf16 else "fp32"
    return f"{batch} x {accumulation}, {autocast}, {base} base, {attention}{extra}"


def project_variant(base_weights: str | None = None, attention: str | None = None, micro: bool = False,
                    compiled: bool = False) -> Callable[[Bench], dict]:
    """The project's Trainer with one thing changed (``base_weights`` None: the train stage's own,
    ``train.base_weights`` resolved for this run's autocast)."""
    def run(b: Bench) -> dict:
        from stages import modeling

        w = b.w
        weights = base_weights or modeling.base_weights(b.params.train.base_weights, b.bf16)
        batch, accumulation = (w.batch_size * w.accumulation, 1) if micro else (w.batch_size, w.accumulation)
        warmup = w.compile_warmup_steps if compiled else w.warmup_steps
        model = lora_model(b, weights, attention)
        if compiled:
            model.compile(dynamic=True)
        args = project_args(b, batch, accumulation, warmup + w.steps)
        extra = ", torch.compile (dynamic shapes)" if compiled else ""
        return {"settings": describe(b, batch, accumulation, weights, attention or "sdpa", extra)} | timed_trainer(
            b, model, args, project_collator(b, model), warmup)
    return run


def hf_defaults(b: Bench) -> dict:
    """``Seq2SeqTrainer``'s defaults at the recipe's batch, learning rate and length."""
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainingArguments

    w = b.w
    model = lora_model(b)
    args = Seq2SeqTrainingArguments(output_dir=str(b.scratch), per_device_train_batch_size=w.batch_size,
                                    gradient_accumulation_steps=w.accumulation,
                                    learning_rate=b.params.train.learning_rate,
                                    max_steps=w.warmup_steps + w.steps, save_strategy="no",
                                    use_cpu=b.device == "cpu", seed=b.params.seed, report_to=[])
    collator = DataCollatorForSeq2Seq(b.tokenizer, model=model)  # run_summarization.py's
    return {"settings": f"{w.batch_size} x {w.accumulation}, fp32, random order, no loader workers"} | timed_trainer(
        b, model, args, collator, w.warmup_steps)


def bare_loop(b: Bench) -> dict:
    """The project's batches (length-grouped, padded to 8 in bf16) in a plain loop: forward and
    backward under autocast per micro-batch, clipping and fused AdamW per step; the batches are
    on the device beforehand and nothing waits for the GPU until the end."""
    import torch

    w = b.w
    model = lora_model(b)
    rows = b.train.select(range((w.warmup_steps + w.steps) * w.batch_size * w.accumulation)).to_list()
    batches = [training.to_device(x, b.device) for x in training.make_batches(
        "pipeline", rows, w.batch_size, b.tokenizer, model, SEED, pad_to_multiple_of=8 if b.bf16 else None)]
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=b.params.train.learning_rate, fused=b.device == "cuda")
    model.train()

    def step(micro_batches: list[dict]) -> None:
        for batch in micro_batches:
            with torch.autocast(device_type=b.device, dtype=torch.bfloat16, enabled=b.bf16):
                loss = model(**batch).loss / len(micro_batches)
            loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, b.params.train.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    steps = [batches[i:i + w.accumulation] for i in range(0, len(batches), w.accumulation)]
    for micro_batches in steps[:w.warmup_steps]:
        step(micro_batches)
    with PeakMemory(b.device) as memory:
        started = time.perf_counter()
        for micro_batches in steps[w.warmup_steps:]:
            step(micro_batches)
        if b.device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
    return {"settings": describe(b, w.batch_size, w.accumulation, extra=", plain PyTorch loop")} | training_figures(
        b, model, w.steps, seconds, memory.mb)


def eval_checkpoint(b: Bench) -> dict:
    """One evaluation over the validation set and one checkpoint, as the project's Trainer makes
    them every ``train.eval_steps``, after one step (so the optimizer state exists)."""
    w, cfg = b.w, b.params.train
    model = lora_model(b)
    t = trainer(b, model, project_args(b, w.batch_size, w.accumulation, 1), project_collator(b, model))
    t.train()
    started = time.perf_counter()
    t.evaluate()
    evaluate_s = time.perf_counter() - started
    started = time.perf_counter()
    t._save_checkpoint(t.model, trial=None)  # what the Trainer calls at each save step
    checkpoint_s = time.perf_counter() - started
    folder = b.scratch / "checkpoint-1"
    events = cfg.max_steps // cfg.eval_steps
    return {"settings": f"eval batch {cfg.eval_batch_size}, {len(b.validation)} validation rows; one checkpoint",
            "seconds": round(evaluate_s + checkpoint_s, 3), "evaluate_s": round(evaluate_s, 3),
            "checkpoint_s": round(checkpoint_s, 3),
            "checkpoint_mb": round(sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20, 1),
            "events_per_run": events, "seconds_per_run": round(events * (evaluate_s + checkpoint_s), 1)}


# -- generation -------------------------------------------------------------------------------

def generation_model(b: Bench):
    """The infer stage's model: the adapter merged, in its generation dtype; built and warmed once."""
    if "model" not in b.shared:
        import torch

        merged = inference.merged_copy(lora_model(b)).to(torch.bfloat16 if b.bf16 else torch.float32)
        inference.pipeline(merged, b.tokenizer, b.dialogues[:8], b.params.prompt, generate_cfg(b, 8, 2), b.device)
        inference.fix_length(merged, b.w.new_tokens)
        b.shared["model"] = merged
    return b.shared["model"]


def generate_cfg(b: Bench, batch: int, new_tokens: int | None = None):
    """The infer stage's settings at exactly ``batch`` dialogues a batch: ``batch_memory: 0``, or on
    a GPU the planner would size the batches by memory (``generate@all`` is what it plans on an H200
    for 500 dialogues)."""
    return b.params.generate.model_copy(update={"batch_size": batch, "max_new_tokens": new_tokens or b.w.new_tokens,
                                                "num_beams": 1, "no_repeat_ngram_size": 0, "batch_memory": 0.0})


def source_tokens(b: Bench, dialogues: list[str]) -> int:
    from stages import prompt

    texts, _ = prompt.fit(b.tokenizer, b.params.prompt, dialogues)
    return sum(len(ids) for ids in b.tokenizer(texts)["input_ids"])


def generation_figures(b: Bench, model, dialogues: list[str], batch: int, seconds: float, peak_mb: float) -> dict:
    n_src, n_tgt = weights_per_token(model)
    generated = len(dialogues) * b.w.new_tokens
    flops = 2 * (n_src * source_tokens(b, dialogues) + n_tgt * generated)
    batches = math.ceil(len(dialogues) / batch)
    return {"dialogues": len(dialogues), "batch_size": batch, "batches": batches,
            "decode_steps": batches * b.w.new_tokens, "seconds": round(seconds, 3),
            "dialogues_per_s": len(dialogues) / seconds, "tokens_per_s": generated / seconds,
            "model_tflops": flops / seconds / 1e12, "mfu": flops / seconds / b.peak if b.peak else None,
            "peak_memory_mb": round(peak_mb, 1)}


def timed_generation(b: Bench, batch: int) -> tuple[dict, list[str]]:
    model = generation_model(b)
    with PeakMemory(b.device, interval_s=0.01) as memory:
        started = time.perf_counter()
        texts = inference.pipeline(model, b.tokenizer, b.dialogues, b.params.prompt, generate_cfg(b, batch), b.device)
        seconds = time.perf_counter() - started
    return generation_figures(b, model, b.dialogues, batch, seconds, memory.mb), texts


def batch_of(b: Bench, which: str) -> int:
    return len(b.dialogues) if which == "all" else b.w.generate_batches[int(which)]


def generate_at(which: str) -> Callable[[Bench], dict]:
    """The infer stage's path at batch ``generate_batches[which]`` or all dialogues in one."""
    def run(b: Bench) -> dict:
        batch = batch_of(b, which)
        figures, texts = timed_generation(b, batch)
        b.shared[f"texts@{batch}"] = texts
        dtype = "bf16" if b.bf16 else "fp32"
        return {"settings": f"batch {batch}, {dtype} weights, dynamic cache"} | figures
    return run


def static_cache_at(which: str) -> Callable[[Bench], dict]:
    """The same batches with a static cache: on CUDA transformers compiles the decoder step and
    replays it as CUDA graphs. The first call (compilation, graph capture) is timed apart; the
    outputs are compared with the dynamic cache's."""
    def run(b: Bench) -> dict:
        batch = batch_of(b, which)
        model = generation_model(b)
        reference = b.shared.get(f"texts@{batch}") or timed_generation(b, batch)[1]
        model.generation_config.cache_implementation = "static"
        try:
            started = time.perf_counter()
            inference.pipeline(model, b.tokenizer, b.dialogues, b.params.prompt, generate_cfg(b, batch), b.device)
            first_call_s = time.perf_counter() - started
            figures, texts = timed_generation(b, batch)
        finally:
            model.generation_config.cache_implementation = None
        same = sum(x == y for x, y in zip(texts, reference))
        graphs = "CUDA graphs" if b.device == "cuda" else "no CUDA graphs on a CPU"
        note = f"{same} of {len(texts)} outputs as the dynamic cache's" + ("" if same == len(texts) else ": DIFFER")
        return {"settings": f"batch {batch}, static cache, {graphs}", "first_call_s": round(first_call_s, 3),
                "same_outputs": same, "note": note} | figures
    return run


def one_at_a_time(b: Bench) -> dict:
    """The course lab's loop: ``peft_model.generate`` per dialogue, fp32, adapter unmerged."""
    model = lora_model(b)
    inference.fix_length(model.get_base_model(), b.w.new_tokens)
    dialogues = b.dialogues[:b.w.loop_dialogues]
    inference.one_at_a_time(model, b.tokenizer, dialogues[:1], b.params.prompt, b.w.new_tokens, b.device)  # warm-up
    with PeakMemory(b.device, interval_s=0.01) as memory:
        started = time.perf_counter()
        inference.one_at_a_time(model, b.tokenizer, dialogues, b.params.prompt, b.w.new_tokens, b.device)
        seconds = time.perf_counter() - started
    return {"settings": "batch 1, fp32, adapter unmerged (the course lab's loop)"} | generation_figures(
        b, model, dialogues, 1, seconds, memory.mb)


def decode_profile(b: Bench) -> dict:
    """One decode step of the infer stage's first batch (the longest dialogues) under torch.profiler."""
    from benchmarks import profile
    from stages import prompt

    model = generation_model(b)
    texts, _ = prompt.fit(b.tokenizer, b.params.prompt, b.dialogues)
    batch = sorted(texts, key=lambda t: -len(b.tokenizer(t)["input_ids"]))[:b.w.profile_batch]
    inputs = b.tokenizer(batch, return_tensors="pt", padding=True).to(b.device)
    result = profile.decode_step(model, dict(inputs), b.device)
    kernels = f", {result['cuda_kernels']:,} CUDA kernels" if result["cuda_kernels"] is not None else ""
    return {"settings": f"one decode step, batch {result['batch']}", "seconds": result["step_ms"] / 1e3,
            "note": f"{result['aten_ops']:,} aten ops{kernels}"} | result


# -- the run ----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Phase:
    name: str
    what: str  # training, cost, generation, profile
    kind: str  # peer, variant (of the project's path), or measure (what a part costs)
    title: str  # what it is, for a row that did not run
    need_s: float  # about what it takes on one H200: it does not start with less budget left
    run: Callable[[Bench], dict]
    needs_cuda: str | None = None  # why it is skipped on a CPU


PHASES = (
    Phase("project", "training", "peer", "the project's Trainer", 35, project_variant()),
    Phase("hf_defaults", "training", "peer", "Seq2SeqTrainer defaults", 45, hf_defaults),
    Phase("bare_loop", "training", "peer", "plain PyTorch loop", 25, bare_loop),
    Phase("base_fp32", "training", "variant", "frozen base in fp32", 30, project_variant(base_weights="fp32")),
    Phase("micro_batch_x1", "training", "variant", "one micro-batch per step", 30, project_variant(micro=True)),
    Phase("eager_attention", "training", "variant", "eager attention", 30, project_variant(attention="eager")),
    Phase("eval_checkpoint", "cost", "measure", "one evaluation and one checkpoint", 25, eval_checkpoint),
    Phase("generate@0", "generation", "peer", "the infer stage's batch", 45, generate_at("0")),
    Phase("generate@1", "generation", "variant", "a larger batch", 20, generate_at("1")),
    Phase("generate@all", "generation", "variant", "every dialogue in one batch", 15, generate_at("all")),
    Phase("one_at_a_time", "generation", "peer", "the course lab's loop", 15, one_at_a_time),
    Phase("decode_profile", "profile", "measure", "one decode step, profiled", 10, decode_profile),
    Phase("compile", "training", "variant", "torch.compile (dynamic shapes)", 150, project_variant(compiled=True),
          needs_cuda="torch.compile of the training step is minutes of inductor on a CPU"),
    Phase("static_cache@all", "generation", "variant", "static cache + CUDA graphs", 90, static_cache_at("all")),
    Phase("static_cache@1", "generation", "variant", "static cache + CUDA graphs", 120, static_cache_at("1")),
)


def row_name(phase: Phase, w: Workload) -> str:
    """``generate@0`` -> ``generate@32``: the phase's name with its batch."""
    name, _, which = phase.name.partition("@")
    if not which or which == "all":
        return phase.name
    return f"{name}@{w.generate_batches[int(which)]}"


def run_phase(phase: Phase, b: Bench) -> dict:
    """The phase's row: its figures, or why it was skipped, or how it failed."""
    import torch

    row = {"what": phase.what, "kind": phase.kind, "settings": phase.title}
    left = b.deadline - time.perf_counter()
    if phase.needs_cuda and b.device != "cuda":
        return row | {"status": "skipped", "reason": f"needs CUDA: {phase.needs_cuda}"}
    if left < phase.need_s and not b.tiny:
        return row | {"status": "skipped", "reason": f"time budget: {left:.0f} s left, it takes ~{phase.need_s:.0f} s"}
    if left <= 0:
        return row | {"status": "skipped", "reason": "time budget: none left"}
    started = time.perf_counter()
    try:
        row |= {"status": "ok"} | phase.run(b)
    except OutOfTime as exc:
        row |= {"status": "skipped", "reason": f"time budget: {exc}"}
    except Exception as exc:  # out of memory, a variant this stack lacks: the other phases still run
        log.exception("%s failed", phase.name)
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        row |= {"status": "failed", "reason": f"{type(exc).__name__}: {first}"}
    finally:
        gc.collect()
        if b.device == "cuda":
            torch.cuda.empty_cache()
    return row | {"phase_s": round(time.perf_counter() - started, 1)}


def prepare(tiny: bool, budget_s: float, peak: float | None, scratch: Path) -> Bench:
    import torch

    from stages import modeling
    from stages.params import load_params

    started = time.perf_counter()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not tiny:
        raise SystemExit("error: no GPU here; python -m benchmarks.gpu --tiny runs the small version on CPU")
    w = TINY if tiny else FULL
    params = load_params()
    vocab = synthetic.load_shape("tiny", SEED)[0].config.vocab_size if tiny else synthetic.BASE_SHAPE["vocab_size"]
    tokenizer = synthetic.id_tokenizer(vocab)
    log.info("data: %d training, %d validation examples, %d test dialogues", w.train_examples, w.eval_examples,
             w.dialogues)
    return Bench(tiny=tiny, device=device, w=w, params=params, tokenizer=tokenizer,
                 train=synthetic.tokenized_dataset(tokenizer, params.prompt, w.train_examples, SEED),
                 validation=synthetic.tokenized_dataset(tokenizer, params.prompt, w.eval_examples, SEED + 2),
                 dialogues=synthetic.synthetic_texts(w.dialogues, vocab, SEED + 1)[0], peak=peak,
                 bf16=modeling.use_bf16(params.train.bf16), started=started, deadline=started + budget_s,
                 scratch=scratch)


def run(args: argparse.Namespace, write: Callable[[dict], None]) -> dict:
    """Every phase (or ``args.only``'s) in order, ``write(results)`` before and after each."""
    import torch

    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    peak = args.peak_tflops * 1e12 if args.peak_tflops else peak_flops(name)
    phases = [p for p in PHASES if not args.only or p.name in args.only]
    with tempfile.TemporaryDirectory(prefix="benchmarks-gpu-") as scratch:
        b = prepare(args.tiny, args.budget_s, peak, Path(scratch))
        n_src, n_tgt = weights_per_token(lora_model(b))
        results = {"device": name, "shape": "demo/tiny-t5" if args.tiny else "flan-t5-base's shape, random weights",
                   "weights_per_token": [n_src, n_tgt], "peak_bf16_flops": peak,
                   "peak_note": peak_note(name, peak, "--peak-tflops" if args.peak_tflops else None),
                   "budget_s": args.budget_s, "workload": dataclasses.asdict(b.w),
                   "recipe": {"max_steps": b.params.train.max_steps, "eval_steps": b.params.train.eval_steps},
                   "complete": False, "running": None, "rows": {}}
        for phase in phases:
            log.info("phase %s", phase.name)
            results["running"] = phase.name
            write(results)
            results["rows"][row_name(phase, b.w)] = run_phase(phase, b)
            results["elapsed_s"] = round(time.perf_counter() - b.started, 1)
        results["complete"], results["running"] = True, None
        write(results)
    return results


# -- the table --------------------------------------------------------------------------------

def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def _cells(name: str, r: dict, results: dict, against: dict[str, float]) -> list[str]:
    """work, s, rate, tokens/s, TFLOP/s, MFU, peak MiB, vs, note of one row that ran."""
    note = r.get("note", "")
    if r["what"] == "training":
        work, rate = f"{r['steps']} steps x {r['examples'] // r['steps']}", f"{r['samples_per_s']:,.1f} samples/s"
        vs = r["samples_per_s"] / against["training"] if against.get("training") else None
    elif r["what"] == "generation":
        work = (f"{r['dialogues']} x {results['workload']['new_tokens']} tokens, {r['batches']} batches, "
                f"{r['decode_steps']:,} decode steps")
        rate = f"{r['dialogues_per_s']:,.2f} dialogues/s"
        vs = r["dialogues_per_s"] / against["generation"] if against.get("generation") else None
    else:
        work, rate, vs = ("1 step" if r["what"] == "profile" else "1 + 1"), "", None
    if r["what"] == "cost":
        recipe = results["recipe"]
        share = ""
        if against.get("step_s"):
            share = f", {100 * r['seconds_per_run'] / (recipe['max_steps'] * against['step_s']):.0f} % of its training"
        note = (f"evaluate {r['evaluate_s']:.2f} s, checkpoint {r['checkpoint_s']:.2f} s ({r['checkpoint_mb']} MB): "
                f"{r['seconds_per_run']:,.0f} s per {recipe['max_steps']}-step run "
                f"({r['events_per_run']} of each){share}")
    tokens = f"{r['tokens_per_s']:,.0f}" if "tokens_per_s" in r else ""
    flops = f"{r['model_tflops']:.2f}" if "model_tflops" in r else ""
    mfu = _pct(r.get("mfu")) if "model_tflops" in r else ""
    peak = f"{r['peak_memory_mb']:,.0f}" if "peak_memory_mb" in r else ""
    return [work, f"{r['seconds']:.3f}", rate, tokens, flops, mfu, peak, "" if vs is None else f"{vs:.2f}x", note]


def table(results: dict) -> str:
    rows = results["rows"]
    ok = {n: r for n, r in rows.items() if r["status"] == "ok"}
    first_generation = next((r for r in ok.values() if r["what"] == "generation" and r["batch_size"] > 1), None)
    against = {"training": ok["project"]["samples_per_s"] if "project" in ok else None,
               "step_s": ok["project"]["seconds_per_step"] if "project" in ok else None,
               "generation": first_generation["dialogues_per_s"] if first_generation else None}
    lines = []
    if not results["complete"]:
        lines += [f"Incomplete: written as {results['running']} started", ""]
    lines += [f"{results['device']}: {results['shape']}; {results['peak_note']}; budget {results['budget_s']:.0f} s, "
              f"{results.get('elapsed_s', 0):.0f} s used. Training rows: the recipe's effective batch, tokens = "
              f"source + target (real, the training set's means); vs = samples/s against `project`. Generation: "
              f"generated tokens/s; vs = dialogues/s against the first batched row.", "",
              "| row | kind | settings | work | s | rate | tokens/s | TFLOP/s | MFU | peak MiB | vs | note |",
              "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name, r in rows.items():
        if r["status"] == "ok":
            cells = _cells(name, r, results, against)
        else:
            cells = ["", "", "", "", "", "", "", "", f"{r['status']}: {r['reason']}"]
        lines.append(f"| {name} | {r['kind']}, {r['what']} | {r['settings']} | " + " | ".join(cells) + " |")
    profile = ok.get("decode_profile")
    if profile:
        lines += ["", f"Decode step, batch {profile['batch']}: {profile['step_ms']:.2f} ms, {profile['note']}; "
                      f"top ops by {profile['sorted_by'].replace('_', ' ')}:", ""]
        lines += [f"- `{op['op']}` {op['self_ms']:.3f} ms ({100 * op['share']:.1f} %), {op['calls']} calls"
                  for op in profile["top_ops"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="demo/tiny-t5 on CPU: checks this script anywhere")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--budget-s", type=float, default=450.0,
                        help="seconds for all phases (data and model set-up included); a phase that would not "
                             "finish in what is left is skipped, a training row is cut at a step's end (default 450)")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the peak MFU is stated against (default: the datasheet's dense bf16 peak "
                             "of the GPU found)")
    parser.add_argument("--only", default=None, help=f"comma-separated phases, of: {', '.join(p.name for p in PHASES)}")
    args = parser.parse_args(argv)
    if args.budget_s < 0:
        parser.error("--budget-s: 0 or more seconds")
    if args.only is not None:
        args.only = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = sorted(set(args.only) - {p.name for p in PHASES})
        if unknown or not args.only:
            parser.error(f"--only: unknown phase {', '.join(unknown) or '(none given)'}; "
                         f"phases: {', '.join(p.name for p in PHASES)}")
    from benchmarks.run import quiet_logging
    from stages.atomic import write_text

    quiet_logging()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / ("gpu-tiny" if args.tiny else "gpu")

    def write(results: dict) -> None:
        write_text(stem.with_suffix(".json"), json.dumps(results, indent=2) + "\n")
        write_text(stem.with_suffix(".md"), table(results))

    results = run(args, write)
    print("\n" + table(results) + f"\nbenchmarks.gpu: {results.get('elapsed_s', 0):.0f} s; "
          f"{stem.with_suffix('.json')}", flush=True)


if __name__ == "__main__":
    main()
