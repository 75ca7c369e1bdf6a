"""CPU figures that track what the pipeline costs a GPU, in one command.

    python -m benchmarks.host [--shape base|tiny] [--json] [--repeats N]

A GPU step is host-bound long before it is compute-bound when it launches thousands of small
kernels, waits on the host, or runs ten times as many sequential steps as it needs; these are
counts, read on any machine, that say so before a GPU is rented:

- ``train_ops_per_micro_batch``: kernel-level ops (aten calls under a ``TorchDispatchMode``, less
  the views and allocations that launch no kernel: ``launches_a_kernel``) of one
  training micro-batch, forward and backward, under bf16 autocast; the model built by the train
  stage's own functions (``stages.modeling.load_model`` with ``train.base_weights`` and
  ``train.dropout_rate`` as the stage resolves them on a bf16 GPU, then
  ``stages.train_lora.trainable_model``), so a change to how the frozen base is loaded shows here.
  Casts and dropout draws are listed apart. The ops are those the CPU dispatches
  (``torch.autocast("cpu")``, whose lists of ops cast to bf16 or fp32 differ from CUDA's in a few
  ops T5 uses, such as the loss's softmax). A GPU runs two things in far fewer kernels: each scaled
  dot-product attention call (T5's float position-bias mask and dropout rule out the CPU's fused
  kernel, so it runs the math path: casts to fp32, matmuls, softmax, dropout; CUDA runs one
  memory-efficient attention kernel, which takes an arbitrary mask and dropout, and one for its
  backward) and each dropout (CPU: ``bernoulli_``, ``div_``, ``mul``, and a ``mul`` backward; CUDA:
  ``native_dropout``, one fused kernel each way). Both are counted apart
  (``train_ops_in_attention``, ``train_ops_in_dropout``: their ops forward and backward, with their
  calls), and ``train_ops_fused_estimate`` is the count with each such call taken as one kernel
  forward and one backward: an estimate from those two rules of PyTorch's CUDA dispatch, not a count
  (CUDA may also pad a mask to an aligned length, a kernel more). Counting the CUDA dispatch itself
  without a GPU does not work with a CPU build of torch (2.13): fake tensors on device ``cuda`` can
  be made (``FakeTensorMode``) and ``torch.autocast("cuda")`` runs once ``torch.cuda.is_available``
  answers True, but the first op that records autograd history on such a tensor needs a CUDA device
  guard, which a CPU build does not have (``_ensureCUDADeviceGuardSet`` installs a no-op one only in
  a CUDA build without a device); with one registered from a C++ extension a small forward runs, and
  its backward stops in the autograd engine, which asks for the accelerator ("Cannot access
  accelerator device when none is available"). On a GPU, ``torch.profiler`` counts the kernels
  (``benchmarks.gpu``'s ``decode_profile`` does for a decode step).
- ``decode_ops_per_step``, ``host_syncs_per_step``: the same count per decode step of
  ``stages.infer.generate`` on the model cast to bf16, as ``generate.bf16: auto`` runs it on a GPU
  (the difference between two lengths, so the encoder and set-up cancel); a host sync is an op
  whose result the host must read (``.item()``, ``nonzero``, ``is_nonzero``, ``equal``).
- ``decode_steps_500``: the sequential decode steps of 500 DialogSum-length dialogues
  (``benchmarks.synthetic``'s lengths, the recipe's prompt) in the batches the infer stage plans
  on an H200 (141 GB, ``stages.generation_batches``); beside it the same at ``generate.batch_size``.
- ``score_seconds``: the score stage's work at DialogSum's test size (500 dialogues x 3
  references: base, LoRA and the human row; ``benchmarks.faithfulness``' rows), after imports.
- ``startup_seconds``: per stage, ``python -m stages.<stage> --help`` (the interpreter, the
  module's imports, argument parsing): what every run pays before its own work.

Both seconds figures are CPU seconds (scoring and importing are single-threaded Python, so on an
idle machine about their wall time); ``*_wall_seconds`` beside them are wall times, which on a
machine shared with other jobs measure those jobs too.

The counts are deterministic for a shape and the library versions; the seconds are not (and on
a shared machine, far from it). ``--shape tiny`` (the demo's model) is quick; ``base`` (a random
model of flan-t5-base's exact shape, saved once to a temporary folder) takes a minute or so.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from unittest import mock

from benchmarks import synthetic

ROOT = Path(__file__).resolve().parents[1]
SEED = 0
H200_BYTES = 141 * 10**9
STAGES = ("check_params", "split", "tokenize", "train_lora", "infer", "score", "card")
SYNCS = ("_local_scalar_dense", "nonzero", "is_nonzero", "equal")
CASTS = ("_to_copy", "to", "copy_")
KEYS = ("train_ops_per_micro_batch", "decode_ops_per_step", "host_syncs_per_step", "decode_steps_500",
        "score_seconds", "startup_seconds")


# Ops that launch no kernel: they make another view of memory, or allocate it uninitialised.
NO_KERNEL = ("_unsafe_view", "lift_fresh", "_reshape_alias", "empty", "empty_like", "empty_strided", "alias")


def launches_a_kernel(func) -> bool:
    """False for views (a return that aliases an input without writing it: ``view``, ``t``,
    ``transpose``, ``expand``, ``detach`` ...) and ``NO_KERNEL``; in-place ops write, so they count."""
    if func.overloadpacket.__name__ in NO_KERNEL:
        return False
    return not any(r.alias_info is not None and not r.alias_info.is_write for r in func._schema.returns)


def op_counter(regions=None):
    """A ``TorchDispatchMode`` counting the aten ops that run under it, by name: ``counts`` those
    that launch a kernel on a GPU, ``calls`` every one; with ``regions`` (``call_regions``), also
    ``by_region``: the kernel-level ops that ran inside each region's calls, by (region,
    ``forward`` or ``backward``)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.counts: Counter = Counter()
            self.calls: Counter = Counter()
            self.by_region: Counter = Counter()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            self.calls[name] += 1
            if launches_a_kernel(func):
                self.counts[name] += 1
                if regions is not None and regions.current:
                    self.by_region[regions.current, "forward"] += 1
                    regions.kernels += 1
                elif regions is not None and (node := torch._C._current_autograd_node()) in regions.nodes \
                        and name != "add":  # an add here sums gradients of a tensor used twice: not the call's
                    self.by_region[regions.nodes[node], "backward"] += 1
            return func(*args, **(kwargs or {}))

    return Ops()


def call_regions(functions: dict):
    """A ``TorchFunctionMode`` that names the calls of ``functions`` ({function: region}) while
    they run (``current``: their forward ops) and the autograd nodes they leave between their
    outputs and their inputs (``nodes``: their backward ops); ``calls`` counts those that ran a
    kernel (``kernels``, counted by ``op_counter``) by (region, ``forward``), and those that left
    nodes by (region, ``backward``): a dropout of probability 0 runs none, on a GPU too."""
    import torch
    from torch.overrides import TorchFunctionMode

    class Regions(TorchFunctionMode):
        def __init__(self):
            super().__init__()
            self.current: str | None = None
            self.nodes: dict = {}
            self.calls: Counter = Counter()
            self.kernels = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            region = functions.get(func)
            if region is None or self.current is not None:
                return func(*args, **(kwargs or {}))
            self.current, self.kernels = region, 0
            try:
                out = func(*args, **(kwargs or {}))
            finally:
                self.current = None
            if self.kernels:
                self.calls[region, "forward"] += 1
            known = len(self.nodes)
            inputs = [a for a in list(args) + list((kwargs or {}).values()) if isinstance(a, torch.Tensor)]
            stop = {t.grad_fn for t in inputs if t.grad_fn is not None}
            todo = [out.grad_fn] if isinstance(out, torch.Tensor) and out.grad_fn is not None else []
            while todo:  # the nodes the call created: from its output back to its inputs' nodes
                node = todo.pop()
                if node in stop or node in self.nodes or type(node).__name__ == "AccumulateGrad":
                    continue
                self.nodes[node] = region
                todo.extend(n for n, _ in node.next_functions if n is not None)
            if len(self.nodes) > known:
                self.calls[region, "backward"] += 1
            return out

    return Regions()


@contextlib.contextmanager
def as_on_a_bf16_gpu():
    """Within the block, the project's checks see a CUDA GPU that computes in bf16, so settings
    such as ``auto`` resolve as they would there; nothing is moved to a GPU."""
    import torch

    with mock.patch.object(torch.cuda, "is_available", return_value=True), \
            mock.patch.object(torch.cuda, "is_bf16_supported", return_value=True):
        yield


def model_folder(shape: str, workdir: Path) -> Path:
    """A saved model folder of ``shape`` (with its tokenizer), as a stage would load it."""
    if shape == "tiny" and (synthetic.TINY_MODEL / "config.json").is_file():
        return synthetic.TINY_MODEL
    model, _ = synthetic.load_shape(shape, SEED)
    folder = workdir / f"{shape}-model"
    model.save_pretrained(folder)
    synthetic.id_tokenizer(model.config.vocab_size).save_pretrained(folder)
    return folder


def train_ops(folder: Path, params, batch: int = 2, source: int = 48, target: int = 12) -> Counter:
    """Aten ops of one training micro-batch (forward + backward) of the model the train stage
    builds on a bf16 GPU, under bf16 autocast, by name; those inside scaled dot-product attention
    and dropout calls, by (region, forward/backward); and those calls (``call_regions``)."""
    import torch

    from stages import modeling
    from stages.train_lora import trainable_model

    with as_on_a_bf16_gpu():
        bf16 = modeling.use_bf16(params.train.bf16)
        weights = modeling.base_weights(params.train.base_weights, bf16)
        frozen = modeling.load_model(folder, params.train.dropout_rate, weights)
    model = trainable_model(frozen, params, weights, autocast_bf16=bf16).train()
    generator = torch.Generator().manual_seed(SEED)
    vocab = model.config.vocab_size
    inputs = {"input_ids": torch.randint(3, vocab, (batch, source), generator=generator),
              "attention_mask": torch.ones(batch, source, dtype=torch.long),
              "labels": torch.randint(3, vocab, (batch, target), generator=generator)}
    regions = call_regions({torch.nn.functional.scaled_dot_product_attention: "attention",
                            torch.nn.functional.dropout: "dropout"})
    counter = op_counter(regions)
    with regions, counter:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(**inputs).loss
        loss.backward()
    return counter.counts, counter.by_region, regions.calls


def fused_estimate(counts: Counter, by_region: Counter, calls: Counter) -> int:
    """``train_ops`` less what a GPU runs fused: each attention call's and each dropout's ops,
    forward and backward, counted as one kernel forward and one backward. An estimate from
    PyTorch's CUDA dispatch rules (module docstring), not a count."""
    return sum(counts.values()) - sum(by_region.values()) + sum(calls.values())


def decode_ops(folder: Path, params, lengths: tuple[int, int] = (3, 7)) -> tuple[float, float]:
    """Aten ops and host syncs per decode step of ``stages.infer.generate`` on the model as the
    infer stage casts it on a bf16 GPU."""
    import torch

    from stages import modeling
    from stages.infer import generate, generation_dtype

    with as_on_a_bf16_gpu():
        dtype = generation_dtype(params.generate)
    model = modeling.load_variant(folder, "base", folder, merge=False, dtype=dtype)
    tokenizer = modeling.load_tokenizer(folder)
    dialogues = ["#Person1#: Where is the station?\n#Person2#: Two blocks north.", "#Person1#: Hi.\n#Person2#: Hello."]
    counts = []
    for new_tokens in lengths:
        model.generation_config.min_new_tokens = new_tokens  # exactly this many: no early end
        cfg = params.generate.model_copy(update={"max_new_tokens": new_tokens, "batch_size": 2})
        counter = op_counter()
        with counter, torch.inference_mode():
            generate(model, tokenizer, dialogues, cfg, "cpu")
        counts.append(counter.counts)
    steps = lengths[1] - lengths[0]
    ops = (sum(counts[1].values()) - sum(counts[0].values())) / steps
    syncs = sum(counts[1][name] - counts[0][name] for name in SYNCS) / steps
    return ops, syncs


def decode_steps_500(params, memory_bytes: int = H200_BYTES, batch_size: int | None = None) -> int:
    """Sequential decode steps of 500 DialogSum-length dialogues of flan-t5-base's shape in the
    batches the infer stage plans with ``memory_bytes`` of GPU memory (bf16 weights loaded), or
    in batches of ``batch_size``."""
    from stages import generation_batches as gb
    from stages import prompt

    config = dict(synthetic.BASE_SHAPE)
    tokenizer = synthetic.id_tokenizer(config["vocab_size"])
    dialogues, summaries = synthetic.synthetic_texts(500, config["vocab_size"], SEED)
    texts, _ = prompt.fit(tokenizer, params.prompt, dialogues)
    lengths = [len(ids) for ids in tokenizer(texts)["input_ids"]]
    new_tokens = [min(len(s.split()) + 1, params.generate.max_new_tokens) for s in summaries]  # + </s>
    order = sorted(range(len(texts)), key=lambda i: -lengths[i])  # as stages.infer.generate
    sorted_lengths = [lengths[i] for i in order]
    if batch_size is not None:
        sizes = gb.fixed(len(order), batch_size)
    else:
        weights = 2 * 247_577_856  # bf16
        shape = gb.Shape(config["num_layers"], config["num_decoder_layers"], config["d_model"], config["num_heads"],
                         config["d_kv"], config["d_ff"], config["vocab_size"])
        budget = int((memory_bytes - weights) * params.generate.batch_memory)
        sizes = gb.plan(sorted_lengths, budget, shape, params.generate.max_new_tokens, params.generate.num_beams, 2)
    return gb.decode_steps(sizes, [new_tokens[i] for i in order])


def score_seconds(dialogues: int = 500) -> tuple[float, float]:
    """CPU and wall seconds of the score stage's work for base, LoRA and the human row at
    ``dialogues`` x 3 references, its imports done before."""
    from benchmarks.faithfulness import dialogsum_shaped_rows
    from stages import text_metrics  # noqa: F401  imports are start-up, not work
    from stages.score import score_human, score_variant

    rows = dialogsum_shaped_rows(dialogues)
    lora = [dict(r, prediction=r["references"][2]) for r in rows]  # another text than base's
    cpu, wall = time.process_time(), time.perf_counter()
    score_variant(rows, use_stemmer=True, seed=42, max_new_tokens=200)
    score_variant(lora, use_stemmer=True, seed=42, max_new_tokens=200)
    score_human(rows, use_stemmer=True, seed=42)
    return time.process_time() - cpu, time.perf_counter() - wall


def startup_seconds(stages: tuple[str, ...] = STAGES, repeats: int = 1) -> tuple[dict, dict]:
    """Per stage, the best of ``repeats`` runs of ``python -m stages.<stage> --help``: the CPU
    seconds the process used, and its wall time."""
    cpu, wall = {}, {}
    for stage in stages:
        runs = []
        for _ in range(repeats):
            before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
            subprocess.run([sys.executable, "-m", f"stages.{stage}", "--help"], cwd=ROOT, check=True,
                           capture_output=True, timeout=120)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            runs.append((after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
                         time.perf_counter() - started))
        cpu[stage] = round(min(r[0] for r in runs), 3)
        wall[stage] = round(min(r[1] for r in runs), 3)
    return cpu, wall


def measure(shape: str, repeats: int = 1) -> dict:
    from stages.params import load_params

    params = load_params(ROOT / "params.yaml")
    with tempfile.TemporaryDirectory(prefix="host-bench-") as workdir:
        folder = model_folder(shape, Path(workdir))
        train, by_region, calls = train_ops(folder, params)
        ops, syncs = decode_ops(folder, params)
    scores = [score_seconds() for _ in range(repeats)]
    startup = startup_seconds(repeats=repeats)
    return {
        "shape": shape,
        "train_ops_per_micro_batch": sum(train.values()),
        "train_casts_per_micro_batch": sum(train[name] for name in CASTS),
        "train_dropouts_per_micro_batch": sum(n for name, n in train.items()
                                              if "dropout" in name or "bernoulli" in name),
        "train_attention_calls_per_micro_batch": calls["attention", "forward"],
        "train_ops_in_attention": by_region["attention", "forward"] + by_region["attention", "backward"],
        "train_dropout_calls_per_micro_batch": calls["dropout", "forward"],
        "train_ops_in_dropout": by_region["dropout", "forward"] + by_region["dropout", "backward"],
        "train_ops_fused_estimate": fused_estimate(train, by_region, calls),
        "decode_ops_per_step": round(ops, 1),
        "host_syncs_per_step": round(syncs, 2),
        "decode_steps_500": decode_steps_500(params),
        "decode_steps_500_at_batch_size": decode_steps_500(params, batch_size=params.generate.batch_size),
        "batch_size": params.generate.batch_size,
        "score_seconds": round(min(score[0] for score in scores), 3),
        "score_wall_seconds": round(min(score[1] for score in scores), 3),
        "startup_seconds": startup[0],
        "startup_wall_seconds": startup[1],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=synthetic.SHAPES, default="base")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs of the seconds figures, best kept")
    args = parser.parse_args(argv)
    figures = measure(args.shape, args.repeats)
    if args.json:
        print(json.dumps(figures))
        return
    print(f"| figure ({args.shape} shape) | value |\n|---|---:|")
    for key, value in figures.items():
        if key == "startup_seconds":
            value = ", ".join(f"{stage} {s:.2f}" for stage, s in value.items())
        print(f"| {key} | {value} |")


if __name__ == "__main__":
    main()
