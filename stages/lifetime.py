"""A stage never outlives the process that started it.

DVC 3.67 runs a stage's ``cmd`` as ``$SHELL -c CMD`` and waits for it (``dvc/stage/run.py``).
When DVC itself is stopped (SIGTERM from a scheduler or ``kill``, SIGKILL, an OOM kill), nothing
signals the stage: it went on training, later wrote ``models/lora`` or a predictions file that
no ``dvc.lock`` covers, and a second ``dvc repro`` could train into the same checkpoints at once.
``watch()`` starts a thread that checks twice a second that the processes the stage lives for
are still there; when one is gone it sends its own process SIGTERM, which ``stages.cli`` turns
into "interrupted (SIGTERM): nothing was written; rerun to resume" (exit 143, checkpoints kept).
If the stage has not stopped ``GRACE_S`` later (stuck in a native call), it exits at once.

Which processes (``owners``): the stage's ancestors up to the nearest one that is not a shell.
Under DVC (which puts ``DVC_STAGE`` in its command's environment) that is DVC, and the shell in
between when there is one (bash and dash run a lone command in place of themselves, but not
``a && b``, and a shell left behind outlives DVC); in a worker of a multi-process stage (``LOCAL_RANK``) it
is the stage process that launched it. A stage run by hand from a terminal watches nothing: it is
the shell's job, ended as the shell ends its jobs (SIGHUP), and ``nohup`` keeps meaning what it
says.

Why not ``prctl(PR_SET_PDEATHSIG)``: it fires when the *thread* that started the process exits,
not the process, and it covers the direct parent only, which under DVC may be the shell that
outlives DVC. Polling two or three processes costs nothing measurable.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "fish", "ksh", "mksh", "busybox"})
POLL_S = 0.5
GRACE_S = 5.0


def owners() -> list:
    """The ``psutil.Process`` objects this stage lives for (empty when run by hand)."""
    if "DVC_STAGE" not in os.environ and "LOCAL_RANK" not in os.environ:
        return []
    import psutil

    chain = []
    process = psutil.Process().parent()
    while process is not None and process.pid > 1:
        chain.append(process)
        try:
            if process.name() not in SHELLS:
                break
            process = process.parent()
        except psutil.Error:  # gone already: watching it ends the stage at once
            break
    return chain


def _gone(process) -> bool:
    import psutil

    try:  # is_running() compares the start time too, so a reused pid is not taken for it
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def watch(processes: list) -> Callable[[], None]:
    """SIGTERM this process when one of ``processes`` ends; returns the function that stops watching."""
    stop = threading.Event()
    if not processes:
        return stop.set
    named = [(p, _describe(p)) for p in processes]  # while they can still be asked

    def loop() -> None:
        while not stop.wait(POLL_S):
            gone = next((name for p, name in named if _gone(p)), None)
            if gone is None:
                continue
            log.warning("%s, which started this stage, is gone: stopping", gone)
            os.kill(os.getpid(), signal.SIGTERM)
            if not stop.wait(GRACE_S):
                print(f"interrupted ({gone}, which started this stage, is gone): stopped after "
                      f"{GRACE_S:g} s; rerun to resume", file=sys.stderr, flush=True)
                os._exit(128 + signal.SIGTERM)
            return

    threading.Thread(target=loop, name="stage-lifetime", daemon=True).start()
    return stop.set


STOPPING = frozenset({signal.SIGTERM, signal.SIGINT})


def deadline(expire: Callable[[int], None], grace_s: float = GRACE_S) -> Callable[[], None]:
    """Call ``expire(signum)`` (which ends the process) ``grace_s`` after this process received
    SIGTERM or SIGINT, unless the returned function was called first (call both from the main
    thread, after the signals' handlers are installed).

    A Python signal handler runs only in the main thread, between two bytecodes: a main thread
    waiting in a native call (a collective whose peer already stopped, a long kernel) never runs
    it. The interpreter's own C handler still writes the signal's number to the wakeup file
    descriptor at once, and a thread waiting on it here starts the clock."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    previous = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    stop = threading.Event()

    def wait_for_a_stop() -> int | None:
        while True:  # other handled signals (a DataLoader's SIGCHLD) write their numbers too
            try:
                received = os.read(read_end, 1)
            except OSError:  # closed: stopped
                return None
            if not received or stop.is_set():
                return None
            if received[0] in STOPPING:
                return received[0]

    def loop() -> None:
        try:
            signum = wait_for_a_stop()
        finally:
            os.close(read_end)  # the pipe's other end is stop_watching's to close
        if signum is not None and not stop.wait(grace_s):
            expire(signum)

    def stop_watching() -> None:
        stop.set()
        signal.set_wakeup_fd(previous)
        os.close(write_end)  # the thread's read returns empty, and it ends

    threading.Thread(target=loop, name="stage-signal-deadline", daemon=True).start()
    return stop_watching


def _describe(process) -> str:
    import psutil

    try:
        return f"pid {process.pid} ({' '.join(process.cmdline()[:3]) or process.name()})"
    except psutil.Error:
        return f"pid {process.pid}"
