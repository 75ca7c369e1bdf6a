"""Which GPUs a stage's processes use: exactly as many as its params ask for, chosen before CUDA starts.

A process that sees several GPUs does not stay on one: HF's Trainer wraps the model in
``nn.DataParallel`` over every visible GPU and multiplies the batch by their count, so the same
params would train a different optimisation on a 1-GPU and an 8-GPU box. ``claim`` therefore
narrows ``CUDA_VISIBLE_DEVICES`` to ``processes`` GPUs (one per process; torchrun's workers
inherit it and each takes ``cuda:LOCAL_RANK``) before anything initialises CUDA, which reads the
variable once, at start.

The pool is what the process may see: ``CUDA_VISIBLE_DEVICES`` when set (as users narrow it),
else the GPUs ``nvidia-smi -L`` lists. Asking torch instead would initialise CUDA and fix the
visible set before it could be narrowed. ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` makes CUDA's numbering
the same as ``nvidia-smi``'s (CUDA's default puts the fastest GPU first).

Several experiments on one machine (``dvc queue start -j N``, or two ``dvc exp run --temp`` by
hand) share its GPUs through leases: a stage takes its ``processes`` GPUs from the pool with an
exclusive ``flock`` on one file per GPU, named by the GPU's UUID, in a folder every process and
every user on the machine can use (``STAGES_LEASE_DIR``, default ``<tmp>/stages-device-leases``,
made rwxrwxrwt like /tmp), holds them as long as it runs, and waits, saying so, while too few
are free. The kernel releases a ``flock`` when its process ends,
however it ends, so a killed experiment never strands a GPU. A machine without GPUs can declare
a pool of its own (``STAGES_DEVICE_POOL=a,b``) to run at most that many stages at once, on the CPU.

Which GPUs ran is recorded in the stage's metrics (``devices``); it is not a param, since it
changes no result.

Also a command (not a stage): ``python -m stages.devices`` says which GPUs a stage would use, or
refuses with one line when this torch cannot use the GPUs the machine lists (``make setup`` runs
it after installing torch's CUDA build).
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stages.errors import InputError

log = logging.getLogger(__name__)
VISIBLE = "CUDA_VISIBLE_DEVICES"
POOL = "STAGES_DEVICE_POOL"  # a declared pool: overrides the GPUs found (e.g. labels on a CPU box)
LEASES = "STAGES_LEASE_DIR"  # where leases are held: one folder for every process on the machine
CLAIMED = "STAGES_DEVICES"  # what this stage claimed, for its workers' metrics
_held: list = []  # this process's leases (open, locked files): held until it ends


def _forget_in_child() -> None:
    # A forked child (a DataLoader worker) shares the leases' locks: closing its copies means a
    # lease goes when the stage dies, not when its last worker notices and exits.
    for handle in _held:
        handle.close()
    _held.clear()


class DeviceError(InputError):
    """The machine cannot give the stage the devices its params ask for."""


def _listing() -> str:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return ""
    try:
        return subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def listed_gpus() -> list[str]:
    """The indices of the GPUs ``nvidia-smi -L`` lists (none without the driver's tool)."""
    return re.findall(r"^GPU (\d+):", _listing(), flags=re.MULTILINE)


def gpu_uuids() -> dict[str, str]:
    """``{index: UUID}`` of the GPUs ``nvidia-smi -L`` lists: what names a GPU across the node.
    Two Slurm jobs on one node each number their own GPUs from 0; their UUIDs differ."""
    return dict(re.findall(r"^GPU (\d+):.*\(UUID: ([^)\s]+)\)", _listing(), flags=re.MULTILINE))


def pool() -> list[str]:
    """The devices this process may lease, in CUDA's order: a declared pool (``STAGES_DEVICE_POOL``),
    else ``CUDA_VISIBLE_DEVICES`` entries when set (indices or UUIDs; CUDA ignores everything from
    an invalid entry on, as here), else the GPUs ``nvidia-smi`` lists."""
    if os.environ.get(POOL):
        return [entry.strip() for entry in os.environ[POOL].split(",") if entry.strip()]
    if VISIBLE not in os.environ:
        return listed_gpus()
    entries = []
    for entry in os.environ[VISIBLE].split(","):
        entry = entry.strip()
        if not entry or entry.startswith("-"):
            break
        entries.append(entry)
    return entries


def claim(processes: int, key: str) -> list[str]:
    """Narrow this process (and the workers it launches) to ``processes`` GPUs of the pool.

    Returns the GPUs claimed, empty on a machine without GPUs (the stage runs on the CPU, as
    ``processes`` CPU workers). ``key`` names the param in the error when the pool is too small.
    """
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        raise RuntimeError("devices.claim() after CUDA was initialised: CUDA_VISIBLE_DEVICES is read once")
    held = os.environ.get(CLAIMED, "").split(",") if _held else []
    if len(held) == processes:  # claimed before in this process (a stage body run twice)
        return held
    gpus = pool()
    if not gpus:
        return []
    if len(gpus) < processes:
        raise DeviceError(f"{key}: {processes} processes need {processes} GPUs, one each, but "
                          f"{len(gpus)} {'is' if len(gpus) == 1 else 'are'} visible ({', '.join(gpus)})")
    chosen = lease(gpus, processes)
    os.environ[CLAIMED] = ",".join(chosen)
    if os.environ.get(POOL) and not listed_gpus():  # a declared pool of a CPU box: labels, no CUDA
        log.info("using device %s of the declared pool (on the CPU)", ", ".join(chosen))
        return chosen
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    os.environ[VISIBLE] = ",".join(chosen)
    require_usable(chosen)
    log.info("using GPU %s (%s=%s)", ", ".join(chosen), VISIBLE, os.environ[VISIBLE])
    return chosen


def lease_dir() -> Path:
    return Path(os.environ.get(LEASES) or Path(tempfile.gettempdir()) / "stages-device-leases")


def _open_shared(path: str, flags: int) -> int:
    """``open``'s opener for a lease file every user of the node can lock and write (rw-rw-rw-,
    whatever the umask): the first user to lease creates it, the next may be someone else."""
    fd = os.open(path, flags, 0o666)
    if os.fstat(fd).st_uid == os.getuid():
        os.fchmod(fd, 0o666)
    return fd


def _shared_folder(folder: Path) -> None:
    """Create the lease folder usable by every user of the node: rwxrwxrwt, like /tmp (anyone
    creates a lease file; only its owner removes it)."""
    folder.mkdir(parents=True, exist_ok=True)
    if folder.stat().st_uid == os.getuid():
        folder.chmod(0o1777)


def lease(devices: list[str], count: int, poll_s: float = 2.0) -> list[str]:
    """Lease ``count`` of ``devices`` for as long as this process runs, waiting while fewer are free.

    Leases are taken under a short lock on the whole folder, so two stages never each hold part
    of what the other needs. A lease is named by the GPU's UUID (a device not listed by
    ``nvidia-smi``, e.g. a declared pool's label, by itself): an index names another GPU in
    another Slurm job on the same node. Each lease file names its holder (pid and folder) for
    the message of whoever waits."""
    folder = lease_dir()
    names = gpu_uuids()
    try:
        _shared_folder(folder)
        return _lease(folder, {device: names.get(device, device) for device in devices}, count, poll_s)
    except PermissionError as exc:
        raise DeviceError(f"{LEASES}: {folder} is not writable by this user ({exc.strerror}: {exc.filename}); "
                          f"its owner can share it (chmod 1777 {folder}), or set {LEASES} to a folder every "
                          "user of the node can write") from None


def _lease(folder: Path, names: dict[str, str], count: int, poll_s: float) -> list[str]:
    waiting_since = None
    while True:
        with open(folder / ".pool.lock", "a", opener=_open_shared) as whole:
            fcntl.flock(whole, fcntl.LOCK_EX)
            taken, holders = [], []
            for device, name in names.items():
                if len(taken) == count:
                    break
                handle = open(folder / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.lease", "a+", opener=_open_shared)
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    handle.seek(0)
                    holders.append(f"{device}: {handle.read().strip() or 'another process'}")
                    handle.close()
                    continue
                handle.seek(0)
                handle.truncate()
                handle.write(f"pid {os.getpid()} in {os.getcwd()}\n")
                handle.flush()
                taken.append((device, handle))
            if len(taken) == count:
                if not _held:
                    os.register_at_fork(after_in_child=_forget_in_child)
                _held.extend(handle for _, handle in taken)
                if waiting_since is not None:
                    log.info("device free after %.0f s of waiting", time.monotonic() - waiting_since)
                return [device for device, _ in taken]
            for _, handle in taken:
                handle.close()  # closing releases its flock
        if waiting_since is None:
            waiting_since = time.monotonic()
            log.warning("waiting for %d free device(s) of %s; held: %s", count, ", ".join(names),
                        "; ".join(holders))
        time.sleep(poll_s)


def require_usable(gpus: list[str]) -> None:
    """Refuse a machine whose GPUs this torch cannot use. Never a silent CPU run on a GPU box: a
    CPU build of torch, or a CUDA build the driver is too old for, sees no GPU, and 1000 steps of
    flan-t5-base would start on the CPU, for days. (Call after narrowing: it starts CUDA.)"""
    import torch

    if torch.cuda.is_available():
        return
    build = f"torch {torch.__version__} is a CPU build" if torch.version.cuda is None else \
        f"torch {torch.__version__} (CUDA {torch.version.cuda}) cannot use this machine's driver"
    where = f"{VISIBLE}={os.environ[VISIBLE]}: " if VISIBLE in os.environ else ""
    raise DeviceError(f"{where}GPU {', '.join(gpus)} visible, but {build}; reinstall with "
                      "`make setup TORCH=cuda` (or hide the GPUs: CUDA_VISIBLE_DEVICES=)")


def in_use() -> str:
    """The devices this stage runs on, for the metrics: what it claimed (GPUs as
    ``CUDA_VISIBLE_DEVICES`` names them, or a declared pool's labels), or ``cpu``."""
    return os.environ.get(CLAIMED) or "cpu"


def main() -> None:
    """``python -m stages.devices``: the GPUs a stage would use here, or one error line when this
    torch cannot use the GPUs the machine has (``make setup`` runs it after installing CUDA torch)."""
    gpus = pool()
    try:
        if gpus:
            require_usable(gpus)
    except DeviceError as exc:
        sys.exit(f"error: {exc}")
    print(f"GPUs usable by torch: {', '.join(gpus)}" if gpus else "no GPU visible: the stages run on the CPU")


if __name__ == "__main__":
    main()
