"""train_lora: ``{paths.tokenized}`` -> LoRA adapter ``{paths.models}/lora`` + ``metrics/train_lora.json``
(and its record, ``metrics/records/train_lora.json``).

Reads params ``seed``, ``paths``, ``model``, ``lora``, ``train`` (and, changing no output, ``runtime``, ``tracking``).

Fine-tunes the base model with a LoRA adapter (peft) through HF's ``Seq2SeqTrainer`` at
``train.learning_rate``; the Trainer set-up, checkpoints, resume and cost figures are shared
with the full fine-tune (``stages/finetune.py``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from stages import finetune, launch, modeling
from stages.errors import ModelError
from stages.params import Lora, Params

log = logging.getLogger(__name__)
PARAMS = ("seed", "paths", "model", "lora", "train")  # dvc.yaml's `params:`
VARIANT = "lora"


def add_lora(base, lora: Lora, seed: int):
    """Wrap ``base`` with a fresh LoRA adapter; only the adapter is trainable."""
    import torch
    from peft import LoraConfig, get_peft_model

    leaf_names = {name.rsplit(".", 1)[-1] for name, _ in base.named_modules()}
    missing = [m for m in lora.target_modules if m not in leaf_names]
    if missing:  # params.py checks this before any stage for T5s; here for any model
        linear = sorted({name.rsplit(".", 1)[-1] for name, module in base.named_modules()
                         if isinstance(module, torch.nn.Linear)})
        raise ModelError(f"lora.target_modules: the model has no module named {', '.join(missing)} "
                         f"(its linear layers: {', '.join(linear)})")
    # T5's forward accepts **kwargs but ignores num_items_in_batch, so the Trainer would skip
    # dividing the loss by the accumulation steps: loss and gradients come out multiplied by
    # gradient_accumulation_steps. False makes the Trainer do the division itself.
    base.accepts_loss_kwargs = False
    torch.manual_seed(seed)  # LoRA's A matrices are initialised randomly
    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                        target_modules=list(lora.target_modules), bias=lora.bias,
                        task_type=lora.task_type)
    with modeling.peft_quietly():
        return get_peft_model(base, config)


def save_adapter(model, folder: Path, base: tuple[str, str | None] | None = None) -> None:
    """Save the adapter; ``base`` = (name, revision) of its base model as
    ``modeling.published_name`` gives it, recorded in its config and card instead of the folder
    the base model was loaded from (peft's default)."""
    if base is not None:
        name, revision = base
        for config in model.peft_config.values():
            config.base_model_name_or_path, config.revision = name, revision
        original = model.get_base_model()
        original.config._name_or_path = original.name_or_path = name  # what peft's card names
    # save_embedding_layers=False: LoRA here never touches the embeddings, and peft's "auto"
    # asks the hub whether the base model's config exists (a request, or offline a warning
    # that it "will assume that the vocabulary was not modified") to decide whether to save them.
    model.save_pretrained(str(folder), safe_serialization=True, save_embedding_layers=False)
    # peft keeps target_modules as a set and writes it in hash order, which Python randomises
    # per process: identical runs would write different adapter configs.
    config = folder / "adapter_config.json"
    data = json.loads(config.read_text())
    if isinstance(data.get("target_modules"), list):
        data["target_modules"] = sorted(data["target_modules"])
    config.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def trainable_model(frozen, params: Params, weights: str, autocast_bf16: bool = False):
    """The model this stage trains, from ``frozen``, the base as ``modeling.load_model`` loads it
    with ``weights`` (``modeling.base_weights``), or an fp32 model built in memory (a benchmark's),
    cast here to the same dtype: k-bit bases prepared, a fresh LoRA adapter added; with a bf16
    base under bf16 autocast (``autocast_bf16``: ``modeling.use_bf16(train.bf16)``), fewer
    kernels (``fewer_bf16_kernels``)."""
    import torch

    if weights == "bf16":  # a no-op for a base loaded in bf16
        frozen = frozen.to(torch.bfloat16)
    if weights in ("int8", "int4"):  # QLoRA: the quantized base made trainable through
        from peft import prepare_model_for_kbit_training  # fp32 norms and (optionally) checkpointing

        frozen = prepare_model_for_kbit_training(frozen, params.train.gradient_checkpointing)
    model = add_lora(frozen, params.lora, params.seed)
    if weights == "bf16" and autocast_bf16:
        fewer_bf16_kernels(model)
    return model


def fewer_bf16_kernels(model) -> None:
    """In place, for a LoRA model on a bf16 base trained under bf16 autocast, two library
    switches that drop kernels of every micro-batch (counted by ``python -m benchmarks.host``):

    - peft casts each LoRA layer's input to the adapter's fp32 and autocast casts it back to bf16
      for the adapter's matmul (bf16 -> fp32 -> bf16, exact): peft's own switch
      (``cast_input_dtype_enabled``, as ``peft.helpers.disable_input_dtype_casting`` sets it) turns
      it off, 4 kernels per adapted layer fewer (2 casts forward, 2 backward). LoRA's dropout then
      draws on the bf16 input. Without autocast the cast must stay: a bf16 input would not meet
      fp32 LoRA weights.
    - T5's ``gelu_new`` is the tanh approximation of GELU written as 8 elementwise ops, each
      rounding to bf16; transformers' ``gelu_pytorch_tanh`` (``GELUTanh``) is the same formula
      in one kernel (one backward), computed in fp32 and rounded once.

    tests/test_train_lora.py bounds what changes: the loss curve against the fp32 base's."""
    from peft.tuners.tuners_utils import BaseTunerLayer
    from transformers.activations import GELUTanh, NewGELUActivation

    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            module.cast_input_dtype_enabled = False
        for name, child in module.named_children():
            if isinstance(child, NewGELUActivation):
                setattr(module, name, GELUTanh())


def train(params: Params) -> dict | None:
    """Train, save the adapter, and return the training metrics (``None`` on ranks > 0)."""
    resolved = modeling.resolve(params.model, params.hub)
    tokenizer = modeling.load_tokenizer(resolved.folder)
    bf16 = modeling.use_bf16(params.train.bf16)
    weights = modeling.base_weights(params.train.base_weights, bf16)
    frozen = modeling.load_model(resolved.folder, params.train.dropout_rate, weights,
                                 launch.local_rank())
    model = trainable_model(frozen, params, weights, autocast_bf16=bf16)
    trainable, total = model.get_nb_trainable_parameters()
    log.info("LoRA: %d trainable of %d parameters (%.2f %%), frozen base in %s",
             trainable, total, 100 * trainable / total, weights)
    base = modeling.published_name(params.model)
    metrics = finetune.fit(params, VARIANT, model, tokenizer, params.train.learning_rate,
                           lambda trained, folder, _: save_adapter(trained, folder, base))
    return None if metrics is None else metrics | {"model_revision": resolved.pin, "base_weights": weights}


def main(argv: list[str] | None = None) -> None:
    finetune.run(VARIANT, __doc__, argv, train, PARAMS)


if __name__ == "__main__":
    main()
