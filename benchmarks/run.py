"""The pipeline's speed, side by side with the obvious ways, on this machine and the same model.

    python -m benchmarks.run [--shape tiny|base|both] [--out benchmarks/results]

For each shape (``tiny``: demo/tiny-t5; ``base``: a random model of flan-t5-base's exact shape):
training throughput of the pipeline's batches vs padding to 512 vs HF's defaults
(``benchmarks/training.py``), inference throughput of ``stages.infer.generate`` vs one dialogue at a
time vs ``Seq2SeqTrainer.predict`` (``benchmarks/inference.py``), and the pipeline's start-up
overhead (``benchmarks/overhead.py``, measured once per run). Writes ``<out>/<shape>.json`` and
``<out>/<shape>.md`` and prints the tables with the ratios against the issue's targets.

The workloads below are sized for 2 CPU cores (``--shape both`` in under 10 minutes there); the
throughputs are real, the absolute numbers are not a GPU's: ``python -m benchmarks.gpu`` is the
GPU benchmark.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import time
from pathlib import Path

from benchmarks import inference, overhead, report, synthetic, training

log = logging.getLogger(__name__)
SEED = 42  # the same examples, LoRA init and orders for every strategy


@dataclasses.dataclass(frozen=True)
class Workload:
    train_batch_size: int
    train_steps: int  # per strategy; the pool has train_steps * train_batch_size examples
    infer_dialogues: int
    infer_batch_size: int
    new_tokens: int  # generated per dialogue, exactly (min_new_tokens == max_new_tokens)


# On one CPU core a base-shape step of batch 2 padded to 512 takes ~45 s (8.8 GB), so the base
# workload is a few steps and a short generation. tiny generates the demo's max_new_tokens (64).
WORKLOADS = {
    "tiny": Workload(train_batch_size=8, train_steps=10, infer_dialogues=64, infer_batch_size=32, new_tokens=64),
    "base": Workload(train_batch_size=2, train_steps=2, infer_dialogues=8, infer_batch_size=8, new_tokens=16),
}


def run_shape(shape: str, workload: Workload, overhead_results: dict) -> dict:
    """Every measurement of one shape, as the JSON written to ``<out>/<shape>.json``."""
    import torch

    from stages import modeling
    from stages.params import load_params
    from stages.train_lora import add_lora

    params = load_params()  # the shipped prompt and LoRA config: what the pipeline would run
    device = modeling.device()
    load_before = os.getloadavg()
    base, note = synthetic.load_shape(shape, SEED)
    n_params = sum(p.numel() for p in base.parameters())
    tokenizer = synthetic.id_tokenizer(base.config.vocab_size)
    model = add_lora(base, params.lora, SEED).to(device)

    log.info("%s: training, %s", shape, workload)
    examples = synthetic.tokenized_examples(tokenizer, params.prompt,
                                            workload.train_steps * workload.train_batch_size, SEED)
    loss_check = training.loss_check(model, examples[:4], tokenizer, device)
    batches = {s: training.make_batches(s, examples, workload.train_batch_size, tokenizer, model, SEED)
               for s in training.STRATEGIES}
    train_paths = training.measure(model, batches, device)

    log.info("%s: inference", shape)
    dialogues, _ = synthetic.synthetic_texts(workload.infer_dialogues, base.config.vocab_size, SEED + 1)
    greedy = params.generate.model_copy(update={  # the shipped section, greedy, at this workload's size
        "max_new_tokens": workload.new_tokens, "batch_size": workload.infer_batch_size,
        "num_beams": 1, "no_repeat_ngram_size": 0})
    infer_paths, agreement = inference.measure(model, tokenizer, dialogues, params.prompt, greedy, device)
    results = {
        "shape": shape,
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "load_average": [round(x, 2) for x in (*load_before[:1], os.getloadavg()[0])],  # 1-min, before/after
        "model": {"note": note, "parameters": n_params},
        "workload": {**dataclasses.asdict(workload), "lora_r": params.lora.r,
                     "lora_targets": list(params.lora.target_modules),
                     "training_driver": "own loop: same model, optimizer step and examples; batches "
                                        "collated per strategy; strategies interleaved step by step"},
        "training": {"paths": train_paths, "loss_check": loss_check},
        "inference": {"paths": infer_paths, "agreement": agreement},
        "overhead": overhead_results,
    }
    results["ratios"] = report.ratios(results)
    results["targets"] = report.targets(results)
    return results


def quiet_logging() -> None:
    """Offline, with our log lines only: progress bars of the code under test would interleave
    with the tables."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=(*synthetic.SHAPES, "both"), default="both")
    parser.add_argument("--out", default="benchmarks/results", help="folder for <shape>.json/.md")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's, one per core). On a machine shared "
                             "with other jobs use 1: with a core taken, torch's spinning threads make "
                             "small ops many times slower and the ratios noise")
    args = parser.parse_args(argv)
    quiet_logging()

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    log.info("pipeline overhead (subprocesses)")
    overhead_results = overhead.measure()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shapes = synthetic.SHAPES if args.shape == "both" else (args.shape,)
    for shape in shapes:
        results = run_shape(shape, WORKLOADS[shape], overhead_results)
        table = report.markdown(results)
        (out / f"{shape}.json").write_text(json.dumps(results, indent=2) + "\n")
        (out / f"{shape}.md").write_text(table)
        print("\n" + table, flush=True)
    print(f"benchmarks.run --shape {args.shape}: {time.perf_counter() - started:.0f} s wall; "
          f"results in {out}/")


if __name__ == "__main__":
    main()
