"""Shared fixtures. Every test runs offline: no hub is reachable from our machines."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["DVC_NO_ANALYTICS"] = "1"
os.environ.setdefault("WANDB_MODE", "disabled")


# Three workers (pyproject.toml) on 2 cores, each stage computing on one thread: a worker often
# waits (on a queue, a signal, a socket) or runs single-threaded Python (imports, DVC), and a
# third worker fills those gaps. Idle, on 2 cores: 2 workers with stages on 2 threads 6:42, 3
# workers on 1 thread 5:56 (3 workers on 2 threads each were slower than 2). The thread count
# only changes how a CPU sums floats: every test compares runs made with the same count.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

# The files that train or run the pipeline, the longest first (minutes each on 2 cores; the rest
# take seconds). Under `--dist loadfile` a file runs whole on one worker, and xdist hands a
# worker its next file while its current one still has two tests to go: with xdist's own order
# (most tests first) these few-test files came last, two of them queued on one worker while
# the others ran out of work. First, the long ones run side by side and the short ones fill in
# at the end (pyproject.toml turns xdist's reordering off). The first and third need no built
# project: they run while the second worker builds it (test_benchmarks.py is the longest of
# all with its slow tests, `make test-all`, and short without them, `make test`).
LONGEST_FIRST = ("test_rehearsal.py", "test_faults.py", "test_benchmarks.py", "test_e2e.py",
                 "test_reproducibility.py", "test_queue.py", "test_scaling.py", "test_remote.py",
                 "test_cache_check.py", "test_review.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: n for n, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: file order kept otherwise


def run(command: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command with the stages' environment; on failure show its whole output."""
    from demo.run import stage_env

    result = subprocess.run(command, cwd=cwd, env=stage_env(), capture_output=True, text=True)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(command)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def dvc(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "dvc", *args], cwd, check)


def ran(output: str) -> set[str]:
    """The stages a `dvc repro` (or `dvc exp run`) output says it ran, less check_params: it reruns
    on any change to a declared section and writes the same bytes (tests/test_check_params.py)."""
    return set(re.findall(r"Running stage '([^']+)'", output)) - {"check_params"}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture(autouse=True)
def _own_logging():
    """A stage's ``main()`` called in-process configures the root logger with a handler on this
    test's captured stderr, which pytest closes after the test: take such handlers away again."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def transformers_log():
    """The messages transformers logs during the test, at its default verbosity (WARNING): another
    test in the same worker may have lowered it, which would make a test of a warning vacuous."""
    import logging

    from transformers.utils import logging as transformers_logging

    messages: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_warning()
    logging.getLogger("transformers").addHandler(handler)
    yield messages
    logging.getLogger("transformers").removeHandler(handler)
    transformers_logging.set_verbosity(verbosity)


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    return ROOT / "demo" / "tiny-t5"


# A tiny-model step's compute is its tokens: the tests check what steps do, not what the adapter
# learns, so they train on batches of 2 and on a third of the demo's sample (every third
# dialogue with all its human summaries, and every row of the topics too small to stratify, so
# that the split still pools them), for STEPS steps with a checkpoint and an evaluation every
# EVERY steps: two of each, what resuming from the older or the newer one needs. The loss is
# logged at each checkpoint: a run resumed from one then logs the means the uninterrupted run did.
FEW_STEPS = {"max_steps": 10, "eval_steps": 5, "logging_steps": 5, "warmup_steps": 2, "batch_size": 2}
STEPS, EVERY = FEW_STEPS["max_steps"], FEW_STEPS["eval_steps"]
TEST_DATA = "data/sample/dialogsum_sample_third.jsonl"
TEST_FRACTIONS = {"train": 0.88, "validation": 0.02, "test": 0.1}  # each evaluation: 15 rows, one batch


def sample_third(source: Path, target: Path) -> None:
    import json
    from collections import Counter

    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    rows = [json.loads(line) for line in lines]
    topics = Counter(row["topic"] for row in rows)
    order = {dialogue: n for n, dialogue in enumerate(dict.fromkeys(row["dialogue"] for row in rows))}
    kept = [line for line, row in zip(lines, rows)
            if order[row["dialogue"]] % 3 == 0 or topics[row["topic"]] < 20]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("".join(kept), encoding="utf-8")


def make_project(folder: Path, baselines: tuple[str, ...] = (), **sections: dict) -> Path:
    """A git repo holding a copy of the project with the demo's params, cut to a few steps of
    small batches on a third of the sample (``FEW_STEPS``, ``TEST_DATA``).

    Only LoRA is fine-tuned unless ``baselines`` says otherwise (the full fine-tune would double
    most tests' training time). ``sections`` update params sections, e.g.
    ``train={"max_steps": 30}``.
    """
    from demo.run import demo_params, sync

    params = demo_params()
    params["baselines"] = list(baselines)
    params["train"].update(FEW_STEPS)
    params["generate"].update(max_new_tokens=24)
    params["data"]["file"] = TEST_DATA
    params["split"]["fractions"] = TEST_FRACTIONS
    for name, values in sections.items():
        params[name].update(values)
    folder.mkdir(parents=True, exist_ok=True)
    sample_third(ROOT / "data/sample/dialogsum_sample.jsonl", folder / TEST_DATA)
    sync(ROOT, folder, params)  # copies the working tree, writes params.yaml, commits
    return folder


def commit(folder: Path, message: str) -> None:
    git(folder, "add", "-A")
    git(folder, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message, "--allow-empty")


@pytest.fixture(scope="session")
def built_project(request, tmp_path_factory) -> Path:
    """One project after a full `dvc repro`, committed: read it, never change it (copy it with
    ``copy_project``). A whole run costs about a minute on 2 cores; sharing it saves several.

    Under pytest-xdist each worker is a session of its own: the first worker to ask builds the
    project in the run's shared temporary folder, under a file lock, and the others wait for it
    and share it."""
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp()
    if hasattr(request.config, "workerinput"):  # an xdist worker: its basetemp is per worker
        shared = shared.parent
    project, done = shared / "built", shared / "built.done"
    with FileLock(str(shared / "built.lock")):
        if not done.exists():
            shutil.rmtree(project, ignore_errors=True)
            make_project(project)
            dvc(project, "repro")
            commit(project, "first run")
            done.touch()
    return project


def copy_project(built: Path, folder: Path) -> Path:
    """A private copy of a built project: git history, DVC cache, outputs and all."""
    shutil.copytree(built, folder, symlinks=True)
    return folder


def set_params(project: Path, **changes: object) -> Path:
    """Edit the project's params.yaml in place, keeping its comments: ``set_params(p, lora__r=8)``."""
    from ruamel.yaml import YAML

    yaml = YAML()  # round trip: comments and layout survive
    params = yaml.load((project / "params.yaml").read_text())
    for dotted, value in changes.items():
        *sections, key = dotted.split("__")
        target = params
        for section in sections:
            target = target[section]
        target[key] = value
    with (project / "params.yaml").open("w") as f:
        yaml.dump(params, f)
    return project
