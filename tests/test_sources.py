"""Data sources: local csv/jsonl/parquet files and an offline hub cache, and the checks on them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from stages.params import Data, Hub, load_params
from stages.sources import COLUMNS, DataError, load, load_file, load_hub
from tests.conftest import ROOT

HUB = Hub(timeout_s=5)
COMMIT = "0123456789abcdef0123456789abcdef01234567"
# Source column names unlike ours, so the mapping in data.columns is exercised.
MAPPING = {"id": "fname", "dialogue": "text", "summary": "gold", "topic": "label"}
ROWS = [
    {"fname": 1, "text": "#Person1#: Hi.\n#Person2#: Hello.", "gold": "They greet.", "label": "greeting"},
    {"fname": 2, "text": "#Person1#: Bye.\n#Person2#: See you.", "gold": "They part.", "label": "farewell"},
    {"fname": 3, "text": "#Person1#: Tea?\n#Person2#: Yes.", "gold": "Tea is offered.", "label": "food"},
]


@pytest.fixture(scope="module")
def base_data() -> Data:
    data = load_params(ROOT / "params.yaml").data
    return data.model_copy(update={"columns": data.columns.model_copy(update=MAPPING)})


def file_data(base: Data, path: Path) -> Data:
    return base.model_copy(update={"source": "file", "file": str(path)})


def write(path: Path, rows: list[dict], fmt: str | None = None) -> Path:
    fmt = fmt or path.suffix.lstrip(".")
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif fmt == "json":  # one JSON array, as SAMSum ships
        path.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    else:
        frame = pd.DataFrame(rows)
        frame.to_csv(path, index=False) if fmt == "csv" else frame.to_parquet(path, index=False)
    return path


def load_error(path: Path, data: Data) -> str:
    with pytest.raises(DataError) as caught:
        load_file(path, data)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")  # every message names the file first
    return message


@pytest.mark.parametrize("name", ["rows.csv", "rows.jsonl", "rows.json", "rows.parquet"])
def test_file_formats_load_with_column_mapping(tmp_path: Path, base_data: Data, name: str) -> None:
    path = write(tmp_path / name, ROWS)
    loaded = load(file_data(base_data, path), HUB)
    frame = loaded.frame
    assert list(frame.columns) == [*COLUMNS, "source_split"]
    assert frame["id"].tolist() == ["1", "2", "3"]  # integer ids come out as text
    assert frame["dialogue"].tolist() == [r["text"] for r in ROWS]
    assert frame["summary"].tolist() == [r["gold"] for r in ROWS]
    assert frame["topic"].tolist() == [r["label"] for r in ROWS]
    assert set(frame["source_split"]) == {"all"}
    assert loaded.origin == str(path)
    assert (loaded.cleaning.empty_rows, loaded.cleaning.duplicate_rows) == (0, 0)


@pytest.mark.parametrize("name", ["rows.jsonl", "rows.parquet"])
def test_integer_ids_stay_integers_when_one_is_missing(tmp_path: Path, base_data: Data, name: str) -> None:
    # a missing id once turned the whole id column into floats: "1.0", "2.0"
    rows = [*ROWS[:2], {**ROWS[2], "fname": None}]
    if name.endswith(".parquet"):
        frame = pd.DataFrame(rows).astype({"fname": "Int64"})
        frame.to_parquet(tmp_path / name, index=False)
        path = tmp_path / name
    else:
        path = write(tmp_path / name, rows)
    loaded = load_file(path, base_data)
    assert loaded.frame["id"].tolist() == ["1", "2"]
    assert loaded.cleaning.empty_rows == 1


def test_split_column_becomes_source_split(tmp_path: Path, base_data: Data) -> None:
    rows = [{**r, "split": s} for r, s in zip(ROWS, ["train", "validation", "test"])]
    loaded = load_file(write(tmp_path / "rows.csv", rows), base_data)
    assert loaded.frame["source_split"].tolist() == ["train", "validation", "test"]


def test_json_lines_saved_as_json_still_read(tmp_path: Path, base_data: Data) -> None:
    path = tmp_path / "rows.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    assert load_file(path, base_data).frame["id"].tolist() == ["1", "2", "3"]


def test_json_array_of_non_objects(tmp_path: Path, base_data: Data) -> None:
    path = tmp_path / "rows.json"
    path.write_text(json.dumps([ROWS[0], ["a", "list"]]), encoding="utf-8")
    assert "not a valid json file (item 1: not a JSON object)" in load_error(path, base_data)


def test_invalid_json_array_names_the_line(tmp_path: Path, base_data: Data) -> None:
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(ROWS, indent=1)[:-3], encoding="utf-8")
    assert re.search(r"not a valid json file \(line \d+: ", load_error(path, base_data))


@pytest.mark.parametrize("name", ["rows.csv", "rows.jsonl", "rows.json"])
def test_utf8_byte_order_mark_is_accepted(tmp_path: Path, base_data: Data, name: str) -> None:
    path = write(tmp_path / name, ROWS)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    frame = load_file(path, base_data).frame
    assert frame["id"].tolist() == ["1", "2", "3"]  # the first column's name is not "\ufefffname"
    assert frame["dialogue"].tolist() == [r["text"] for r in ROWS]


def test_source_without_topic_column(tmp_path: Path, base_data: Data) -> None:
    rows = [{k: v for k, v in r.items() if k != "label"} for r in ROWS]
    data = base_data.model_copy(update={"columns": base_data.columns.model_copy(update={"topic": None})})
    loaded = load_file(write(tmp_path / "samsum.json", rows), data)
    assert list(loaded.frame.columns) == [*COLUMNS, "source_split"]
    assert loaded.frame["topic"].tolist() == ["", "", ""]


def test_missing_file(tmp_path: Path, base_data: Data) -> None:
    assert "no such file" in load_error(tmp_path / "absent.csv", base_data)


def test_empty_file(tmp_path: Path, base_data: Data) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    assert "file is empty" in load_error(path, base_data)


def test_header_only_csv_has_no_rows(tmp_path: Path, base_data: Data) -> None:
    path = tmp_path / "header.csv"
    path.write_text("fname,text,gold,label\n", encoding="utf-8")
    assert "no rows" in load_error(path, base_data)


def test_unsupported_extension(tmp_path: Path, base_data: Data) -> None:
    path = tmp_path / "rows.txt"
    path.write_text("hello\n", encoding="utf-8")
    message = load_error(path, base_data)
    assert "unsupported extension" in message
    assert ".csv" in message and ".parquet" in message  # says what would work


@pytest.mark.parametrize("name", ["latin1.csv", "latin1.jsonl"])
def test_not_utf8(tmp_path: Path, base_data: Data, name: str) -> None:
    path = write(tmp_path / name, ROWS)
    path.write_bytes(path.read_bytes().replace(b"Tea", "Th\u00e9".encode("latin-1")))
    assert "not UTF-8" in load_error(path, base_data)


def test_invalid_json_lines(tmp_path: Path, base_data: Data) -> None:
    path = write(tmp_path / "rows.jsonl", ROWS)
    path.write_text(path.read_text(encoding="utf-8") + '{"fname": 4, "text": \n', encoding="utf-8")
    message = load_error(path, base_data)
    assert "not a valid jsonl file" in message
    assert "line 4" in message


def test_json_line_that_is_not_an_object(tmp_path: Path, base_data: Data) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('["1", "a dialogue", "a summary", "a topic"]\n', encoding="utf-8")
    assert "line 1: not a JSON object" in load_error(path, base_data)


def test_json_string_with_line_separator_is_one_row(tmp_path: Path, base_data: Data) -> None:
    # U+2028 is legal unescaped inside a JSON string; it must not end the line
    rows = [{**ROWS[0], "text": "#Person1#: Hi.\u2028#Person2#: Hello."}]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    assert load_file(path, base_data).frame["dialogue"].tolist() == [rows[0]["text"]]


def test_parquet_that_is_not_parquet(tmp_path: Path, base_data: Data) -> None:
    path = tmp_path / "rows.parquet"
    path.write_text("fname,text,gold,label\n1,a,b,c\n", encoding="utf-8")
    assert "not a valid parquet file" in load_error(path, base_data)


def test_missing_column_names_it_and_its_param(tmp_path: Path, base_data: Data) -> None:
    rows = [{("summary" if k == "gold" else k): v for k, v in r.items()} for r in ROWS]
    message = load_error(write(tmp_path / "rows.csv", rows), base_data)
    assert "missing column 'gold' (data.columns.summary)" in message
    assert "found: fname, text, summary, label" in message


def test_all_rows_empty(tmp_path: Path, base_data: Data) -> None:
    rows = [{**r, "text": "  "} for r in ROWS]
    assert "no row has an id, a dialogue and a summary" in load_error(write(tmp_path / "rows.csv", rows), base_data)


def test_duplicate_id_with_different_content(tmp_path: Path, base_data: Data) -> None:
    rows = [*ROWS, {**ROWS[1], "gold": "They say goodbye."}]
    message = load_error(write(tmp_path / "rows.jsonl", rows), base_data)
    assert "id '2' occurs with different content" in message


@pytest.mark.parametrize("column", ["text", "gold"])
def test_rows_with_empty_dialogue_or_summary_are_dropped_and_counted(tmp_path: Path, base_data: Data,
                                                                     column: str) -> None:
    rows = [*ROWS, {**ROWS[0], "fname": 4, column: None}, {**ROWS[1], "fname": 5, column: " \n"}]
    loaded = load_file(write(tmp_path / "rows.jsonl", rows), base_data)
    assert loaded.frame["id"].tolist() == ["1", "2", "3"]
    assert loaded.cleaning.empty_rows == 2
    assert loaded.cleaning.duplicate_rows == 0


def test_exact_duplicates_are_dropped_and_counted(tmp_path: Path, base_data: Data) -> None:
    # whitespace around a value does not make a row different
    rows = [*ROWS, ROWS[2], {**ROWS[0], "gold": ROWS[0]["gold"] + "  "}]
    loaded = load_file(write(tmp_path / "rows.csv", rows), base_data)
    assert loaded.frame["id"].tolist() == ["1", "2", "3"]
    assert loaded.cleaning.duplicate_rows == 2
    assert loaded.cleaning.empty_rows == 0


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An offline Hugging Face cache holding dataset org/dialogs, branch main at COMMIT."""
    import datasets.config
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    repo = cache / "datasets--org--dialogs"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    for split in ("train", "validation", "test"):
        rows = [{"id": f"{split}_{i}", "dialogue": f"#Person1#: {split} {i}.", "summary": f"S {i}.",
                 "topic": "t"} for i in range(2)]
        pd.DataFrame(rows).to_csv(snapshot / f"{split}.csv", index=False)
    # huggingface_hub and datasets read these at import time: set both the env and the constants
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")
    return cache


def hub_data(base: Data, hub_id: str, revision: str = COMMIT) -> Data:
    columns = base.columns.model_copy(update={k: k for k in MAPPING})
    return base.model_copy(update={"source": "hub", "hub_id": hub_id, "revision": revision,
                                   "columns": columns})


def test_hub_loads_every_split_from_offline_cache(hub_cache: Path, base_data: Data) -> None:
    loaded = load_hub(hub_data(base_data, "org/dialogs"), HUB)
    assert loaded.origin == f"org/dialogs@{COMMIT}"
    frame = loaded.frame
    assert sorted(frame["source_split"]) == ["test", "test", "train", "train", "validation", "validation"]
    assert (frame["id"].str.split("_").str[0] == frame["source_split"]).all()
    assert list(frame.columns) == [*COLUMNS, "source_split"]


def test_hub_branch_is_refused_with_the_command_that_pins_it(hub_cache: Path, base_data: Data) -> None:
    with pytest.raises(DataError) as caught:
        load_hub(hub_data(base_data, "org/dialogs", "main"), HUB)
    assert str(caught.value) == (
        "data.revision: 'main' is a branch or tag of org/dialogs, and DVC cannot see it move; run "
        "`python -m stages.hub pin` on a machine with hub access and commit params.yaml")


def test_unknown_hub_repo_offline(hub_cache: Path, base_data: Data) -> None:
    message = f"data.revision: dataset org/missing@{COMMIT}: not in the local hub cache"
    with pytest.raises(DataError, match="^" + re.escape(message)):
        load_hub(hub_data(base_data, "org/missing"), HUB)


def test_a_data_file_linked_out_of_the_project_is_named_never_quoted(tmp_path: Path, base_data: Data,
                                                                     monkeypatch) -> None:
    """A link out of the project may point at any file of the machine's: the error names the file
    and says what is missing, and quotes none of its contents (its first line once was the
    header "found:" listed, here a token)."""
    secret = "https://bob:ghp_0123456789abcdefSECRET@github.com"
    (tmp_path / "credentials").write_text(f"{secret}\n{secret}\n", encoding="utf-8")
    project = tmp_path / "project"
    project.mkdir()
    (project / "data.csv").symlink_to(tmp_path / "credentials")
    monkeypatch.chdir(project)
    with pytest.raises(DataError) as caught:
        load_file(Path("data.csv"), base_data)
    message = str(caught.value)
    assert message.startswith("data.csv: missing column 'fname' (data.columns.id)")
    assert "ghp_" not in message and "bob" not in message and "links outside the project" in message


def test_column_names_are_quoted_short_and_escaped(tmp_path: Path, base_data: Data) -> None:
    path = tmp_path / "rows.csv"
    path.write_text('"a\x1b[31m::error::x",' + "b" * 500 + "\n1,2\n", encoding="utf-8")
    message = load_error(path, base_data)
    assert "\x1b" not in message and "\\x1b" in message  # escaped, never raw
    assert "b" * 41 not in message and "b" * 40 + "..." in message


def test_a_damaged_split_file_is_named(tmp_path: Path) -> None:
    """A corrupt test.parquet said only "Corrupt snappy compressed data" (or pyarrow's like),
    with a traceback: one line naming the file, and how to restore it."""
    from stages import score

    path = tmp_path / "test.parquet"
    pd.DataFrame({"id": [f"t{i}" for i in range(2000)],
                  "dialogue": [f"#Person1#: hello there, how are you {i}" for i in range(2000)]}).to_parquet(path)
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 200):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: not a readable parquet file \(.*\): "
                                        r"damaged on disk; `dvc checkout .*` restores it"):
        score.split_dialogues(path)
