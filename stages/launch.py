"""Running a stage as several processes (data parallel), through torch's elastic launcher.

A stage whose params ask for ``processes > 1`` re-runs itself as that many worker processes
(``python -m stages.<stage> ...``, one per GPU; gloo on CPU) through
``torch.distributed.launcher.api.elastic_launch``: the engine behind ``torchrun --standalone``,
and the rendezvous HF's Trainer and ``accelerate`` speak. dvc.yaml keeps a single ``cmd``; with
``processes: 1`` nothing is launched and the stage runs as before.

The launcher runs in the stage's own process rather than as a ``torchrun`` child, so that:

- a signal to the stage (SIGTERM from ``dvc queue kill`` or a scheduler, Ctrl-C) reaches the
  workers: the launcher forwards it, waits for them to stop, and the stage exits 143/130 with
  nothing written. (Workers run in sessions of their own; a killed ``torchrun`` child would leave
  them training, and rank 0 would later write outputs after the stage had failed.)
- a failure is one line: each worker writes its ``error: ...`` line to a file of the launch
  instead of the terminal (``ERROR_DIR``), and the stage prints one of them once, rank 0's
  first, with that rank's exit status; the launcher's own traceback (``ChildFailedError``) and
  the "interrupted" lines of ranks it stopped are not shown.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import uuid
from pathlib import Path

from stages.errors import Interrupted

log = logging.getLogger(__name__)
ERROR_DIR = "STAGE_ERROR_DIR"  # where launched workers leave their one-line error (cli.run)
INTERRUPTED = (130, 143)  # exit status of a worker the launcher stopped with SIGINT / SIGTERM


class LaunchFailed(Exception):
    """The workers failed; ``line`` is the one to show and ``status`` the exit status."""

    def __init__(self, line: str, status: int):
        super().__init__(line)
        self.line, self.status = line, status


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched() -> bool:
    """True inside a worker process that the launcher (or torchrun) started."""
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


def destroy_process_group() -> None:
    """Leave the process group, if this process joined one (NCCL warns at exit otherwise)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def report(line: str, status: int) -> bool:
    """In a launched worker, leave the stage's one failure line for the launcher and return True;
    elsewhere return False (the caller prints it)."""
    folder = os.environ.get(ERROR_DIR)
    if not (launched() and folder):
        return False
    (Path(folder) / f"rank-{rank()}").write_text(f"{status}\n{line}\n", encoding="utf-8")
    return True


def relaunch(module: str, processes: int, argv: list[str]) -> None:
    """Run ``python -m module argv`` as ``processes`` workers and exit 0 when all succeeded (the
    workers wrote the outputs, each checked by its own guard: the launching process has nothing
    to record).

    Raises ``LaunchFailed`` with the line to show when a worker failed, and ``Interrupted`` when
    the stage was signalled, after the workers have stopped.
    """
    from torch.distributed.elastic.multiprocessing import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    # torchrun --standalone: a rendezvous on a free local port, a fresh id, no restarts.
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=processes, rdzv_backend="c10d",
                          rdzv_endpoint="localhost:0", run_id=str(uuid.uuid4()), max_restarts=0)
    logging.getLogger("torch.distributed.elastic").setLevel(logging.ERROR)  # our one line says it
    log.info("launching %d processes: python -m %s %s", processes, module, " ".join(argv))
    with tempfile.TemporaryDirectory(prefix="stage-errors-") as errors:
        os.environ[ERROR_DIR] = errors
        try:
            elastic_launch(config, sys.executable)("-m", module, *argv)
        except ChildFailedError as exc:
            raise failure(Path(errors), {rank: f.exitcode for rank, f in exc.failures.items()}) from None
        except SignalException as exc:  # the launcher forwarded it to the workers and waited
            raise Interrupted(exc.sigval) from None
        finally:
            del os.environ[ERROR_DIR]
    sys.exit(0)


def failure(errors: Path, exits: dict[int, int]) -> LaunchFailed:
    """The one failure to show: rank 0's line before others', a real error before the
    "interrupted" line of a rank that was stopped because another failed."""
    lines = {}
    for path in errors.glob("rank-*"):
        status, _, line = path.read_text(encoding="utf-8").partition("\n")
        lines[int(path.name.removeprefix("rank-"))] = (int(status), line.strip())
    for rank_ in sorted(lines, key=lambda r: (lines[r][0] in INTERRUPTED, r)):
        return LaunchFailed(*lines[rank_][::-1])
    rank_ = min(exits)  # no line: a crash (its traceback is above) or a signal from outside
    status = exits[rank_] if exits[rank_] > 0 else 128 - exits[rank_]  # -15: killed by SIGTERM
    return LaunchFailed(f"error: process {rank_} of the stage exited with status {status}", status)
