"""A stage's results are recorded only with the params and data it really read.

DVC reads ``params.yaml`` and hashes a stage's data dependencies *after* the command ends (checked
on DVC 3.67: an input edited while a stage ran was recorded in ``dvc.lock`` beside outputs made
from its old contents, and ``dvc status`` said "up to date"). So a params section or an input
edited while a stage runs would be paired with results it did not make. ``Guard`` takes a snapshot
of the stage's params sections (their values) and of the pipeline's data (size and mtime of
every file under the data paths in ``paths``, and ``data.file``) when the stage starts, and checks
them again before its outputs are moved into place (``stages.atomic.transaction``); on a change
the stage fails with one line naming what changed and writes nothing.

The data snapshot covers every data folder, not only the stage's own inputs: the stage's own
outputs are still temporaries (``.NAME.tmp-PID``, skipped) when the check runs, and under DVC's
repository lock nothing else should be writing there.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from stages.errors import InputError
from stages.params import read_params_file


class ChangedWhileRunning(InputError):
    """params.yaml or an input changed while the stage ran; its results are not recorded."""


def _read(params_file: Path) -> dict:
    raw = read_params_file(params_file)  # a file that is not YAML: stages.params' one line
    return raw if isinstance(raw, dict) else {}


def _sections(raw: dict, names: tuple[str, ...]) -> dict:
    return {name: raw.get(name) for name in names}


def _flatten(value: object, prefix: str) -> dict[str, object]:
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for key, inner in value.items():
            out |= _flatten(inner, f"{prefix}.{key}")
        return out or {prefix: {}}
    return {prefix: value}


def digest(sections: dict) -> str:
    return hashlib.sha256(json.dumps(sections, sort_keys=True, default=str).encode()).hexdigest()


def _data_roots(raw: dict) -> list[Path]:
    paths, data = (raw.get("paths") or {}), (raw.get("data") or {})
    roots = [paths.get(k) for k in ("split", "tokenized", "models", "predictions")]
    if data.get("source") == "file":
        roots.append(data.get("file"))
    return [Path(r) for r in roots if isinstance(r, str)]


def _files(roots: list[Path]) -> dict[str, tuple[int, int]]:
    """(size, mtime_ns) of every file under ``roots``, temporaries (dot names) left out."""
    seen: dict[str, tuple[int, int]] = {}
    for root in roots:
        candidates = [root] if root.is_file() else root.rglob("*") if root.is_dir() else []
        for path in candidates:
            if any(part.startswith(".") for part in path.relative_to(root.parent).parts):
                continue
            if path.is_file():
                stat = path.stat()
                seen[str(path)] = (stat.st_size, stat.st_mtime_ns)
    return seen


class Guard:
    """Snapshot at construction; ``check()`` raises ``ChangedWhileRunning`` on any difference."""

    def __init__(self, params_file: str | Path, sections: tuple[str, ...]):
        self.params_file, self.names = Path(params_file), tuple(sections)
        raw = _read(self.params_file)
        self.sections = _sections(raw, self.names)
        self.roots = _data_roots(raw)
        self.files = _files(self.roots)

    @property
    def digest(self) -> str:
        """sha256 of the params sections this stage read, as they were when it started."""
        return digest(self.sections)

    def check(self) -> None:
        now = _sections(_read(self.params_file), self.names)
        if now != self.sections:
            old = {k.lstrip("."): v for k, v in _flatten(self.sections, "").items()}
            new = {k.lstrip("."): v for k, v in _flatten(now, "").items()}
            keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
            raise ChangedWhileRunning(
                f"{self.params_file}: {', '.join(keys)} changed while the stage ran; nothing was "
                f"written (its results would be recorded with params it did not use): rerun")
        files = _files(self.roots)
        changed = sorted(p for p in files.keys() | self.files.keys() if files.get(p) != self.files.get(p))
        if changed:
            shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
            raise ChangedWhileRunning(
                f"{shown} changed while the stage ran; nothing was written (its results would be "
                f"recorded with data it did not read): rerun")
