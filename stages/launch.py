"""Running a stage as several processes (data parallel), through torchrun.

A stage whose params ask for ``processes > 1`` re-runs itself under
``python -m torch.distributed.run --standalone --nproc_per_node N -m stages.<stage> ...``: the
same engine HF's Trainer and ``accelerate`` speak, one process per GPU (gloo on CPU). dvc.yaml
keeps a single ``cmd``; with ``processes: 1`` nothing is launched and the stage runs as before.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

log = logging.getLogger(__name__)


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched() -> bool:
    """True inside a process that torchrun started."""
    return "LOCAL_RANK" in os.environ


def init_process_group() -> None:
    """Join the stage's process group: NCCL on this process's own GPU, gloo on the CPU.

    On NCCL each rank must be on its GPU (``cuda:LOCAL_RANK``) before the group starts: without
    ``set_device`` every rank's collective buffers land on ``cuda:0`` (NCCL's "Duplicate GPU"
    error, or a hang). ``device_id`` also binds the communicator to that GPU at once. (Training
    needs none of this: accelerate sets the device for the Trainer's processes.)
    """
    import torch
    import torch.distributed as dist

    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")


def relaunch(module: str, processes: int, argv: list[str]) -> None:
    """Run ``python -m module argv`` as ``processes`` processes and exit with their status."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={processes}", "-m", module, *argv]
    log.info("launching %d processes: %s", processes, " ".join(command))
    sys.exit(subprocess.run(command).returncode)
