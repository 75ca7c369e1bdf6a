"""Experiment tracking for training: DVCLive always, Weights & Biases when params ask for it.

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

from transformers import TrainerCallback

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


def wandb_report_to(enabled: bool, project: str) -> list[str]:
    """``report_to`` for the Trainer. W&B never prompts or hangs: with no API key it runs offline.

    Runs go to wandb's own ``./wandb`` folder (git-ignored, not a pipeline output: it holds
    timestamps and run ids, which would make the outputs differ run to run). The API key is
    read by wandb alone, from the environment or its settings; the pipeline never copies or
    logs it.
    """
    if not enabled:
        return []
    os.environ.setdefault("WANDB_PROJECT", project)
    if not os.environ.get("WANDB_API_KEY") and not os.environ.get("WANDB_MODE"):
        netrc = Path.home() / ".netrc"
        if not (netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")):
            log.warning("tracking.wandb: no W&B API key configured; logging offline to ./wandb "
                        "(upload later with `wandb sync`)")
            os.environ["WANDB_MODE"] = "offline"
    return ["wandb"]
