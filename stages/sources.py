"""Where the dialogues come from: a hub data set at a revision, or a local file.

Both paths return one pandas DataFrame with the columns ``id, dialogue, summary, topic`` and
``source_split`` (the source's own split name, for ``split.strategy: source``), after checks
that name the file and the column or row at fault. Reading and checking live here; splitting
lives in the split stage.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from stages.errors import DataError
from stages.params import Data

log = logging.getLogger(__name__)

COLUMNS = ("id", "dialogue", "summary", "topic")
FILE_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}


def dialogue_key(text: str) -> str:
    """Rows whose dialogues differ only in whitespace are the same dialogue."""
    return " ".join(text.split())


@dataclass
class Cleaning:
    """What cleaning dropped, and why: reported in the split metrics."""

    empty_rows: int = 0
    duplicate_rows: int = 0
    examples: list[str] = field(default_factory=list)


@dataclass
class Loaded:
    frame: pd.DataFrame
    cleaning: Cleaning
    origin: str  # what exactly was read: a path, or hub id @ resolved commit


def resolve_hub(repo_id: str, revision: str, repo_type: str) -> tuple[Path, str]:
    """Download (or find in the local cache) a hub repo at ``revision``.

    Returns the local snapshot folder and the commit it resolved to: the snapshot folder is
    named after the commit, so a branch name like ``main`` is pinned in the metrics. Works with
    ``HF_HUB_OFFLINE=1`` from the cache.
    """
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(repo_id, revision=revision, repo_type=repo_type))
    except Exception as exc:  # the hub client raises many kinds; all mean "cannot get it"
        raise DataError(f"{repo_type} {repo_id}@{revision}: cannot be loaded: {exc}") from None
    return folder, folder.name


def load_hub(data: Data) -> Loaded:
    """Every split of ``data.hub_id`` at ``data.revision``, as one frame."""
    import datasets

    folder, commit = resolve_hub(data.hub_id, data.revision, "dataset")
    source = f"{data.hub_id}@{commit}"
    splits = datasets.load_dataset(str(folder))
    frames = []
    for name, split in splits.items():
        frame = _select_columns(split.to_pandas(), data, source)
        frames.append(frame.assign(source_split=name))
    frame, cleaning = check(pd.concat(frames, ignore_index=True), source)
    return Loaded(frame, cleaning, source)


def load_file(path: str | Path, data: Data) -> Loaded:
    """A local csv / jsonl / parquet file, chosen by extension, every value read as text."""
    path = Path(path)
    fmt = FILE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: unsupported extension (use one of {', '.join(FILE_FORMATS)})")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    frame = _read(path, fmt)
    if frame.empty:
        raise DataError(f"{path}: no rows")
    frame = _select_columns(frame, data, str(path))
    if "source_split" not in frame:
        frame["source_split"] = "all"
    frame, cleaning = check(frame, str(path))
    return Loaded(frame, cleaning, str(path))


def _read(path: Path, fmt: str) -> pd.DataFrame:
    try:
        if fmt == "parquet":
            # nullable dtypes: an int column with a null would otherwise become float (1 -> "1.0")
            return pd.read_parquet(path, dtype_backend="numpy_nullable")
        text = path.read_bytes().decode("utf-8")
        if fmt == "csv":
            return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
        return _read_jsonl(text)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except (ValueError, OSError) as exc:  # pandas / pyarrow parse errors
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: not a valid {fmt} file ({first})") from None


def _read_jsonl(text: str) -> pd.DataFrame:
    """JSON Lines through ``json``, values kept as parsed: ``pd.read_json`` turns an integer
    column with one missing value into floats (id 1 -> "1.0"), whatever ``dtype`` says."""
    rows = []
    # split on "\n" only: str.splitlines() would also cut at U+2028 inside a JSON string
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"line {number}: {exc.msg}") from None
        if not isinstance(row, dict):
            raise ValueError(f"line {number}: not a JSON object")
        rows.append(row)
    return pd.DataFrame(rows, dtype=object)


def _select_columns(frame: pd.DataFrame, data: Data, source: str) -> pd.DataFrame:
    """Rename the source's columns to ours (``data.columns``), keeping the source split if any."""
    mapping = data.columns.model_dump()
    missing = [f"'{col}' (data.columns.{ours})" for ours, col in mapping.items() if col not in frame]
    if missing:
        found = ", ".join(map(str, frame.columns))
        raise DataError(f"{source}: missing column {', '.join(missing)}; found: {found}")
    selected = frame[list(mapping.values())].set_axis(list(mapping), axis=1)
    if "split" in frame and "split" not in mapping.values():
        selected["source_split"] = frame["split"].astype(str)
    return selected


def check(frame: pd.DataFrame, source: str) -> tuple[pd.DataFrame, Cleaning]:
    """Normalise to text, refuse contradictions, report what is dropped.

    Empty dialogues or summaries are dropped (recoverable: a few bad rows should not sink a
    13k-row data set) and counted in the returned ``Cleaning``; ids that repeat with different
    content are refused, since predictions and scores are keyed by id.
    """
    frame = frame.copy()
    for col in COLUMNS:
        frame[col] = frame[col].map(lambda v: "" if pd.isna(v) else str(v).strip())
    cleaning = Cleaning()
    empty = (frame["dialogue"] == "") | (frame["summary"] == "") | (frame["id"] == "")
    if empty.any():
        cleaning.empty_rows = int(empty.sum())
        cleaning.examples = [f"row {i}" for i in frame.index[empty][:5]]
        log.warning("%s: dropping %d row(s) with an empty id, dialogue or summary (%s)",
                    source, cleaning.empty_rows, ", ".join(cleaning.examples))
        frame = frame[~empty]
    if frame.empty:
        raise DataError(f"{source}: no row has an id, a dialogue and a summary")
    duplicated = frame.duplicated(subset=list(COLUMNS))
    cleaning.duplicate_rows = int(duplicated.sum())
    if cleaning.duplicate_rows:
        log.warning("%s: dropping %d exact duplicate row(s)", source, cleaning.duplicate_rows)
        frame = frame[~duplicated]
    clashes = frame["id"][frame["id"].duplicated()].unique()
    if len(clashes):
        shown = ", ".join(map(repr, clashes[:5]))
        raise DataError(f"{source}: id {shown} occurs with different content ({len(clashes)} id(s))")
    return frame.reset_index(drop=True), cleaning


def load(data: Data) -> Loaded:
    """The configured source, checked."""
    return load_hub(data) if data.source == "hub" else load_file(data.file, data)
