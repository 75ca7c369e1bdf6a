"""Outputs appear whole or not at all.

Every stage writes into a temporary sibling of its output and moves it into place only when the
write succeeded, so a crash, a Ctrl-C or a bad input never leaves a half-written file or folder
where the next stage (or `dvc commit`) would take it for a finished one.

Inside a ``transaction()`` (``stages.cli.run`` opens one around every stage body) the final moves
wait until the whole body has finished and a check has passed (``stages.guard``: the params and
data the stage read are still what they were): a stage either puts all of its outputs in place or
none of them. Temporary siblings are named ``.NAME.tmp-PID`` / ``.NAME.old-PID``; ``.dvcignore``
keeps them out of every hash DVC takes, and the next writer in that folder removes any left by a
process that is gone.
"""

from __future__ import annotations

import contextvars
import errno
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

# (temporary, target) moves and after-commit callbacks of the open transaction; None when none is open.
_pending: contextvars.ContextVar[list | None] = contextvars.ContextVar("pending", default=None)
_LITTER = re.compile(r"^\..+\.(tmp|old)-(\d+)$")


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def sweep(folder: str | Path) -> list[Path]:
    """Remove the temporaries of writers that are gone (a SIGKILL skips every cleanup)."""
    folder = Path(folder)
    removed = []
    if folder.is_dir():
        for path in folder.iterdir():
            match = _LITTER.match(path.name)
            if match and not _alive(int(match.group(2))):
                remove(path)
                removed.append(path)
    return removed


def _move_into_place(tmp: Path, target: Path) -> None:
    if target.is_dir() and not target.is_symlink():
        # A folder cannot be renamed over a non-empty one: move the old one aside first.
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        remove(old)
        os.replace(target, old)
        os.replace(tmp, target)
        remove(old)
    else:
        os.replace(tmp, target)


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success it replaces ``target``.

    The temporary path lives in the same folder, so the final move is a rename on one file
    system. A file or a folder may be written there. Inside a transaction the move waits for
    the transaction's commit (read what was written from the yielded path, not from ``target``).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep(target.parent)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    remove(tmp)
    try:
        with writing(target):
            yield tmp
    except OSError as exc:
        remove(tmp)
        if exc.filename is None and exc.errno:  # e.g. pyarrow's: name the output being written
            raise OSError(exc.errno, os.strerror(exc.errno), str(target)) from exc
        raise
    except BaseException:
        remove(tmp)
        raise
    pending = _pending.get()
    if pending is None:
        _move_into_place(tmp, target)
    else:
        # Written twice in one transaction: the second write (same temporary) is the one that counts.
        pending[:] = [item for item in pending if not (isinstance(item, tuple) and item[1] == target)]
        pending.append((tmp, target))


# A full disk, as the weight writers report it: safetensors "I/O error: No space left on device
# (os error 28)", torch.save only "[enforce fail at inline_container.cc:672] . unexpected pos 576
# vs 534" or "PytorchStreamWriter failed writing file ...", with no error number at all.
_OS_ERROR = re.compile(r"\(os error (\d+)\)")
_TORCH_WRITE = ("inline_container.cc", "PytorchStreamWriter")


@contextmanager
def writing(target: str | Path, room: int = 2**20) -> Iterator[None]:
    """Within the block, a weight writer's failed write (safetensors' ``SafetensorError``,
    ``torch.save``'s ``RuntimeError``) raises the ``OSError`` it stands for, naming ``target``,
    as Python's own writes do, so a stage ends in one line. torch names no error: with less than
    ``room`` bytes free where ``target`` lies, it is a full disk; otherwise an I/O error."""
    try:
        yield
    except OSError:
        raise
    except Exception as exc:
        text = str(exc)
        number = _OS_ERROR.search(text) if type(exc).__name__ == "SafetensorError" else None
        if number:
            code = int(number.group(1))
        elif isinstance(exc, RuntimeError) and any(mark in text for mark in _TORCH_WRITE):
            code = errno.ENOSPC if _free(Path(target)) < room else errno.EIO
        else:
            raise
        raise OSError(code, os.strerror(code), str(target)) from exc


def _free(path: Path) -> int:
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return 0


def after_commit(callback: Callable[[], None]) -> None:
    """Run ``callback`` once the open transaction's outputs are in place (now, when none is open)."""
    pending = _pending.get()
    if pending is None:
        callback()
    else:
        pending.append(callback)


@contextmanager
def transaction(check: Callable[[], None] | None = None) -> Iterator[None]:
    """Defer every ``atomic_path`` move inside the block until it ends without error and
    ``check()`` (which raises to refuse) passes; otherwise remove every temporary."""
    pending: list = []
    token = _pending.set(pending)
    try:
        try:
            yield
            if check is not None:
                check()
        except BaseException:
            for item in pending:
                if isinstance(item, tuple):
                    remove(item[0])
            raise
    finally:
        _pending.reset(token)
    for item in pending:
        if isinstance(item, tuple):
            _move_into_place(*item)
    for item in pending:
        if not isinstance(item, tuple):
            item()


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, data: object) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_jsonl(path: str | Path, rows: list[dict]) -> None:
    write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
