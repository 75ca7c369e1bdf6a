"""flan-t5-base's shape on a GPU in bf16: the pipeline's training and inference paths, with MFU.

    python -m benchmarks.gpu [--out benchmarks/results]   # on a GPU, in under 5 minutes
    python -m benchmarks.gpu --tiny                       # anywhere, on CPU: a small model, a smoke test

Writes ``<out>/gpu.json`` (``gpu-tiny.json`` with ``--tiny``) and prints a table.

- Training: the pipeline's path (``DataCollatorForSeq2Seq`` with -100 labels and
  ``pad_to_multiple_of=8`` as ``stages/finetune.py`` sets in bf16, length-grouped order, LoRA
  from ``add_lora`` with params.yaml's ``lora``), batch ``train.batch_size`` (32), under bf16
  autocast with fp32 weights, which is what the Trainer's ``bf16=True`` does.
- Inference: ``stages.infer.generate`` on the merged model, batch ``generate.batch_size`` (32),
  exactly ``generate.max_new_tokens`` (200) new tokens per dialogue. Twice: with fp32 weights
  (the infer stage with ``generate.bf16: false``) and with bf16 weights (its ``auto`` on a GPU
  with bf16). A one-at-a-time loop on a few dialogues gives the batching ratio on this card.

MFU = model FLOPs / (seconds x the card's peak), the peak being what the card's datasheet gives
for dense bf16 tensor-core math (never the sparsity figure), looked up by the name torch reports
(``PEAK_BF16``); on a GPU not in that table MFU is not reported, and the table says so. Model
FLOPs count real tokens only (padding is waste, not work) and the linear layers each token passes
through, embeddings excluded (a lookup, not a matmul) and attention scores omitted (a few % at
these lengths):
training ``6 * (N_src * T_src + N_tgt * T_tgt)``, inference ``2 * (N_src * T_src + N_tgt * T_gen)``,
where T_src is the prompt tokens, T_tgt the summary tokens, T_gen the generated tokens, N_src the
weights a source token meets (the encoder's, and the decoder's cross-attention ``k`` and ``v``,
which project the encoder's output: once per source token and decoder layer, whatever the
target's length) and N_tgt the rest of the decoder's plus lm_head (LoRA's included):
``weights_per_token``. With LoRA the backward pass skips the frozen weights' gradients, so a step
really does ~4N, not 6N, per token: the 6N figure is the convention, comparable with other
reports; the executed share is 2/3 of it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
import time
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


@dataclasses.dataclass(frozen=True)
class Workload:
    train_batch_size: int
    train_steps: int  # timed, after warmup_steps untimed ones
    warmup_steps: int
    infer_dialogues: int
    infer_batch_size: int
    new_tokens: int
    loop_dialogues: int  # for the one-at-a-time ratio


# GPU: params.yaml's batch sizes and max_new_tokens. --tiny: enough to run every line on a CPU.
FULL = Workload(train_batch_size=32, train_steps=30, warmup_steps=3, infer_dialogues=128,
                infer_batch_size=32, new_tokens=200, loop_dialogues=8)
TINY = Workload(train_batch_size=2, train_steps=2, warmup_steps=1, infer_dialogues=4,
                infer_batch_size=2, new_tokens=4, loop_dialogues=1)


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


def build(tiny: bool, device: str):
    """The model (LoRA added) and tokenizer: flan-t5-base's shape, or the demo's tiny shape."""
    from stages.params import load_params
    from stages.train_lora import add_lora

    params = load_params()
    if tiny:
        from demo.make_tiny_t5 import build_model

        base = build_model(1100, SEED)
    else:
        base = synthetic.base_shape_model(SEED, device=device)  # built on the GPU: seconds, not a minute
    return add_lora(base, params.lora, SEED).to(device), synthetic.id_tokenizer(base.config.vocab_size), params


def bench_training(model, tokenizer, params, w: Workload, device: str, peak: float | None) -> dict:
    import torch

    examples = synthetic.tokenized_examples(tokenizer, params.prompt,
                                            (w.warmup_steps + w.train_steps) * w.train_batch_size, SEED)
    batches = training.make_batches("pipeline", examples, w.train_batch_size, tokenizer, model, SEED,
                                    pad_to_multiple_of=8)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=training.LEARNING_RATE)
    autocast = lambda: torch.autocast(device_type=device, dtype=torch.bfloat16)  # noqa: E731 (Trainer's bf16=True)
    model.train()
    for batch in batches[:w.warmup_steps]:
        training.train_step(model, optimizer, trainable, training.to_device(batch, device), autocast)
    timed = batches[w.warmup_steps:]
    with PeakMemory(device) as memory:
        started = time.perf_counter()
        for batch in timed:
            training.train_step(model, optimizer, trainable, training.to_device(batch, device), autocast)
        seconds = time.perf_counter() - started
    src = sum(int(b["attention_mask"].sum()) for b in timed)
    tgt = sum(int((b["labels"] != -100).sum()) for b in timed)
    n_src, n_tgt = weights_per_token(model)
    flops = 6 * (n_src * src + n_tgt * tgt)
    return {"steps": len(timed), "batch_size": w.train_batch_size, "seconds": round(seconds, 3),
            "samples_per_s": len(timed) * w.train_batch_size / seconds,
            "tokens_per_s": (src + tgt) / seconds, "target_tokens_per_s": tgt / seconds,
            "peak_memory_mb": round(memory.mb, 1), "model_tflops": flops / seconds / 1e12,
            "mfu": flops / seconds / peak if peak else None,
            "flops_formula": "6 * (N_src * real source tokens + N_tgt * real target tokens)"}


def bench_inference(model, tokenizer, dialogues: list[str], params, w: Workload, device: str,
                    peak: float | None, dtype) -> dict:
    cfg = params.generate.model_copy(update={"max_new_tokens": w.new_tokens, "batch_size": w.infer_batch_size,
                                             "num_beams": 1, "no_repeat_ngram_size": 0})
    model = model.to(dtype=dtype)
    inference.fix_length(model, w.new_tokens)
    inference.pipeline(model, tokenizer, dialogues[:w.infer_batch_size], params.prompt, cfg, device)  # warm-up
    with PeakMemory(device) as memory:
        started = time.perf_counter()
        inference.pipeline(model, tokenizer, dialogues, params.prompt, cfg, device)
        seconds = time.perf_counter() - started
    from stages.prompt import build_all

    src = sum(len(ids) for ids in tokenizer(build_all(params.prompt, dialogues), truncation=True,
                                            max_length=params.prompt.max_source_length)["input_ids"])
    gen = len(dialogues) * w.new_tokens
    n_src, n_tgt = weights_per_token(model)
    flops = 2 * (n_src * src + n_tgt * gen)
    return {"dtype": str(dtype).removeprefix("torch."), "dialogues": len(dialogues),
            "batch_size": w.infer_batch_size, "new_tokens": w.new_tokens, "seconds": round(seconds, 3),
            "dialogues_per_s": len(dialogues) / seconds, "generated_tokens_per_s": gen / seconds,
            "peak_memory_mb": round(memory.mb, 1), "model_tflops": flops / seconds / 1e12,
            "mfu": flops / seconds / peak if peak else None,
            "flops_formula": "2 * (N_src * source tokens + N_tgt * generated tokens)"}


def bench_loop(peft_model, tokenizer, dialogues: list[str], params, w: Workload, device: str) -> dict:
    inference.fix_length(peft_model.get_base_model(), w.new_tokens)
    started = time.perf_counter()
    inference.one_at_a_time(peft_model, tokenizer, dialogues, params.prompt, w.new_tokens, device)
    seconds = time.perf_counter() - started
    return {"dialogues": len(dialogues), "seconds": round(seconds, 3), "dialogues_per_s": len(dialogues) / seconds}


def run(tiny: bool) -> dict:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not tiny:
        raise SystemExit("error: no GPU here; python -m benchmarks.gpu --tiny runs the small version on CPU")
    w = TINY if tiny else FULL
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    peak = peak_flops(name) if device == "cuda" else None
    model, tokenizer, params = build(tiny, device)
    log.info("training: %s", w)
    train = bench_training(model, tokenizer, params, w, device, peak)
    model.eval()
    dialogues, _ = synthetic.synthetic_texts(w.infer_dialogues, model.config.vocab_size, SEED + 1)
    log.info("one-at-a-time loop (fp32, adapter unmerged, as the lab)")
    loop = bench_loop(model, tokenizer, dialogues[:w.loop_dialogues], params, w, device)
    merged = inference.merged_copy(model)
    del model
    infer = {}
    for dtype in (torch.float32, torch.bfloat16):  # generate.bf16: false, and auto on a bf16 GPU
        log.info("inference, %s weights", dtype)
        result = bench_inference(merged, tokenizer, dialogues, params, w, device, peak, dtype)
        infer[result["dtype"]] = result
    return {"device": name, "shape": "demo/tiny-t5 shape, random" if tiny else "flan-t5-base shape, random",
            "peak_bf16_flops": peak, "workload": dataclasses.asdict(w),
            "parameters": sum(p.numel() for p in merged.parameters()),
            "training_bf16_autocast": train, "inference": infer, "one_at_a_time_fp32": loop,
            "ratios": {
                "inference_fp32_vs_one_at_a_time": infer["float32"]["dialogues_per_s"] / loop["dialogues_per_s"],
                "inference_bf16_vs_fp32": infer["bfloat16"]["dialogues_per_s"] / infer["float32"]["dialogues_per_s"]}}


def table(results: dict) -> str:
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f} %"

    t = results["training_bf16_autocast"]
    lines = [f"{results['device']}: {results['shape']} ({results['parameters']:,} parameters); "
             f"{peak_note(results['device'], results['peak_bf16_flops'])}", "",
             "| path | rate | tokens/s | peak memory | model TFLOP/s | MFU |", "|---|---:|---:|---:|---:|---:|",
             f"| training, bf16 autocast, batch {t['batch_size']} | {t['samples_per_s']:.1f} samples/s | "
             f"{t['tokens_per_s']:,.0f} | {t['peak_memory_mb']:,.0f} MB | {t['model_tflops']:.2f} | {pct(t['mfu'])} |"]
    for dtype, r in results["inference"].items():
        lines.append(f"| inference, {dtype} weights, batch {r['batch_size']} | "
                     f"{r['dialogues_per_s']:.2f} dialogues/s | "
                     f"{r['generated_tokens_per_s']:,.0f} generated | {r['peak_memory_mb']:,.0f} MB | "
                     f"{r['model_tflops']:.2f} | {pct(r['mfu'])} |")
    loop = results["one_at_a_time_fp32"]
    lines += [f"| one at a time, fp32 ({loop['dialogues']} dialogues) | "
              f"{loop['dialogues_per_s']:.2f} dialogues/s | | | | |",
              "", "Ratios: " + ", ".join(f"{k} {v:.2f}x" for k, v in results["ratios"].items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="the small model on CPU: checks this script anywhere")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    from benchmarks.run import quiet_logging

    quiet_logging()
    started = time.perf_counter()
    results = run(args.tiny)
    results["wall_s"] = round(time.perf_counter() - started, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / ("gpu-tiny.json" if args.tiny else "gpu.json")).write_text(json.dumps(results, indent=2) + "\n")
    print("\n" + table(results) + f"\nbenchmarks.gpu: {results['wall_s']:.0f} s wall", flush=True)


if __name__ == "__main__":
    main()
