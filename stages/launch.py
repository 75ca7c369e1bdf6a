"""Running a stage as several processes (data parallel), through torch's elastic launcher.

A stage whose params ask for ``processes > 1`` re-runs itself as that many worker processes
(``python -m stages.<stage> ...``, one per GPU; gloo on CPU) through
``torch.distributed.launcher.api.elastic_launch``: the engine behind ``torchrun --standalone``,
and the rendezvous HF's Trainer and ``accelerate`` speak. dvc.yaml keeps a single ``cmd``; with
``processes: 1`` nothing is launched and the stage runs as before.

The launcher runs in the stage's own process rather than as a ``torchrun`` child, so that:

- a signal to the stage (SIGTERM from ``dvc queue kill`` or a scheduler, Ctrl-C) reaches the
  workers: the launcher forwards it, waits for them to stop, and the stage exits 143/130 with
  nothing written. (Workers are started detached from the terminal's signals; a killed
  ``torchrun`` child would leave them training, and rank 0 would later write outputs after the
  stage had failed.)
- a failure is one line: each worker writes its ``error: ...`` line to a file of the launch
  instead of the terminal (``ERROR_DIR``), and the stage prints one of them once, rank 0's
  first, with that rank's exit status; the launcher's own traceback (``ChildFailedError``) and
  the "interrupted" lines of ranks it stopped are not shown.

Across nodes (``slurm/train.sbatch``): the same command runs once per node, each with
``STAGES_NNODES``, ``STAGES_NODE_RANK`` and a shared ``STAGES_RDZV_ENDPOINT`` (host:port of one
node) and ``STAGES_RDZV_ID``; the launchers meet through torchrun's c10d rendezvous, never
``--standalone``. The project folder is shared by the nodes: node 0 prepares the checkpoints,
global rank 0 writes the outputs, and every rank waits at a barrier until those are in place
(``cli.run``), so the node where DVC runs the stage ends only after they are.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import uuid
from pathlib import Path

from stages.errors import InputError, Interrupted

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


def local_rank() -> int:
    """This process's index on its node: its GPU (``cuda:LOCAL_RANK``) when it has one."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def nodes() -> int:
    return int(os.environ.get("STAGES_NNODES", "1"))


def node_rank() -> int:
    return int(os.environ.get("STAGES_NODE_RANK", "0"))


_own_run_id: list[str] = []  # this launcher's run id, once made (one node)


def run_id() -> str:
    """The id of the launch this process makes: ``STAGES_RDZV_ID`` across nodes (the same in
    every node's launcher), else one made here, once. Its workers see it as ``worker_run_id()``."""
    if nodes() > 1:
        return os.environ.get("STAGES_RDZV_ID", "")
    if not _own_run_id:
        _own_run_id.append(str(uuid.uuid4()))
    return _own_run_id[0]


def worker_run_id() -> str:
    """In a launched worker: the id of the launch that started it (torch's elastic agent sets it)."""
    return os.environ.get("TORCHELASTIC_RUN_ID", "")


def needed(processes: int) -> bool:
    """Whether a stage with ``processes`` per node must launch workers (not already being one)."""
    return (processes > 1 or nodes() > 1) and not launched()


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


def _group():  # torch.distributed when this process joined a group, else None
    torch = sys.modules.get("torch")
    if torch is not None and torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed
    return None


def barrier() -> None:
    """Wait for every rank (after rank 0 moved the outputs into place): across nodes, the node
    running DVC must not end its stage before a rank 0 on another node has written them."""
    if (dist := _group()) is not None:
        dist.barrier()


def largest(value: float) -> float:
    """The largest of every rank's ``value`` (each rank calls it), or ``value`` with one process."""
    if (dist := _group()) is None:
        return value
    import torch

    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    values = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return float(values.item())


def destroy_process_group() -> None:
    """Leave the process group, if this process joined one (NCCL warns at exit otherwise)."""
    if (dist := _group()) is not None:
        dist.destroy_process_group()


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

    count = nodes()
    if count > 1:  # every node's launcher meets the others at the endpoint
        endpoint = os.environ.get("STAGES_RDZV_ENDPOINT")
        if not (endpoint and run_id()):
            raise InputError(f"STAGES_NNODES={count}: set STAGES_RDZV_ENDPOINT (host:port of one node, "
                             "the same on every node) and STAGES_RDZV_ID (e.g. the scheduler's job id)")
    else:  # torchrun --standalone: a rendezvous on a free local port, a fresh id
        endpoint = "localhost:0"
    config = LaunchConfig(min_nodes=count, max_nodes=count, nproc_per_node=processes, rdzv_backend="c10d",
                          rdzv_endpoint=endpoint, run_id=run_id(), max_restarts=0)
    logging.getLogger("torch.distributed.elastic").setLevel(logging.ERROR)  # our one line says it
    log.info("launching %d processes on node %d of %d: python -m %s %s", processes, node_rank(), count,
             module, " ".join(argv))
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
