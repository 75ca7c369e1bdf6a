"""One training per checkpoint folder: a second is refused in one line; a dead holder frees it."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from stages.locks import FolderInUse, exclusive
from tests.conftest import ROOT

HOLD = """
import sys, time
sys.path.insert(0, sys.argv[2])
from stages.locks import exclusive
with exclusive(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_holder_is_refused_naming_the_first(tmp_path):
    folder = tmp_path / "checkpoints" / "lora"
    with exclusive(folder):
        with pytest.raises(FolderInUse) as refused, exclusive(folder):
            pass
        assert str(refused.value) == (
            f"{folder} is in use by another training (pid {os.getpid()}, lock {folder}.lock): wait for it "
            "to end or stop it; two would resume from and delete each other's checkpoints")
        folder.mkdir()
        assert list(folder.iterdir()) == []  # the lock is beside the folder, which a run may clear
    with exclusive(folder):  # released at the end of the block
        pass


def test_the_lock_dies_with_its_holder(tmp_path):
    folder = tmp_path / "lora"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), str(ROOT)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FolderInUse, match=f"pid {holder.pid},"), exclusive(folder):
            pass
    finally:
        holder.kill()  # SIGKILL: no cleanup of its own runs
        holder.wait()
    deadline = time.monotonic() + 5
    while True:
        try:
            with exclusive(folder):
                break
        except FolderInUse:
            assert time.monotonic() < deadline, "a dead holder's lock was never released"
            time.sleep(0.05)


def test_the_lock_goes_with_its_folder(tmp_path):
    """A finished training removes its checkpoint folder; the lock beside it goes too (queued
    experiments left a `lora-<key>.lock` each). While the folder stays (a crashed run's
    checkpoints, kept for its resume), so does the lock."""
    folder = tmp_path / "lora-0123"
    with exclusive(folder):
        folder.mkdir()
    assert (tmp_path / "lora-0123.lock").is_file()  # the folder is still there
    with exclusive(folder):
        folder.rmdir()
    assert list(tmp_path.iterdir()) == []


def test_a_lock_file_removed_by_its_holder_is_not_taken(tmp_path, monkeypatch):
    """A process that opened the lock file just before its holder removed it gets a lock on a file
    no path names any more: it must lock the file now at the path, which another process may hold."""
    from stages import locks

    folder = tmp_path / "lora"
    with exclusive(folder):
        stale = os.open(f"{folder}.lock", os.O_RDWR)  # opened while the first holder held it
    assert not (tmp_path / "lora.lock").exists()  # removed by its holder as it let go
    opened = iter([stale])
    real_open = os.open
    monkeypatch.setattr(locks.os, "open", lambda *a, **k: next(opened, None) or real_open(*a, **k))
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), str(ROOT)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"  # the lock file now at the path
        with pytest.raises(FolderInUse, match=f"pid {holder.pid},"), exclusive(folder):
            pass
    finally:
        holder.kill()
        holder.wait()
