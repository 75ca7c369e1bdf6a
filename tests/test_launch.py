"""A stage run as several processes (stages/launch.py), as its user meets it on CPU (gloo): a
signal stops every worker and writes nothing; a failure is one line, rank 0's, once; a machine
that lists a GPU torch cannot use, or fewer GPUs than processes, is refused before training."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from demo.run import stage_env
from stages import launch
from tests.conftest import copy_project, set_params
from tests.test_devices import fake_nvidia_smi

ADAPTER = "models/lora/adapter_model.safetensors"


def stage(project: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "stages.train_lora"], cwd=project, env=env or stage_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def one_gpu_box(tmp_path: Path) -> dict:
    """The stages' environment on a box whose nvidia-smi lists one GPU (this torch sees none)."""
    env = stage_env()
    env["PATH"] = f"{fake_nvidia_smi(tmp_path / 'bin', 1)}{os.pathsep}{env['PATH']}"
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_sigterm_stops_every_worker_and_writes_nothing(built_project, tmp_path):
    project = set_params(copy_project(built_project, tmp_path / "p"), train__processes=2,
                         train__batch_size=4, train__max_steps=5000, train__eval_steps=1000)
    before = {p: (project / p).read_bytes() for p in (ADAPTER, "metrics/train_lora.json")}
    proc = stage(project)
    deadline = time.monotonic() + 240
    workers: list[psutil.Process] = []
    while time.monotonic() < deadline and proc.poll() is None:
        workers = [c for c in psutil.Process(proc.pid).children(recursive=True)
                   if "stages.train_lora" in " ".join(c.cmdline())]
        if len(workers) == 2 and all(c.cpu_times().user > 3 for c in workers):  # importing, or training
            break
        time.sleep(0.5)
    assert len(workers) == 2 and proc.poll() is None, proc.stderr.read()[-3000:] if proc.poll() is not None else ""
    proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-3000:]
    assert time.monotonic() - signalled < 30, "the workers did not stop at once"
    gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, f"workers still running 10 s after the stage exited: {alive}"
    assert "Traceback" not in err and "ChildFailedError" not in err
    assert [line for line in err.splitlines() if line.startswith("interrupted")] == [
        "interrupted (SIGTERM): nothing was written; rerun to resume"]
    assert {p: (project / p).read_bytes() for p in before} == before


def test_a_failing_rank_is_one_error_line(built_project, tmp_path):
    # Refused in each rank, where the model loads (params.py accepts it: a GPU may have it)
    project = set_params(copy_project(built_project, tmp_path / "p"), train__processes=2,
                         train__base_weights="int8")
    proc = stage(project)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1
    assert error_lines(err) == [
        "error: train.base_weights: int8 needs a CUDA GPU (bitsandbytes); use fp32 or bf16 here"], err[-3000:]
    assert "Traceback" not in err and "interrupted" not in err


def test_rank_zeros_real_error_comes_before_a_stopped_ranks_line(tmp_path):
    (tmp_path / "rank-1").write_text("143\ninterrupted (SIGTERM): nothing was written; rerun to resume\n")
    (tmp_path / "rank-2").write_text("1\nerror: out of memory on rank 2\n")
    assert launch.failure(tmp_path, {1: 143, 2: 1}).line == "error: out of memory on rank 2"
    (tmp_path / "rank-0").write_text("1\nerror: rank 0's own\n")
    failed = launch.failure(tmp_path, {0: 1, 1: 143, 2: 1})
    assert (failed.line, failed.status) == ("error: rank 0's own", 1)
    crashed = launch.failure(tmp_path / "none", {1: -9, 0: -15})
    assert (crashed.line, crashed.status) == ("error: process 0 of the stage exited with status 143", 143)


def test_a_gpu_box_whose_torch_sees_no_gpu_is_refused_before_training(built_project, tmp_path):
    """Never a silent CPU run: nvidia-smi lists a GPU, this (CPU) torch cannot use it."""
    project = copy_project(built_project, tmp_path / "p")
    proc = stage(project, one_gpu_box(tmp_path))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert [line.split(" visible, but")[0] for line in err.strip().splitlines()[-1:]] == [
        "error: CUDA_VISIBLE_DEVICES=0: GPU 0"], err[-2000:]
    assert "make setup TORCH=cuda" in err and "Loading weights" not in err
    assert not list((project / "checkpoints").glob("*/checkpoint-*"))


def test_more_processes_than_gpus_is_refused_before_loading(built_project, tmp_path):
    project = set_params(copy_project(built_project, tmp_path / "p"), train__processes=2)
    proc = stage(project, one_gpu_box(tmp_path))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert error_lines(err) == [
        "error: train.processes: 2 processes need 2 GPUs, one each, but 1 is visible (0)"], err[-2000:]
    assert "Loading weights" not in err
