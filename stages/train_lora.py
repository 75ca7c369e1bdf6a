"""train_lora: ``{paths.tokenized}`` -> LoRA adapter ``{paths.adapter}`` + ``metrics/train.json``.

Reads params ``seed``, ``paths``, ``model``, ``lora``, ``train``, ``tracking``.

Fine-tunes the base model with a LoRA adapter (peft) through HF's ``Seq2SeqTrainer``: evaluates
and checkpoints every ``train.eval_steps``, stops early when the eval loss stops improving, and
keeps the best checkpoint's weights at the end. Loss curves go to ``{paths.train_log}`` (DVCLive).

Checkpoints live in ``{paths.checkpoints}``, which DVC keeps between runs (``persist``) and never
caches. A rerun after a crash resumes from the newest complete checkpoint, but only when it was
written with the same params and data: the folder carries a fingerprint of both, and a
mismatch clears it. Once the adapter is saved the checkpoints are removed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
import time
from contextlib import nullcontext
from pathlib import Path

from stages import cli, launch, modeling
from stages.atomic import atomic_path, write_json
from stages.errors import ModelError
from stages.params import Lora, Params, Train, load_params

log = logging.getLogger(__name__)
FINGERPRINT = "fingerprint.json"


def add_lora(base, lora: Lora, seed: int):
    """Wrap ``base`` with a fresh LoRA adapter; only the adapter is trainable."""
    import torch
    from peft import LoraConfig, get_peft_model

    leaf_names = {name.rsplit(".", 1)[-1] for name, _ in base.named_modules()}
    missing = [m for m in lora.target_modules if m not in leaf_names]
    if missing:
        raise ModelError(f"lora.target_modules: the model has no module named {', '.join(missing)} "
                         f"(linear layers here include e.g. q, k, v, o, wi, wo)")
    # T5's forward accepts **kwargs but ignores num_items_in_batch, so the Trainer would skip
    # dividing the loss by the accumulation steps: loss and gradients come out multiplied by
    # gradient_accumulation_steps. False makes the Trainer do the division itself.
    base.accepts_loss_kwargs = False
    torch.manual_seed(seed)  # LoRA's A matrices are initialised randomly
    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                        target_modules=list(lora.target_modules), bias=lora.bias,
                        task_type=lora.task_type)
    return get_peft_model(base, config)


def training_args(train: Train, output_dir: Path, seed: int, bf16: bool, report_to: list[str]):
    import torch
    from transformers import Seq2SeqTrainingArguments

    return Seq2SeqTrainingArguments(
        output_dir=str(output_dir),
        learning_rate=train.learning_rate,
        max_steps=train.max_steps,
        per_device_train_batch_size=train.batch_size,
        per_device_eval_batch_size=train.eval_batch_size,
        auto_find_batch_size=train.auto_find_batch_size,
        gradient_accumulation_steps=train.gradient_accumulation_steps,
        max_grad_norm=train.max_grad_norm,
        warmup_steps=train.warmup_steps,
        weight_decay=train.weight_decay,
        lr_scheduler_type=train.lr_scheduler,
        logging_steps=train.logging_steps,
        eval_strategy="steps",
        eval_steps=train.eval_steps,
        save_strategy="steps",
        save_steps=train.eval_steps,
        save_total_limit=train.save_total_limit,
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        train_sampling_strategy="group_by_length" if train.group_by_length else "random",
        bf16=bf16,
        use_cpu=not torch.cuda.is_available(),
        gradient_checkpointing=train.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},  # works with frozen inputs (LoRA)
        ddp_find_unused_parameters=False,  # every LoRA weight is used: skip DDP's graph search
        dataloader_num_workers=train.dataloader_workers,
        seed=seed,
        data_seed=seed,
        report_to=report_to,
        disable_tqdm=False,
    )


def fingerprint(params: Params, tokenized: Path) -> str:
    """What a checkpoint must share with this run to be resumed from."""
    digest = hashlib.sha256()
    for section in (params.seed, params.model, params.lora, params.train):
        digest.update(json.dumps(section if isinstance(section, int) else section.model_dump(),
                                 sort_keys=True).encode())
    digest.update(modeling.folder_hash(tokenized).encode())
    return digest.hexdigest()


def prepare_checkpoints(folder: Path, expected: str) -> None:
    """Clear checkpoints written with other params or data, and stamp the folder."""
    stamp = folder / FINGERPRINT
    if folder.exists() and (not stamp.is_file() or json.loads(stamp.read_text()).get("fingerprint") != expected):
        log.info("clearing %s: written with other params or data", folder)
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps({"fingerprint": expected}) + "\n")


def newest_checkpoint(folder: Path) -> Path | None:
    complete = [p for p in folder.glob("checkpoint-*") if _complete(p)]
    return max(complete, key=lambda p: int(p.name.split("-")[-1]), default=None)


def _complete(checkpoint: Path) -> bool:
    # The Trainer writes trainer_state.json last: a checkpoint without it, or with a
    # truncated one, was cut short.
    try:
        json.loads((checkpoint / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return True


def _sort_target_modules(config: Path) -> None:
    # peft keeps target_modules as a set and writes it in hash order, which Python randomises
    # per process: identical runs would write different adapter configs.
    data = json.loads(config.read_text())
    if isinstance(data.get("target_modules"), list):
        data["target_modules"] = sorted(data["target_modules"])
    config.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def clear_checkpoints(folder: Path) -> None:
    for checkpoint in folder.glob("checkpoint-*"):
        shutil.rmtree(checkpoint)


def train(params: Params) -> dict | None:
    """Train, save the adapter, and return the training metrics (``None`` on ranks > 0)."""
    import datasets
    from transformers import DataCollatorForSeq2Seq, EarlyStoppingCallback, Seq2SeqTrainer

    from stages import tracking  # imports transformers: kept out of --help and params checks

    paths, cfg = params.paths, params.train
    resolved = modeling.resolve(params.model)
    tokenizer = modeling.load_tokenizer(resolved.folder)
    model = add_lora(modeling.load_model(resolved.folder, cfg.dropout_rate),
                     params.lora, params.seed)
    trainable, total = model.get_nb_trainable_parameters()
    log.info("LoRA: %d trainable of %d parameters (%.2f %%)", trainable, total, 100 * trainable / total)

    data = datasets.load_from_disk(paths.tokenized)
    checkpoints = Path(paths.checkpoints)
    if not launch.launched():  # with several processes, main() prepared them once, before launch
        prepare_checkpoints(checkpoints, fingerprint(params, Path(paths.tokenized)))
    resume = newest_checkpoint(checkpoints)
    if resume:
        log.info("resuming from %s (step %s)", resume, resume.name.split("-")[-1])
    bf16 = modeling.use_bf16(cfg.bf16)
    report_to = tracking.wandb_report_to(params.tracking.wandb, params.tracking.wandb_project)
    args = training_args(cfg, checkpoints, params.seed, bf16, report_to)
    # The curves are written into a temporary folder and moved into place only when training
    # finishes, like every other output; a resumed run replays the earlier history into them.
    # Only the first process writes outputs.
    with atomic_path(paths.train_log) if launch.rank() == 0 else nullcontext() as curves:
        callbacks = [EarlyStoppingCallback(cfg.early_stopping_patience, cfg.early_stopping_threshold)]
        if curves is not None:
            callbacks.append(tracking.LiveCurves(curves))
        trainer = Seq2SeqTrainer(
            model=model,
            args=args,
            train_dataset=data["train"],
            eval_dataset=data["validation"],
            data_collator=DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100,
                                                 pad_to_multiple_of=8 if bf16 else None),
            processing_class=tokenizer,
            callbacks=callbacks,
        )
        started = time.perf_counter()
        output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        wall = time.perf_counter() - started
    if not trainer.is_world_process_zero():
        return None

    with atomic_path(paths.adapter) as out:
        trainer.model.save_pretrained(str(out), safe_serialization=True)
        _sort_target_modules(out / "adapter_config.json")
    # Checkpoints exist to survive a crash; once the adapter is saved they have served. Keeping
    # them would make a forced rerun "resume" at the last step instead of training again.
    clear_checkpoints(checkpoints)
    state = trainer.state
    best = state.best_model_checkpoint
    return {
        "trainable_params": trainable,
        "total_params": total,
        "trainable_percent": round(100 * trainable / total, 4),
        "batch_size": state.train_batch_size,  # what auto_find_batch_size settled on
        "effective_batch_size": state.train_batch_size * cfg.gradient_accumulation_steps * args.world_size,
        "best_eval_loss": state.best_metric,
        "best_step": int(best.rsplit("-", 1)[-1]) if best else None,
        "steps": state.global_step,
        "resumed_from_step": int(resume.name.split("-")[-1]) if resume else 0,
        "wall_time_s": round(wall, 2),
        "samples_per_second": output.metrics.get("train_samples_per_second"),
        "peak_memory_mb": modeling.peak_memory_mb(),
        "bf16": bf16,
        "adapter_mb": round(sum(f.stat().st_size for f in Path(paths.adapter).iterdir()) / 2**20, 3),
        "model_revision": resolved.pin,  # the commit a branch name resolved to, or the folder hash
        "versions": modeling.library_versions(),
    }


def main(argv: list[str] | None = None) -> None:
    args = cli.parser(__doc__).parse_args(argv)

    def body() -> None:
        params = load_params(args.params)
        log.info("train_lora params: seed=%s model=%s lora=%s train=%s tracking=%s", params.seed,
                 params.model, params.lora, params.train, params.tracking)
        if params.train.processes > 1 and not launch.launched():
            prepare_checkpoints(Path(params.paths.checkpoints),
                                fingerprint(params, Path(params.paths.tokenized)))
            launch.relaunch("stages.train_lora", params.train.processes, sys.argv[1:])
        metrics = train(params)
        if metrics is not None:
            write_json(f"{params.paths.metrics}/train.json", metrics)
            log.info("trained: %s", metrics)

    cli.run(body)


if __name__ == "__main__":
    main()
