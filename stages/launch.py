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


def relaunch(module: str, processes: int, argv: list[str]) -> None:
    """Run ``python -m module argv`` as ``processes`` processes and exit with their status."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={processes}", "-m", module, *argv]
    log.info("launching %d processes: %s", processes, " ".join(command))
    sys.exit(subprocess.run(command).returncode)
