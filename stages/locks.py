"""One training per checkpoint folder at a time.

Two trainings of one variant (two ``dvc repro`` in one workspace: DVC releases its repository
lock while a stage's command runs; or a stage run by hand beside one DVC runs) would resume from
each other's checkpoints, rotate them away under each other and clear the folder at the end.
``exclusive(folder)`` holds an exclusive ``flock`` on ``<folder>.lock`` (beside the folder, which
a run may clear and recreate) for the whole training; a second training is refused at once with
one line naming the process that holds it. The kernel releases an ``flock`` when its holder dies,
however it dies, so a crashed run never leaves a stale lock; the lock file stays while the folder
does (a crashed run's checkpoints, kept for its resume) and holds the last holder's pid. A holder
whose folder is gone when it lets go (the training finished and removed its checkpoints) removes
the lock file too, still holding it: a process that opened the old file meanwhile finds, once it
gets the lock, that the path no longer names that file, and locks the file now there instead, so
two processes never hold "the" lock on two different files.

Not ``filelock`` (a test dependency here): its lock file is truncated by every process that
tries it, so the refused run could not say which process holds the lock. POSIX only, as
``fcntl`` is.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from stages.errors import InputError


class FolderInUse(InputError):
    """Another process holds the folder's lock; the message names it."""


_held: set[int] = set()  # lock fds this process holds
_hooked: list[bool] = []  # the fork hook is registered (once: it cannot be removed)


def _hook() -> None:
    os.register_at_fork(after_in_child=_forget_in_child)
    _hooked.append(True)


def _forget_in_child() -> None:
    # A forked child (a DataLoader worker) shares the parent's lock: closing its copy means the
    # lock goes when the training process dies, not when its last worker notices and exits.
    for fd in _held:
        try:
            os.close(fd)
        except OSError:
            pass
    _held.clear()


@contextmanager
def exclusive(folder: str | Path) -> Iterator[None]:
    """Hold ``<folder>.lock`` while the block runs; raise ``FolderInUse`` if another process holds
    it. The lock file is removed on the way out when ``folder`` no longer exists."""
    folder = Path(folder)
    lock = folder.with_name(f"{folder.name}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = _acquire(folder, lock)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        if not _hooked:
            _hook()
        _held.add(fd)
        yield
    finally:
        _held.discard(fd)
        if not folder.exists() and _names(lock, fd):
            lock.unlink()  # before the lock is let go: see the module
        os.close(fd)  # releases the lock


def _acquire(folder: Path, lock: Path) -> int:
    """An open descriptor of ``lock``, exclusively locked, that the path ``lock`` still names."""
    import fcntl

    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise FolderInUse(f"{folder} is in use by another training (pid {holder}, lock {lock}): "
                              "wait for it to end or stop it; two would resume from and delete each "
                              "other's checkpoints") from None
        if _names(lock, fd):
            return fd
        os.close(fd)  # its holder removed it as it let go: lock the file now at that path


def _names(path: Path, fd: int) -> bool:
    """Whether ``path`` is the file open as ``fd``."""
    try:
        here = os.stat(path)
    except FileNotFoundError:
        return False
    there = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)
