"""A stage uses exactly the GPUs its params ask for, chosen before CUDA starts (a fake
``nvidia-smi`` on PATH stands for the GPU box), and the process group lands on each rank's GPU."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from stages import devices, launch
from stages.devices import DeviceError


@pytest.fixture(autouse=True)
def _environment_restored(tmp_path):
    """claim() sets CUDA_VISIBLE_DEVICES for the process and holds its leases until the process
    ends, as it must: each test leases in a folder of its own, and both are undone after it."""
    saved = dict(os.environ)
    os.environ[devices.LEASES] = str(tmp_path / "leases")
    os.environ.pop(devices.POOL, None)
    yield
    os.environ.clear()
    os.environ.update(saved)
    while devices._held:
        devices._held.pop().close()


def fake_nvidia_smi(folder: Path, gpus: int, first: int = 0) -> Path:
    """A ``nvidia-smi`` that lists ``gpus`` H200s, as the driver's tool does with ``-L``; indices
    from 0, UUIDs from the node's GPU ``first`` on (what a Slurm job confined to them sees)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = "".join(f"echo 'GPU {i}: NVIDIA H200 (UUID: GPU-0000000{first + i}-aaaa-bbbb-cccc-dddddddddddd)'\n"
                    for i in range(gpus))
    script = folder / "nvidia-smi"
    script.write_text(f"#!/bin/sh\n{lines}")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return folder


@pytest.fixture
def eight_gpus(tmp_path, monkeypatch):
    """A box with 8 GPUs that torch can use (CUDA itself is faked: nothing here touches it)."""
    import torch

    monkeypatch.setenv("PATH", f"{fake_nvidia_smi(tmp_path / 'bin', 8)}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


def test_one_process_takes_one_gpu_of_eight(eight_gpus):
    # Without this, the Trainer would wrap the model in nn.DataParallel over all 8 and train an
    # 8x larger batch than params.yaml (and dvc.lock) say.
    assert devices.claim(1, "train.processes") == ["0"]
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0"
    assert devices.claim(1, "train.processes") == ["0"]  # the same stage again: its own lease
    first = devices._held[:]  # a second stage on the same box: another process, as the lease
    devices._held.clear()     # files see it (the first one's lease stays open, and locked)
    os.environ.pop("CUDA_VISIBLE_DEVICES")
    assert devices.claim(1, "train.processes") == ["1"]  # leased: it gets another GPU
    assert first[0].name.endswith("GPU-00000000-aaaa-bbbb-cccc-dddddddddddd.lease")
    assert os.environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"  # CUDA's numbering = nvidia-smi's
    assert devices.in_use() == "1"


def test_two_slurm_jobs_on_one_node_lease_their_own_gpus(tmp_path, monkeypatch):
    """Each job numbers its GPUs from 0 (CUDA_VISIBLE_DEVICES=0): leases named by index would make
    the second wait for the first's GPU 0, another GPU; named by UUID, both run at once."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(devices.log, "warning", lambda *a: pytest.fail("waited for a GPU nobody holds"))
    for job, first in enumerate((0, 4)):  # the node's GPU 0, then its GPU 4
        smi = fake_nvidia_smi(tmp_path / f"job{job}", 1, first=first)
        monkeypatch.setenv("PATH", f"{smi}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
        held = devices._held[:]  # the other job's leases stay held, as another process's
        devices._held.clear()
        assert devices.claim(1, "train.processes") == ["0"]
        devices._held[:0] = held
    assert sorted(Path(h.name).name for h in devices._held) == [
        "GPU-00000000-aaaa-bbbb-cccc-dddddddddddd.lease", "GPU-00000004-aaaa-bbbb-cccc-dddddddddddd.lease"]


def test_the_lease_folder_is_usable_by_every_user_of_the_node(eight_gpus):
    """Made by one user, the folder and its files stay writable by the others (another user got
    PermissionError on the pool's lock), whatever the first one's umask."""
    umask = os.umask(0o077)
    try:
        devices.claim(1, "train.processes")
    finally:
        os.umask(umask)
    folder = devices.lease_dir()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o1777
    assert {stat.S_IMODE(f.stat().st_mode) for f in folder.iterdir()} == {0o666}
    assert {f.name for f in folder.iterdir()} == {".pool.lock", "GPU-00000000-aaaa-bbbb-cccc-dddddddddddd.lease"}


def test_n_processes_take_n_gpus(eight_gpus):
    assert devices.claim(3, "generate.processes") == ["0", "1", "2"]
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1,2"  # torchrun's workers inherit it


def test_the_users_cuda_visible_devices_is_the_pool(eight_gpus, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,3,GPU-77")
    assert devices.claim(2, "train.processes") == ["5", "3"]
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "5,3"


def test_more_processes_than_gpus_is_one_line(eight_gpus, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")
    expected = r"^train.processes: 3 processes need 3 GPUs, one each, but 2 are visible \(4, 6\)$"
    with pytest.raises(DeviceError, match=expected):
        devices.claim(3, "train.processes")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "4,6"  # left as it was


def test_no_gpu_means_cpu(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi anywhere
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert devices.claim(2, "train.processes") == []
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    assert devices.in_use() == "cpu"


def test_hidden_gpus_mean_cpu(eight_gpus, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert devices.claim(1, "train.processes") == []


def test_a_listed_gpu_that_torch_cannot_use_is_refused(tmp_path, monkeypatch):
    """Never a silent CPU run on a GPU box: this machine's torch sees no GPU, nvidia-smi lists one."""
    monkeypatch.setenv("PATH", f"{fake_nvidia_smi(tmp_path / 'bin', 1)}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    expected = r"^CUDA_VISIBLE_DEVICES=0: GPU 0 visible, but torch .*`make setup TORCH=cuda`"
    with pytest.raises(DeviceError, match=expected):
        devices.claim(1, "train.processes")


def test_nccl_group_starts_on_the_ranks_own_gpu(monkeypatch):
    """Each rank sets its device (LOCAL_RANK) before NCCL starts and binds the group to it;
    otherwise every rank's all_gather_object buffer lands on cuda:0."""
    import torch
    import torch.distributed as dist

    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(("set_device", d)))
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **kw: calls.append((backend, kw)))
    monkeypatch.setenv("LOCAL_RANK", "3")
    launch.init_process_group()
    device = torch.device("cuda", 3)
    assert calls == [("set_device", device), ("nccl", {"device_id": device})]


def test_gloo_on_cpu(monkeypatch):
    import torch
    import torch.distributed as dist

    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **kw: calls.append((backend, kw)))
    launch.init_process_group()
    assert calls == [("gloo", {})]


def test_the_setup_check_refuses_a_torch_that_cannot_use_the_listed_gpu(tmp_path):
    """`make setup TORCH=cuda` ends with `python -m stages.devices`: one line where the GPU is
    listed and this torch cannot use it, a note where there is no GPU."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    env = dict(os.environ, PATH=f"{fake_nvidia_smi(tmp_path / 'bin', 2)}{os.pathsep}{os.environ['PATH']}")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    run = subprocess.run([sys.executable, "-m", "stages.devices"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 1 and run.stderr.startswith("error: GPU 0, 1 visible, but torch "), run.stderr
    env["PATH"] = str(tmp_path / "empty")
    run = subprocess.run([sys.executable, "-m", "stages.devices"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0 and "no GPU visible" in run.stdout
    dry = subprocess.run(["make", "-n", "-B", "TORCH=cuda", ".venv/.installed"], cwd=ROOT,
                         capture_output=True, text=True).stdout
    assert "-m stages.devices" in dry


def torch_version() -> str:
    import torch

    return torch.__version__.split("+")[0]


LEASE = """
import logging, sys, time
logging.basicConfig(level=logging.INFO)
from stages import devices
print(",".join(devices.lease(sys.argv[1].split(","), int(sys.argv[2]), poll_s=0.2)), flush=True)
time.sleep(120)
"""


def test_lease_each_stage_its_own_device_and_the_next_waits_for_one(tmp_path):
    """Three stages, a pool of two: two hold different devices, the third waits (saying so) and
    takes the device of the first that ends, however it ends (SIGKILL here)."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    def holder() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", LEASE, "gpu-a,gpu-b", "1"], cwd=ROOT, env=dict(os.environ),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    first, second = holder(), holder()
    try:
        held = {first.stdout.readline().strip(), second.stdout.readline().strip()}
        assert held == {"gpu-a", "gpu-b"}
        third = holder()
        waiting = ""
        while "waiting for 1 free device(s) of gpu-a, gpu-b" not in waiting:
            waiting += third.stderr.readline()
            assert third.poll() is None
        assert "held: gpu-a: pid" in waiting
        first.kill()
        assert third.stdout.readline().strip() in held
    finally:
        for proc in (first, second, third):
            proc.kill()
            proc.wait()


def test_a_declared_pool_on_a_cpu_box(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi: no GPU
    monkeypatch.setenv(devices.POOL, "slot-a, slot-b")
    assert devices.claim(1, "train.processes") == ["slot-a"]
    first = devices._held[:]  # as if from another process: slot-a's lease stays open, and locked
    devices._held.clear()
    assert devices.claim(1, "train.processes") == ["slot-b"]
    assert first[0].name.endswith("slot-a.lease")
    assert "CUDA_VISIBLE_DEVICES" not in os.environ  # nothing of CUDA's is touched
    assert devices.in_use() == "slot-b"
