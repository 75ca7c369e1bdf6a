"""The synthetic DialogSum sample: reproducible byte for byte, and shaped like DialogSum."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from demo.make_sample import generate, main
from tests.conftest import ROOT

SAMPLE = ROOT / "data" / "sample" / "dialogsum_sample.jsonl"
TURN = re.compile(r"#Person\d#: ")
MULTI_REF_ID = re.compile(r"^(sample_\d{5})_([123])$")


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    with SAMPLE.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_generator_reproduces_committed_file(tmp_path: Path) -> None:
    out = tmp_path / "sample.jsonl"
    main(["--out", str(out)])
    assert out.read_bytes() == SAMPLE.read_bytes()


def test_rows_have_dialogsum_shape(rows: list[dict[str, str]]) -> None:
    for row in rows:
        assert list(row) == ["id", "dialogue", "summary", "topic"]
        assert all(isinstance(v, str) and v.strip() for v in row.values()), row["id"]
        assert all(TURN.match(line) for line in row["dialogue"].split("\n")), row["id"]
    assert len({row["id"] for row in rows}) == len(rows)


def test_summaries_refer_to_speakers(rows: list[dict[str, str]]) -> None:
    assert sum("#Person1#" in row["summary"] for row in rows) > len(rows) / 2


def test_topics_have_common_and_rare_strata(rows: list[dict[str, str]]) -> None:
    topic_of = {row["dialogue"]: row["topic"] for row in rows}
    counts = Counter(topic_of.values())
    assert len(counts) >= 14
    assert min(counts.values()) <= 6
    assert sum(n >= 50 for n in counts.values()) >= 12


def test_some_dialogues_have_multiple_references(rows: list[dict[str, str]]) -> None:
    groups: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        match = MULTI_REF_ID.match(row["id"])
        if match:
            groups.setdefault(match.group(1), []).append(row)
    assert groups
    for base, refs in groups.items():
        assert [r["id"] for r in refs] == [f"{base}_{k}" for k in range(1, len(refs) + 1)]
        assert 2 <= len(refs) <= 3
        assert len({r["dialogue"] for r in refs}) == 1, base
        assert len({r["summary"] for r in refs}) == len(refs), base


def test_distinct_dialogues_have_distinct_text(rows: list[dict[str, str]]) -> None:
    base_ids = {row["id"].rsplit("_", 1)[0] if MULTI_REF_ID.match(row["id"]) else row["id"] for row in rows}
    assert len({row["dialogue"] for row in rows}) == len(base_ids)


def test_generate_is_deterministic_and_seed_dependent() -> None:
    assert generate(50, seed=1) == generate(50, seed=1)
    assert generate(50, seed=2) != generate(50, seed=1)
