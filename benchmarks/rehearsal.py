"""A real-scale rehearsal: the real ``dvc.yaml`` stages at DialogSum's size, on a GPU, timed.

    python -m benchmarks.rehearsal [--max-steps 200] [--workdir rehearsal-run] [--out benchmarks/results]
    python -m benchmarks.rehearsal --tiny    # the same on CPU with a tiny model (the test suite runs it)

It makes a scratch project (a copy of this one, like ``make demo``: the user's ``params.yaml`` and
workspace are never touched) whose params are ``params.yaml``, the recipe, with only these changed:

- ``model``: a randomly initialised T5 of flan-t5-base's exact shape (247,577,856 parameters),
  saved locally with a word-level tokenizer (``benchmarks/synthetic.py``): no hub needed, and the
  speed is the real model's (speed depends on shapes and lengths, not on what the weights know).
- ``data``: a parquet file of synthetic text with DialogSum's sizes and length distribution:
  12,460 train / 500 validation rows, and 500 test dialogues with three references each
  (1,500 rows), ids like the real ones (``train_<n>``, ``dev_<n>``, ``test_<n>_<k>``), read with
  ``data.source: file`` and ``split.strategy: source`` (its ``split`` column).
- ``train.max_steps``: ``--max-steps`` (default 200: a fifth of the recipe's 1000 steps gives a
  steady rate); the table extrapolates training to the recipe's steps. Everything else is the
  recipe: batch 32 with automatic batch sizing, accumulation 2, evaluation and checkpoints every
  100 steps, bf16 where the GPU has it, greedy generation of up to 200 tokens, batch 32.

Then it runs ``dvc repro`` (every stage, whatever their names), timing each stage from DVC's
"Running stage" lines and sampling GPU memory with ``nvidia-smi``, and runs the infer stage once
more outside DVC on the LoRA model with ``generate.bf16: false`` (fp32) on the first 128 test
dialogues, beside DVC's run with the default ``auto`` (bf16 on a GPU that has it). Per-stage
figures come from the metrics files each stage declares in ``dvc.lock``. Writes
``<out>/rehearsal.{md,json}`` (``rehearsal-tiny.*`` with ``--tiny``) and prints the table.

Training FLOPs, the convention (as ``benchmarks/gpu.py``): ``6 * (N_enc * T_src + N_dec * T_tgt)``,
N_enc / N_dec the encoder's / decoder's matmul weights (embedding lookups and attention scores left
out, lm_head counted in the decoder, LoRA's 1.4 % left out), T_src the real (non-padding) source
tokens the Trainer saw, T_tgt the target tokens (T_src x the tokenized train set's target/source
ratio). With LoRA the frozen weights get no gradient, so a step executes about (2 + 2) N per
token, 2/3 of the convention: the table gives the convention's MFU; the executed share is 2/3 of it.
MFU is against the datasheet's dense bf16 peak of the GPU found (``benchmarks.gpu.PEAK_BF16``), or
``--peak-tflops``; on a GPU in neither it is not reported, and the table says so. The training
wall time includes its evaluations and checkpoints, so MFU is a lower bound.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]
SEED = 42
ASSETS = "rehearsal-assets"  # in the scratch project, git-ignored there: model and data
FP32_DIALOGUES = 128  # the fp32 generation run's share of the test set: four batches of 32
DEFAULT_STEPS = 200  # enough for a steady rate; the table extrapolates to the recipe's steps


@dataclasses.dataclass(frozen=True)
class Size:
    train: int
    validation: int
    test_dialogues: int  # each with three references


FULL = Size(train=12_460, validation=500, test_dialogues=500)
TINY = Size(train=160, validation=24, test_dialogues=8)

# --tiny: every stage runs, on CPU, in seconds each; the numbers mean nothing but the code paths.
TINY_OVERRIDES = {
    "train": {"max_steps": 4, "eval_steps": 2, "logging_steps": 1, "warmup_steps": 1, "batch_size": 8,
              "eval_batch_size": 32},
    "runtime": {"dataloader_workers": 0},
    "generate": {"max_new_tokens": 8, "batch_size": 16},
}


def synthetic_dialogsum(size: Size, vocab_size: int, seed: int):
    """DialogSum's shape as a frame: id, dialogue, summary, topic, split (the source's own split)."""
    import numpy as np
    import pandas as pd

    from benchmarks.synthetic import synthetic_texts

    n = size.train + size.validation + size.test_dialogues
    dialogues, summaries = synthetic_texts(n, vocab_size, seed)
    extra_refs = synthetic_texts(2 * size.test_dialogues, vocab_size, seed + 1)[1]  # references 2 and 3
    topics = np.random.default_rng(seed).choice(["meeting", "shopping", "travel", "health", "job"], n)
    rows = []
    for i in range(size.train):
        rows.append((f"train_{i}", dialogues[i], summaries[i], topics[i], "train"))
    for j in range(size.validation):
        i = size.train + j
        rows.append((f"dev_{j}", dialogues[i], summaries[i], topics[i], "validation"))
    for j in range(size.test_dialogues):
        i = size.train + size.validation + j
        refs = [summaries[i], extra_refs[2 * j], extra_refs[2 * j + 1]]
        rows += [(f"test_{j}_{k}", dialogues[i], ref, topics[i], "test") for k, ref in enumerate(refs, 1)]
    return pd.DataFrame(rows, columns=["id", "dialogue", "summary", "topic", "split"])


def save_model(folder: Path, tiny: bool) -> int:
    """A random model (flan-t5-base's shape, or the demo's tiny shape) and its word-level
    tokenizer, saved as the pipeline loads them; returns the vocabulary size."""
    from benchmarks import synthetic

    if tiny:
        from demo.make_tiny_t5 import build_model

        model = build_model(600, SEED)
    else:  # on the CPU: this process must hold no GPU memory while the stages are measured
        model = synthetic.base_shape_model(SEED)
    model.save_pretrained(folder, safe_serialization=True)
    synthetic.id_tokenizer(model.config.vocab_size).save_pretrained(folder)
    return model.config.vocab_size


def project_files(root: Path) -> list[str]:
    """The project's files: git's list where this is a checkout, else a walk that skips what git
    would ignore here (a copy without .git, as a GPU box may receive it)."""
    from demo.run import project_files as git_files

    if (root / ".git").exists() and shutil.which("git"):
        return git_files(root)
    skip = {".git", ".venv", ".whl", "demo-run", "rehearsal-run", "__pycache__", ".pytest_cache", "wandb",
            "checkpoints", "models", "metrics"}
    return [p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() and not skip & set(p.relative_to(root).parts)
            and not p.relative_to(root).as_posix().startswith(("data/split", "data/tokenized", "data/predictions"))]


def make_project(workdir: Path, tiny: bool, max_steps: int | None) -> dict:
    """The scratch project: model, data and params as the module docstring says. Returns params."""
    from ruamel.yaml import YAML

    from stages.modeling import folder_hash
    from stages.params import parse_params, read_yaml

    workdir.mkdir(parents=True, exist_ok=True)
    assets = workdir / ASSETS
    model_dir, data_file = assets / "model", assets / "dialogsum.parquet"
    kind = assets / "kind.txt"
    wanted = "tiny" if tiny else "full"
    if not kind.is_file() or kind.read_text() != wanted:  # else kept between runs: the model is 1 GB
        shutil.rmtree(assets, ignore_errors=True)
        model_dir.mkdir(parents=True)
        log.info("saving a random %s model to %s", "tiny" if tiny else "flan-t5-base-shaped", model_dir)
        vocab = save_model(model_dir, tiny)
        synthetic_dialogsum(TINY if tiny else FULL, vocab, SEED).to_parquet(data_file, index=False)
        kind.write_text(wanted)

    params = read_yaml((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["model"] = {"name": f"{ASSETS}/model", "revision": folder_hash(model_dir)}
    params["data"].update(source="file", file=f"{ASSETS}/dialogsum.parquet")
    params["split"]["strategy"] = "source"
    params["tracking"]["wandb"] = False
    if "baselines" in params:
        params["baselines"] = []
    for section, values in (TINY_OVERRIDES if tiny else {}).items():
        params[section].update(values)
    if max_steps:
        params["train"]["max_steps"] = max_steps
    parse_params(params, "params.yaml + the rehearsal's overrides")

    if not (workdir / ".git").exists():
        subprocess.run(["git", "init", "-q"], cwd=workdir, check=True)
    exclude = workdir / ".git" / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    exclude.write_text(f"/{ASSETS}/\n/.bin/\n/params_fp32.yaml\n/rehearsal-fp32/\n")
    for name in project_files(ROOT):
        source, target = ROOT / name, workdir / name
        if not target.is_file() or target.read_bytes() != source.read_bytes():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    with (workdir / "params.yaml").open("w", encoding="utf-8") as f:
        f.write("# Written by benchmarks/rehearsal.py: params.yaml with the rehearsal's overrides.\n")
        YAML(typ="safe", pure=True).dump(params, f)
    git = ["git", "-c", "user.name=rehearsal", "-c", "user.email=rehearsal@localhost"]
    subprocess.run([*git, "add", "-A"], cwd=workdir, check=True)
    subprocess.run([*git, "commit", "-qm", "rehearsal", "--allow-empty"], cwd=workdir, check=True)
    return params


def stage_env(workdir: Path) -> dict:
    """demo.run's stage environment, with ``python`` meaning this interpreter even where only
    ``python3`` exists (dvc.yaml's commands say ``python``)."""
    from demo.run import stage_env as demo_env

    env = demo_env()
    bin_dir = workdir / ".bin"
    bin_dir.mkdir(exist_ok=True)
    # A script, not a symlink: a venv's python found through a link elsewhere loses its venv.
    wrapper = bin_dir / "python"
    wrapper.unlink(missing_ok=True)  # never write through an older link into the interpreter
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    env.setdefault("TQDM_MININTERVAL", "10")  # progress bars every 10 s, not a flood in the log
    return env


class GpuMemory:
    """Peak GPU memory in use (MiB, all processes, as nvidia-smi reports it) per named phase,
    sampled every half second; nothing where there is no nvidia-smi."""

    def __init__(self) -> None:
        self.available = shutil.which("nvidia-smi") is not None
        self.phase: str | None = None
        self.peaks: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            phase = self.phase
            if phase is None:
                continue
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=10).stdout
                used = sum(int(x) for x in out.split())
            except (OSError, ValueError, subprocess.SubprocessError):
                continue
            self.peaks[phase] = max(self.peaks.get(phase, 0), used)

    def __enter__(self) -> GpuMemory:
        if self.available:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()


def run_timed(command: list[str], cwd: Path, env: dict, memory: GpuMemory,
              phase: str | None = None) -> dict[str, float]:
    """Run ``command``, echoing its output; with ``phase`` None, time each DVC stage from its
    "Running stage 'name'" line to the next (or the end). Returns seconds per stage/phase."""
    import re

    times: dict[str, float] = {}
    current, started = phase, time.perf_counter()
    memory.phase = phase
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1)
    for line in proc.stdout:
        sys.stdout.write(line)
        match = re.match(r"Running stage '([^']+)'", line) if phase is None else None
        if match:
            now = time.perf_counter()
            if current is not None:
                times[current] = round(now - started, 1)
            current, started = match.group(1), now
            memory.phase = current
    code = proc.wait()
    if current is not None:
        times[current] = round(time.perf_counter() - started, 1)
    memory.phase = None
    if code != 0:
        sys.exit(f"error: `{' '.join(command[-3:])}` failed (exit {code}) in {cwd}")
    return times


def stage_metrics(workdir: Path, metrics_dir: str) -> dict[str, dict]:
    """Each stage's metrics files, as ``dvc.lock`` lists its outputs: the JSON files directly in
    ``paths.metrics`` (DVCLive's own folder is left out), merged per stage."""
    from stages.params import read_yaml

    lock = read_yaml((workdir / "dvc.lock").read_text())
    found: dict[str, dict] = {}
    for stage, entry in lock["stages"].items():
        for out in entry.get("outs", []):
            path = Path(out["path"])
            if path.suffix == ".json" and path.parent == Path(metrics_dir) and (workdir / path).is_file():
                data = json.loads((workdir / path).read_text())
                if isinstance(data, dict):  # not a plot's rows
                    found.setdefault(stage, {}).update(data)
    return found


def matmul_weights(model_dir: Path) -> tuple[int, int]:
    """(encoder, decoder + lm_head) matmul weights of the saved model's shape, counted on the
    meta device (no memory): embedding lookups and relative position biases left out."""
    import torch
    from transformers import AutoConfig, T5ForConditionalGeneration

    config = AutoConfig.from_pretrained(model_dir)
    with torch.device("meta"):
        model = T5ForConditionalGeneration(config)
    enc = dec = 0
    for name, p in model.named_parameters(remove_duplicate=False):
        if "embed_tokens" in name or name.startswith("shared") or "relative_attention_bias" in name:
            continue
        if name.startswith("encoder."):
            enc += p.numel()
        elif name.startswith("decoder.") or name.startswith("lm_head"):
            dec += p.numel()
    if not any(n.startswith("lm_head") for n, _ in model.named_parameters(remove_duplicate=False)):
        dec += config.vocab_size * config.d_model
    return enc, dec


def target_ratio(workdir: Path, tokenized: str) -> float:
    """Target tokens per source token in the tokenized train set (what the Trainer samples)."""
    import datasets

    train = datasets.load_from_disk(str(workdir / tokenized))["train"]
    return sum(len(x) for x in train["labels"]) / sum(train["length"])


def summarize(workdir: Path, params: dict, times: dict, memory: GpuMemory, metrics: dict,
              fp32: dict, device: str, peak: float | None, recipe_steps: int) -> dict:
    from stages.params import Paths

    paths = Paths(**params["paths"])
    stages = {}
    for name, seconds in times.items():
        m = metrics.get(name, {})
        stages[name] = {"wall_s": seconds, "gpu_memory_mib": memory.peaks.get(name),
                        "peak_memory_mb_reported": m.get("peak_memory_mb"), "metrics": m}
    train_name = next((n for n, m in metrics.items() if "trainable_params" in m), None)
    training = None
    if train_name:
        t = metrics[train_name]
        enc, dec = matmul_weights(workdir / params["model"]["name"])
        src = t["input_tokens_per_second"] * t["wall_time_s"]
        tgt = src * target_ratio(workdir, paths.tokenized)
        flops = 6 * (enc * src + dec * tgt)
        per_step = t["wall_time_s"] / t["steps"]
        training = {
            "stage": train_name, "steps": t["steps"], "batch_size_settled": t["batch_size"],
            "effective_batch_size": t["effective_batch_size"], "bf16": t.get("bf16"),
            "wall_time_s": t["wall_time_s"], "seconds_per_step": round(per_step, 3),
            "source_tokens_per_s": t["input_tokens_per_second"],
            "tokens_per_s": round((src + tgt) / t["wall_time_s"], 1),
            "model_tflops": round(flops / t["wall_time_s"] / 1e12, 3),
            "mfu": None if peak is None else round(flops / t["wall_time_s"] / peak, 4),
            "matmul_weights": {"encoder": enc, "decoder_and_lm_head": dec},
            "flops_formula": "6 * (N_enc * T_src + N_dec * T_tgt); executed with LoRA ~ 4/6 of it",
            "recipe_steps": recipe_steps,
            "recipe_training_s_estimate": round(per_step * recipe_steps, 1),
        }
    generation = {}
    for name, m in metrics.items():
        if "generated_tokens_per_second" in m:
            generation[name] = {k: m.get(k) for k in ("dtype", "dialogues", "wall_time_s", "dialogues_per_second",
                                                      "generated_tokens_per_second", "peak_memory_mb")}
    if fp32:
        generation["lora, generate.bf16: false (outside DVC)"] = fp32
    total = sum(times.values())
    estimate = None
    if training:
        estimate = round(total - training["wall_time_s"] + training["recipe_training_s_estimate"], 1)
    return {"device": device, "date": datetime.date.today().isoformat(), "peak_bf16_flops": peak,
            "stages": stages, "training": training, "generation": generation,
            "pipeline_wall_s": round(total, 1), "recipe_estimate_s": estimate,
            "params": {k: params[k] for k in ("model", "data", "split", "train", "generate")}}


def table(r: dict) -> str:
    def num(x, fmt="{:,.0f}") -> str:
        return "-" if x is None else fmt.format(x)

    t = r["training"]
    scale = ("a few hundred rows, random tiny model" if r.get("mode") == "tiny"
             else "DialogSum's size, random flan-t5-base-shaped model")
    lines = [f"Rehearsal on {r['device']}, {r['date']}: the real stages at {scale}, "
             f"{r['params']['train']['max_steps']} training steps.", "",
             "| stage | wall s | GPU memory MiB (nvidia-smi) | peak MB (stage's metrics) | figures |",
             "|---|---:|---:|---:|---|"]
    for name, s in r["stages"].items():
        m, notes = s["metrics"], []
        if t and name == t["stage"]:
            notes.append(f"batch {t['batch_size_settled']} (settled) x accumulation = {t['effective_batch_size']}; "
                         f"{t['seconds_per_step']} s/step; {num(t['tokens_per_s'])} tokens/s; "
                         f"{t['model_tflops']} TFLOP/s; MFU {num(t['mfu'], '{:.1%}')}")
        if "generated_tokens_per_second" in m:
            notes.append(f"{m.get('dtype')}: {num(m['generated_tokens_per_second'])} generated tokens/s, "
                         f"{m['dialogues_per_second']} dialogues/s")
        lines.append(f"| {name} | {s['wall_s']} | {num(s['gpu_memory_mib'])} | "
                     f"{num(s['peak_memory_mb_reported'])} | {'; '.join(notes)} |")
    fp32 = r["generation"].get("lora, generate.bf16: false (outside DVC)")
    if fp32:
        lines.append(f"| infer lora, fp32 (outside DVC) | {fp32['wall_s']} | {num(fp32.get('gpu_memory_mib'))} | "
                     f"{num(fp32['peak_memory_mb'])} | {fp32['dtype']}: {num(fp32['generated_tokens_per_second'])} "
                     f"generated tokens/s, {fp32['dialogues_per_second']} dialogues/s |")
    lines += ["", f"Pipeline: {r['pipeline_wall_s']} s."]
    if t:
        lines.append(f"The recipe's {t['recipe_steps']} steps at this rate: "
                     f"training ~{t['recipe_training_s_estimate']:.0f} s, "
                     f"the whole pipeline ~{r['recipe_estimate_s'] / 60:.1f} min "
                     f"(if early stopping does not end it sooner).")
        from benchmarks.gpu import peak_note

        lines.append(f"Training FLOPs: {t['flops_formula']}; "
                     f"{peak_note(r['device'], r['peak_bf16_flops'], r.get('peak_source'))}.")
    return "\n".join(lines) + "\n"


def gpu_name() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "a GPU (nvidia-smi did not answer)"
    return out.splitlines()[0].strip() if out.strip() else "a GPU (nvidia-smi did not answer)"


def preflight() -> None:
    """Fail in seconds, not after minutes of GPU time, when something the run needs is missing."""
    import importlib.util

    missing = [m for m in ("dvc", "dvclive", "datasets", "evaluate", "rouge_score", "peft", "pydantic", "ruamel.yaml")
               if importlib.util.find_spec(m) is None]
    if shutil.which("git") is None:
        missing.append("git (the command)")
    if missing:
        sys.exit(f"error: the rehearsal needs {', '.join(missing)}: see benchmarks/README.md (make gpu-wheels)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="a tiny model and a few hundred rows, on CPU")
    parser.add_argument("--max-steps", type=int, default=None,
                        help=f"training steps (default: {DEFAULT_STEPS}; --tiny: 4)")
    parser.add_argument("--workdir", default=str(ROOT / "rehearsal-run"), help="scratch project (default: %(default)s)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="folder for the table")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the peak MFU is stated against, TFLOP/s (default: the datasheet's dense bf16 "
                             "peak of the GPU found, from benchmarks/gpu.py's PEAK_BF16; set it for a GPU "
                             "not listed there, or for a matmul rate you measured)")
    args = parser.parse_args(argv)
    from benchmarks.run import quiet_logging

    quiet_logging()
    import pandas as pd
    import torch

    from stages.params import Paths, read_yaml

    # The name from nvidia-smi: torch's would open a CUDA context here (~0.5 GB), which would sit
    # in every stage's GPU memory figure.
    device = gpu_name() if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not args.tiny:
        sys.exit("error: no GPU here; python -m benchmarks.rehearsal --tiny runs the small version on CPU")
    workdir = Path(args.workdir).resolve()
    preflight()
    peak = args.peak_tflops * 1e12 if args.peak_tflops else None
    if peak is None and device != "cpu":
        from benchmarks.gpu import peak_flops

        peak = peak_flops(device)
    recipe_steps = read_yaml((ROOT / "params.yaml").read_text())["train"]["max_steps"]
    started = time.perf_counter()
    params = make_project(workdir, args.tiny, args.max_steps or (None if args.tiny else DEFAULT_STEPS))
    env = stage_env(workdir)
    paths = Paths(**params["paths"])
    with GpuMemory() as memory:
        times = run_timed([sys.executable, "-m", "dvc", "repro", "--force"], workdir, env, memory)
        # The LoRA model once more, in fp32, through the stage itself, into a folder of its own.
        fp32_params = json.loads(json.dumps(params))
        fp32_params["generate"]["bf16"] = False
        fp32_params["paths"].update(split="rehearsal-fp32/split", predictions="rehearsal-fp32/predictions",
                                    metrics="rehearsal-fp32/metrics")
        # The first FP32_DIALOGUES test dialogues (whole batches) give the rate; all 500 would add
        # minutes on the GPU. Same rows, same order as DVC's run.
        test = pd.read_parquet(workdir / paths.split_file("test"))
        keep = test["dialogue"].drop_duplicates().iloc[:FP32_DIALOGUES]
        subset = workdir / Paths(**fp32_params["paths"]).split_file("test")
        subset.parent.mkdir(parents=True, exist_ok=True)
        test[test["dialogue"].isin(keep)].to_parquet(subset, index=False)
        (workdir / "params_fp32.yaml").write_text(json.dumps(fp32_params))  # JSON is YAML
        phase = "infer lora fp32"
        fp32_time = run_timed([sys.executable, "-m", "stages.infer", "--variant", "lora", "--params",
                               "params_fp32.yaml"], workdir, env, memory, phase)[phase]
    fp32 = json.loads((workdir / Paths(**fp32_params["paths"]).infer_metrics("lora")).read_text())
    fp32.update(wall_s=fp32_time, gpu_memory_mib=memory.peaks.get(phase))
    results = summarize(workdir, params, times, memory, stage_metrics(workdir, paths.metrics), fp32,
                        device, peak, recipe_steps)
    results["mode"] = "tiny" if args.tiny else "full"
    results["peak_source"] = "--peak-tflops" if args.peak_tflops else None
    results["rehearsal_wall_s"] = round(time.perf_counter() - started, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "rehearsal-tiny" if args.tiny else "rehearsal"
    text = table(results)
    (out / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / f"{stem}.md").write_text(text)
    print("\n" + text + f"\nbenchmarks.rehearsal: {results['rehearsal_wall_s']:.0f} s wall; {out / stem}.md",
          flush=True)


if __name__ == "__main__":
    main()
