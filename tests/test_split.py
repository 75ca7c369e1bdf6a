"""The split stage: group-safe, topic-balanced splitting, the source's own splits, and main()."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from demo.make_sample import generate
from stages.params import SPLITS, SplitFractions, read_yaml
from stages.sources import COLUMNS, DataError, dialogue_key
from stages.split import POOLED, allocate, from_source, main, stratified
from tests.conftest import ROOT

RECIPE = SplitFractions(train=0.8, validation=0.1, test=0.1)
EVEN = SplitFractions(train=0.5, validation=0.25, test=0.25)


@pytest.mark.parametrize("fractions", [RECIPE, EVEN, SplitFractions(train=0.6, validation=0.3, test=0.1)])
@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 10, 33, 1001])
def test_allocate_sums_to_n_and_follows_fractions(n: int, fractions: SplitFractions) -> None:
    counts = allocate(n, fractions)
    assert sum(counts) == n
    for count, name in zip(counts, SPLITS):
        assert abs(count - n * getattr(fractions, name)) < 1  # largest remainder: off by < 1


def test_allocate_exact_values() -> None:
    assert allocate(10, RECIPE) == [8, 1, 1]
    assert allocate(1, RECIPE) == [1, 0, 0]  # a lone dialogue goes where most of them go
    assert allocate(5, RECIPE) == [4, 1, 0]  # ties broken in split order


def dialogues_frame() -> pd.DataFrame:
    """Two common topics (40 and 30 dialogues), two rare ones (3 and 2), and repeated dialogues."""
    rows = []
    for topic, n in [("common a", 40), ("common b", 30), ("rare c", 3), ("rare d", 2)]:
        for i in range(n):
            dialogue = f"#Person1#: {topic} {i}.\n#Person2#: OK."
            rows.append({"id": f"{topic}-{i}", "dialogue": dialogue, "summary": "s1", "topic": topic})
            if i % 3 == 0:  # a second reference, as in DialogSum's test set
                rows.append({"id": f"{topic}-{i}-2", "dialogue": dialogue, "summary": "s2", "topic": topic})
            if i % 5 == 0:  # the same dialogue, differently spaced
                spaced = "  " + dialogue.replace("\n", " \n\n ").replace(": ", ":   ") + " "
                rows.append({"id": f"{topic}-{i}-3", "dialogue": spaced, "summary": "s3", "topic": topic})
    return pd.DataFrame(rows)


def test_stratified_keeps_a_dialogue_in_one_split() -> None:
    frame = dialogues_frame()
    assignment, _ = stratified(frame, RECIPE, min_topic_size=10, seed=0)
    assert assignment.isin(SPLITS).all()
    per_dialogue = assignment.groupby(frame["dialogue"].map(dialogue_key)).nunique()
    assert len(per_dialogue) == 75
    assert (per_dialogue == 1).all()
    # the spaced copies really are other strings, grouped only by the key
    assert frame["dialogue"].nunique() > len(per_dialogue)


def test_stratified_balances_each_topic_and_pools_rare_ones() -> None:
    frame = dialogues_frame()
    assignment, pooled = stratified(frame, RECIPE, min_topic_size=10, seed=1)
    assert pooled == 2
    dialogues = frame.assign(split=assignment, key=frame["dialogue"].map(dialogue_key))
    dialogues = dialogues.drop_duplicates("key")
    stratum = dialogues["topic"].where(dialogues["topic"].str.startswith("common"), POOLED)
    for name, group in dialogues.groupby(stratum):
        counts = Counter(group["split"])
        for split in SPLITS:
            expected = len(group) * getattr(RECIPE, split)
            assert abs(counts[split] - expected) < 1, (name, split, counts)
    # the 5 pooled dialogues are cut as one stratum: 4 / 1 / 0, not 3 / 2 each cut alone
    assert Counter(dialogues.loc[stratum == POOLED, "split"]) == {"train": 4, "validation": 1}


def test_stratified_is_seeded() -> None:
    frame = dialogues_frame()
    first, _ = stratified(frame, RECIPE, 10, seed=7)
    again, _ = stratified(frame, RECIPE, 10, seed=7)
    other, _ = stratified(frame, RECIPE, 10, seed=8)
    assert first.tolist() == again.tolist()
    assert first.tolist() != other.tolist()


def test_stratified_does_not_depend_on_row_order() -> None:
    frame = dialogues_frame()
    assignment, _ = stratified(frame, RECIPE, 10, seed=3)
    shuffled = frame.sample(frac=1.0, random_state=0)
    reassigned, _ = stratified(shuffled, RECIPE, 10, seed=3)
    assert reassigned.sort_index().tolist() == assignment.tolist()


def test_from_source_keeps_the_source_splits() -> None:
    frame = dialogues_frame().head(6).assign(source_split=["train", "train", "validation", "test",
                                                           "test", "train"])
    assert from_source(frame, "src").tolist() == frame["source_split"].tolist()


def test_from_source_warns_when_a_dialogue_crosses_source_splits(caplog: pytest.LogCaptureFixture) -> None:
    # rows 0-2 are one dialogue (the third differently spaced); row 3 is another
    frame = dialogues_frame().head(4).assign(source_split=["train", "test", "test", "train"])
    with caplog.at_level("WARNING", logger="stages.split"):
        from_source(frame, "src")
    assert "3 row(s) share a dialogue with another source split" in caplog.text


def test_from_source_rejects_unknown_split_names() -> None:
    frame = dialogues_frame().head(4).assign(source_split=["train", "dev", "all", "test"])
    with pytest.raises(DataError, match=r"^src: split.strategy: source .* found split\(s\) all, dev$"):
        from_source(frame, "src")
    # a split name is data: quoted escaped and short, never a second line or a terminal escape
    frame = frame.assign(source_split=["train", "dev\n::error::x" + "y" * 100, "validation", "test"])
    with pytest.raises(DataError) as caught:
        from_source(frame, "src")
    assert str(caught.value).endswith("found split(s) 'dev\\n::error::x" + "y" * 24 + "...")


def write_params(tmp_path: Path, rows: list[dict], topic: str | None = "topic", **split: object) -> Path:
    """params.yaml with data.source file, reading rows from a jsonl file in tmp_path; the split
    is stratified (as the demo's) unless ``split`` says otherwise."""
    data = tmp_path / "dialogs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    raw = read_yaml((ROOT / "params.yaml").read_text(encoding="utf-8"))
    raw["data"].update(source="file", file=str(data))
    raw["data"]["columns"]["topic"] = topic
    raw["split"].update({"strategy": "stratified", **split})
    path = tmp_path / "params.yaml"
    path.write_text(json.dumps(raw), encoding="utf-8")  # JSON is YAML
    return path


def test_main_writes_splits_and_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = generate(200, seed=3)
    params = write_params(tmp_path, rows, min_topic_size=12)
    monkeypatch.chdir(tmp_path)
    main(["--params", str(params)])

    parts = {name: pd.read_parquet(tmp_path / "data" / "split" / f"{name}.parquet") for name in SPLITS}
    metrics = json.loads((tmp_path / "metrics" / "records" / "split.json").read_text(encoding="utf-8"))
    assert metrics["source"] == str(tmp_path / "dialogs.jsonl")
    for name, part in parts.items():
        assert list(part.columns) == list(COLUMNS)
        assert metrics[name]["rows"] == len(part) > 0
        assert metrics[name]["dialogues"] == part["dialogue"].nunique()
    assert sum(metrics[n]["rows"] for n in SPLITS) == len(rows)
    assert sum(metrics[n]["dialogues"] for n in SPLITS) == 200
    ids = pd.concat(parts.values())["id"]
    assert sorted(ids) == sorted(r["id"] for r in rows)
    seen = [set(part["dialogue"]) for part in parts.values()]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    topics = Counter(r["topic"] for r in {r["dialogue"]: r for r in rows}.values())
    assert metrics["pooled_topics"] == sum(1 for n in topics.values() if n < 12) > 0
    assert (metrics["dropped_empty_rows"], metrics["dropped_duplicate_rows"]) == (0, 0)


def test_main_refuses_an_empty_split_and_writes_nothing(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    params = write_params(tmp_path, generate(2, seed=3))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(["--params", str(params)])
    message = str(exited.value.code)
    assert message.startswith("error: ")
    assert "would be empty" in message and "2 dialogues" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dialogs.jsonl", "params.yaml"]


def test_main_source_strategy_needs_source_splits(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    params = write_params(tmp_path, generate(20, seed=3), strategy="source")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(["--params", str(params)])
    # names the file and the column it lacks
    assert str(exited.value.code) == (
        f"error: {tmp_path / 'dialogs.jsonl'}: split.strategy: source needs a column 'split' holding "
        "train/validation/test for each row; this file has none (or use split.strategy: stratified)")
    assert not (tmp_path / "data").exists()


def test_main_without_topics_splits_plainly_and_says_so(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [{k: v for k, v in r.items() if k != "topic"} for r in generate(100, seed=3)]
    params = write_params(tmp_path, rows, topic=None)
    monkeypatch.chdir(tmp_path)
    main(["--params", str(params)])
    metrics = json.loads((tmp_path / "metrics" / "records" / "split.json").read_text(encoding="utf-8"))
    assert metrics["stratified_by"] == "nothing (data.columns.topic: null)"
    assert metrics["pooled_topics"] == 0
    assert [metrics[n]["dialogues"] for n in SPLITS] == [80, 10, 10]  # the fractions, exactly
    test = pd.read_parquet(tmp_path / "data" / "split" / "test.parquet")
    assert set(test["topic"]) == {""}


def test_stratified_without_topics_is_seeded_and_ignores_topics() -> None:
    frame = dialogues_frame()
    plain, pooled = stratified(frame, RECIPE, 10, seed=5, by_topic=False)
    assert pooled == 0
    again, _ = stratified(frame.assign(topic="other"), RECIPE, 10, seed=5, by_topic=False)
    assert plain.tolist() == again.tolist()  # topics play no part
    assert Counter(plain.groupby(frame["dialogue"].map(dialogue_key)).first()) == {
        "train": 60, "validation": 8, "test": 7}
