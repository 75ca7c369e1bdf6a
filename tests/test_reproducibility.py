"""Resume after a crash, the same bits every time, and no secret in any output.

Each test works on a copy of conftest's built project (the demo's params cut to a few steps) and
runs the real `dvc` commands, as a user on a GPU box would.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from demo.run import stage_env
from stages.params import load_params
from tests.conftest import EVERY, STEPS, copy_project, dvc, set_params

FAKE_KEY = "wandb-fake-key-7f3c9e21d4b8a6f0e5c1"
FAKE_HF_TOKEN = "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"


def lock_outputs(project: Path) -> dict[str, str]:
    """Every output path in dvc.lock with its recorded hash."""
    from stages.params import read_yaml

    lock = read_yaml((project / "dvc.lock").read_text())
    return {out["path"]: out.get("md5") for stage in lock["stages"].values() for out in stage.get("outs", [])}


def test_killed_training_resumes_to_the_same_adapter(built_project, tmp_path):
    """The built project (``STEPS`` steps, a checkpoint every ``EVERY``) is the uninterrupted run;
    a copy of it loses its adapter, trains again and is killed once its first checkpoint is written."""
    crashed = copy_project(built_project, tmp_path / "crashed")
    shutil.rmtree(crashed / "models" / "lora")

    checkpoint = crashed / "checkpoints" / "lora" / f"checkpoint-{EVERY}" / "trainer_state.json"
    proc = subprocess.Popen([sys.executable, "-m", "stages.train_lora"], cwd=crashed, env=stage_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not checkpoint.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "training finished before it could be killed"
    assert not (crashed / "models" / "lora").exists()

    result = dvc(crashed, "repro", "train_lora")
    log = result.stdout + result.stderr
    step = int(re.search(r"resuming from \S+checkpoint-(\d+) \(step \d+\)", log).group(1))
    assert step in (EVERY, STEPS)
    metrics = json.loads((crashed / "metrics" / "records" / "train_lora.json").read_text())
    reference = json.loads((built_project / "metrics" / "records" / "train_lora.json").read_text())
    assert metrics["resumed_from_step"] == step and metrics["steps"] == reference["steps"] == STEPS
    adapter = "models/lora/adapter_model.safetensors"
    assert (crashed / adapter).read_bytes() == (built_project / adapter).read_bytes()
    assert not list((crashed / "checkpoints" / "lora").glob("checkpoint-*"))  # cleared on success


# Outputs that record how long things took: they cannot repeat bit for bit, by design.
TIMED = {"metrics/train_lora.json", "metrics/train_lora/plots/metrics", "metrics/infer_base.json",
         "metrics/infer_lora.json", "metrics/records/train_lora.json", "metrics/records/infer_base.json",
         "metrics/records/infer_lora.json"}
COST_KEYS = {"wall_time_s", "samples_per_second", "input_tokens_per_second", "peak_memory_mb",
             "dialogues_per_second", "generated_tokens_per_second"}


@pytest.fixture(scope="module")
def twin_runs(built_project, tmp_path_factory) -> list[Path]:
    """The shared built project, and a copy of it where every stage ran again (`dvc repro -f`),
    with W&B switched on (offline) and planted HF and W&B keys in the environment.

    One rerun serves both checks: the same bits every time (W&B changes no output; ``tracking``
    is declared by no stage), and no secret in any output of any stage, the one that talks to W&B
    (training) included."""
    env_before = dict(os.environ)
    os.environ.update(WANDB_API_KEY=FAKE_KEY, HF_TOKEN=FAKE_HF_TOKEN, WANDB_MODE="offline")
    try:
        again = set_params(copy_project(built_project, tmp_path_factory.mktemp("again") / "project"),
                           tracking__wandb=True)
        assert "Running stage 'train_lora'" in dvc(again, "repro", "--force").stdout
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    return [built_project, again]


def test_two_fresh_runs_give_identical_outputs(twin_runs):
    first, second = (lock_outputs(p) for p in twin_runs)
    assert first.keys() == second.keys()
    differing = {path for path in first if first[path] != second[path]}
    shipped = str(load_params(twin_runs[0] / "params.yaml").paths.published_adapter())  # with its card
    assert differing <= TIMED | {shipped}, f"outputs differ between identical runs: {differing - TIMED}"
    # The adapter as it ships: the same files, and the same card but for the code's commit, which
    # says "with uncommitted changes" where the rerun's params.yaml switched W&B on.
    a, b = (sorted(p.name for p in (project / shipped).iterdir()) for project in twin_runs)
    assert a == b
    for name in a:
        texts = [(project / shipped / name).read_bytes() for project in twin_runs]
        if name == "README.md":
            texts = [[line for line in text.splitlines() if not line.startswith(b"- code: git commit")]
                     for text in texts]
        assert texts[0] == texts[1], name
    # The timed outputs agree on everything but time.
    for name in (f"{folder}{stage}.json" for folder in ("", "records/")
                 for stage in ("train_lora", "infer_base", "infer_lora")):
        a, b = (json.loads((p / "metrics" / name).read_text()) for p in twin_runs)
        untimed = lambda m: {k: v for k, v in m.items() if k not in COST_KEYS}  # noqa: E731
        assert untimed(a) == untimed(b), name
    for tsv in ("train/loss.tsv", "eval/loss.tsv"):
        curves = [(p / "metrics/train_lora/plots/metrics" / tsv).read_text() for p in twin_runs]
        rows = [[line.split("\t")[:2] for line in text.splitlines()] for text in curves]
        assert rows[0] == rows[1]


def test_lock_pins_model_and_library_versions(twin_runs):
    metrics = json.loads((twin_runs[0] / "metrics" / "records" / "train_lora.json").read_text())
    assert metrics["model_revision"].startswith("sha256:")
    assert set(metrics["versions"]) >= {"torch", "transformers", "peft", "datasets"}


def test_no_secret_in_any_output(twin_runs):
    project = twin_runs[1]
    assert (project / "wandb").is_dir()  # W&B did run, offline
    for path in project.rglob("*"):
        # tests/ holds this very file, with the planted key in it
        if path.is_file() and not {".git", "tests"} & set(path.parts):
            data = path.read_bytes()
            assert FAKE_KEY.encode() not in data, path
            assert FAKE_HF_TOKEN.encode() not in data, path
