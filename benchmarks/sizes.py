"""GPU memory of LoRA training and generation by flan-T5 size and setting: the README's sizes
table, measured.

    python -m benchmarks.sizes [--size xl] [--settings fp32,bf16,bf16+ckpt,int8+ckpt,int4+ckpt]
                               [--steps 20] [--batch 8] [--out benchmarks/results]   # on a GPU
    python -m benchmarks.sizes --tiny      # anywhere: the demo's shape on CPU, a smoke test

A random model of the size's exact shape (``benchmarks/synthetic.py`` ``SIZES``) is saved once to
a scratch folder and loaded per setting the way train_lora loads it (``stages.modeling.load_model``
with ``train.base_weights``; k-bit bases through ``prepare_model_for_kbit_training``; LoRA from
params.yaml's ``lora`` through ``add_lora``). A setting is ``<base_weights>[+ckpt]``: ``+ckpt``
turns on gradient checkpointing (``train.gradient_checkpointing``). Each trains ``--steps`` steps
at ``--batch`` examples of the longest shapes the recipe allows (512 source, 128 target tokens:
the worst case, as the batch probe uses), under bf16 autocast with AdamW on the LoRA weights,
and records the peak GPU memory allocated (``torch.cuda.max_memory_allocated``: weights,
training state and activations) and seconds per step. Then the adapter is merged in fp32 and the
model cast to bf16, as the infer stage does, and one batch generates 64 new tokens: its peak too.
int8 and int4 need a CUDA GPU and bitsandbytes (not a dependency of this project: ``pip install
bitsandbytes``); without them those settings are reported as skipped, not failed.

Writes ``<out>/sizes-<size>.{md,json}`` (``sizes-tiny.*`` with ``--tiny``) after every setting, so a
run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path

from benchmarks import synthetic, training
from benchmarks.memory import PeakMemory

log = logging.getLogger(__name__)
SEED = 42
SETTINGS = ("fp32", "bf16", "bf16+ckpt", "int8+ckpt", "int4+ckpt")
SOURCE, TARGET, NEW_TOKENS = 512, 128, 64


def parse_setting(setting: str) -> tuple[str, bool]:
    weights, _, ckpt = setting.partition("+")
    if weights not in ("fp32", "bf16", "int8", "int4") or ckpt not in ("", "ckpt"):
        raise ValueError(f"setting {setting!r}: <fp32|bf16|int8|int4>[+ckpt]")
    return weights, ckpt == "ckpt"


def worst_case_batch(vocab_size: int, batch: int, device: str) -> dict:
    import torch

    g = torch.Generator().manual_seed(SEED)
    ids = torch.randint(3, vocab_size, (batch, SOURCE), generator=g)
    labels = torch.randint(3, vocab_size, (batch, TARGET), generator=g)
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device), "labels": labels.to(device)}


def measure(folder: Path, setting: str, steps: int, batch: int, device: str) -> dict:
    """One setting: train ``steps`` LoRA steps, then generate with the merged model, in bf16."""
    import torch

    from stages import modeling
    from stages.params import load_params
    from stages.train_lora import add_lora

    weights, ckpt = parse_setting(setting)
    if weights in ("int8", "int4") and device != "cuda":
        return {"setting": setting, "skipped": "k-bit weights need a CUDA GPU"}
    if weights in ("int8", "int4") and find_spec("bitsandbytes") is None:
        return {"setting": setting, "skipped": "bitsandbytes is not installed"}
    params = load_params()
    with PeakMemory(device) as loaded:
        base = modeling.load_model(folder, 0.0, weights)
    if weights in ("int8", "int4"):
        from peft import prepare_model_for_kbit_training

        base = prepare_model_for_kbit_training(base, ckpt)
    elif ckpt:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        base.enable_input_require_grads()  # LoRA's frozen inputs: checkpointed blocks need a grad path
    model = add_lora(base, params.lora, SEED).to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    data = worst_case_batch(model.config.vocab_size, batch, device)
    autocast = lambda: torch.autocast(device_type=device, dtype=torch.bfloat16)  # noqa: E731 (Trainer's bf16=True)
    model.train()
    losses = []
    with PeakMemory(device) as trained, training.bf16_attention(device):  # (checkpointing recomputes in backward)
        started = time.perf_counter()
        for _ in range(steps):
            losses.append(training.train_step(model, optimizer, trainable, data, autocast))
        seconds = time.perf_counter() - started
    del optimizer
    result = {"setting": setting, "base_weights": weights, "gradient_checkpointing": ckpt, "batch": batch,
              "source_tokens": SOURCE, "target_tokens": TARGET, "steps": steps,
              "seconds_per_step": round(seconds / steps, 3), "last_loss": round(losses[-1], 3),
              "load_peak_mb": round(loaded.mb, 1), "train_peak_mb": round(trained.mb, 1)}
    if weights in ("fp32", "bf16"):  # a k-bit base merges into rounded weights: infer loads fp32 instead
        merged = modeling.merge_adapter(model.eval()).to(torch.bfloat16)
        with torch.inference_mode(), training.bf16_attention(device), PeakMemory(device) as generated:
            merged.generate(input_ids=data["input_ids"], attention_mask=data["attention_mask"],
                            max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False)
        result["generate_bf16_peak_mb"] = round(generated.mb, 1)
        del merged
    del model, base
    if device == "cuda":
        torch.cuda.empty_cache()
    return result


def table(results: dict) -> str:
    lines = [f"flan-t5-{results['size']} shape (random weights, {results['parameters']:,} parameters) on "
             f"{results['device']}, {results['date']}: LoRA r {results['lora_r']} on {results['lora_targets']}, "
             f"batch {results['batch']} x {SOURCE}/{TARGET} tokens, {results['steps']} steps; generation: "
             f"merged, bf16, {NEW_TOKENS} new tokens.", "",
             "| setting | training peak MB | s/step | generation peak MB (bf16) |", "|---|---:|---:|---:|"]
    for r in results["settings"]:
        if "skipped" in r:
            lines.append(f"| {r['setting']} | skipped: {r['skipped']} | | |")
        else:
            generated = r.get("generate_bf16_peak_mb")
            lines.append(f"| {r['setting']} | {r['train_peak_mb']:,.0f} | {r['seconds_per_step']} | "
                         f"{'-' if generated is None else f'{generated:,.0f}'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="xl", choices=sorted(synthetic.SIZES))
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tiny", action="store_true", help="the demo's shape on CPU, 2 steps: a smoke test")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    import datetime

    import torch

    from stages.params import load_params

    if args.steps < 1 or args.batch < 1:
        parser.error("--steps and --batch: at least 1")
    settings = args.settings.split(",")
    try:
        for setting in settings:
            parse_setting(setting)
    except ValueError as exc:
        parser.error(str(exc))
    device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"
    if device == "cpu" and not args.tiny:
        parser.error("no GPU here: --tiny runs the smoke test on CPU")
    steps, batch = (2, 2) if args.tiny else (args.steps, args.batch)
    name = "tiny" if args.tiny else args.size
    lora = load_params().lora
    with tempfile.TemporaryDirectory(prefix="sizes-") as scratch:
        folder = Path(scratch) / "model"
        if args.tiny:
            from demo.make_tiny_t5 import build_model

            model = build_model(600, SEED)
        else:  # built on the GPU (seconds, not minutes), saved, freed before any setting is measured
            model = synthetic.base_shape_model(SEED, device, args.size)
        parameters = sum(p.numel() for p in model.parameters())
        log.info("saving a random %s-shaped model (%s parameters) to %s", name, f"{parameters:,}", folder)
        model.save_pretrained(folder, safe_serialization=True)
        del model
        if device == "cuda":
            torch.cuda.empty_cache()
        results = {"size": name, "parameters": parameters, "date": datetime.date.today().isoformat(),
                   "device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "batch": batch,
                   "steps": steps, "lora_r": lora.r, "lora_targets": ",".join(lora.target_modules), "settings": []}
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for setting in settings:
            log.info("%s: %s", name, setting)
            results["settings"].append(measure(folder, setting, steps, batch, device))
            (out / f"sizes-{name}.json").write_text(json.dumps(results, indent=2) + "\n")
            (out / f"sizes-{name}.md").write_text(table(results))
    print(table(results))


if __name__ == "__main__":
    main()
