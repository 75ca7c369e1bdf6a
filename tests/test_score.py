"""The score stage's inputs and its plot rows, without running a pipeline."""

from __future__ import annotations

import json
import shutil

import pytest

from stages import score
from tests.conftest import ROOT


def test_plot_rows_put_rouge_on_bleus_scale():
    rows = score.plot_rows({"base": {"rouge1": 0.1, "rouge2": 0.0, "rougeL": 0.08, "rougeLsum": 0.09, "bleu": 1.5},
                            "lora": {"rouge1": 0.4, "rouge2": 0.2, "rougeL": 0.3, "rougeLsum": 0.35, "bleu": 12.0}})
    assert len(rows) == 10
    assert {"metric": "ROUGE-L", "variant": "lora", "score": 30.0} in rows
    assert {"metric": "BLEU", "variant": "base", "score": 1.5} in rows


def test_missing_predictions_name_the_stage_to_run(tmp_path, monkeypatch, capsys):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "data" / "predictions").mkdir(parents=True)
    row = {"id": "d1", "dialogue": "#Person1#: Hi.", "references": ["They greet."], "prediction": "Hi.",
           "gen_tokens": 2}
    (tmp_path / "data" / "predictions" / "base.jsonl").write_text(json.dumps(row) + "\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        score.main([])
    assert "no lora predictions (run `dvc repro infer@lora`)" in str(exited.value.code)
    assert not (tmp_path / "metrics").exists()  # nothing half-written


def test_derangement_moves_every_dialogue_and_is_seeded():
    from stages.scoring import derangement

    for n in (2, 3, 10, 145):
        perm = derangement(n, seed=42)
        assert sorted(perm) == list(range(n)) and all(perm[i] != i for i in range(n))
    assert derangement(50, 1) == derangement(50, 1) != derangement(50, 2)
    with pytest.raises(ValueError):
        derangement(1, 0)


ROWS = [{"id": f"d{i}", "references": [ref], "gen_tokens": 5} for i, ref in enumerate([
    "Anna books a table for four at Luigi's at 7 pm.",
    "Tom buys navy blue loafers for $120.",
    "The doctor gives Sam an ointment for the rash on his arm.",
    "Maria rents a flat in Brighton Park for $3,000 a month.",
])]


def test_shuffled_rouge_l_tells_reading_from_guessing():
    generic = [row | {"prediction": "#Person1# and #Person2# talk about it."} for row in ROWS]
    summary, _ = score.score_variant(generic, use_stemmer=True, seed=0)
    assert summary["rougeL_shuffled"] == pytest.approx(summary["rougeL"])  # same text everywhere: no gap

    reading = [row | {"prediction": row["references"][0]} for row in ROWS]
    summary, _ = score.score_variant(reading, use_stemmer=True, seed=0)
    assert summary["rougeL"] == 1.0 and summary["rougeL_shuffled"] < 0.5
