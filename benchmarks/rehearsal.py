"""A real-scale rehearsal: the real ``dvc.yaml`` stages at DialogSum's size, on a GPU, timed.

    python -m benchmarks.rehearsal [--max-steps 200] [--scale-to K] [--workdir rehearsal-run] [--out benchmarks/results]
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

Then it runs ``dvc repro --force`` (every stage, whatever their names; Trainer checkpoints a cut
run left are cleared first, so a rerun in the same workdir trains from step 0 and its figures are a
whole run's), timing each stage from DVC's "Running stage" lines and sampling GPU memory with
``nvidia-smi``, and runs the infer stage once more outside DVC on the LoRA model with
``generate.bf16: false`` (fp32) on the first 128 test dialogues, beside DVC's run with the default
``auto`` (bf16 on a GPU that has it). DVC's run uses one process per stage; where several GPUs are
visible (``--scale-to``, default all of them; ``--tiny``: 2 CPU processes, through a declared
device pool), ``train_lora`` runs once more outside DVC with that many processes, and infer on
DVC's LoRA adapter (``train.processes``, ``generate.processes``: the same per-process batch), for
the speed-up over one. Per-stage figures come from the metrics files each stage declares in
``dvc.lock``. Writes ``<out>/rehearsal.{md,json}`` (``rehearsal-tiny.*`` with ``--tiny``) as each
stage or phase starts and ends, so a run cut at its time limit leaves the figures of every stage it
finished, and prints the table at the end.

The scratch project is a git repository (DVC wants one), made and committed with dulwich, which
DVC already depends on: the machine needs no ``git`` command. A preflight fails in seconds when a
runtime dependency does not import or is older than ``pyproject.toml`` allows.

Training FLOPs, the convention (as ``benchmarks/gpu.py``): ``6 * (N_src * T_src + N_tgt * T_tgt)``,
N_src the weights a source token meets (the encoder's linear layers, and the decoder's
cross-attention ``k`` and ``v``, which project the encoder's output once per source token), N_tgt
the rest of the decoder's and lm_head (embedding lookups and attention scores left out, LoRA's
1.4 % left out), T_src the real (non-padding) source tokens this run trained on, T_tgt the target
tokens (T_src x the tokenized train set's target/source ratio). With LoRA the frozen weights get no
gradient, so a step executes about (2 + 2) N per token, 2/3 of the convention: the table gives the
convention's MFU; the executed share is 2/3 of it. MFU is against the datasheet's dense bf16 peak
of the GPU found (``benchmarks.gpu.PEAK_BF16``), or ``--peak-tflops``; on a GPU in neither it is
not reported, and the table says so. The training wall time includes its evaluations and
checkpoints, so MFU is a lower bound.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]
SEED = 42
ASSETS = "rehearsal-assets"  # in the scratch project, git-ignored there: model and data
FP32_DIR, SCALING_DIR = "rehearsal-fp32", "rehearsal-scaling"  # there too: the runs outside DVC
FP32_DIALOGUES = 128  # the fp32 generation run's share of the test set: four batches of 32
FP32_PHASE = "infer lora fp32"
DEFAULT_STEPS = 200  # enough for a steady rate; the table extrapolates to the recipe's steps
TINY_PROCESSES = 2  # --tiny on a CPU: the scaling runs' processes, gloo workers
TINY_POOL = "rehearsal-cpu-0,rehearsal-cpu-1"  # ... leased from this declared pool, as GPUs are
IDENTITY = b"rehearsal <rehearsal@localhost>"  # the scratch project's commits
IMPORT_NAMES = {"ruamel-yaml": "ruamel.yaml"}  # else the distribution's name with "_" for "-"


@dataclasses.dataclass(frozen=True)
class Size:
    train: int
    validation: int
    test_dialogues: int  # each with three references


FULL = Size(train=12_460, validation=500, test_dialogues=500)
TINY = Size(train=160, validation=24, test_dialogues=8)

# DVC's run: one process per stage, the scaling runs' baseline (params.yaml may ask for more).
ONE_PROCESS = {"train": {"processes": 1}, "generate": {"processes": 1}}
# --tiny: every stage runs, on CPU, in seconds each; the numbers mean nothing but the code paths
# (a micro-batch of 4: a tiny-model step's CPU time is its tokens).
TINY_OVERRIDES = {
    "train": {"max_steps": 4, "eval_steps": 2, "logging_steps": 1, "warmup_steps": 1, "batch_size": 4,
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


def project_files(root: Path, leave_out: Path | None = None) -> list[str]:
    """The project's files. In a git checkout, what ``git ls-files -co --exclude-standard`` lists
    (tracked, and untracked but not ignored), read with dulwich: no git command needed. In a copy
    without .git, as a GPU box may receive it, a walk that skips what the copy's ``.gitignore``
    files ignore (a ``pip install --target`` folder beside the project, the scratch project itself:
    copying those made a 1 GB commit), outputs and ``leave_out``."""
    if (root / ".git").exists():
        from dulwich.porcelain import get_untracked_paths
        from dulwich.repo import Repo

        with Repo(str(root)) as repo:
            index = repo.open_index()
            names = {os.fsdecode(path) for path in index.paths()}
            names.update(get_untracked_paths(str(root), str(root), index, exclude_ignored=True))
        return sorted(name for name in names if (root / name).is_file()
                      and (leave_out is None or not (root / name).resolve().is_relative_to(leave_out)))
    from dulwich.ignore import IgnoreFilter, read_ignore_patterns

    skip = {".git", ".venv", ".whl", "demo-run", "rehearsal-run", "__pycache__", ".pytest_cache", "wandb",
            "checkpoints", "models", "metrics"}
    filters: list[tuple[Path, IgnoreFilter]] = []  # (folder of a .gitignore, its patterns), as walked

    def ignored(path: Path, is_dir: bool) -> bool:
        for base, patterns in filters:
            if path.is_relative_to(base) and path != base:
                relative = path.relative_to(base).as_posix() + ("/" if is_dir else "")
                if patterns.is_ignored(relative):
                    return True
        return False

    found = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        if (here / ".gitignore").is_file():
            with (here / ".gitignore").open("rb") as f:
                filters.append((here, IgnoreFilter(read_ignore_patterns(f))))
        dirs[:] = sorted(d for d in dirs if d not in skip and not ignored(here / d, True)
                         and (leave_out is None or (here / d).resolve() != leave_out))
        found += [(here / name).relative_to(root).as_posix() for name in files
                  if not ignored(here / name, False)]
    return sorted(name for name in found if not name.startswith(("data/split", "data/tokenized", "data/predictions")))


def commit_all(workdir: Path, message: str) -> None:
    """``git add -A && git commit --allow-empty`` in ``workdir``, through dulwich (DVC's own
    dependency), so that the machine needs no git command. DVC wants a git repository, DVCLive and
    ``dvc exp`` a commit; nothing reads the history."""
    from dulwich import porcelain
    from dulwich.repo import Repo

    with Repo(str(workdir)) as repo:
        config = repo.get_config()
        config.set(b"gc", b"auto", b"0")  # no automatic gc after a commit: nothing reads the history
        config.write_to_path()
        porcelain.add(repo)  # everything not ignored, from the repository's root: deletions too
        porcelain.commit(repo, message=message.encode(), author=IDENTITY, committer=IDENTITY)


def make_project(workdir: Path, tiny: bool, max_steps: int | None) -> dict:
    """The scratch project: model, data and params as the module docstring says. Returns params."""
    from dulwich.repo import Repo
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
    for overrides in (ONE_PROCESS, TINY_OVERRIDES if tiny else {}):
        for section, values in overrides.items():
            params[section].update(values)
    if max_steps:
        params["train"]["max_steps"] = max_steps
    parse_params(params, "params.yaml + the rehearsal's overrides")

    if not (workdir / ".git").exists():
        Repo.init(str(workdir)).close()
    exclude = workdir / ".git" / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    exclude.write_text(f"/{ASSETS}/\n/.bin/\n/params_*.yaml\n/{FP32_DIR}/\n/{SCALING_DIR}/\n")
    for name in project_files(ROOT, leave_out=workdir.resolve()):
        source, target = ROOT / name, workdir / name
        if not target.is_file() or target.read_bytes() != source.read_bytes():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    with (workdir / "params.yaml").open("w", encoding="utf-8") as f:
        f.write("# Written by benchmarks/rehearsal.py: params.yaml with the rehearsal's overrides.\n")
        YAML(typ="safe", pure=True).dump(params, f)
    commit_all(workdir, "rehearsal")
    return params


def start_clean(workdir: Path, checkpoints: str) -> None:
    """Remove what an earlier run cut short left behind: its Trainer checkpoints, from which
    ``train_lora`` would resume and time only the rest of training, and the runs outside DVC."""
    for folder in (checkpoints, FP32_DIR, SCALING_DIR):
        shutil.rmtree(workdir / folder, ignore_errors=True)


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


@dataclasses.dataclass
class Progress:
    """The run so far, published (the results written) as each stage or phase starts and ends:
    a run cut at its time limit, or failing, leaves the figures of everything it finished."""

    stages: dict[str, float] = dataclasses.field(default_factory=dict)  # DVC's, seconds, as finished
    phases: dict[str, float] = dataclasses.field(default_factory=dict)  # the runs outside DVC
    outside: dict[str, dict] = dataclasses.field(default_factory=dict)  # their metrics, by phase
    running: str | None = None  # the stage or phase under way when last published
    failed: bool = False  # ... which then failed
    flops_inputs: tuple | None = None  # (N_src, N_tgt), target/source ratio: read once training finished
    publish: Callable[[], None] = lambda: None


def run_timed(command: list[str], cwd: Path, env: dict, memory: GpuMemory, progress: Progress,
              phase: str | None = None) -> None:
    """Run ``command``, echoing its output, and record the seconds of each DVC stage (from its
    "Running stage 'name'" line to the next, or the end) in ``progress.stages``, or with ``phase``
    the whole command's in ``progress.phases``. Publishes as each starts; on failure publishes
    that and exits."""
    times = progress.stages if phase is None else progress.phases

    def start(name: str) -> None:
        memory.phase = progress.running = name
        progress.publish()

    current, started = phase, time.perf_counter()
    if phase is not None:
        start(phase)
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
            start(current)
    code = proc.wait()
    memory.phase = None
    if code != 0:
        progress.failed = True
        progress.publish()
        sys.exit(f"error: `{' '.join(command[-3:])}` failed (exit {code}) in {cwd}")
    if current is not None:
        times[current] = round(time.perf_counter() - started, 1)
    progress.running = None


def stage_metrics(workdir: Path, metrics_dir: str) -> dict[str, dict]:
    """Each stage's records (stages/records.py: every figure, not only the DVC metrics), as
    ``dvc.lock`` lists its outputs: the JSON files in ``paths.metrics``/records, merged per stage."""
    from stages.params import read_yaml

    if not (workdir / "dvc.lock").is_file():
        return {}
    lock = read_yaml((workdir / "dvc.lock").read_text())
    found: dict[str, dict] = {}
    for stage, entry in lock["stages"].items():
        for out in entry.get("outs", []):
            path = Path(out["path"])
            if path.suffix == ".json" and path.parent == Path(metrics_dir) / "records" and (workdir / path).is_file():
                data = json.loads((workdir / path).read_text())
                if isinstance(data, dict):  # not a plot's rows
                    found.setdefault(stage, {}).update(data)
    return found


def matmul_weights(model_dir: Path) -> tuple[int, int]:
    """``benchmarks.gpu.weights_per_token`` of the saved model's shape, (N_src, N_tgt), counted
    on the meta device (no memory)."""
    import torch
    from transformers import AutoConfig, AutoModelForSeq2SeqLM

    from benchmarks.gpu import weights_per_token

    with torch.device("meta"):
        model = AutoModelForSeq2SeqLM.from_config(AutoConfig.from_pretrained(model_dir))
    return weights_per_token(model)


def target_ratio(workdir: Path, tokenized: str) -> float:
    """Target tokens per source token in the tokenized train set (what the Trainer samples)."""
    import datasets

    train = datasets.load_from_disk(str(workdir / tokenized))["train"]
    return sum(len(x) for x in train["labels"]) / sum(train["length"])


def training_figures(m: dict, weights: tuple[int, int], ratio: float, peak: float | None) -> dict:
    """Rates of the training a stage's metrics ``m`` record, over the steps this run trained: a
    run that resumed from a checkpoint trained ``steps - resumed_from_step`` of them in its wall
    time (none, when it resumed at its last step: then no rate). FLOPs as the module docstring
    says, ``weights`` = (N_src, N_tgt), ``ratio`` target tokens per source token."""
    trained = m["steps"] - m.get("resumed_from_step", 0)
    wall = m["wall_time_s"]
    figures = {"steps": m["steps"], "resumed_from_step": m.get("resumed_from_step", 0), "steps_trained": trained,
               "batch_size_settled": m["batch_size"], "effective_batch_size": m["effective_batch_size"],
               "gradient_accumulation_steps": m.get("gradient_accumulation_steps"),
               "devices": m.get("devices"), "bf16": m.get("bf16"),
               "wall_time_s": wall, "seconds_per_step": None, "source_tokens_per_s": None, "tokens_per_s": None,
               "model_tflops": None, "mfu": None}
    if trained <= 0 or wall <= 0:
        return figures
    src = m["input_tokens_per_second"] * wall  # this run's: examples trained x the mean source length
    tgt = src * ratio
    flops = 6 * (weights[0] * src + weights[1] * tgt)
    return figures | {"seconds_per_step": round(wall / trained, 3), "source_tokens_per_s": m["input_tokens_per_second"],
                      "tokens_per_s": round((src + tgt) / wall, 1), "model_tflops": round(flops / wall / 1e12, 3),
                      "mfu": None if peak is None else round(flops / wall / peak, 4)}


def train_phase(processes: int) -> str:
    return f"train_lora, {processes} processes"


def infer_phase(processes: int) -> str:
    return f"infer lora, {processes} processes"


def scaling_figures(one: tuple[dict | None, dict | None], many: tuple[dict | None, dict | None],
                    processes: int) -> dict:
    """Training and generation rates with one process (DVC's run) and with ``processes``, and the
    speed-ups; ``one`` and ``many`` are (training figures, infer metrics), None where not run yet."""
    rows = {}
    for count, (train, infer) in ((1, one), (processes, many)):
        rows[str(count)] = {
            "devices": (train or infer or {}).get("devices"),
            "effective_batch_size": train and train["effective_batch_size"],
            "training_tokens_per_s": train and train["tokens_per_s"],
            "seconds_per_step": train and train["seconds_per_step"],
            "generated_tokens_per_s": infer and infer["generated_tokens_per_second"],
            "dialogues_per_s": infer and infer["dialogues_per_second"],
            "dialogues": infer and infer["dialogues"],
            "same_predictions_as_one_process": infer and infer.get("same_predictions_as_one_process")}

    def speedup(key: str) -> float | None:
        a, b = rows["1"][key], rows[str(processes)][key]
        return round(b / a, 2) if a and b else None

    return {"processes": processes, "runs": rows, "training_speedup": speedup("training_tokens_per_s"),
            "generation_speedup": speedup("generated_tokens_per_s")}


def summarize(workdir: Path, params: dict, progress: Progress, memory: GpuMemory, device: str,
              peak: float | None, recipe_steps: int, processes: int) -> dict:
    """The results so far: the DVC stages that finished, the runs outside DVC that finished."""
    from stages.params import Paths

    paths = Paths(**params["paths"])
    metrics = {name: m for name, m in stage_metrics(workdir, paths.metrics).items() if name in progress.stages}
    stages = {}
    for name, seconds in progress.stages.items():
        m = metrics.get(name, {})
        stages[name] = {"wall_s": seconds, "gpu_memory_mib": memory.peaks.get(name),
                        "peak_memory_mb_reported": m.get("peak_memory_mb"), "metrics": m}
    train_name = next((n for n, m in metrics.items() if "trainable_params" in m), None)
    weights = ratio = training = None
    if train_name:
        if progress.flops_inputs is None:
            progress.flops_inputs = (matmul_weights(workdir / params["model"]["name"]),
                                     target_ratio(workdir, paths.tokenized))
        weights, ratio = progress.flops_inputs
        training = training_figures(metrics[train_name], weights, ratio, peak) | {
            "stage": train_name, "matmul_weights": {"source": weights[0], "target": weights[1]},
            "flops_formula": "6 * (N_src * T_src + N_tgt * T_tgt); executed with LoRA ~ 4/6 of it",
            "recipe_steps": recipe_steps}
        per_step = training["seconds_per_step"]
        training["recipe_training_s_estimate"] = None if per_step is None else round(per_step * recipe_steps, 1)
    generation = {}
    for name, m in metrics.items():
        if "generated_tokens_per_second" in m:
            generation[name] = {k: m.get(k) for k in ("dtype", "dialogues", "wall_time_s", "dialogues_per_second",
                                                      "generated_tokens_per_second", "peak_memory_mb", "devices")}
    if FP32_PHASE in progress.outside:
        generation["lora, generate.bf16: false (outside DVC)"] = progress.outside[FP32_PHASE] | {
            "wall_s": progress.phases[FP32_PHASE], "gpu_memory_mib": memory.peaks.get(FP32_PHASE)}
    scaling = None
    if processes > 1:
        lora = next((m for n, m in metrics.items() if n.endswith("@lora") and "generated_tokens_per_second" in m), None)
        trained = progress.outside.get(train_phase(processes))
        many = (trained and training_figures(trained, weights, ratio, peak),
                progress.outside.get(infer_phase(processes)))
        scaling = scaling_figures((training, lora), many, processes)
        for phase in (train_phase(processes), infer_phase(processes)):
            scaling[phase] = {"wall_s": progress.phases.get(phase), "gpu_memory_mib": memory.peaks.get(phase)}
    total = sum(progress.stages.values())
    estimate = None
    if training and training["recipe_training_s_estimate"] is not None:
        estimate = round(total - training["wall_time_s"] + training["recipe_training_s_estimate"], 1)
    return {"device": device, "date": datetime.date.today().isoformat(), "peak_bf16_flops": peak,
            "complete": progress.running is None, "running": progress.running, "failed": progress.failed,
            "stages": stages, "training": training, "generation": generation, "scaling": scaling,
            "pipeline_wall_s": round(total, 1), "recipe_estimate_s": estimate,
            "params": {k: params[k] for k in ("model", "data", "split", "train", "generate")}}


def num(x, fmt="{:,.0f}") -> str:
    return "-" if x is None else fmt.format(x)


def scaling_table(s: dict) -> list[str]:
    k = s["processes"]
    lines = ["", f"Scaling, 1 and {k} processes (train_lora, and infer on the same LoRA adapter; the same batch "
                 f"per process, so {k} processes train {k}x the examples per step):", "",
             "| processes | devices | training tokens/s | s/step | generated tokens/s | dialogues/s |",
             "|---:|---|---:|---:|---:|---:|"]
    for count, r in s["runs"].items():
        lines.append(f"| {count} | {r['devices'] or '-'} | {num(r['training_tokens_per_s'])} | "
                     f"{num(r['seconds_per_step'], '{}')} | {num(r['generated_tokens_per_s'])} | "
                     f"{num(r['dialogues_per_s'], '{}')} |")
    lines += ["", f"Speed-up with {k} processes: training {num(s['training_speedup'], '{:.2f}x')}, "
                  f"generation {num(s['generation_speedup'], '{:.2f}x')}."]
    many = s["runs"][str(k)]
    if many["same_predictions_as_one_process"] is not None:
        lines.append(f"Generation with {k} processes (DVC's adapter, the same dialogues): "
                     f"{many['same_predictions_as_one_process']} of {many['dialogues']} predictions as with one.")
    return lines


def table(r: dict) -> str:
    t = r["training"]
    scale = ("a few hundred rows, random tiny model" if r.get("mode") == "tiny"
             else "DialogSum's size, random flan-t5-base-shaped model")
    lines = [f"Rehearsal on {r['device']}, {r['date']}: the real stages at {scale}, "
             f"{r['params']['train']['max_steps']} training steps.", ""]
    if not r["complete"]:
        what = f"{r['running']} failed" if r["failed"] else f"written as {r['running']} started"
        lines += [f"Incomplete: {what}; the rows below are what had finished.", ""]
    lines += ["| stage | wall s | GPU memory MiB (nvidia-smi) | peak MB (stage's metrics) | figures |",
              "|---|---:|---:|---:|---|"]
    for name, s in r["stages"].items():
        m, notes = s["metrics"], []
        if t and name == t["stage"]:
            notes.append(f"batch {t['batch_size_settled']} (settled) x accumulation = {t['effective_batch_size']}; "
                         f"{num(t['seconds_per_step'], '{}')} s/step over {t['steps_trained']} steps; "
                         f"{num(t['tokens_per_s'])} tokens/s; {num(t['model_tflops'], '{}')} TFLOP/s; "
                         f"MFU {num(t['mfu'], '{:.1%}')}")
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
    s = r["scaling"]
    for phase in (train_phase(s["processes"]), infer_phase(s["processes"])) if s else ():
        if s[phase]["wall_s"] is not None:
            lines.append(f"| {phase} (outside DVC) | {s[phase]['wall_s']} | {num(s[phase]['gpu_memory_mib'])} "
                         "| | see Scaling |")
    lines += ["", f"Pipeline{'' if r['complete'] else ' so far'}: {r['pipeline_wall_s']} s."]
    if r["recipe_estimate_s"] is not None:
        lines.append(f"The recipe's {t['recipe_steps']} steps at this rate: "
                     f"training ~{t['recipe_training_s_estimate']:.0f} s, "
                     f"the whole pipeline ~{r['recipe_estimate_s'] / 60:.1f} min "
                     f"(if early stopping does not end it sooner).")
    if t:
        from benchmarks.gpu import peak_note

        lines.append(f"Training FLOPs: {t['flops_formula']}; "
                     f"{peak_note(r['device'], r['peak_bf16_flops'], r.get('peak_source'))}.")
    if s:
        lines += scaling_table(s)
    elif r.get("scaling_note"):
        lines += ["", r["scaling_note"]]
    return "\n".join(lines) + "\n"


def gpu_name() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "a GPU (nvidia-smi did not answer)"
    return out.splitlines()[0].strip() if out.strip() else "a GPU (nvidia-smi did not answer)"


def preflight(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """What the run would lack, found in seconds rather than minutes into the GPU time: each
    runtime dependency ``pyproject`` declares (wandb aside: tracking is off here) must import, at a
    version its floor allows (an older transformers a GPU image provides imports fine, then fails
    in train_lora), and so must dulwich, which makes the scratch project's git repository.
    Returns one line per problem."""
    import importlib
    from importlib import metadata

    from benchmarks.wheels import NOT_IMPORTED, canonical

    try:
        from packaging.requirements import Requirement
    except ImportError as exc:
        return [f"packaging does not import ({exc})"]
    problems = []
    for line in [*tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"], "dulwich"]:
        req = Requirement(line)
        name = canonical(req.name)
        if name in NOT_IMPORTED or (req.marker and not req.marker.evaluate()):
            continue
        try:
            module = importlib.import_module(IMPORT_NAMES.get(name, name.replace("-", "_")))
        except Exception as exc:  # a broken install raises whatever its imports raise
            problems.append(f"{req.name} does not import ({exc.__class__.__name__}: {str(exc).splitlines()[0][:160]})"
                            if str(exc) else f"{req.name} does not import ({exc.__class__.__name__})")
            continue
        version = getattr(module, "__version__", None)  # the copy imported, where it says
        if not isinstance(version, str):
            try:
                version = metadata.version(req.name)
            except metadata.PackageNotFoundError:
                version = None
        if req.specifier and (version is None or not req.specifier.contains(version, prereleases=True)):
            problems.append(f"{req.name} {version or 'of unknown version'} is here; pyproject.toml asks for "
                            f"{req.name}{req.specifier}")
    return problems


def run_fp32(workdir: Path, params: dict, env: dict, memory: GpuMemory, progress: Progress) -> None:
    """The LoRA model once more, in fp32, through the infer stage itself, into a folder of its own,
    on the first FP32_DIALOGUES test dialogues (whole batches: all 500 would add minutes on the
    GPU), the same rows in the same order as DVC's run."""
    import pandas as pd

    from stages.params import Paths

    fp32_params = json.loads(json.dumps(params))
    fp32_params["generate"]["bf16"] = False
    fp32_params["paths"].update(split=f"{FP32_DIR}/split", predictions=f"{FP32_DIR}/predictions",
                                metrics=f"{FP32_DIR}/metrics")
    test = pd.read_parquet(workdir / Paths(**params["paths"]).split_file("test"))
    keep = test["dialogue"].drop_duplicates().iloc[:FP32_DIALOGUES]
    fp32_paths = Paths(**fp32_params["paths"])
    subset = workdir / fp32_paths.split_file("test")
    subset.parent.mkdir(parents=True, exist_ok=True)
    test[test["dialogue"].isin(keep)].to_parquet(subset, index=False)
    (workdir / "params_fp32.yaml").write_text(json.dumps(fp32_params))  # JSON is YAML
    run_timed([sys.executable, "-m", "stages.infer", "--variant", "lora", "--params", "params_fp32.yaml"],
              workdir, env, memory, progress, FP32_PHASE)
    progress.outside[FP32_PHASE] = json.loads((workdir / fp32_paths.infer_record("lora")).read_text())
    progress.publish()


def run_scaling(workdir: Path, params: dict, processes: int, env: dict, memory: GpuMemory,
                progress: Progress) -> None:
    """train_lora, then infer on DVC's LoRA adapter (the work infer@lora did), outside DVC with
    ``processes`` processes each (one GPU each; gloo workers on a CPU), with DVC's params
    otherwise, writing into a folder of their own."""
    from stages.params import Paths

    scaled = json.loads(json.dumps(params))
    scaled["train"]["processes"] = scaled["generate"]["processes"] = processes
    scaled["paths"].update({key: f"{SCALING_DIR}/{key}" for key in ("checkpoints", "predictions", "metrics")})
    runs = {"train": dict(scaled, paths=scaled["paths"] | {"models": f"{SCALING_DIR}/models"}), "infer": scaled}
    for what, phase, module in (("train", train_phase(processes), ["stages.train_lora"]),
                                ("infer", infer_phase(processes), ["stages.infer", "--variant", "lora"])):
        (workdir / f"params_scaling_{what}.yaml").write_text(json.dumps(runs[what]))  # JSON is YAML
        run_timed([sys.executable, "-m", *module, "--params", f"params_scaling_{what}.yaml"], workdir, env, memory,
                  progress, phase)
        paths = Paths(**runs[what]["paths"])
        metrics = paths.train_record("lora") if what == "train" else paths.infer_record("lora")
        progress.outside[phase] = json.loads((workdir / metrics).read_text())
        if what == "infer":  # the same adapter and dialogues as DVC's run: the same greedy outputs?
            mine, dvcs = (read_predictions(workdir / Paths(**p["paths"]).predictions_file("lora"))
                          for p in (scaled, params))
            progress.outside[phase]["same_predictions_as_one_process"] = sum(
                dvcs.get(key) == prediction for key, prediction in mine.items())
        progress.publish()


def read_predictions(path: Path) -> dict[str, str]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return {row["id"]: row["prediction"] for row in rows}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="a tiny model and a few hundred rows, on CPU")
    parser.add_argument("--max-steps", type=int, default=None,
                        help=f"training steps (default: {DEFAULT_STEPS}; --tiny: 4)")
    parser.add_argument("--scale-to", type=int, default=None, metavar="K",
                        help="also run train_lora and infer@lora with K processes, one GPU each, for the "
                             f"speed-up over one (default: every GPU visible; --tiny on a CPU: "
                             f"{TINY_PROCESSES}; 1: not at all)")
    parser.add_argument("--workdir", default=str(ROOT / "rehearsal-run"), help="scratch project (default: %(default)s)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="folder for the table")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the peak MFU is stated against, TFLOP/s (default: the datasheet's dense bf16 "
                             "peak of the GPU found, from benchmarks/gpu.py's PEAK_BF16; set it for a GPU "
                             "not listed there, or for a matmul rate you measured)")
    args = parser.parse_args(argv)
    problems = preflight()  # before anything else can fail on what it finds
    if problems:
        sys.exit("error: the rehearsal needs what pyproject.toml declares; here " + "; ".join(problems) +
                 " (benchmarks/README.md: make gpu-wheels)")
    from benchmarks.run import quiet_logging

    quiet_logging()
    import torch

    from stages import devices
    from stages.params import read_yaml

    # The name from nvidia-smi: torch's would open a CUDA context here (~0.5 GB), which would sit
    # in every stage's GPU memory figure.
    device = gpu_name() if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not args.tiny:
        sys.exit("error: no GPU here; python -m benchmarks.rehearsal --tiny runs the small version on CPU")
    gpus = devices.pool() if device != "cpu" else []  # what the stages may lease, without starting CUDA
    if args.scale_to is not None:
        processes = args.scale_to
    else:
        processes = TINY_PROCESSES if device == "cpu" else max(1, len(gpus))
    if processes < 1 or (device != "cpu" and processes > len(gpus)):
        sys.exit(f"error: --scale-to {processes}: {len(gpus)} GPU(s) visible ({', '.join(gpus) or 'none listed'})")
    workdir = Path(args.workdir).resolve()
    peak = args.peak_tflops * 1e12 if args.peak_tflops else None
    if peak is None and device != "cpu":
        from benchmarks.gpu import peak_flops

        peak = peak_flops(device)
    recipe_steps = read_yaml((ROOT / "params.yaml").read_text())["train"]["max_steps"]
    started = time.perf_counter()
    params = make_project(workdir, args.tiny, args.max_steps or (None if args.tiny else DEFAULT_STEPS))
    start_clean(workdir, params["paths"]["checkpoints"])
    env = stage_env(workdir)
    if device == "cpu":  # the stages lease "devices" from a declared pool, as they lease GPUs
        env.setdefault(devices.POOL, TINY_POOL)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "rehearsal-tiny" if args.tiny else "rehearsal"
    progress = Progress()
    with GpuMemory() as memory:
        def write() -> None:
            results = summarize(workdir, params, progress, memory, device, peak, recipe_steps, processes)
            results.update(mode="tiny" if args.tiny else "full",
                           peak_source="--peak-tflops" if args.peak_tflops else None,
                           rehearsal_wall_s=round(time.perf_counter() - started, 1))
            if processes == 1:
                results["scaling_note"] = ("Scaling: not measured (--scale-to 1)." if args.scale_to else
                                           "Scaling: one GPU visible, not measured (with several, 1 and all).")
            (out / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
            (out / f"{stem}.md").write_text(table(results))

        def publish() -> None:  # while stages run: a failure here must not end the run it measures
            try:
                write()
            except Exception:
                log.warning("results so far not written", exc_info=True)

        progress.publish = publish
        run_timed([sys.executable, "-m", "dvc", "repro", "--force"], workdir, env, memory, progress)
        progress.publish()
        run_fp32(workdir, params, env, memory, progress)
        if processes > 1:
            run_scaling(workdir, params, processes, env, memory, progress)
        write()
    elapsed = time.perf_counter() - started
    print("\n" + (out / f"{stem}.md").read_text() + f"\nbenchmarks.rehearsal: {elapsed:.0f} s wall; {out / stem}.md",
          flush=True)


if __name__ == "__main__":
    main()
