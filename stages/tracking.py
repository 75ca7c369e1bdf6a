"""Experiment tracking for training: DVCLive always, Weights & Biases when params ask for it
(``stages/wandb_runs.py``: how runs are named, grouped and kept).

transformers ships a ``DVCLiveCallback``, but it advances DVCLive's step on every log call, so
train and eval losses logged at the same trainer step land on different x values; and by default
it rewrites ``dvc.yaml`` and makes DVC experiments of its own. This callback logs each value at
the trainer's global step into a DVCLive folder that ``dvc.yaml`` declares as plots, and nothing
else.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pydantic import BaseModel
from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback

from stages import wandb_runs
from stages.errors import InputError

log = logging.getLogger(__name__)

# Trainer log key -> DVCLive metric name (plots/metrics/<name>.tsv).
CURVES = {
    "loss": "train/loss",
    "eval_loss": "eval/loss",
    "learning_rate": "train/learning_rate",
    "grad_norm": "train/grad_norm",
}


class LiveCurves(TrainerCallback):
    """Writes the trainer's logs as DVCLive curves with x = trainer step."""

    def __init__(self, folder: str | Path):
        from dvclive import Live
        from scmrepo.exceptions import SCMError

        # dvcyaml=False / save_dvc_exp=False: the pipeline's dvc.yaml declares these plots;
        # DVCLive must neither edit it nor create experiments of its own.
        try:
            self.live = Live(str(folder), dvcyaml=False, save_dvc_exp=False, report=None)
        except SCMError as exc:  # DVCLive 3.49 fails in a git repo without commits
            raise InputError(f"DVCLive cannot log to {folder}: {exc}; make a first commit "
                             "(git commit) and rerun") from None

    def _log(self, step: int, logs: dict) -> None:
        values = {CURVES[k]: v for k, v in logs.items() if k in CURVES}
        if not values:
            return
        self.live.step = step
        for name, value in sorted(values.items()):  # the same summary key order after a resume
            self.live.log_metric(name, float(value))
        self.live.make_summary()

    def on_train_begin(self, args, state, control, **kwargs):
        # After a resume the trainer state already holds the earlier history: replay it, so
        # the curves cover the whole run and not only the part after the crash.
        if state.is_world_process_zero:
            for entry in state.log_history:
                self._log(entry.get("step", 0), entry)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            self._log(state.global_step, logs)

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.live.end()


class ProgressLines(ProgressCallback):
    """The Trainer's progress bar, with each of its log events as one log line (``step 20: loss
    1.23, grad_norm 0.8, ...``) instead of a dict printed on stdout under the bar."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            shown = ", ".join(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}"
                              for key, value in logs.items() if key != "total_flos")
            log.info("step %d: %s", state.global_step, shown)


def show_progress(trainer) -> None:
    """Swap ``trainer``'s own progress callback for ``ProgressLines`` (same bar, lines logged)."""
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(ProgressLines())


def wandb_report_to(enabled: bool, project: str, run_params: BaseModel) -> list[str]:
    """``report_to`` for the Trainer. On the first process, starts the W&B run the Trainer's
    callback then logs to: named after the DVC experiment, grouped by commit, its config the
    params (``run_params``), offline runs kept under ``DVC_ROOT`` (``stages/wandb_runs.py``)."""
    if not enabled:
        return []
    if os.environ.get("RANK", "0") == "0":
        wandb_runs.start(run_params, project, "train")
    return ["wandb"]
