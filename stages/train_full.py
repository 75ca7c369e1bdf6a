"""train_baseline@full: ``{paths.tokenized}`` -> fully fine-tuned model ``{paths.models}/full``
+ ``metrics/train_full.json``.

Reads params ``seed``, ``paths``, ``model``, ``full``, ``train`` (and, changing no output, ``runtime``, ``tracking``).

The baseline LoRA is measured against, as in the reference article: every weight of the base
model trains, at ``full.learning_rate`` (far below LoRA's: full fine-tuning at LoRA's 1e-3 would
wreck the pretrained weights), on the same data, schedule, batch and early stopping
(``stages/finetune.py``). It only runs when params.yaml's ``baselines`` lists ``full``: it
costs several times LoRA's GPU memory and a full model's disk per run.
"""

from __future__ import annotations

import logging
from pathlib import Path

from stages import finetune, modeling
from stages.params import Params

log = logging.getLogger(__name__)
PARAMS = ("seed", "paths", "model", "full", "train")  # dvc.yaml's `params:`
VARIANT = "full"


def save_model(model, folder: Path, state: dict | None = None) -> None:
    """``state``: the gathered weights of a sharded (FSDP) run; else the model's own."""
    model.save_pretrained(str(folder), safe_serialization=True, state_dict=state)


def train(params: Params) -> dict | None:
    """Train every weight, save the model, and return the training metrics (``None`` on ranks > 0)."""
    import torch

    resolved = modeling.resolve(params.model, params.hub)
    tokenizer = modeling.load_tokenizer(resolved.folder)
    model = modeling.load_model(resolved.folder, params.train.dropout_rate)
    model.accepts_loss_kwargs = False  # see stages/train_lora.py: T5 ignores num_items_in_batch
    torch.manual_seed(params.seed)
    log.info("full fine-tune: %d trainable parameters", sum(p.numel() for p in model.parameters()))
    metrics = finetune.fit(params, VARIANT, model, tokenizer, params.full.learning_rate, save_model,
                           fsdp=params.full.fsdp)
    return None if metrics is None else metrics | {"model_revision": resolved.pin}


def main(argv: list[str] | None = None) -> None:
    finetune.run(VARIANT, __doc__, argv, train, PARAMS)


if __name__ == "__main__":
    main()
