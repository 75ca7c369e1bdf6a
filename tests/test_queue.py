"""Experiments as a team runs them on one box: queued experiments share the machine's devices
through leases, a killed queued experiment resumes when queued again, and the loss curves are
there to read while training runs. The real `dvc queue` commands, on the offline sample."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from demo.run import stage_env
from tests.conftest import copy_project, dvc, git, set_params


def start_queue(project: Path, jobs: int, env: dict | None = None) -> None:
    """`dvc queue start`: its workers run on in the background, so no pipe of ours may reach them
    (a captured stdout would keep this call waiting until the whole queue is done)."""
    subprocess.run([sys.executable, "-m", "dvc", "queue", "start", "-j", str(jobs)], cwd=project,
                   env=env or stage_env(), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_queue(project: Path, timeout: float = 600) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = dvc(project, "queue", "status").stdout
        if "Running" not in status and "Queued" not in status:
            return status
        time.sleep(2)
    pytest.fail(f"the queue did not finish in {timeout} s:\n{status}")


def exp_ref(project: Path, name: str) -> str:
    refs = git(project, "for-each-ref", "--format=%(refname)", "refs/exps").split()
    return next(r for r in refs if r.endswith(f"/{name}"))


# Slow (pyproject.toml's marker): two queued experiments, one killed, ~100 s on 2 cores. What
# `make test` keeps of it: a resume after SIGKILL (test_reproducibility.py) and after SIGTERM and
# SIGINT (test_faults.py), and queued experiments (the next test).
@pytest.mark.slow
def test_a_killed_queued_experiment_resumes_when_queued_again(built_project, tmp_path):
    """Its checkpoints and their lock live in the repository's checkpoints folder, not in the
    temporary copy DVC runs it in and deletes: killed (SIGTERM, as `dvc queue kill` sends it), both
    stay; queued again with the same params, it resumes from them and trains to the end; once its
    adapter is saved both go (ten experiments once left nine `lora-<key>/` folders and nine
    `.lock` files). 30 steps, a checkpoint every 10: after the first, 20 steps are left to train
    while `dvc queue kill` reaches the stage. That the resumed adapter is the uninterrupted run's
    is test_reproducibility's and test_faults' to show."""
    project = copy_project(built_project, tmp_path / "p")
    steps = ("-S", "train.max_steps=30", "-S", "train.eval_steps=10")
    # --force --single-item train_lora: retrain, nothing else
    dvc(project, "exp", "run", "--queue", "--force", "--single-item", "-n", "first", *steps, "train_lora")
    start_queue(project, 1)
    deadline = time.monotonic() + 300
    checkpoint = None
    while checkpoint is None and time.monotonic() < deadline:
        checkpoint = next(iter(project.glob("checkpoints/lora-*/checkpoint-10/trainer_state.json")), None)
        time.sleep(0.5)
    assert checkpoint is not None, dvc(project, "queue", "logs", "first", check=False).stdout[-3000:]
    dvc(project, "queue", "kill", "first")
    assert "Failed" in wait_queue(project)
    assert checkpoint.is_file()  # outlived the experiment's temporary copy
    folder = checkpoint.parents[1]
    assert folder.with_name(f"{folder.name}.lock").is_file()

    dvc(project, "exp", "run", "--queue", "--force", "--single-item", "-n", "second", *steps, "train_lora")
    start_queue(project, 1)
    assert "Success" in wait_queue(project).split("second")[-1].splitlines()[0]
    logs = dvc(project, "queue", "logs", "second").stdout
    resumed = re.search(rf"resuming from {re.escape(str(folder))}/checkpoint-(\d+)", logs)
    assert resumed, logs[-3000:]
    record = json.loads(git(project, "show", f"{exp_ref(project, 'second')}:metrics/records/train_lora.json"))
    assert (record["resumed_from_step"], record["steps"]) == (int(resumed.group(1)), 30)
    # Once the adapter was in place its checkpoints went, and the lock with them: nothing left behind
    assert not list((project / "checkpoints").iterdir())


def test_queued_experiments_lease_different_devices_and_a_third_waits(built_project, tmp_path):
    """A declared pool of two devices, three experiments started at once: two run side by side on
    different devices, the third waits for one (its log says so)."""
    project = set_params(copy_project(built_project, tmp_path / "p"), generate__processes=1)
    run_env = dict(stage_env(), STAGES_DEVICE_POOL="slot-a,slot-b", STAGES_LEASE_DIR=str(tmp_path / "leases"))
    for tokens in (4, 5, 6):  # infer@base only (the target): short outputs, seconds each
        subprocess.run([sys.executable, "-m", "dvc", "exp", "run", "--queue", "-n", f"tokens-{tokens}",
                        "-S", f"generate.max_new_tokens={tokens}", "infer@base"], cwd=project, env=run_env,
                       check=True, capture_output=True)
    start_queue(project, 3, run_env)
    assert "Failed" not in wait_queue(project)
    logs = {n: dvc(project, "queue", "logs", f"tokens-{n}").stdout for n in (4, 5, 6)}
    assert any("waiting for 1 free device(s) of slot-a, slot-b" in text for text in logs.values())
    used = {}
    for n in (4, 5, 6):
        rev = exp_ref(project, f"tokens-{n}")
        used[n] = json.loads(git(project, "show", f"{rev}:metrics/records/infer_base.json"))["devices"]
    assert set(used.values()) <= {"slot-a", "slot-b"} and len(set(used.values())) == 2
    # `dvc exp show` reports each experiment beside its baseline, with its -S value
    shown = json.loads(dvc(project, "exp", "show", "--json").stdout)
    tokens = {exp["revs"][0]["data"]["params"]["params.yaml"]["data"]["generate"]["max_new_tokens"]
              for baseline in shown for exp in baseline.get("experiments") or []}
    assert tokens == {4, 5, 6}


def test_the_loss_curve_grows_while_training_runs(built_project, tmp_path):
    project = set_params(copy_project(built_project, tmp_path / "p"), train__max_steps=400,
                         train__logging_steps=2, train__eval_steps=200)
    loss = project / "metrics/train_lora/plots/metrics/train/loss.tsv"
    loss.unlink()  # the built run's rows (steps 5, 10, ...): only this run's may count
    proc = subprocess.Popen([sys.executable, "-m", "stages.train_lora"], cwd=project, env=stage_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        rows = []
        while len(rows) < 3 and proc.poll() is None and time.monotonic() < deadline:
            rows = loss.read_text().splitlines()[1:] if loss.is_file() else []
            time.sleep(0.5)
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert len(rows) >= 3  # rows while the stage runs, not only when it ends
        assert [int(row.split("\t")[0]) for row in rows[:3]] == [2, 4, 6]  # this run's logging steps
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)
