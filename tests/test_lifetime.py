"""A stage stops when the process that started it dies (stages/lifetime.py), run through a shell as
DVC runs it. The real ``dvc repro`` case is in tests/test_faults.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest

from stages import lifetime
from tests.conftest import ROOT

STAGE = f"""
import os, sys, time
sys.path.insert(0, {str(ROOT)!r})
from stages import cli
from stages.atomic import write_text

def body():
    with open("started", "w") as f:
        f.write(str(os.getpid()))
    for _ in range(1200):  # a long stage: a minute
        time.sleep(0.05)
    write_text("output.txt", "written")

cli.run(body)
"""
# What DVC does: run the stage's cmd through a shell and wait for it. ``python stage.py`` alone is
# run by the shell in place of itself; ``...; true`` keeps the shell between them, alive.
LAUNCHER = "import subprocess, sys; subprocess.run(['sh', '-c', sys.argv[1]])"


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("cmd", ["{python} stage.py", "{python} stage.py; true"], ids=["exec", "shell between"])
def test_a_stage_stops_when_the_process_that_started_it_is_killed(tmp_path, cmd):
    (tmp_path / "stage.py").write_text(STAGE)
    env = dict(os.environ, DVC_STAGE="long")  # DVC sets it for every stage command
    with (tmp_path / "stderr").open("w") as stderr:
        launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, cmd.format(python=sys.executable)],
                                    cwd=tmp_path, env=env, stderr=stderr)
    deadline = time.monotonic() + 60
    while not (tmp_path / "started").is_file() and time.monotonic() < deadline:
        time.sleep(0.05)
    stage = int((tmp_path / "started").read_text())
    launcher.kill()  # SIGKILL: it can tell nobody
    launcher.wait()
    deadline = time.monotonic() + 10
    while not gone(stage) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gone(stage), "the stage outlived the process that started it"
    err = (tmp_path / "stderr").read_text()
    assert "which started this stage, is gone: stopping" in err
    assert "interrupted (SIGTERM): nothing was written; rerun to resume" in err.splitlines()
    assert not (tmp_path / "output.txt").exists()


def test_a_stage_run_by_hand_watches_nothing(monkeypatch):
    """Run from a terminal, a stage is the shell's job (SIGHUP ends it; nohup keeps meaning what it says)."""
    monkeypatch.delenv("DVC_STAGE", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert lifetime.owners() == []
    monkeypatch.setenv("DVC_STAGE", "train_lora")
    assert [p.pid for p in lifetime.owners()][:1] == [os.getppid()]


WORKER = f"""
import atexit, os, sys, time
sys.path.insert(0, {str(ROOT)!r})
from stages import cli

def body():
    atexit.register(lambda: open("finalized", "w").close())  # Python's orderly shutdown ran
    if sys.argv[1] == "native":
        import torch
        pending = torch.futures.Future()  # never completed: as a collective whose peer stopped
        open("started", "w").close()
        pending.wait()  # waits in C++: the Python handler cannot run here
    open("started", "w").close()
    while True:
        time.sleep(0.05)

cli.run(body)
"""


@pytest.mark.parametrize("waiting", ["native", "python"])
def test_a_launched_worker_stops_at_once_on_sigterm(tmp_path, waiting):
    """A worker of a multi-process stage ends within seconds of the launcher's SIGTERM: waiting in
    Python, its handler reports and it ends without Python's orderly shutdown (a garbage collection
    of torch's and transformers' modules that outlasted the launcher's 30 s grace on a loaded
    machine); waiting in a native call, where no Python handler runs, it ends lifetime.GRACE_S
    later. Either way with the "interrupted" line for its launcher, and exit status 143."""
    import signal

    (tmp_path / "worker.py").write_text(WORKER)
    (tmp_path / "errors").mkdir()
    env = dict(os.environ, LOCAL_RANK="0", RANK="0", WORLD_SIZE="1", STAGE_ERROR_DIR=str(tmp_path / "errors"))
    worker = subprocess.Popen([sys.executable, "worker.py", waiting], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "started").is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # into the wait
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=60)
    finally:
        worker.kill()
    assert worker.returncode == 143, err[-2000:]
    assert (tmp_path / "errors" / "rank-0").read_text() == \
        "143\ninterrupted (SIGTERM): nothing was written; rerun to resume\n"
    assert not (tmp_path / "finalized").exists()


FINALIZER = f"""
import os, signal, sys, time
sys.path.insert(0, {str(ROOT)!r})
from stages import cli

class Held:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)  # the signal comes while a finalizer runs
        sum(range(1000))

def body():
    Held()  # freed at once: its __del__ runs here
    time.sleep(30)  # the stage's work, where the signal sent again must stop it

cli.run(body)
"""


def test_a_sigterm_that_comes_during_a_finalizer_still_stops_the_stage():
    """Raised inside a ``__del__``, the interruption would be printed as "Exception ignored in"
    with a traceback, dropped, and the stage would run on (exit 0 after the sleep)."""
    result = subprocess.run([sys.executable, "-c", FINALIZER], capture_output=True, text=True, timeout=60)
    assert result.returncode == 143, result.stderr[-2000:]
    assert result.stderr.splitlines() == ["interrupted (SIGTERM): nothing was written; rerun to resume"]
