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

Which GPUs ran is recorded in the stage's metrics (``devices``); it is not a param, since it
changes no result.

Also a command (not a stage): ``python -m stages.devices`` says which GPUs a stage would use, or
refuses with one line when this torch cannot use the GPUs the machine lists (``make setup`` runs
it after installing torch's CUDA build).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys

from stages.errors import InputError

log = logging.getLogger(__name__)
VISIBLE = "CUDA_VISIBLE_DEVICES"


class DeviceError(InputError):
    """The machine cannot give the stage the devices its params ask for."""


def listed_gpus() -> list[str]:
    """The indices of the GPUs ``nvidia-smi -L`` lists (none without the driver's tool)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        listing = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return re.findall(r"^GPU (\d+):", listing, flags=re.MULTILINE)


def pool() -> list[str]:
    """The GPUs this process may use, in CUDA's order: ``CUDA_VISIBLE_DEVICES`` entries when set
    (indices or UUIDs; CUDA ignores everything from an invalid entry on, as here), else the listed ones."""
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
    gpus = pool()
    if not gpus:
        return []
    if len(gpus) < processes:
        raise DeviceError(f"{key}: {processes} processes need {processes} GPUs, one each, but "
                          f"{len(gpus)} {'is' if len(gpus) == 1 else 'are'} visible ({', '.join(gpus)})")
    chosen = gpus[:processes]
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    os.environ[VISIBLE] = ",".join(chosen)
    require_usable(chosen)
    log.info("using GPU %s (%s=%s)", ", ".join(chosen), VISIBLE, os.environ[VISIBLE])
    return chosen


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
    """The devices this process runs on, for the metrics: the GPUs claimed (as
    ``CUDA_VISIBLE_DEVICES`` names them), or ``cpu``."""
    import torch

    return (",".join(pool()) or "cpu") if torch.cuda.is_available() else "cpu"


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
