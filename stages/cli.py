"""What every stage's ``main()`` shares: arguments, logging, and turning failures into one line.

Bad params, data or model settings raise errors that name what is wrong; here they become a
single ``error: ...`` line and exit status 1 instead of a stack trace. So do OS errors (no space
left, permission denied: the line names the path) and interruptions: Ctrl-C (SIGINT) exits 130,
SIGTERM (what ``dvc queue kill`` sends) 143; Trainer checkpoints stay for a resume. A stage whose
``dvc`` dies is sent that SIGTERM by itself (``stages.lifetime``): it never outlives DVC.

Each stage body runs in a transaction (``stages.atomic``): its outputs are moved into place only
after the body finished and ``stages.guard`` found its params sections (``PARAMS``, declared by
each stage module and equal to its ``params:`` list in dvc.yaml) and the pipeline's data unchanged.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable

from stages import atomic, launch, lifetime
from stages.errors import InputError, Interrupted
from stages.params import PARAMS_FILE

log = logging.getLogger(__name__)
_guard = None  # the running stage's Guard (its params digest goes into the stage's metrics)


def parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser whose --help shows the stage's docstring."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default=str(PARAMS_FILE), help="params file (default: %(default)s)")
    return p


def params_digest() -> str | None:
    """sha256 of the params sections the running stage read (recorded in its metrics)."""
    return None if _guard is None else _guard.digest


def _on_signal(signum, frame):
    """SIGTERM: raise ``Interrupted`` where the stage runs, unless that is a finalizer.

    Python runs a signal's handler between any two bytecodes, including those of a ``__del__``
    that the garbage collector calls (regex's, while transformers loads): an exception raised
    there is printed as "Exception ignored in ...", with a traceback, and dropped, and the stage
    would run on as if never signalled. There the signal is sent again once the finalizer is done
    (seen in a test run: a rank the launcher stopped printed such a traceback)."""
    caller = frame
    while caller is not None:
        if caller.f_code.co_name == "__del__":
            threading.Timer(0.05, os.kill, (os.getpid(), signum)).start()
            return
        caller = caller.f_back
    raise Interrupted(signum)


# Errors a person mends outside the project: say how, the rerun resumes (a training from its last
# checkpoint; outputs were never half-written).
FULL = {errno.ENOSPC: "free space there and rerun", errno.EDQUOT: "free space there and rerun"}


def os_error_line(exc: OSError) -> str:
    reason = os.strerror(exc.errno) if exc.errno else exc.strerror or str(exc)
    where = exc.filename
    line = f"error: {reason}: {where}" if where else f"error: {reason} ({exc})"
    return f"{line}; {FULL[exc.errno]}" if exc.errno in FULL else line


def _fail(line: str, status: int) -> None:
    """Exit with ``status`` and ``line`` on stderr; a launched worker leaves the line to its
    launcher instead (stages.launch), which shows one worker's line, once."""
    if launch.report(line, status):
        _exit_now(status)
    if status == 1:
        sys.exit(line)  # SystemExit prints it and exits 1
    print(line, file=sys.stderr)
    sys.exit(status)


def _interrupted_line(signum: int) -> str:
    return f"interrupted ({signal.Signals(signum).name}): nothing was written; rerun to resume"


def _exit_now(status: int) -> None:
    """End a launched worker that failed or was stopped, now: its outputs were rolled back and its
    line reported, so nothing is left to do. Not Python's orderly exit: that collects the garbage
    of every module torch, transformers and datasets loaded, which took 5 s per worker on two
    idle cores and beyond the launcher's 30 s grace on a loaded machine, after which torch's
    elastic agent SIGKILLs the workers: a SIGTERM then stopped the stage only after 30 s."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(status)


def _stop_now(signum: int) -> None:
    """A launched worker still running ``lifetime.GRACE_S`` after SIGTERM / SIGINT (its handler
    could not run: the main thread waits in a native call) leaves its line and ends."""
    if not launch.report(_interrupted_line(signum), 128 + signum):
        print(_interrupted_line(signum), file=sys.stderr)
    _exit_now(128 + signum)


def run(body: Callable[[], None], sections: tuple[str, ...] = (), params_file: str | os.PathLike = PARAMS_FILE) -> None:
    """Run a stage body with logging set up, in a transaction guarded on ``sections`` of
    ``params_file``; expected failures exit non-zero with one line."""
    global _guard
    from stages.guard import Guard

    # INFO: one line per event. STAGES_LOG_LEVEL=DEBUG adds what a stage read (its resolved params).
    level = logging.getLevelName(os.environ.get("STAGES_LOG_LEVEL", "INFO").upper())
    logging.basicConfig(level=level if isinstance(level, int) else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    # rouge-score logs "Using default tokenizer." through absl at every scorer it builds.
    logging.getLogger("absl").setLevel(logging.WARNING)
    # datasets logs "JAX version ... available." (through its library logger, "datasets") while
    # it is imported, before it sets that logger to its default, WARNING: set it first.
    logging.getLogger("datasets").setLevel(logging.WARNING)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, _on_signal)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    # The stage ends when the process that started it ends (DVC; a worker's launcher): that
    # watch sends the SIGTERM handled here (stages/lifetime.py says why it is needed).
    stop_watching = lifetime.watch(lifetime.owners() if previous is not None else [])
    # A worker stops within seconds of the launcher's SIGTERM, even blocked in a collective.
    stop_deadline = lifetime.deadline(_stop_now) if previous is not None and launch.launched() else None
    try:
        # Under torchrun only the first process (RANK 0) writes outputs; the others have nothing
        # to guard, and would see rank 0's finished outputs as data changed under them.
        first = os.environ.get("RANK", "0") == "0"
        guard = Guard(params_file, sections) if first and sections and os.path.isfile(params_file) else None
        _guard = guard
        with atomic.transaction(guard.check if guard else None):
            body()
        launch.barrier()  # several ranks: all wait until rank 0's outputs are in place
    except InputError as exc:
        _fail(f"error: {exc}", 1)
    except OSError as exc:
        _fail(os_error_line(exc), 1)
    except launch.LaunchFailed as exc:  # the workers' one line, once
        _fail(exc.line, exc.status)
    except (KeyboardInterrupt, Interrupted) as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        _fail(_interrupted_line(signum), 128 + signum)
    finally:
        stop_watching()
        if stop_deadline is not None:
            stop_deadline()
        _guard = None
        launch.destroy_process_group()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
