"""Outgrowing one process: data-parallel training and inference (gloo on CPU), across two nodes.
The real commands, on the offline sample (queued experiments: tests/test_queue.py)."""

from __future__ import annotations

import json

import pytest

from stages.params import load_params
from tests.conftest import FEW_STEPS, STEPS, copy_project, dvc, set_params


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


# CPU threads per worker process, the same however the processes are spread over nodes. Unset,
# accelerate gives each CPU worker (physical cores / processes on its node) threads: 1 each for
# one node with 2 processes on 2 cores, 2 each for 2 nodes with 1 process; and a CPU's kernels
# may round a reduction split over 2 threads differently from one over 1 (on 2 cores here, 5
# LoRA steps at batch 16 end with other bytes at 1 and 2 threads).
THREADS = {"OMP_NUM_THREADS": "1"}
HALF = FEW_STEPS["batch_size"] // 2  # each of 2 processes' micro-batch: the built project's effective batch


@pytest.fixture(scope="module")
def two_processes(built_project, tmp_path_factory):
    """The built project trained again on 2 processes at half its micro-batch each (HALF)."""
    two = set_params(copy_project(built_project, tmp_path_factory.mktemp("two") / "p"),
                     train__batch_size=HALF, train__processes=2)
    with pytest.MonkeyPatch.context() as env:
        for name, value in THREADS.items():
            env.setenv(name, value)
        dvc(two, "repro", "train_lora")
    return two


def test_two_process_training_matches_one_process(built_project, two_processes):
    # Same effective batch: 2 * HALF x 1 process (the built project) == HALF x 2 processes, at the demo's
    # gradient accumulation in both.
    one, two = built_project, two_processes
    assert json.loads((one / "metrics" / "train_lora.json").read_text())["batch_size"] == 2 * HALF
    m1, m2 = (json.loads((p / "metrics" / "records" / "train_lora.json").read_text()) for p in (one, two))
    accumulation = load_params(one / "params.yaml").train.gradient_accumulation_steps
    assert m1["effective_batch_size"] == m2["effective_batch_size"] == 2 * HALF * accumulation
    assert m1["gradient_accumulation_steps"] == m2["gradient_accumulation_steps"] == accumulation
    assert m1["devices"] == m2["devices"] == "cpu"
    assert m2["steps"] == m1["steps"] == STEPS
    assert m2["best_eval_loss"] == pytest.approx(m1["best_eval_loss"], rel=0.05)
    assert {p.name for p in (two / "models" / "lora").iterdir()} >= {"adapter_config.json", "adapter_model.safetensors"}


def test_two_nodes_train_as_one_node_with_two_processes(built_project, two_processes, tmp_path):
    """2 "nodes" x 1 process on loopback, meeting through the c10d rendezvous as a Slurm job's
    nodes do (slurm/train.sbatch), train what 1 node x 2 processes trains: the same loss curve
    and the same adapter, when each process computes with as many CPU threads in both (THREADS).
    Which node's process the rendezvous makes rank 0 does not matter: every rank computes the same
    way on its shard, and gloo's sum over 2 ranks is one commutative addition."""
    import socket
    import subprocess
    import sys

    from demo.run import stage_env

    project = set_params(copy_project(built_project, tmp_path / "p"), train__batch_size=HALF)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    nodes = []
    for node in (0, 1):
        env = dict(stage_env(), STAGES_NNODES="2", STAGES_NODE_RANK=str(node),
                   STAGES_RDZV_ENDPOINT=f"127.0.0.1:{port}", STAGES_RDZV_ID="two-nodes-test", **THREADS)
        nodes.append(subprocess.Popen([sys.executable, "-m", "stages.train_lora"], cwd=project, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for proc in nodes:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
    curve = "metrics/train_lora/plots/metrics/train/loss.tsv"
    rows = [[line.split("\t")[:2] for line in (p / curve).read_text().splitlines()] for p in (project, two_processes)]
    assert rows[0] == rows[1]
    adapter = "models/lora/adapter_model.safetensors"
    assert (project / adapter).read_bytes() == (two_processes / adapter).read_bytes()


def test_two_process_inference_matches_one_process(built_project, tmp_path):
    one = built_project  # one process
    two = set_params(copy_project(one, tmp_path / "two"), generate__processes=2)
    dvc(two, "repro", "infer@base")
    rows1, rows2 = (read_jsonl(p / "data" / "predictions" / "base.jsonl") for p in (one, two))
    assert [r["id"] for r in rows2] == [r["id"] for r in rows1]
    assert [r["prediction"] for r in rows2] == [r["prediction"] for r in rows1]
    assert json.loads((two / "metrics" / "records" / "infer_base.json").read_text())["processes"] == 2

