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
