"""Faults a user's machine meets, injected the way they happen, on copies of the built project.

Each ends either in one clean line and nothing wrong recorded, or in a recovered run whose adapter
and metrics equal the uninterrupted run's: the built project itself (conftest's ``built_project``,
``STEPS`` steps, a checkpoint every ``EVERY``) is that reference for every test here.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from demo.run import stage_env
from tests.conftest import EVERY, ROOT, STEPS, copy_project, dvc, set_params
from tests.test_reproducibility import lock_outputs

ADAPTER = "models/lora/adapter_model.safetensors"
COST_KEYS = {"wall_time_s", "samples_per_second", "input_tokens_per_second", "peak_memory_mb",
             "resumed_from_step"}


def untimed_metrics(project: Path) -> dict:
    metrics = json.loads((project / "metrics" / "records" / "train_lora.json").read_text())
    return {k: v for k, v in metrics.items() if k not in COST_KEYS}


def assert_same_as_reference(project: Path, reference: Path) -> None:
    assert (project / ADAPTER).read_bytes() == (reference / ADAPTER).read_bytes()
    assert untimed_metrics(project) == untimed_metrics(reference)
    for tsv in ("train/loss.tsv", "eval/loss.tsv"):  # no phantom log or eval point
        rows = [[line.split("\t")[:2] for line in (p / "metrics/train_lora/plots/metrics" / tsv)
                 .read_text().splitlines()] for p in (project, reference)]
        assert rows[0] == rows[1], tsv


def _default_sigint() -> None:
    # A job started in the background by a non-interactive shell (as CI may run the suite)
    # inherits SIGINT ignored, and Python then never raises KeyboardInterrupt: give the stage the
    # Ctrl-C a terminal would deliver.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_training(project: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "stages.train_lora"], cwd=project, env=env or stage_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, f"training ended before {path.name} appeared:\n{proc.stderr.read()[-2000:]}"


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


# --- every stage declares the params sections it reads, once ---------------------------------

LIST_STAGES = """
import json, sys
from dvc.repo import Repo
out = {}
for stage in Repo(sys.argv[1]).index.stages:
    params = [key for dep in stage.deps if hasattr(dep, "params") for key in (dep.params or [])]
    out[stage.addressing] = [stage.cmd, params]
print(json.dumps(out))
"""


def test_stage_params_constants_match_dvc_yaml(built_project, tmp_path):
    """Each stage module's PARAMS (what stages.guard watches) is its `params:` list in dvc.yaml,
    as DVC itself resolves it, baselines included."""
    import importlib

    project = set_params(copy_project(built_project, tmp_path / "p"), baselines=["full"])
    listed = json.loads(subprocess.run([sys.executable, "-c", LIST_STAGES, str(project)], cwd=project,
                                       env=stage_env(), check=True, capture_output=True,
                                       text=True).stdout)
    assert any(name.startswith("train_baseline@") for name in listed)
    for name, (cmd, params) in listed.items():
        module = cmd.split("python -m ", 1)[1].split()[0]
        declared = importlib.import_module(module).PARAMS
        assert sorted(declared) == sorted(params), name


# --- 1. params edited while a stage runs; 4. a resume with nothing left to train ---------------

def test_params_edited_during_training_record_nothing_then_resume_finishes(built_project, tmp_path):
    project = copy_project(built_project, tmp_path / "p")
    lock_before = (project / "dvc.lock").read_bytes()
    proc = subprocess.Popen([sys.executable, "-m", "dvc", "repro", "-f", "-s", "train_lora"], cwd=project,
                            env=stage_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(project / f"checkpoints/lora/checkpoint-{EVERY}/trainer_state.json", proc)
    set_params(project, lora__r=8)  # someone edits params.yaml while it trains
    out, err = proc.communicate(timeout=600)
    assert proc.returncode != 0
    assert "error: params.yaml: lora.r changed while the stage ran; nothing was written" in err + out
    assert "Traceback" not in err + out
    assert (project / "dvc.lock").read_bytes() == lock_before  # r: 8 is not paired with r=32's adapter
    assert not (project / "models" / "lora").exists() or \
        (project / ADAPTER).read_bytes() == (built_project / ADAPTER).read_bytes()
    assert (project / f"checkpoints/lora/checkpoint-{STEPS}").is_dir()  # kept: the work is not lost

    # Put params back: the rerun finds training complete at the last checkpoint (as after a failed
    # final save) and finishes without a phantom step.
    set_params(project, lora__r=32)
    result = dvc(project, "repro", "train_lora")
    assert f"resuming from checkpoints/lora/checkpoint-{STEPS}" in result.stdout + result.stderr
    assert_same_as_reference(project, built_project)
    metrics = json.loads((project / "metrics" / "records" / "train_lora.json").read_text())
    assert metrics["steps"] == metrics["resumed_from_step"] == STEPS
    reference = json.loads((built_project / "metrics/records/train_lora.json").read_text())
    assert metrics["params_sha256"] == reference["params_sha256"]
    before, after = (lock_outputs(p) for p in (built_project, project))
    # train_lora.json: wall time and throughput. DVCLive's summary: same values, but a resumed run
    # replays the history from trainer_state.json, which the Trainer writes with sorted keys, so
    # the summary's keys come out in another order (stages/tracking.py could log them sorted).
    timed = {"metrics/train_lora.json", "metrics/records/train_lora.json", "metrics/train_lora/metrics.json"}
    summary = "metrics/train_lora/metrics.json"
    assert json.loads((project / summary).read_text()) == json.loads((built_project / summary).read_text())
    assert {k: v for k, v in after.items() if k not in timed} == {k: v for k, v in before.items() if k not in timed}
    assert not list((project / "checkpoints" / "lora").glob("checkpoint-*"))


def test_data_input_replaced_during_a_stage_records_nothing(built_project, tmp_path, monkeypatch):
    from stages import tokenize

    project = copy_project(built_project, tmp_path / "p")
    monkeypatch.chdir(project)
    before = (project / "metrics/records/tokenize.json").read_bytes()
    original = tokenize.tokenize_frame

    def and_the_split_changes(frame, *args):
        result = original(frame, *args)
        (project / "data/split/validation.parquet").write_bytes(
            (project / "data/split/test.parquet").read_bytes())
        return result

    monkeypatch.setattr(tokenize, "tokenize_frame", and_the_split_changes)
    with pytest.raises(SystemExit) as exit_:
        tokenize.main([])
    assert str(exit_.value.code).startswith("error: data/split/validation.parquet changed while the stage ran")
    assert (project / "metrics/records/tokenize.json").read_bytes() == before
    assert not [p for p in (project / "data").iterdir() if ".tmp-" in p.name]


# --- 2, 3. checkpoints that cannot be trusted ----------------------------------------------------

@pytest.fixture(scope="module")
def failed_final_save(built_project, tmp_path_factory) -> Path:
    """A copy of the built project whose training ran to the end and then could not save the
    adapter (no space left): its two checkpoints stay, the old adapter too."""
    project = copy_project(built_project, tmp_path_factory.mktemp("failed") / "p")
    shutil.rmtree(project / "models" / "lora")
    code = ("import errno, sys\n"
            "from stages import train_lora\n"
            "def full(model, folder, *base):\n"
            "    raise OSError(errno.ENOSPC, 'No space left on device', str(folder / 'adapter_model.safetensors'))\n"
            "train_lora.save_adapter = full\n"
            "train_lora.main([])\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=project, env=stage_env(),
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert last_line(result.stderr).startswith("error: No space left on device: models/.lora.tmp-")
    assert "Traceback" not in result.stderr
    assert not (project / "models" / "lora").exists()
    assert not [p for p in (project / "models").iterdir() if ".tmp-" in p.name]  # its temporary is gone too
    kept = {p.name for p in (project / "checkpoints/lora").glob("checkpoint-*")}
    assert kept == {f"checkpoint-{EVERY}", f"checkpoint-{STEPS}"}
    return project


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def edit_step(path: Path) -> None:
    state = json.loads(path.read_text())
    state["global_step"] = 999
    path.write_text(json.dumps(state))


@pytest.mark.parametrize("damage, file, reason", [
    (edit_step, "trainer_state.json", "global_step 999 does not match the folder name"),
    (truncate, "adapter_model.safetensors", "adapter_model.safetensors does not load"),
    (truncate, "optimizer.pt", "optimizer.pt does not load"),
])
def test_damaged_checkpoint_is_set_aside(failed_final_save, tmp_path, caplog, damage, file, reason):
    from stages.finetune import check_checkpoint, newest_checkpoint

    folder = shutil.copytree(failed_final_save / "checkpoints/lora", tmp_path / "lora")
    newer, older = (folder / f"checkpoint-{step}" for step in (STEPS, EVERY))
    assert check_checkpoint(newer, STEPS) is None
    damage(newer / file)
    with caplog.at_level("WARNING"):
        assert newest_checkpoint(folder, STEPS) == older
    assert reason in caplog.text and "set aside" in caplog.text
    assert (folder / "set-aside" / newer.name).is_dir()
    damage(older / file)  # both damaged: a fresh start
    assert newest_checkpoint(folder, STEPS) is None


def test_checkpoint_beyond_max_steps_is_not_trusted(failed_final_save, tmp_path):
    from stages.finetune import check_checkpoint

    folder = shutil.copytree(failed_final_save / "checkpoints/lora", tmp_path / "lora")
    assert f"beyond train.max_steps {EVERY}" in check_checkpoint(folder / f"checkpoint-{STEPS}", EVERY)


def test_truncated_optimizer_state_falls_back_to_the_older_checkpoint(failed_final_save, built_project,
                                                                   tmp_path):
    project = copy_project(failed_final_save, tmp_path / "p")
    truncate(project / f"checkpoints/lora/checkpoint-{STEPS}/optimizer.pt")
    result = subprocess.run([sys.executable, "-m", "stages.train_lora"], cwd=project, env=stage_env(),
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"set aside checkpoints/lora/checkpoint-{STEPS}: optimizer.pt does not load" in result.stderr
    assert f"resuming from checkpoints/lora/checkpoint-{EVERY}" in result.stderr
    assert_same_as_reference(project, built_project)


def test_failed_final_save_rerun_finishes_without_training(failed_final_save, built_project, tmp_path):
    project = copy_project(failed_final_save, tmp_path / "p")
    result = subprocess.run([sys.executable, "-m", "stages.train_lora"], cwd=project, env=stage_env(),
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_as_reference(project, built_project)
    assert json.loads((project / "metrics/train_lora.json").read_text())["steps"] == STEPS


# --- 4. temporaries of an interrupted write ---------------------------------------------------

def test_leftover_temporaries_are_never_hashed_and_are_swept(built_project, tmp_path):
    project = copy_project(built_project, tmp_path / "p")
    dead = 2**22 + 12345  # beyond the largest pid Linux hands out: no such process
    litter = [project / f"data/predictions/.lora.jsonl.tmp-{dead}", project / f"models/.lora.old-{dead}"]
    litter[0].write_text('{"id": "half')
    litter[1].mkdir()
    (litter[1] / "adapter_model.safetensors").write_bytes(b"old")
    # DVC restores an output around the litter from its cache instead of rerunning: still clean.
    (project / "data/predictions/lora.jsonl").unlink()
    dvc(project, "checkout")
    status = dvc(project, "status", "--json")
    assert json.loads(status.stdout) == {}, status.stdout
    assert "Running stage" not in dvc(project, "repro").stdout
    # The next writer in those folders (the stage, or any owner of the folder) removes them.
    from stages.atomic import write_text

    write_text(project / "data/predictions/other.txt", "x")
    write_text(project / "models/other.txt", "x")
    assert not any(p.exists() for p in litter)


# --- 5. OS errors and signals -----------------------------------------------------------------

def split_project(folder: Path) -> Path:
    from ruamel.yaml import YAML

    from demo.make_sample import generate, write_jsonl
    from stages.params import read_yaml

    folder.mkdir()
    write_jsonl(generate(200, seed=3), folder / "data.jsonl")
    params = read_yaml((ROOT / "params.yaml").read_text())
    params["data"].update(source="file", file=str(folder / "data.jsonl"))
    params["split"]["strategy"] = "stratified"  # the sample has no source splits
    YAML(typ="safe").dump(params, folder / "params.yaml")
    return folder


def run_split(project: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "stages.split"], cwd=project, env=env,
                          capture_output=True, text=True)


def test_full_disk_is_one_line(tmp_path):
    project = split_project(tmp_path / "p")
    (project / "data").mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12k", "tmpfs", str(project / "data")],
                             capture_output=True).returncode == 0
    if not mounted:
        pytest.skip("cannot mount a tmpfs here (needs root); test_os_errors_are_one_line patches a write")
    try:
        result = run_split(project)
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        assert last_line(result.stderr) == ("error: No space left on device: data/split; free space there "
                                            "and rerun"), result.stderr[-2000:]
        assert [p.name for p in (project / "data").iterdir()] == []  # no half-written split
    finally:
        subprocess.run(["umount", str(project / "data")], check=True)


@pytest.mark.parametrize("code, strerror", [(errno.ENOSPC, "No space left on device"),
                                            (errno.EACCES, "Permission denied")])
def test_os_errors_are_one_line(tmp_path, monkeypatch, code, strerror):
    import pandas as pd

    from stages import split

    project = split_project(tmp_path / "p")
    monkeypatch.chdir(project)

    def refused(self, path, *args, **kwargs):
        raise OSError(code, strerror, str(path))

    monkeypatch.setattr(pd.DataFrame, "to_parquet", refused)
    with pytest.raises(SystemExit) as exit_:
        split.main([])
    remedy = "; free space there and rerun" if code == errno.ENOSPC else ""
    assert exit_.value.code == f"error: {strerror}: data/.split.tmp-{os.getpid()}/train.parquet{remedy}"
    assert not (project / "data" / "split").exists()
    assert [p.name for p in (project / "data").iterdir()] == []


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_training_is_one_line_and_keeps_its_checkpoints(built_project, tmp_path, signum, status):
    project = copy_project(built_project, tmp_path / "p")
    adapter = (project / ADAPTER).read_bytes()
    proc = start_training(project)
    wait_for(project / f"checkpoints/lora/checkpoint-{EVERY}/trainer_state.json", proc)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == status
    name = signal.Signals(signum).name
    # the last line but for the progress bar, which tqdm redraws as the process exits
    assert f"interrupted ({name}): nothing was written; rerun to resume" in [line.strip() for line in err.splitlines()]
    assert "Traceback" not in err
    assert (project / ADAPTER).read_bytes() == adapter
    assert (project / f"checkpoints/lora/checkpoint-{EVERY}").is_dir()
    # The rerun resumes from it to the uninterrupted run's adapter: after SIGTERM (`dvc queue kill`)
    # in tests/test_queue.py, after SIGKILL in tests/test_reproducibility.py.


def test_a_stage_stops_when_dvc_is_killed_and_a_second_training_is_refused(built_project, tmp_path):
    """SIGTERM to `dvc repro` (a scheduler's, or `kill`): DVC dies at once and tells its stage
    nothing; the stage must not train on and later write an adapter no dvc.lock covers. And while
    it trains, a second training of the same variant is refused instead of sharing its checkpoints."""
    import re

    import psutil

    project = set_params(copy_project(built_project, tmp_path / "p"), train__max_steps=2000)
    lock = (project / "dvc.lock").read_bytes()
    with (tmp_path / "out").open("w") as out, (tmp_path / "err").open("w") as err:  # files: nobody reads a pipe
        proc = subprocess.Popen([sys.executable, "-m", "dvc", "repro", "-s", "train_lora"], cwd=project,
                                env=stage_env(), stdout=out, stderr=err)
    stage = []
    try:
        wait_for(project / f"checkpoints/lora/checkpoint-{EVERY}/trainer_state.json", proc)
        stage = psutil.Process(proc.pid).children(recursive=True)  # the stage, its data loader workers
        second = subprocess.run([sys.executable, "-m", "stages.train_lora"], cwd=project, env=stage_env(),
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 1
        errors = [line for line in second.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and re.fullmatch(
            r"error: checkpoints/lora is in use by another training \(pid (\d+), lock checkpoints/lora.lock\): "
            r"wait for it to end or stop it; two would resume from and delete each other's checkpoints", errors[0])
        assert int(re.search(r"pid (\d+)", errors[0]).group(1)) in {p.pid for p in stage}

        proc.terminate()
        proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while any(_running(p) for p in stage) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p.pid for p in stage if _running(p)], "a stage process outlived dvc repro"
    finally:  # never leave a training behind, whatever failed
        for process in (psutil.Process(proc.pid), *stage) if proc.poll() is None else stage:
            if _running(process):
                process.kill()
    log = (tmp_path / "err").read_text() + (tmp_path / "out").read_text()
    assert "interrupted (SIGTERM): nothing was written; rerun to resume" in [line.strip() for line in log.splitlines()]
    assert (project / "dvc.lock").read_bytes() == lock
    time.sleep(2)  # DVC removed the stage's outputs before running it; the stopped stage writes none, ever
    assert not (project / "models/lora").exists() and not (project / "metrics/train_lora.json").exists()
    assert not [p for p in (*(project / "models").iterdir(), *(project / "metrics").iterdir()) if ".tmp-" in p.name]
    assert (project / f"checkpoints/lora/checkpoint-{EVERY}").is_dir()  # kept for the rerun to resume


def _running(process) -> bool:
    import psutil

    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def mounted_tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


def test_a_full_checkpoints_disk_is_one_line_and_leaves_no_half_checkpoint(built_project, tmp_path):
    """The Trainer's checkpoint write on a full disk raised torch's or safetensors' own error: a
    traceback. Now one line naming the folder and what to do, the cut-short checkpoint removed,
    the adapter in place untouched."""
    project = copy_project(built_project, tmp_path / "p")
    adapter = (project / "models/lora/adapter_model.safetensors").read_bytes()
    shutil.rmtree(project / "checkpoints")
    if not mounted_tmpfs(project / "checkpoints", "64k"):
        pytest.skip("cannot mount a tmpfs here (needs root); test_atomic patches the writers' errors")
    try:
        result = subprocess.run([sys.executable, "-m", "stages.train_lora"], cwd=project, env=stage_env(),
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
        assert last_line(result.stderr) == ("error: No space left on device: checkpoints/lora; free space there "
                                            "and rerun"), result.stderr[-3000:]
        assert not list((project / "checkpoints/lora").glob("checkpoint-*"))
        assert (project / "models/lora/adapter_model.safetensors").read_bytes() == adapter
    finally:
        subprocess.run(["umount", str(project / "checkpoints")], check=True)
