"""The score stage's inputs and its plot rows, without running a pipeline."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from stages import score
from stages.scoring import FAITHFULNESS, HIT_MAX, HUMAN, MEAN_REF, SCORE_LABELS
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


ROWS = [{"id": f"d{i}", "dialogue": f"#Person1#: {ref}", "references": [ref], "gen_tokens": 5}
        for i, ref in enumerate([
    "Anna books a table for four at Luigi's at 7 pm.",
    "Tom buys navy blue loafers for $120.",
    "The doctor gives Sam an ointment for the rash on his arm.",
    "Maria rents a flat in Brighton Park for $3,000 a month.",
])]


def test_shuffled_rouge_l_tells_reading_from_guessing():
    generic = [row | {"prediction": "#Person1# and #Person2# talk about it."} for row in ROWS]
    summary, _ = score.score_variant(generic, use_stemmer=True, seed=0, max_new_tokens=24)
    assert summary["rougeL_shuffled"] == pytest.approx(summary["rougeL"])  # same text everywhere: no gap

    reading = [row | {"prediction": row["references"][0]} for row in ROWS]
    summary, _ = score.score_variant(reading, use_stemmer=True, seed=0, max_new_tokens=24)
    assert summary["rougeL"] == 1.0 and summary["rougeL_shuffled"] < 0.5


def test_scores_carry_both_protocols_faithfulness_and_length():
    rows = [row | {"gen_tokens": tokens, "prediction": prediction}
            for row, tokens, prediction in zip(ROWS, (5, 24, 24, 3), (
                "Anna books a table for four at Luigi's at 7 pm.",  # faithful
                "Tom buys navy blue loafers for $99 at Shoe Palace.",  # a number and a name invented
                "#Person3# gives Sam an ointment for the rash.",  # nobody of that name speaks
                "Maria rents a flat a flat a flat."))]  # a loop
    summary, per_item = score.score_variant(rows, use_stemmer=True, seed=0, max_new_tokens=24)
    assert list(summary) == [key for key in SCORE_LABELS if key in summary]  # the tables' order
    assert summary["invented_numbers"] == summary["invented_names"] == summary["speaker_errors"] == 0.25
    assert summary["repeated_trigrams"] == 0.25 and summary[HIT_MAX] == 2 and summary["dialogues"] == 4
    assert 0 < summary["novel_bigrams"] < 1
    for t, key in MEAN_REF.items():  # one reference each: the two protocols agree
        assert summary[key] == pytest.approx(summary[t])
        assert per_item[key] == pytest.approx(per_item[t])
    assert per_item["invented_numbers"] == [0.0, 1.0, 0.0, 0.0]
    assert all(len(per_item[k]) == 4 for k in FAITHFULNESS)


def test_human_row_scores_the_first_summary_against_the_others():
    dialogue = "#Person1#: A table for six at Harbor Grill at 6:30 pm, please.\n#Person2#: Sure."
    rows = [
        {"id": "a", "dialogue": dialogue, "references": [
            "#Person1# books a table for six at Harbor Grill at 6:30 pm.",
            "#Person1# books a table for six at Harbor Grill.",
            "#Person2# takes a booking for six people."]},
        {"id": "b", "dialogue": dialogue, "references": ["#Person1# books a table for five at the Oak Room."]},
        {"id": "c", "dialogue": dialogue, "references": [
            "#Person1# reserves a table at Harbor Grill.", "#Person1# reserves a table for six."]},
    ]
    human = score.score_human(rows, use_stemmer=True, seed=0)
    assert human["dialogues"] == 3 and human["rouge_dialogues"] == 2  # b has one summary: no ROUGE
    assert human["invented_numbers"] == human["invented_names"] == pytest.approx(1 / 3)  # b's five, Oak Room
    assert human["rouge1"] > human["rouge1_mean_ref"] > 0  # the best of the others, and their mean
    assert human["gen_len"] is None and human[HIT_MAX] is None
    alone = score.score_human(rows[1:2], use_stemmer=True, seed=0)
    assert alone["rouge_dialogues"] == 0 and alone["rougeL"] is None and alone["bleu"] is None
    assert [r["variant"] for r in score.plot_rows({HUMAN: alone})] == []  # nothing to draw


def test_examples_mark_what_a_summary_invents():
    row = {"id": "d1", "dialogue": "#Person1#: A table for six, please.\n#Person2#: Sure.",
           "references": ["#Person1# books a table for six."]}
    page = score.examples_markdown({"base": [row | {"prediction": "#Person1# books a table for six."}],
                                    "lora": [row | {"prediction": "#Person3# books a table for five at Oak Room."}]}, 5)
    assert "- **base**: \\#Person1\\# books a table for six.\n" in page  # nothing invented, nothing marked
    assert ("- **lora**: \\#Person3\\# books a table for five at Oak Room. "
            "⚠ invented: five; Oak Room; \\#Person3\\#\n") in page


def write_project(folder, split_rows: list[dict], predictions: dict[str, list[dict]]):
    folder.mkdir(exist_ok=True)
    shutil.copy(ROOT / "params.yaml", folder / "params.yaml")
    (folder / "data" / "split").mkdir(parents=True)
    pd.DataFrame(split_rows).to_parquet(folder / "data" / "split" / "test.parquet")
    (folder / "data" / "predictions").mkdir(parents=True)
    for variant, rows in predictions.items():
        lines = "".join(json.dumps(r) + "\n" for r in rows)
        (folder / "data" / "predictions" / f"{variant}.jsonl").write_text(lines)


def test_predictions_must_cover_the_test_split(tmp_path, monkeypatch):
    """The same rows missing from every predictions file used to be scored as a complete test set."""
    split = [{"id": f"t{i}_{k}", "dialogue": f"#Person1#: Dialogue {i}.\n#Person2#: OK.",
              "summary": f"Summary {i}.{k}", "topic": "x"} for i in range(8) for k in (1, 2)]
    predicted = [{"id": f"t{i}_1", "dialogue": f"#Person1#: Dialogue {i}.\n#Person2#: OK.",
                  "references": [f"Summary {i}.1", f"Summary {i}.2"], "prediction": f"Dialogue {i}.",
                  "gen_tokens": 4} for i in range(8)]
    monkeypatch.chdir(tmp_path)
    write_project(tmp_path, split, {"base": predicted[3:], "lora": predicted[3:]})
    with pytest.raises(SystemExit) as exited:
        score.main([])
    assert exited.value.code == ("error: data/predictions/base.jsonl: 3 of the 8 dialogues of "
                                 "data/split/test.parquet have no prediction (t0_1, t1_1, t2_1): "
                                 "rerun `dvc repro infer@base`")
    assert not (tmp_path / "metrics").exists()  # nothing written

    extra = predicted + [predicted[0] | {"id": "x", "dialogue": "#Person1#: Another one."}]
    write_project(tmp_path / "again", split, {"base": predicted, "lora": extra})
    monkeypatch.chdir(tmp_path / "again")
    with pytest.raises(SystemExit) as exited:
        score.main([])
    assert "data/predictions/lora.jsonl: 1 predictions of dialogues not in data/split/test.parquet (x)" \
        in str(exited.value.code)

    write_project(tmp_path / "whole", split, {"base": predicted, "lora": predicted})
    monkeypatch.chdir(tmp_path / "whole")
    score.main([])
    scores = json.loads((tmp_path / "whole" / "metrics" / "records" / "scores.json").read_text())
    assert {v: s["dialogues"] for v, s in scores.items()} == {"base": 8, "lora": 8, HUMAN: 8}
    assert scores[HUMAN]["rouge_dialogues"] == 8
