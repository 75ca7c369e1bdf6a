"""The benchmark harness's pieces, on tiny sizes. No timing is asserted: only what the numbers rest on."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import faithfulness, gpu, inference, overhead, report, run, synthetic, training
from stages.params import load_params
from tests.conftest import ROOT


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from more threads, and on a busy machine torch's spinning
    threads make every small op many times slower (seen: a 1.3 M-parameter step 0.17 s -> 4.4 s)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def params():
    return load_params(ROOT / "params.yaml")


@pytest.fixture(scope="module")
def tiny(params):
    """A random model of the demo's tiny shape with a LoRA adapter, and an id tokenizer."""
    from demo.make_tiny_t5 import build_model
    from stages.train_lora import add_lora

    model = add_lora(build_model(300, seed=0), params.lora, seed=0)
    return model, synthetic.id_tokenizer(300)


@pytest.fixture(scope="module")
def examples(tiny, params):
    return synthetic.tokenized_examples(tiny[1], params.prompt, 12, seed=0)


def test_synthetic_lengths_are_dialogsum_like(params):
    tokenizer = synthetic.id_tokenizer(1000)  # lengths do not depend on the vocabulary
    rows = synthetic.tokenized_examples(tokenizer, params.prompt, 200, seed=1)
    sources = sorted(r["length"] for r in rows)
    targets = sorted(len(r["labels"]) for r in rows)
    assert 90 <= sources[20] and sources[180] <= 420  # mostly 100-400 tokens
    assert max(sources) <= params.prompt.max_source_length
    assert 15 <= targets[20] and targets[180] <= 62  # mostly 20-60


def test_base_shape_is_flan_t5_base():
    model = synthetic.base_shape_model(seed=0, device="meta")
    assert sum(p.numel() for p in model.parameters()) == 247_577_856  # flan-t5-base's count
    assert model.lm_head.weight is not model.shared.weight  # flan-t5 has its own lm_head
    assert not model.config.scale_decoder_outputs


def test_dynamic_padding_loss_equals_pad_to_512_with_ignored_labels(tiny, examples):
    model, tokenizer = tiny
    check = training.loss_check(model, examples[:4], tokenizer, "cpu")
    assert check["dynamic_labels_-100"] == pytest.approx(check["pad512_labels_-100"], rel=1e-5)
    assert check["dynamic_equals_pad512"]
    # The reference recipe's pad-id labels count hundreds of pad predictions: a different loss.
    assert abs(check["pad512_labels_pad_id"] - check["dynamic_labels_-100"]) > 1e-2
    assert check["pad_id_labels_differ"]


def test_strategies_collate_the_same_examples_differently(tiny, examples):
    model, tokenizer = tiny
    batches = {s: training.make_batches(s, examples, 4, tokenizer, model, seed=0) for s in training.STRATEGIES}
    real = {s: sorted(int(b["attention_mask"].sum()) for b in bs) for s, bs in batches.items()}
    assert sum(real["pipeline"]) == sum(real["hf_defaults"]) == sum(real["reference"])
    assert all(b["input_ids"].shape[1] == b["labels"].shape[1] == 512 for b in batches["reference"])
    assert all(int((b["labels"] == -100).sum()) == 0 for b in batches["reference"])  # pad id, as the lab
    pipeline, hf = (training.summarize(batches[s], 1.0, 0.0, [0.0]) for s in ("pipeline", "hf_defaults"))
    assert pipeline["padded_tokens"] < hf["padded_tokens"]  # length grouping pads less
    # Same rows, same collator: the pipeline and HF's defaults differ only in order.
    rows = examples[:4]
    same = [training.collate(s, rows, tokenizer, model) for s in ("pipeline", "hf_defaults")]
    assert all((same[0][k] == same[1][k]).all() for k in same[0])


def test_infer_path_and_one_at_a_time_give_identical_greedy_outputs(tiny, params):
    import torch

    model, tokenizer = tiny
    with torch.no_grad():  # a "trained" adapter, so that merging it changes the weights
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.02, generator=torch.Generator().manual_seed(1))
    dialogues, _ = synthetic.synthetic_texts(5, 300, seed=2)
    merged = inference.merged_copy(model)
    for m in (merged, model.get_base_model()):
        inference.fix_length(m, 6)
    cfg = params.generate.model_copy(update={"max_new_tokens": 6, "batch_size": 2, "num_beams": 1,
                                             "no_repeat_ngram_size": 0})
    batched = inference.pipeline(merged, tokenizer, dialogues, params.prompt, cfg, "cpu")
    looped = inference.one_at_a_time(model, tokenizer, dialogues, params.prompt, 6, "cpu")
    assert batched == looped
    # Fixed length even where the caller sets only the max, as stages.infer does.
    ids = tokenizer(dialogues[:1], return_tensors="pt").input_ids
    assert merged.generate(input_ids=ids, max_new_tokens=6).shape[1] == 1 + 6  # start token + 6


def test_results_json_has_the_documented_keys(tmp_path):
    workload = run.Workload(train_batch_size=2, train_steps=1, infer_dialogues=3, infer_batch_size=2, new_tokens=3)
    fake_overhead = {"cli": {"stages.params": {"best_s": 0.5, "runs_s": [0.5], "exit_code": 0, "imports_torch": False}},
                     "dvc": {"skipped": "no demo project in this test"}}
    results = run.run_shape("tiny", workload, fake_overhead)
    results = json.loads(json.dumps(results))  # what the JSON file holds
    assert {"shape", "device", "threads", "model", "workload", "training", "inference", "overhead",
            "ratios", "targets"} <= set(results)
    assert set(results["training"]["paths"]) == set(training.STRATEGIES)
    assert set(results["inference"]["paths"]) == set(inference.PATHS)
    for r in results["training"]["paths"].values():
        assert {"samples_per_s", "target_tokens_per_s", "peak_memory_mb", "padding_share"} <= set(r)
        assert r["samples"] == 2 and r["peak_memory_mb"] > 0
    for r in results["inference"]["paths"].values():
        assert {"dialogues_per_s", "peak_memory_mb"} <= set(r)
    assert results["inference"]["agreement"]["one_at_a_time_identical_to_pipeline"] == 3
    assert [t["target"] for t in results["targets"]][:len(report.TARGETS)] == [t[0] for t in report.TARGETS]
    assert results["targets"][-1]["met"] is None  # dvc no-op skipped, not passed
    table = report.markdown(results)
    assert "| pipeline |" in table and "skipped" in table


def test_params_validation_does_not_import_torch():
    assert overhead.imports_torch("stages.params") is False
    assert overhead.imports_torch("torch.distributed.run", "--help") is True  # the probe can see torch


def test_dvc_noop_is_skipped_where_the_pipeline_never_ran(tmp_path):
    assert "skipped" in overhead.dvc_noop(tmp_path)


@pytest.mark.parametrize("name, tflops", [
    ("NVIDIA H200", 989), ("NVIDIA H100 80GB HBM3", 989), ("NVIDIA GH200 480GB", 989),  # SXM parts
    ("NVIDIA H100 PCIe", 756), ("NVIDIA H100 NVL", 835), ("NVIDIA H200 NVL", 835),
    ("NVIDIA A100-SXM4-80GB", 312), ("NVIDIA A100-PCIE-40GB", 312), ("NVIDIA A100 80GB PCIe", 312),
    ("NVIDIA L40S", 362), ("NVIDIA L4", 121),
    ("NVIDIA L40", None), ("Tesla T4", None), ("NVIDIA A10G", None), ("cpu", None),  # not in the table
])
def test_peak_flops_is_the_datasheet_dense_bf16_peak_by_device_name(name, tflops):
    assert gpu.peak_flops(name) == (None if tflops is None else tflops * 1e12)


def test_peak_note_says_what_mfu_is_against_or_that_it_is_not_reported():
    assert gpu.peak_note("NVIDIA H200", 989e12) == "MFU against 989 TFLOP/s (the datasheet dense bf16 peak)"
    assert gpu.peak_note("NVIDIA H200", 800e12, "--peak-tflops") == "MFU against 800 TFLOP/s (--peak-tflops)"
    assert gpu.peak_note("Tesla T4", None) == "MFU not reported: no datasheet dense bf16 peak known for Tesla T4"


# Slow (pyproject.toml's marker): every phase of the benchmark, in turn.
@pytest.mark.slow
def test_gpu_benchmark_tiny_runs_every_phase_on_cpu(tmp_path, monkeypatch, capsys):
    """--tiny: every phase of the GPU benchmark runs on a CPU with demo/tiny-t5, 2 timed steps per
    training row, or is skipped for needing CUDA with the reason in the table; JSON and table agree."""
    for name in ("TQDM_DISABLE", "HF_DATASETS_DISABLE_PROGRESS_BARS"):  # main() sets them: undo after
        monkeypatch.setenv(name, "1")
    gpu.main(["--tiny", "--out", str(tmp_path)])  # in-process: the imports are paid already
    results = json.loads((tmp_path / "gpu-tiny.json").read_text())
    rows = results["rows"]
    assert results["complete"] and list(rows) == [gpu.row_name(p, gpu.TINY) for p in gpu.PHASES]
    assert {n for n, r in rows.items() if r["status"] != "ok"} == {"compile"}
    assert rows["compile"]["status"] == "skipped" and rows["compile"]["reason"].startswith("needs CUDA: ")
    for name in ("project", "hf_defaults", "bare_loop", "base_fp32", "micro_batch_x1", "eager_attention"):
        r = rows[name]
        assert (r["steps"], r["examples"]) == (2, 8), name  # the effective batch 2 x 2 in every row
        assert r["tokens_per_s"] > 0 and r["model_tflops"] > 0 and r["mfu"] is None  # no peak known for a CPU
    assert rows["micro_batch_x1"]["settings"].startswith("4 x 1, ")
    assert "fp32 base" in rows["project"]["settings"]  # train.base_weights: auto, on a CPU
    assert "fp32 base" in rows["base_fp32"]["settings"] and "eager" in rows["eager_attention"]["settings"]
    cost = rows["eval_checkpoint"]
    assert cost["evaluate_s"] > 0 and cost["checkpoint_mb"] > 0 and cost["events_per_run"] == 10  # 1000 / 100
    generated = [rows[name] for name in ("generate@2", "generate@4", "generate@all")]
    assert [(g["batches"], g["decode_steps"]) for g in generated] == [(4, 16), (2, 8), (1, 4)]
    assert rows["one_at_a_time"]["batches"] == 2
    for name in ("static_cache@all", "static_cache@4"):  # a static cache gives the dynamic cache's outputs
        assert rows[name]["same_outputs"] == 8 and rows[name]["first_call_s"] > 0
    profile = rows["decode_profile"]
    assert profile["aten_ops"] > 0 and len(profile["top_ops"]) == 10 and profile["cuda_kernels"] is None
    out = capsys.readouterr().out
    table = (tmp_path / "gpu-tiny.md").read_text()
    assert table in out and "Incomplete" not in table
    assert "| project | peer, training | 2 x 2, fp32, fp32 base, sdpa |" in table
    assert "| compile | variant, training |" in table and "skipped: needs CUDA: " in table
    assert "MFU not reported: no datasheet dense bf16 peak known for cpu" in table
    assert "Decode step, batch 4: " in table


def test_gpu_benchmark_records_a_failed_phase_and_runs_the_next(tmp_path, monkeypatch):
    import dataclasses

    import torch

    def out_of_memory(bench):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")

    phases = tuple(dataclasses.replace(p, run=out_of_memory) if p.name == "generate@1" else p for p in gpu.PHASES)
    monkeypatch.setattr(gpu, "PHASES", phases)
    gpu.main(["--tiny", "--only", "generate@1,generate@all", "--out", str(tmp_path)])
    rows = json.loads((tmp_path / "gpu-tiny.json").read_text())["rows"]
    assert list(rows) == ["generate@4", "generate@all"]
    assert rows["generate@4"]["status"] == "failed"
    assert rows["generate@4"]["reason"] == "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert rows["generate@all"]["status"] == "ok" and rows["generate@all"]["dialogues"] == 8
    assert "| generate@4 | variant, generation | a larger batch |" in (tmp_path / "gpu-tiny.md").read_text()


def test_gpu_benchmark_cut_mid_run_leaves_the_rows_it_finished(tmp_path, monkeypatch):
    """A run killed during a phase (a job's time limit) has written every finished row and says
    which phase was running."""
    import dataclasses

    def cut(bench):
        raise KeyboardInterrupt  # not an Exception: nothing in the run catches it, as with a kill

    phases = tuple(dataclasses.replace(p, run=cut) if p.name == "decode_profile" else p for p in gpu.PHASES)
    monkeypatch.setattr(gpu, "PHASES", phases)
    with pytest.raises(KeyboardInterrupt):
        gpu.main(["--tiny", "--only", "generate@all,decode_profile", "--out", str(tmp_path)])
    results = json.loads((tmp_path / "gpu-tiny.json").read_text())
    assert not results["complete"] and results["running"] == "decode_profile"
    assert list(results["rows"]) == ["generate@all"] and results["rows"]["generate@all"]["status"] == "ok"
    table = (tmp_path / "gpu-tiny.md").read_text()
    assert table.startswith("Incomplete: written as decode_profile started") and "| generate@all |" in table


def test_gpu_benchmark_skips_what_the_time_budget_cannot_hold(tmp_path):
    gpu.main(["--tiny", "--budget-s", "0", "--only", "project,generate@all", "--out", str(tmp_path)])
    results = json.loads((tmp_path / "gpu-tiny.json").read_text())
    assert results["complete"]
    assert {r["status"] for r in results["rows"].values()} == {"skipped"}
    assert all(r["reason"].startswith("time budget") for r in results["rows"].values())
    for bad in (["--only", "nonsense"], ["--budget-s", "-1"]):
        with pytest.raises(SystemExit):
            gpu.main(["--tiny", *bad])


def test_step_timer_times_the_steps_after_warmup_and_stops_at_the_deadline():
    import time
    from types import SimpleNamespace

    control = SimpleNamespace(should_training_stop=False)
    timer = training.step_timer(warmup=1, deadline=time.perf_counter() + 3600, device="cpu")
    for step in (1, 2, 3):
        timer.on_step_end(None, SimpleNamespace(global_step=step, max_steps=3), control)
    assert (timer.steps, control.should_training_stop) == (2, False) and timer.seconds > 0
    cut = training.step_timer(warmup=1, deadline=time.perf_counter() + 0.2, device="cpu")
    cut.on_step_end(None, SimpleNamespace(global_step=1, max_steps=9), control)
    time.sleep(0.3)
    cut.on_step_end(None, SimpleNamespace(global_step=2, max_steps=9), control)
    assert cut.steps == 1 and control.should_training_stop  # cut at the step that ended past the deadline


def test_flops_formula_matches_a_count_over_the_models_linear_layers(tiny, tmp_path):
    """2 * (N_src * T_src + N_tgt * T_tgt) is what one forward pass multiplies, counted by a hook
    on every linear layer (rows in x weights): the decoder's cross-attention k and v run on the
    encoder's output, once per source token, so they are source weights."""
    import torch

    from benchmarks import rehearsal
    from demo.make_tiny_t5 import build_model

    base = build_model(300, seed=0)
    source, target = torch.randint(3, 300, (1, 37)), torch.randint(3, 300, (1, 11))  # no padding
    for model in (base, tiny[0]):  # plain, and with LoRA on q and v (cross-attention's v included)
        counted = 0

        def count(module, inputs, output):
            nonlocal counted
            counted += 2 * (inputs[0].numel() // module.in_features) * module.weight.numel()

        hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, torch.nn.Linear)]
        with torch.no_grad():
            model(input_ids=source, labels=target)
        for hook in hooks:
            hook.remove()
        n_src, n_tgt = gpu.weights_per_token(model)
        assert counted == 2 * (n_src * source.shape[1] + n_tgt * target.shape[1])
    # The rehearsal counts the saved model's shape on the meta device: the same split.
    base.save_pretrained(tmp_path / "model")
    assert rehearsal.matmul_weights(tmp_path / "model") == gpu.weights_per_token(base)


def test_training_figures_count_only_the_steps_this_run_trained():
    from benchmarks import rehearsal

    metrics = {"steps": 4, "resumed_from_step": 2, "wall_time_s": 3.0, "input_tokens_per_second": 100.0,
               "batch_size": 8, "effective_batch_size": 16}
    figures = rehearsal.training_figures(metrics, (1000, 500), ratio=0.5, peak=None)
    assert figures["steps_trained"] == 2 and figures["seconds_per_step"] == 1.5  # not 3.0 / 4
    assert figures["tokens_per_s"] == 150.0  # this run's source tokens and their targets, per second
    assert figures["model_tflops"] == round(6 * (1000 * 300 + 500 * 150) / 3.0 / 1e12, 3)
    # Resumed at its last step: nothing was trained, so no rate (not steps / ~0 s).
    finished = rehearsal.training_figures(metrics | {"resumed_from_step": 4, "wall_time_s": 0.02}, (1000, 500),
                                          ratio=0.5, peak=989e12)
    assert finished["steps_trained"] == 0
    assert finished["seconds_per_step"] is None and finished["tokens_per_s"] is None and finished["mfu"] is None


def test_preflight_imports_each_dependency_and_holds_it_to_pyproject_floors(tmp_path):
    from benchmarks import rehearsal

    assert rehearsal.preflight() == []  # this environment is the pinned set
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\ndependencies = ["transformers>=99", "no-such-distribution>=1", '
                         '"wandb>=999", "pandas>=1", "ruamel.yaml"]\n')
    import transformers

    problems = rehearsal.preflight(pyproject)
    assert problems == [
        f"transformers {transformers.__version__} is here; pyproject.toml asks for transformers>=99",
        "no-such-distribution does not import (ModuleNotFoundError: No module named 'no_such_distribution')",
    ]  # wandb is not imported with tracking off; pandas, ruamel.yaml and dulwich pass


# Slow (pyproject.toml's marker): the pipeline twice, then scaled to two processes, about 16
# processes that each load torch and transformers.
@pytest.mark.slow
def test_rehearsal_tiny_cut_then_rerun_without_git(tmp_path, monkeypatch, capsys):
    """The GPU rehearsal's --tiny mode on a machine with no `git` command: cut during training as
    `timeout` cuts a run (SIGTERM to the process group), it has left the table of the stages it
    finished; rerun in the same workdir, it trains from step 0 (not from the cut run's checkpoint),
    runs the real `dvc repro` in a scratch project with synthetic DialogSum-shaped data and a random
    tiny model, the LoRA model in fp32 outside DVC, and train_lora and infer with 2 processes."""
    import os
    import shutil
    import signal
    import subprocess
    import sys
    import time

    from dulwich.repo import Repo

    from benchmarks import rehearsal
    from stages.params import read_yaml

    bare = tmp_path / "bin"  # a PATH without git (the stages' env adds this interpreter's folder)
    bare.mkdir()
    monkeypatch.setenv("PATH", str(bare))
    for name in ("TQDM_DISABLE", "HF_DATASETS_DISABLE_PROGRESS_BARS"):  # main() sets them: undo after
        monkeypatch.setenv(name, "1")
    work = tmp_path / "work"
    work.mkdir()
    assert shutil.which("git") is None and shutil.which("git", path=rehearsal.stage_env(work)["PATH"]) is None
    checkpoints = work / load_params(ROOT / "params.yaml").paths.checkpoint_dir("lora")

    # Run 1, cut once training has saved its first checkpoint.
    with (tmp_path / "cut.log").open("w") as output:
        proc = subprocess.Popen([sys.executable, "-m", "benchmarks.rehearsal", "--tiny", "--workdir", str(work),
                                 "--out", str(tmp_path)], cwd=ROOT, stdout=output, stderr=subprocess.STDOUT,
                                start_new_session=True)
        deadline = time.monotonic() + 480
        while not (checkpoints / "checkpoint-2" / "trainer_state.json").is_file():
            assert proc.poll() is None, (tmp_path / "cut.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint in 8 minutes"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGTERM)  # what `timeout` sends at its limit
        assert proc.wait(timeout=120) != 0
        # The cut run's `dvc repro` winds down after the rehearsal itself (it waits for its stage);
        # a rerun started before it is gone finds DVC's lock on the workdir, as a user would.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
    cut = json.loads((tmp_path / "rehearsal-tiny.json").read_text())
    assert not cut["complete"] and cut["training"] is None
    assert {"split", "tokenize"} <= set(cut["stages"]) and cut["running"] not in cut["stages"]
    assert all(s["wall_s"] > 0 for s in cut["stages"].values())
    assert f"Incomplete: written as {cut['running']} started" in (tmp_path / "rehearsal-tiny.md").read_text()
    assert (checkpoints / "checkpoint-2").is_dir()  # what a rerun could resume from

    # Run 2, in the same workdir: whole.
    rehearsal.main(["--tiny", "--workdir", str(work), "--out", str(tmp_path)])
    results = json.loads((tmp_path / "rehearsal-tiny.json").read_text())
    lock = read_yaml((work / "dvc.lock").read_text())
    assert results["complete"] and set(results["stages"]) == set(lock["stages"])  # every stage DVC ran, timed
    assert all(s["wall_s"] > 0 for s in results["stages"].values())
    train = results["training"]
    assert train["stage"] in lock["stages"] and train["stage"] == cut["running"]  # run 1 was cut training
    assert (train["steps"], train["resumed_from_step"], train["steps_trained"]) == (4, 0, 4)  # started clean
    assert train["seconds_per_step"] == round(train["wall_time_s"] / 4, 3)
    assert train["batch_size_settled"] == rehearsal.TINY_OVERRIDES["train"]["batch_size"] and train["model_tflops"] > 0
    assert train["mfu"] is None  # no bf16 peak for a CPU
    dtypes = {name: g["dtype"] for name, g in results["generation"].items()}
    assert len(dtypes) == 3 and set(dtypes.values()) == {"float32"}  # auto on CPU is fp32, and the fp32 run
    split = json.loads((work / "metrics" / "records" / "split.json").read_text())
    assert (split["train"]["rows"], split["validation"]["rows"]) == (160, 24)
    assert (split["test"]["rows"], split["test"]["dialogues"]) == (24, 8)  # three references each
    test = __import__("pandas").read_parquet(work / "data" / "split" / "test.parquet")
    assert test["id"].iloc[:3].tolist() == ["test_0_1", "test_0_2", "test_0_3"]
    # 1 process (DVC's run) and 2, each leasing its devices from the declared pool
    scaling = results["scaling"]
    one, two = scaling["runs"]["1"], scaling["runs"]["2"]
    assert one["devices"] in rehearsal.TINY_POOL.split(",") and two["devices"] == rehearsal.TINY_POOL
    assert two["effective_batch_size"] == 2 * one["effective_batch_size"]  # the same batch per process
    assert all(r[k] > 0 for r in (one, two) for k in ("training_tokens_per_s", "generated_tokens_per_s"))
    assert scaling["training_speedup"] == round(two["training_tokens_per_s"] / one["training_tokens_per_s"], 2)
    assert scaling["generation_speedup"] > 0
    assert two["same_predictions_as_one_process"] == two["dialogues"] == 8  # DVC's adapter, dealt to 2
    with Repo(str(work)) as repo:  # committed without git
        assert repo[repo.head()].author == rehearsal.IDENTITY
    table = (tmp_path / "rehearsal-tiny.md").read_text()
    assert f"| {train['stage']} |" in table and "Incomplete" not in table
    assert "fp32 (outside DVC)" in table and "| 2 | rehearsal-cpu-0,rehearsal-cpu-1 |" in table
    assert "8 of 8 predictions as with one" in table
    assert table in capsys.readouterr().out
    assert "MFU not reported: no datasheet dense bf16 peak known for cpu" in table


def test_faithfulness_benchmark_times_the_score_stages_new_work(capsys):
    rows = faithfulness.dialogsum_shaped_rows(4)
    assert [len(r["references"]) for r in rows] == [3] * 4  # DialogSum's test shape
    assert rows[0]["references"][0] == rows[0]["prediction"] != rows[0]["references"][1]
    faithfulness.main(["--dialogues", "4", "--repeats", "1"])
    out = capsys.readouterr().out
    assert out.startswith("4 dialogues x 3 references (12 rows), best of 1:")
    for what in ("faithfulness", "human row", "one variant", "added"):
        assert f"| {what} | " in out


def test_sizes_benchmark_tiny_measures_each_setting_and_skips_kbit_without_bitsandbytes(tmp_path, capsys):
    """The sizes table's script on CPU: each setting loads, trains and generates as the stages
    do; int8/int4 need a GPU (and bitsandbytes), reported as skipped rather than failed."""
    from benchmarks import sizes

    sizes.main(["--tiny", "--settings", "fp32,bf16+ckpt,int4+ckpt", "--out", str(tmp_path)])
    results = json.loads((tmp_path / "sizes-tiny.json").read_text())
    fp32, bf16, int4 = results["settings"]
    for r in (fp32, bf16):
        assert r["train_peak_mb"] > 0 and r["generate_bf16_peak_mb"] > 0 and math.isfinite(r["last_loss"])
    assert bf16["gradient_checkpointing"] and not fp32["gradient_checkpointing"]
    assert int4 == {"setting": "int4+ckpt", "skipped": "k-bit weights need a CUDA GPU"}
    assert "| int4+ckpt | skipped" in capsys.readouterr().out
    for bad in (["--settings", "fp16"], ["--steps", "0"]):
        with pytest.raises(SystemExit):
            sizes.main(["--tiny", *bad])


def test_the_size_shapes_are_flan_t5s_parameter_counts():
    """benchmarks/synthetic.py SIZES against the parameter counts benchmarks/README.md's sizes table uses."""
    from benchmarks.synthetic import base_shape_model

    counts = {size: sum(p.numel() for p in base_shape_model(0, "meta", size).parameters())
              for size in ("small", "base", "large", "xl", "xxl")}
    assert counts == {"small": 76_961_152, "base": 247_577_856, "large": 783_150_080, "xl": 2_849_757_184,
                      "xxl": 11_135_332_352}
