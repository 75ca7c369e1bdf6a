"""Weights & Biases runs, with params ``tracking.wandb: true``: named, grouped, kept.

A run is named after the DVC experiment (``DVC_EXP_NAME``, which ``dvc exp run`` sets for every
experiment, queued or not; ``workspace`` under plain ``dvc repro``) and grouped by the commit it
started from (``DVC_EXP_BASELINE_REV``, else HEAD). Its config is the whole params file. Training
(``job_type: train``, through the Trainer's own W&B callback, which takes over the run started
here) and the score stage (``job_type: score``: the test scores and every test dialogue's
summaries side by side, as a table) log two runs of the same name and group, linked in W&B's UI.

Offline runs (no API key, or ``WANDB_MODE=offline``) are written under ``DVC_ROOT/wandb``:
DVC sets ``DVC_ROOT`` to the real repository even when a queued or ``--temp`` experiment runs in
a temporary copy, so ``wandb sync wandb/offline-run-*`` finds them there after the copy is gone.

No stage declares ``tracking`` (stages/params.py ``UNDECLARED``): W&B changes no output, so
switching it on or off reruns nothing. The API key is read by wandb alone, never copied or logged.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel

log = logging.getLogger(__name__)


def head_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


def run_settings(env: Mapping[str, str], head: str | None, project: str, job_type: str) -> dict:
    """``wandb.init`` arguments: name, group, job type, project and the folder runs go to."""
    return {"project": project, "job_type": job_type,
            "name": env.get("DVC_EXP_NAME") or "workspace",
            "group": env.get("DVC_EXP_BASELINE_REV") or head or "uncommitted",
            "dir": str(Path(env.get("DVC_ROOT") or ".").resolve())}


def offline_without_key() -> None:
    """W&B never prompts or hangs: with no API key configured it runs offline."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE"):
        return
    netrc = Path.home() / ".netrc"
    if not (netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")):
        log.warning("tracking.wandb: no W&B API key configured; logging offline to %s/wandb "
                    "(upload later with `wandb sync`)", os.environ.get("DVC_ROOT", "."))
        os.environ["WANDB_MODE"] = "offline"


def start(run_params: BaseModel, project: str, job_type: str):
    """A W&B run for this stage (see the module), its config the params ``run_params``."""
    import wandb

    offline_without_key()
    settings = run_settings(os.environ, head_commit(), project, job_type)
    Path(settings["dir"]).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("WANDB_PROJECT", project)  # the Trainer's callback reads it
    # W&B's own terminal lines (a dozen per run, coloured for a terminal, and so in DVC's logs too)
    # go to its debug log instead; the one line below says where the run is.
    os.environ.setdefault("WANDB_SILENT", "true")
    run = wandb.init(config=run_params.model_dump(mode="json"), **settings)
    log.info("W&B run %s (%s): %s", run.name, run.settings.mode, run.url or run.settings.sync_dir)
    return run


def log_scores(run, scores: dict[str, dict], rows: dict[str, list[dict]]) -> None:
    """The test scores (``test/<variant>/<metric>``, in the summary and logged once) and a table
    ``examples`` with each test dialogue, its human summaries and every variant's summary."""
    import wandb

    flat = {f"test/{variant}/{key}": value for variant, figures in scores.items()
            for key, value in figures.items() if isinstance(value, (int, float))}
    variants = list(rows)
    first = rows[variants[0]]
    table = wandb.Table(columns=["id", "dialogue", "human", *variants])
    for i, row in enumerate(first):
        table.add_data(row["id"], row["dialogue"], "\n".join(row["references"]),
                       *(rows[v][i]["prediction"] for v in variants))
    run.log({**flat, "examples": table})
    run.summary.update(flat)
    run.finish()
