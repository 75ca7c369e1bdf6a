"""W&B with tracking.wandb: true, in W&B's offline mode, read back from the run's own files: the
score stage's run is named after the DVC experiment, grouped by commit, holds the params as its
config, the test scores and the side-by-side table, and lands under DVC_ROOT (the real repository
when an experiment runs in a temporary copy). Switching it on reruns nothing (tests/test_dvc_yaml.py)."""

from __future__ import annotations

import json
from pathlib import Path

from stages import wandb_runs
from stages.params import load_params
from tests.conftest import copy_project, dvc, git, ran, set_params

BLOCK = 32768  # W&B's .wandb file: LevelDB's log format, records in 32 KiB blocks


def records(path: Path):
    """The protobuf records of an offline run's ``run-<id>.wandb`` file. W&B ships no reader of
    its own for this format in Python any more (the core that writes it is Go): a record is a
    7-byte header (crc32c, length, kind) and its bytes, split across blocks as FIRST/MIDDLE/LAST."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # a block's tail too short for a header is padding
            pos += BLOCK - pos % BLOCK
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):  # FULL, LAST
            record = pb.Record()
            record.ParseFromString(pending)
            yield record


def read_run(folder: Path, wait_s: float = 20.0) -> dict:
    """The run's name, group, job type, project, config and summary. W&B's service writes the file
    in the background and may still be writing when ``finish()`` returns: read until the run
    record is there (at most ``wait_s``)."""
    import time

    deadline = time.monotonic() + wait_s
    while True:
        try:
            found = _read_run_once(folder)
        except Exception as exc:  # protobuf's DecodeError: a record still being written
            if type(exc).__name__ != "DecodeError":
                raise
            found = None
        if found is not None or time.monotonic() > deadline:
            assert found is not None, f"no run record in {folder} after {wait_s} s"
            return found
        time.sleep(0.5)


def _read_run_once(folder: Path) -> dict | None:
    run, summary, config = None, {}, {}
    files = list(folder.glob("run-*.wandb"))
    if not files:
        return None
    for record in records(files[0]):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            config.update({item.key: json.loads(item.value_json) for item in run.config.update
                           if item.key != "_wandb"})  # W&B's own bookkeeping
        elif kind == "summary":
            summary.update({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                            for item in record.summary.update})
    if run is None:
        return None
    return {"name": run.display_name, "group": run.run_group, "job_type": run.job_type,
            "project": run.project, "config": config, "summary": summary}


def test_a_run_is_named_after_the_experiment_and_grouped_by_commit():
    env = {"DVC_EXP_NAME": "wide-rank", "DVC_EXP_BASELINE_REV": "a" * 40, "DVC_ROOT": "/repo"}
    assert wandb_runs.run_settings(env, "b" * 40, "proj", "score") == {
        "project": "proj", "job_type": "score", "name": "wide-rank", "group": "a" * 40, "dir": "/repo"}
    plain = wandb_runs.run_settings({}, "b" * 40, "proj", "train")  # dvc repro: no experiment
    assert plain["name"] == "workspace" and plain["group"] == "b" * 40


def test_wandb_offline_score_run_read_back(built_project, tmp_path, monkeypatch):
    project = set_params(copy_project(built_project, tmp_path / "p"), tracking__wandb=True,
                         tracking__wandb_project="dialogsum-test")
    elsewhere = tmp_path / "real-repo"  # what DVC_ROOT names when a queued experiment runs in a copy
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("DVC_ROOT", str(elsewhere))
    monkeypatch.setenv("DVC_EXP_NAME", "exp-test")
    assert json.loads(dvc(project, "status", "--json").stdout) == {}  # switching W&B on reruns nothing
    assert ran(dvc(project, "repro", "--force", "--single-item", "score").stdout) == {"score"}

    assert not (project / "wandb").exists()
    (folder,) = (elsewhere / "wandb").glob("offline-run-*")
    run = read_run(folder)
    head = git(project, "rev-parse", "HEAD").strip()
    assert (run["name"], run["group"], run["job_type"], run["project"]) == ("exp-test", head, "score",
                                                                            "dialogsum-test")
    params = load_params(project / "params.yaml").model_dump(mode="json")
    assert run["config"] == params  # the whole params file, tracking included
    scores = json.loads((project / "metrics" / "records" / "scores.json").read_text())
    for variant in ("base", "lora", "human"):
        assert run["summary"][f"test/{variant}/rougeL"] == scores[variant]["rougeL"]
    (table,) = (folder / "files" / "media" / "table").glob("examples_*.table.json")
    table = json.loads(table.read_text())
    assert table["columns"] == ["id", "dialogue", "human", "base", "lora"]
    predictions = [json.loads(line) for line in (project / "data/predictions/lora.jsonl").read_text().splitlines()]
    assert [row[4] for row in table["data"]] == [p["prediction"] for p in predictions]
    assert json.loads(dvc(project, "status", "--json").stdout) == {}  # nothing W&B wrote is an output


def test_training_starts_the_run_the_trainer_logs_to(tmp_path, monkeypatch, capfd, caplog):
    """Training's run (the Trainer's W&B callback takes over the run started here): named, grouped,
    the params as config, written under DVC_ROOT; one line says where, W&B's own lines stay off
    the terminal."""
    import logging

    import wandb

    from stages import tracking
    from tests.conftest import ROOT

    for key, value in {"WANDB_MODE": "offline", "DVC_ROOT": str(tmp_path), "DVC_EXP_NAME": "exp-train",
                       "DVC_EXP_BASELINE_REV": "c" * 40}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("WANDB_PROJECT", raising=False)  # start() sets it for the Trainer's callback
    monkeypatch.delenv("WANDB_SILENT", raising=False)
    params = load_params(ROOT / "params.yaml")
    assert tracking.wandb_report_to(False, "proj", params) == []
    with caplog.at_level(logging.INFO, logger="stages.wandb_runs"):
        assert tracking.wandb_report_to(True, "proj", params) == ["wandb"]
        wandb.run.finish()
    out, err = capfd.readouterr()
    assert "wandb" not in out + err.replace(str(tmp_path), "")
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("W&B run")]
    assert line.startswith(f"W&B run exp-train (offline): {tmp_path / 'wandb'}")
    run = read_run(next((tmp_path / "wandb").glob("offline-run-*")))
    assert (run["name"], run["group"], run["job_type"], run["project"]) == ("exp-train", "c" * 40, "train", "proj")
    assert run["config"] == params.model_dump(mode="json")
