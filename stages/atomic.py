"""Outputs appear whole or not at all.

Every stage writes into a temporary sibling of its output and moves it into place only when the
write succeeded, so a crash, a Ctrl-C or a bad input never leaves a half-written file or folder
where the next stage (or `dvc commit`) would take it for a finished one.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success it replaces ``target``.

    The temporary path lives in the same folder, so the final move is a rename on one file
    system. A file or a folder may be written there.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Leftovers of a writer that was killed (SIGKILL skips any cleanup). One writer at a time
    # is safe to assume: DVC locks the repository while a stage runs.
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        remove(stale)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        yield tmp
    except BaseException:
        remove(tmp)
        raise
    if target.is_dir() and not target.is_symlink():
        # A folder cannot be renamed over a non-empty one: move the old one aside first.
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        remove(old)
        os.replace(target, old)
        os.replace(tmp, target)
        remove(old)
    else:
        os.replace(tmp, target)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, data: object) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_jsonl(path: str | Path, rows: list[dict]) -> None:
    write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
