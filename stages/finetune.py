"""What the fine-tuning stages share: the Trainer set-up, resumable checkpoints and cost figures.

``train_lora`` (``stages/train_lora.py``) and ``train_baseline@full`` (``stages/train_full.py``) differ only
in which weights train, their learning rate and what they save; everything else is here, so the
two variants are compared under the same data, schedule, batch, early stopping and evaluation.

Both evaluate and checkpoint every ``train.eval_steps``, stop early when the eval loss stops
improving, and keep the best checkpoint's weights at the end. Loss curves go to
``{paths.metrics}/train_<variant>/`` (DVCLive).

Checkpoints live in ``{paths.checkpoints}/<variant>``, git-ignored and not a stage output, so DVC
neither caches nor deletes them between runs. A rerun after a crash resumes from the newest complete checkpoint, but only
when it was written with the same params and data: the folder carries a fingerprint of both,
and a mismatch clears it. Once the weights are saved the checkpoints are removed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

from stages import cli, launch, modeling
from stages.atomic import atomic_path, write_json
from stages.params import Params, Train, load_params

log = logging.getLogger(__name__)
FINGERPRINT = "fingerprint.json"


def training_args(train: Train, learning_rate: float, output_dir: Path, seed: int, bf16: bool,
                  report_to: list[str]):
    import torch
    from transformers import Seq2SeqTrainingArguments

    return Seq2SeqTrainingArguments(
        output_dir=str(output_dir),
        learning_rate=learning_rate,
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
        ddp_find_unused_parameters=False,  # every trained weight is used: skip DDP's graph search
        dataloader_num_workers=train.dataloader_workers,
        include_num_input_tokens_seen="non_padding",  # for tokens per second in the cost figures
        seed=seed,
        data_seed=seed,
        report_to=report_to,
        disable_tqdm=False,
    )


def fingerprint(params: Params, variant: str, tokenized: Path) -> str:
    """What a checkpoint must share with this run to be resumed from."""
    digest = hashlib.sha256(variant.encode())
    for section in (params.seed, params.model, getattr(params, variant), params.train):
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


def clear_checkpoints(folder: Path) -> None:
    for checkpoint in folder.glob("checkpoint-*"):
        shutil.rmtree(checkpoint)


def make_trainer(params: Params, model, tokenizer, learning_rate: float, checkpoints: Path,
                 curves: Path | None):
    import datasets
    from transformers import DataCollatorForSeq2Seq, EarlyStoppingCallback, Seq2SeqTrainer

    from stages import tracking  # imports transformers: kept out of --help and params checks

    cfg = params.train
    bf16 = modeling.use_bf16(cfg.bf16)
    report_to = tracking.wandb_report_to(params.tracking.wandb, params.tracking.wandb_project)
    callbacks = [EarlyStoppingCallback(cfg.early_stopping_patience, cfg.early_stopping_threshold)]
    if curves is not None:
        callbacks.append(tracking.LiveCurves(curves))
    data = datasets.load_from_disk(params.paths.tokenized)
    return Seq2SeqTrainer(
        model=model,
        args=training_args(cfg, learning_rate, checkpoints, params.seed, bf16, report_to),
        train_dataset=data["train"],
        eval_dataset=data["validation"],
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100,
                                             pad_to_multiple_of=8 if bf16 else None),
        processing_class=tokenizer,
        callbacks=callbacks,
    )


def fit(params: Params, variant: str, model, tokenizer, learning_rate: float,
        save: Callable[[object, Path], None]) -> dict | None:
    """Train ``model``, ``save(trained_model, folder)`` its weights into ``{paths.models}/<variant>``
    and return the training metrics (``None`` on ranks > 0)."""
    paths = params.paths
    checkpoints = paths.checkpoint_dir(variant)
    if not launch.launched():  # with several processes, run() prepared them once, before launch
        prepare_checkpoints(checkpoints, fingerprint(params, variant, Path(paths.tokenized)))
    resume = newest_checkpoint(checkpoints)
    resumed_tokens = 0
    if resume:
        log.info("resuming from %s (step %s)", resume, resume.name.split("-")[-1])
        # Read now: the Trainer rotates old checkpoints away, and the rest are cleared below.
        state = json.loads((resume / "trainer_state.json").read_text())
        resumed_tokens = state.get("num_input_tokens_seen", 0)
    # The curves are written into a temporary folder and moved into place only when training
    # finishes, like every other output; a resumed run replays the earlier history into them.
    # Only the first process writes outputs.
    with atomic_path(paths.train_log(variant)) if launch.rank() == 0 else nullcontext() as curves:
        trainer = make_trainer(params, model, tokenizer, learning_rate, checkpoints, curves)
        started = time.perf_counter()
        output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        wall = time.perf_counter() - started
    if not trainer.is_world_process_zero():
        return None

    weights = paths.model_dir(variant)
    with atomic_path(weights) as out:
        save(trainer.model, out)
    # Checkpoints exist to survive a crash; once the weights are saved they have served. Keeping
    # them would make a forced rerun "resume" at the last step instead of training again.
    clear_checkpoints(checkpoints)
    return cost_metrics(trainer, output, wall, resume, resumed_tokens, weights)


def cost_metrics(trainer, output, wall: float, resume: Path | None, resumed_tokens: int,
                 weights: Path) -> dict:
    """What training gave and cost; rates count this run's work only (not a resumed run's past)."""
    state, args = trainer.state, trainer.args
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in trainer.model.parameters())
    best = state.best_model_checkpoint
    return {
        "trainable_params": trainable,
        "total_params": total,
        "trainable_percent": round(100 * trainable / total, 4),
        "batch_size": state.train_batch_size,  # what auto_find_batch_size settled on
        "effective_batch_size": state.train_batch_size * args.gradient_accumulation_steps * args.world_size,
        "best_eval_loss": state.best_metric,
        "best_step": int(best.rsplit("-", 1)[-1]) if best else None,
        "steps": state.global_step,
        "resumed_from_step": int(resume.name.split("-")[-1]) if resume else 0,
        "wall_time_s": round(wall, 2),
        "samples_per_second": output.metrics.get("train_samples_per_second"),
        "input_tokens_per_second": round((state.num_input_tokens_seen - resumed_tokens) / wall, 1),
        "peak_memory_mb": modeling.peak_memory_mb(),
        "bf16": args.bf16,
        "weights_mb": round(sum(f.stat().st_size for f in weights.iterdir()) / 2**20, 3),
    }


def run(variant: str, doc: str, argv: list[str] | None,
        train: Callable[[Params], dict | None]) -> None:
    """A fine-tuning stage's command line: read params, relaunch under torchrun when
    ``train.processes > 1``, train, and write ``{paths.metrics}/train_<variant>.json``."""
    args = cli.parser(doc).parse_args(argv)

    def body() -> None:
        params = load_params(args.params)
        log.info("train %s params: seed=%s model=%s %s=%s train=%s tracking=%s", variant, params.seed,
                 params.model, variant, getattr(params, variant), params.train, params.tracking)
        if params.train.processes > 1 and not launch.launched():
            prepare_checkpoints(params.paths.checkpoint_dir(variant),
                                fingerprint(params, variant, Path(params.paths.tokenized)))
            launch.relaunch(f"stages.train_{variant}", params.train.processes, sys.argv[1:])
        metrics = train(params)
        if metrics is not None:
            metrics["versions"] = modeling.library_versions()
            write_json(params.paths.train_metrics(variant), metrics)
            log.info("trained %s: %s", variant, metrics)

    cli.run(body)
