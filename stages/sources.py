"""Where the dialogues come from: a hub data set at a revision, or a local file.

Both paths return one pandas DataFrame with the columns ``id, dialogue, summary, topic`` and
``source_split`` (the source's own split name, for ``split.strategy: source``), after checks
that name the file and the column or row at fault. Reading and checking live here; splitting
lives in the split stage.

Files: csv, JSON Lines (``.jsonl``), JSON (``.json``: one array of objects, as SAMSum ships, or
JSON Lines under that name) and parquet; a UTF-8 byte order mark is accepted in every text
format. A source without topics maps ``data.columns.topic: null`` (topic then reads as "").
Hub data sets: the data files of ``data.hub_id`` at the commit ``data.revision`` (stages.hub).

Errors name the file and the position (line, item, row) and quote data sparingly: only names and
ids, each cut short and escaped (``shown``), and nothing from a file that a link takes out of the
project (``outside``), which may be any file of the machine's, secrets included.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from stages import hub as hub_client
from stages.errors import DataError, first_line
from stages.params import Data, Hub

if TYPE_CHECKING:
    import pandas as pd  # imported where used: the score stage needs only dialogue_key

log = logging.getLogger(__name__)

COLUMNS = ("id", "dialogue", "summary", "topic")
FILE_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "json", ".parquet": "parquet"}


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


def load_hub(data: Data, hub: Hub) -> Loaded:
    """Every split of ``data.hub_id`` at the commit ``data.revision``, as one frame."""
    import datasets
    import pandas as pd

    try:
        hub_client.require_commit("data.revision", data.hub_id, data.revision)
        folder = hub_client.download(data.hub_id, data.revision, "dataset", hub, "data.revision")
    except hub_client.HubError as exc:
        raise DataError(str(exc)) from None
    source = f"{data.hub_id}@{folder.name}"  # the snapshot folder is named after the commit
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
    elsewhere = outside(path)
    frame = _select_columns(frame, data, str(path), quote=elsewhere is None)
    if "source_split" not in frame:
        frame["source_split"] = "all"
    frame, cleaning = check(frame, str(path), quote=elsewhere is None)
    return Loaded(frame, cleaning, str(path))


def outside(path: Path) -> Path | None:
    """Where ``path`` really is when a link takes it out of the project (the working directory),
    else None. Errors quote nothing from such a file: it is not the project's own data."""
    real = path.resolve()
    if real == Path(os.path.abspath(path)) or real.is_relative_to(Path.cwd().resolve()):
        return None
    return real


def shown(values: Iterable[object], most: int = 8, width: int = 40) -> str:
    """Names or ids from a data file, as an error line may quote them: at most ``most`` of them,
    each cut to ``width`` characters and escaped (``repr``) unless it is plain printable text."""
    values = [str(v) for v in values]
    parts = [v if v.isprintable() and "`" not in v else repr(v) for v in values[:most]]
    parts = [p if len(p) <= width else p[:width] + "..." for p in parts]
    more = f", ... ({len(values)} in all)" if len(values) > most else ""
    return (", ".join(parts) or "none") + more


@contextmanager
def _parquet_named(path: str | Path) -> Iterator[None]:
    """A damaged parquet file a stage wrote (the split stage's) as one line naming the file: it
    otherwise surfaces as the codec's complaint ("Corrupt snappy compressed data"), no name."""
    try:
        yield
        return
    except OSError as exc:
        if exc.errno:  # not found, permission denied: the OS error names the file already
            raise
        problem: Exception = exc
    except ValueError as exc:  # pyarrow's ArrowInvalid
        problem = exc
    first = first_line(problem)
    raise DataError(f"{path}: not a readable parquet file ({first}): damaged on disk; `dvc checkout {path}` "
                    "restores it, `dvc repro` rebuilds it")


def read_parquet(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """A parquet file a stage wrote, as a DataFrame (``_parquet_named`` for a damaged one)."""
    import pandas as pd

    with _parquet_named(path):
        return pd.read_parquet(path, columns=columns)


def read_parquet_columns(path: str | Path, columns: list[str]) -> dict[str, list]:
    """``columns`` of a parquet file a stage wrote, as lists, without pandas: its import alone was a
    third of the score stage's start."""
    import pyarrow.parquet as pq

    with _parquet_named(path):
        return pq.read_table(path, columns=columns).to_pydict()


def _read(path: Path, fmt: str) -> pd.DataFrame:
    import pandas as pd

    try:
        if fmt == "parquet":
            # nullable dtypes: an int column with a null would otherwise become float (1 -> "1.0")
            return pd.read_parquet(path, dtype_backend="numpy_nullable")
        # utf-8-sig: a byte order mark (Windows exports write one) is dropped, not read as text
        text = path.read_bytes().decode("utf-8-sig")
        if fmt == "csv":
            return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        if fmt == "json" and text.lstrip().startswith("["):
            return _read_json_array(text)
        return _read_jsonl(text)  # .jsonl, or JSON Lines saved as .json
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except (ValueError, OSError) as exc:  # pandas / pyarrow parse errors: positions, not data
        first = first_line(exc)
        raise DataError(f"{path}: not a valid {fmt} file ({first})") from None


def jsonl_lines(text: str) -> Iterator[tuple[int, str]]:
    """The non-blank lines of JSON Lines text, numbered from 1. Split on "\n" only:
    str.splitlines() would also cut at U+2028, which JSON allows unescaped inside a string."""
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            yield number, line


def _read_jsonl(text: str) -> pd.DataFrame:
    """JSON Lines through ``json``, values kept as parsed: ``pd.read_json`` turns an integer
    column with one missing value into floats (id 1 -> "1.0"), whatever ``dtype`` says."""
    import pandas as pd

    rows = []
    for number, line in jsonl_lines(text):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"line {number}: {exc.msg}") from None
        if not isinstance(row, dict):
            raise ValueError(f"line {number}: not a JSON object")
        rows.append(row)
    return pd.DataFrame(rows, dtype=object)


def _read_json_array(text: str) -> pd.DataFrame:
    """One JSON array of objects (SAMSum's format), values kept as parsed, as for JSON Lines."""
    import pandas as pd

    try:
        rows = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"line {exc.lineno}: {exc.msg}") from None
    bad = next((i for i, row in enumerate(rows) if not isinstance(row, dict)), None)
    if bad is not None:
        raise ValueError(f"item {bad}: not a JSON object")
    return pd.DataFrame(rows, dtype=object)


def _select_columns(frame: pd.DataFrame, data: Data, source: str, quote: bool = True) -> pd.DataFrame:
    """Rename the source's columns to ours (``data.columns``), keeping the source split if any;
    a missing column's error lists the ones found only where ``quote``."""
    mapping = {ours: col for ours, col in data.columns.model_dump().items() if col is not None}
    missing = [f"'{col}' (data.columns.{ours})" for ours, col in mapping.items() if col not in frame]
    if missing:
        found = (f"found: {shown(frame.columns)}" if quote else
                 f"{len(frame.columns)} column(s) found, not shown: the file links outside the project")
        raise DataError(f"{source}: missing column {', '.join(missing)}; {found}")
    selected = frame[list(mapping.values())].set_axis(list(mapping), axis=1)
    if "topic" not in mapping:  # data.columns.topic: null
        selected["topic"] = ""
    if "split" in frame and "split" not in mapping.values():
        selected["source_split"] = frame["split"].astype(str)
    return selected


def check(frame: pd.DataFrame, source: str, quote: bool = True) -> tuple[pd.DataFrame, Cleaning]:
    """Normalise to text, refuse contradictions, report what is dropped.

    Empty dialogues or summaries are dropped (recoverable: a few bad rows should not sink a
    13k-row data set) and counted in the returned ``Cleaning``; ids that repeat with different
    content are refused, since predictions and scores are keyed by id.
    """
    import pandas as pd

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
        rows = " and ".join(f"row {i}" for i in frame.index[frame["id"] == clashes[0]][:2])
        ids = f"id {shown(map(repr, clashes[:5]))}" if quote else "an id"
        raise DataError(f"{source}: {ids} occurs with different content ({len(clashes)} id(s); "
                        f"first at {rows})")
    return frame.reset_index(drop=True), cleaning


def load(data: Data, hub: Hub) -> Loaded:
    """The configured source, checked."""
    return load_hub(data, hub) if data.source == "hub" else load_file(data.file, data)
