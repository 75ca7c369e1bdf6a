"""What the fine-tuning stages share: the Trainer set-up, resumable checkpoints and cost figures.

``train_lora`` (``stages/train_lora.py``) and ``train_baseline@full`` (``stages/train_full.py``) differ only
in which weights train, their learning rate and what they save; everything else is here, so the
two variants are compared under the same data, schedule, batch, early stopping and evaluation.

Both evaluate and checkpoint every ``train.eval_steps``, stop early when the eval loss stops
improving, and keep the best checkpoint's weights at the end. Loss curves go to
``{paths.metrics}/train_<variant>/`` (DVCLive).

Checkpoints live in ``{paths.checkpoints}/<variant>``, git-ignored and not a stage output, so DVC
neither caches nor deletes them between runs. A rerun after a crash resumes from the newest
checkpoint that passes ``check_checkpoint`` (its step matches its name and ``max_steps``, its
weights and optimizer state load); one that fails is moved to ``set-aside/`` with one log line and
the next older one is tried, then a fresh start. With several processes that choice is made once,
by node 0's launcher before the workers start, and every worker resumes from it
(``decide_resume``). Only checkpoints written with the same params, data and number of nodes are
resumed: the folder carries a fingerprint of them, and a mismatch clears it; a folder without
that stamp is never cleared, but refused. A checkpoint at the last step (the final save failed) is
finished without training: same state, same best weights, no extra step. Once the weights are in
place the folder is removed, with its lock: nothing is left behind.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from pathlib import Path

from stages import atomic, batching, checksums, cli, devices, launch, locks, modeling, records
from stages.atomic import atomic_path
from stages.errors import InputError
from stages.params import Params, Train, load_params

log = logging.getLogger(__name__)
FINGERPRINT = "fingerprint.json"


# T5's encoder and decoder blocks: FSDP's wrap unit, each block's weights gathered as it runs.
FSDP_WRAP = ["T5Block"]


def fsdp_config(train: Train) -> dict:
    """How the full fine-tune shards over several processes (``full.fsdp``): PyTorch's FSDP2
    (``fully_shard``, transformers 5's default; FSDP1 and its ``use_orig_params`` are deprecated
    there), weights, gradients and AdamW state split across the processes, each T5 block gathered
    whole while it computes. Checkpoints keep the full state dict (``optimizer.bin`` and
    ``pytorch_model_fsdp.bin`` beside the weights: ``check_checkpoint`` knows them), so a run
    resumes as one process's would. Activation checkpointing stays the Trainer's, not FSDP's:
    accelerate wraps blocks with ``preserve_rng_state=False``, so with T5's dropout the recomputed
    forward would draw other masks than the one the loss came from; the Trainer's costs one more
    gather of each block's weights in the backward pass, and computes the right gradients."""
    return {"transformer_layer_cls_to_wrap": FSDP_WRAP, "state_dict_type": "FULL_STATE_DICT"}


def training_args(train: Train, learning_rate: float, output_dir: Path, seed: int, bf16: bool,
                  report_to: list[str], dataloader_workers: int, fsdp: bool = False):
    import torch
    from transformers import Seq2SeqTrainingArguments

    sharding = {"fsdp": True, "fsdp_config": fsdp_config(train)} if fsdp else {}
    args = Seq2SeqTrainingArguments(
        **sharding,
        output_dir=str(output_dir),
        learning_rate=learning_rate,
        max_steps=train.max_steps,
        per_device_train_batch_size=train.batch_size,
        per_device_eval_batch_size=train.eval_batch_size,
        # Never the Trainer's own search (0.9x per OOM, restarts, ranks disagree): stages.batching
        # settles the batch before training and keeps the effective batch.
        auto_find_batch_size=False,
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
        # A resume restores early stopping's patience counter (and the Trainer's control state):
        # without it the counter restarts at 0 and a resumed run can stop at another step and keep
        # another best model than the run that was never interrupted.
        restore_callback_states_from_checkpoint=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        train_sampling_strategy="group_by_length" if train.group_by_length else "random",
        bf16=bf16,
        use_cpu=not torch.cuda.is_available(),
        activation_checkpointing=train.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False},  # works with frozen inputs (LoRA)
        ddp_find_unused_parameters=False,  # every trained weight is used: skip DDP's graph search
        dataloader_num_workers=dataloader_workers,
        # Not include_num_input_tokens_seen: it gathers a count and syncs with the GPU on every
        # micro-batch. cost_metrics counts tokens from the data set's lengths instead.
        # No host sync per micro-batch: the NaN/inf filter asks the GPU whether each micro-batch's
        # loss is finite (torch.isnan(loss) in an `if`), only to log the running mean in place of
        # a non-finite loss; unfiltered, a NaN shows in the logged loss, as it should.
        logging_nan_inf_filter=False,
        # Averages the token count of each step across processes (a collective per step) for a
        # model that divides its loss by it; T5 ignores that count (accepts_loss_kwargs = False
        # in train_lora / train_full), so the Trainer never computes one to average.
        average_tokens_across_devices=False,
        torch_compile=train.compile,
        seed=seed,
        data_seed=seed,
        report_to=report_to,
        disable_tqdm=False,
    )
    if fsdp:
        # FSDP trains in the precision one process and DDP do: fp32 weights, bf16 compute by
        # autocast (train.bf16), gradients reduced in fp32. accelerate's bf16 policy would
        # instead gather the weights in bf16 and reduce gradients in bf16, so the full
        # fine-tune's result would depend on full.fsdp. (The price: fp32 gathers, twice bf16's
        # traffic.) Set here because transformers passes no policy through fsdp_config.
        fp32 = torch.float32
        args.fsdp_plugin_args["mixed_precision_policy"] = {"param_dtype": fp32, "reduce_dtype": fp32,
                                                           "output_dtype": fp32}
    return args


def fingerprint(params: Params, variant: str, tokenized: Path, nodes: int) -> str:
    """What a checkpoint must share with this run to be resumed from: params, data and the world
    size (``train.processes`` per node x ``nodes``), which decides the effective batch and how
    many batches a resume skips."""
    digest = hashlib.sha256(variant.encode())
    for section in (params.seed, params.model, getattr(params, variant), params.train):
        digest.update(json.dumps(section if isinstance(section, int) else section.model_dump(),
                                 sort_keys=True).encode())
    digest.update(modeling.folder_hash(tokenized).encode())
    if nodes != 1:  # one node adds nothing, so single-node checkpoints keep their fingerprint
        digest.update(f"nodes={nodes}".encode())
    return digest.hexdigest()


def checkpoint_folder(params: Params, variant: str) -> Path:
    """Where this training's checkpoints live: ``{paths.checkpoints}/<variant>`` of the workspace.

    A queued or ``--temp`` experiment runs in a temporary copy of the repository that DVC deletes
    when it ends, crashed or not (DVC names the repository itself in ``DVC_ROOT``): its
    checkpoints live in the repository's checkpoints folder instead, keyed by the fingerprint of
    params and data, so experiments running at once never share a folder and the same experiment
    queued again after a crash resumes.
    """
    root = os.environ.get("DVC_ROOT")
    if root and Path(root).resolve() != Path.cwd().resolve():
        key = fingerprint(params, variant, Path(params.paths.tokenized), launch.nodes())[:16]
        return Path(root) / params.paths.checkpoints / f"{variant}-{key}"
    return params.paths.checkpoint_dir(variant)


def stamp_of(folder: Path) -> str | None:
    """The fingerprint this project stamped ``folder`` with, or None: no stamp, or not ours."""
    try:
        stamp = json.loads((folder / FINGERPRINT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    found = stamp.get("fingerprint") if isinstance(stamp, dict) else None
    return found if isinstance(found, str) else None


def prepare_checkpoints(folder: Path, expected: str) -> None:
    """Give this training a checkpoint folder stamped with ``expected``: the one there if its
    stamp matches, else a fresh one.

    Only a folder this project stamped is ever cleared (its checkpoints were written with other
    params or data). An existing folder without the stamp is not ours: ``paths.checkpoints``
    names someone's folder, or files were put there by hand. It is refused, never emptied; an
    empty one is taken. The stamp appears with the folder (a folder built beside it and renamed
    into place), so a crash cannot leave a folder of ours without it."""
    if folder.exists():
        found = stamp_of(folder)
        if found is None and (not folder.is_dir() or any(folder.iterdir())):
            raise InputError(f"{folder} exists and this project did not make it (no {FINGERPRINT} of "
                             "its training in it): move it away, or set paths.checkpoints in "
                             "params.yaml to another folder")
        if found == expected:
            return
        if found is None:
            folder.rmdir()  # empty: nothing of anyone's is lost
        else:
            log.info("clearing %s: written with other params or data", folder)
            shutil.rmtree(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    atomic.sweep(folder.parent)  # what a killed run left half-built
    building = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    atomic.remove(building)
    building.mkdir()
    (building / FINGERPRINT).write_text(json.dumps({"fingerprint": expected}) + "\n", encoding="utf-8")
    os.replace(building, folder)


SET_ASIDE = "set-aside"  # checkpoints that failed their check, kept out of the Trainer's way


def newest_checkpoint(folder: Path, max_steps: int) -> Path | None:
    """The newest checkpoint that passes ``check_checkpoint``; every newer one that fails is
    moved into ``<folder>/set-aside/`` (one log line each), so it can never block a later run."""
    candidates = [p for p in folder.glob("checkpoint-*") if p.is_dir()]
    for checkpoint in sorted(candidates, key=_step_of_name, reverse=True):
        problem = check_checkpoint(checkpoint, max_steps)
        if problem is None:
            return checkpoint
        aside = folder / SET_ASIDE / checkpoint.name
        aside.parent.mkdir(exist_ok=True)
        if aside.exists():
            shutil.rmtree(aside)
        checkpoint.rename(aside)
        log.warning("set aside %s: %s (moved to %s)", checkpoint, problem, aside)
    return None


RESUME = "resume.json"  # the checkpoint a launch's workers resume from, chosen once by its launcher


def decide_resume(folder: Path, max_steps: int, run_id: str) -> Path | None:
    """In the launcher of several processes (node 0's), before any worker starts: choose the
    checkpoint they all resume from (``newest_checkpoint``, setting bad ones aside) and leave the
    choice in ``<folder>/resume.json`` for launch ``run_id``. The folder is shared by the nodes.

    Not every worker for itself: each would load every candidate's weights and optimizer state
    into CPU memory at once (several GB per rank for flan-t5-base's full fine-tune), and a rank
    whose load failed would set aside the checkpoint the others resume from, so the ranks would
    resume from different steps."""
    resume = newest_checkpoint(folder, max_steps)
    decision = {"run_id": run_id, "checkpoint": resume.name if resume else None}
    (folder / RESUME).write_text(json.dumps(decision) + "\n")  # now, not at the stage's commit
    return resume


def decided_resume(folder: Path, run_id: str) -> Path | None:
    """In a worker: the checkpoint its launcher chose for launch ``run_id`` (``decide_resume``),
    taken as it is: a worker never checks, nor moves, a checkpoint the others resume from."""
    try:
        decision = json.loads((folder / RESUME).read_text())
    except (OSError, ValueError):
        decision = {}
    if not isinstance(decision, dict) or decision.get("run_id") != run_id:
        raise RuntimeError(f"{folder / RESUME}: no checkpoint was chosen for this launch ({run_id}): "
                           "start the stage itself (python -m stages.train_<variant>), not its workers")
    return folder / decision["checkpoint"] if decision.get("checkpoint") else None


def _step_of_name(checkpoint: Path) -> int:
    try:
        return int(checkpoint.name.split("-")[-1])
    except ValueError:
        return -1


def check_checkpoint(checkpoint: Path, max_steps: int) -> str | None:
    """Why ``checkpoint`` cannot be resumed from, or None. The Trainer writes trainer_state.json
    last, but a checkpoint's files can still be cut short (a full disk, a crash mid-write on some
    file systems) or edited: its step must match its name and the schedule, and its weights and
    optimizer state must load the way the Trainer loads them."""
    import torch
    from safetensors.torch import load_file

    try:
        state = json.loads((checkpoint / "trainer_state.json").read_text())
    except (OSError, ValueError) as exc:
        return f"trainer_state.json unreadable ({exc.__class__.__name__})"
    step = state.get("global_step") if isinstance(state, dict) else None
    if step != _step_of_name(checkpoint):
        return f"trainer_state.json global_step {step} does not match the folder name"
    if step > max_steps:
        return f"step {step} is beyond train.max_steps {max_steps}"
    weights = sorted(checkpoint.glob("*.safetensors"))
    if not weights:
        return "no weights (*.safetensors)"
    # Under FSDP the Trainer saves the optimizer (and the model once more) through accelerate:
    # optimizer.bin and pytorch_model_fsdp.bin instead of optimizer.pt.
    optimizer = checkpoint / "optimizer.bin" if (checkpoint / "optimizer.bin").exists() else checkpoint / "optimizer.pt"
    for name in [*weights, *sorted(checkpoint.glob("pytorch_model_fsdp*.bin")), optimizer, checkpoint / "scheduler.pt"]:
        try:
            if name.suffix == ".safetensors":
                load_file(str(name), device="cpu")
            else:
                torch.load(name, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated or corrupt: each library raises its own kind
            detail = str(exc).splitlines()[0][:120] if str(exc) else ""
            return f"{name.name} does not load ({exc.__class__.__name__}: {detail})"
    return None


def remove_checkpoints(folder: Path) -> None:
    """Remove a finished training's checkpoint folder, stamp and all, so nothing is left behind
    (a queued experiment's ``<variant>-<key>`` folder would otherwise stay for good; the lock
    beside it goes with it, ``stages.locks``). Only a folder carrying this project's stamp."""
    if stamp_of(folder) is None:
        log.warning("not removing %s: it lacks this project's %s", folder, FINGERPRINT)
        return
    shutil.rmtree(folder)


def sharded(fsdp: bool) -> bool:
    """Whether a fine-tune asking for FSDP (the full fine-tune's ``full.fsdp``; LoRA's trained
    weights are 1 % of the model, data parallel suffices there) trains under it: with several
    processes only."""
    return fsdp and launch.world_size() > 1


def trainer_class():
    """HF's ``Seq2SeqTrainer``, less one piece of host work per micro-batch.

    The Trainer adds up FLOPs (``total_flos`` in its state) on every micro-batch as 6 x input
    tokens x the model's non-embedding parameters, and counts those parameters afresh each time:
    a walk over every module and parameter of the model with a list lookup per parameter, 27-30 ms
    per call on flan-t5-base's shape with LoRA (on 2 CPU cores shared with other jobs), longer
    than a whole micro-batch takes on a GPU. The parameters never change while training: they
    are counted once per model, and the FLOP count is the library's, to the unit (tested)."""
    from transformers import Seq2SeqTrainer

    class Trainer(Seq2SeqTrainer):
        _counted: tuple[int, int] | None = None  # (id of the model, its non-embedding parameters)

        def floating_point_ops(self, inputs) -> int:
            main = getattr(self.model, "main_input_name", "input_ids")
            if main not in inputs or not hasattr(self.model, "num_parameters"):
                return 0
            if self._counted is None or self._counted[0] != id(self.model):
                self._counted = (id(self.model), self.model.num_parameters(exclude_embeddings=True))
            return 6 * inputs[main].numel() * self._counted[1]

    return Trainer


def make_trainer(params: Params, model, tokenizer, learning_rate: float, checkpoints: Path,
                 curves: Path | None, fsdp: bool = False):
    import datasets
    from transformers import DataCollatorForSeq2Seq, EarlyStoppingCallback

    from stages import tracking  # imports transformers: kept out of --help and params checks

    cfg = params.train
    bf16 = modeling.use_bf16(cfg.bf16)
    report_to = tracking.wandb_report_to(params.tracking.wandb, params.tracking.wandb_project, params)
    callbacks = [EarlyStoppingCallback(cfg.early_stopping_patience, cfg.early_stopping_threshold)]
    if curves is not None:
        callbacks.append(tracking.LiveCurves(curves))
    data = datasets.load_from_disk(params.paths.tokenized)
    args = training_args(cfg, learning_rate, checkpoints, params.seed, bf16, report_to,
                         params.runtime.dataloader_workers, fsdp)
    collator = DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100,
                                      pad_to_multiple_of=8 if bf16 else None)
    if fsdp and args.device.type != "cuda":
        # accelerate runs FSDP on GPUs only: on CPU the processes train data parallel, and the
        # training record's `fsdp` says false.
        log.warning("full.fsdp: FSDP needs GPUs; these %d CPU processes train data parallel", launch.world_size())
    if fsdp and cfg.auto_find_batch_size:
        # The probe runs the whole model on one GPU, which is what sharding avoids needing.
        log.info("full.fsdp: no batch probe; the batch is train.batch_size x gradient_accumulation_steps")
    elif cfg.auto_find_batch_size and args.device.type == "cuda":
        reserve = batching.ddp_headroom(model) if launch.world_size() > 1 else 0  # (FSDP probes nothing)
        fits = batching.worst_case_probe(model, batching.worst_case(data["train"]), collator, args.device,
                                         bf16, cfg.gradient_checkpointing, reserve)
        args.per_device_train_batch_size, args.gradient_accumulation_steps = batching.settle(
            fits, cfg.batch_size, cfg.gradient_accumulation_steps, batching.agree_across_ranks)
        batching.release(args.device)
    if args.n_gpu > 1:  # devices.claim gives each process one GPU; never nn.DataParallel
        raise RuntimeError(f"this process sees {args.n_gpu} GPUs: devices.claim() was not called")
    trainer = seq2seq_trainer(
        model=model,
        args=args,
        train_dataset=data["train"],
        eval_dataset=data["validation"],
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    tracking.show_progress(trainer)  # the bar, and each log event one line: no dicts on stdout
    return trainer


def seq2seq_trainer(**kwargs):
    """``trainer_class()(**kwargs)`` whose length-grouped sampler (``train.group_by_length``) draws
    each epoch's order from the run's seed and the epoch, as the random sampler does (accelerate
    seeds that one per epoch), so a resumed run trains on the batches the uninterrupted one would.

    The Trainer's own ``LengthGroupedSampler`` draws from the global random state when an epoch
    starts: a resume skips its first batches (``skip_first_batches``) in another order than the
    one the checkpoint's steps trained on. The epoch is set when the Trainer starts one
    (``_run_epoch``): accelerate's ``set_epoch`` does not reach a sampler behind a skipping and
    sharding batch sampler, which is the resumed epoch under several processes."""
    import torch
    from transformers.trainer_pt_utils import LengthGroupedSampler

    class EpochSeededSampler(LengthGroupedSampler):
        def __init__(self, batch_size: int, lengths: list[int], seed: int):
            super().__init__(batch_size, lengths=lengths)
            self.seed, self.epoch = seed, 0

        def set_epoch(self, epoch: int) -> None:
            self.epoch = epoch

        def __iter__(self):
            self.generator = torch.Generator().manual_seed(self.seed + self.epoch)
            return super().__iter__()

    class Trainer(trainer_class()):
        def _get_train_sampler(self, train_dataset=None):
            sampler = super()._get_train_sampler(train_dataset)
            if type(sampler) is LengthGroupedSampler:
                seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
                sampler = self._epoch_seeded = EpochSeededSampler(sampler.batch_size, sampler.lengths, seed)
            return sampler

        def _run_epoch(self, **kwargs):
            if (sampler := getattr(self, "_epoch_seeded", None)) is not None:
                sampler.set_epoch(kwargs["epoch"])
            return super()._run_epoch(**kwargs)

    return Trainer(**kwargs)


def fit(params: Params, variant: str, model, tokenizer, learning_rate: float,
        save: Callable[[object, Path, dict | None], None], fsdp: bool = False) -> dict | None:
    """Train ``model``, ``save(trained_model, folder, state_dict or None)`` its weights into
    ``{paths.models}/<variant>`` and return the training metrics (``None`` on ranks > 0)."""
    paths = params.paths
    checkpoints = checkpoint_folder(params, variant)
    if launch.launched():  # several processes: node 0's launcher prepared and chose, before launch
        resume = decided_resume(checkpoints, launch.worker_run_id())
    else:
        prepare_checkpoints(checkpoints, fingerprint(params, variant, Path(paths.tokenized), launch.nodes()))
        resume = newest_checkpoint(checkpoints, params.train.max_steps)
    done = False
    if resume:
        log.info("resuming from %s (step %s)", resume, resume.name.split("-")[-1])
        # Read now: the Trainer rotates old checkpoints away, and the rest are cleared below.
        state = json.loads((resume / "trainer_state.json").read_text())
        # Trained to the end, then the weights were not saved (a crash or full disk at the very
        # end): the Trainer would take one more step and evaluate it. Finish as it would have.
        control = state.get("stateful_callbacks", {}).get("TrainerControl", {}).get("args", {})
        done = state["global_step"] >= params.train.max_steps or control.get("should_training_stop", False)
    # The curves are written live, where `dvc plots` and the VS Code extension read them while
    # training runs; a resumed run starts them afresh and replays the earlier history into them.
    # Only the first process writes them. The weights and the final metrics (train_<v>.json)
    # stay whole-or-nothing.
    curves = paths.train_log(variant) if launch.rank() == 0 else None
    if curves is not None:
        atomic.remove(curves)  # a crashed run's rows beyond its checkpoint
    fsdp = sharded(fsdp)
    trainer = make_trainer(params, model, tokenizer, learning_rate, checkpoints, curves, fsdp)
    started = time.perf_counter()
    with tied_copies_quietly(model), saving_checkpoints(trainer, checkpoints):
        output = finish(trainer, resume) if done else trainer.train(
            resume_from_checkpoint=str(resume) if resume else None)
    wall = time.perf_counter() - started
    # Sharded weights are gathered into one state dict by every process together, before the
    # others leave; only the first saves it.
    state = trainer.accelerator.get_state_dict(trainer.model) if fsdp else None
    peak_mb = launch.largest(modeling.peak_memory_mb())  # every rank takes part; the largest counts
    if not trainer.is_world_process_zero():
        return None

    with atomic_path(paths.model_dir(variant)) as out:
        save(trainer.accelerator.unwrap_model(trainer.model), out, state)
        weights_mb = round(sum(f.stat().st_size for f in out.iterdir()) / 2**20, 3)
        checksums.write(out)  # last, so it covers every file the folder is moved in with
    # Checkpoints exist to survive a crash; once the weights are in place they have served.
    # Keeping them would make a forced rerun "resume" at the last step instead of training again.
    # Not before: a stage refused at the end (stages.guard) must still be able to resume.
    atomic.after_commit(lambda: remove_checkpoints(checkpoints))
    return cost_metrics(trainer, output, wall, resume, weights_mb, peak_mb)


@contextmanager
def saving_checkpoints(trainer, checkpoints: Path):
    """Train with a checkpoint the disk cannot hold ending in one line (``atomic.writing``: no
    traceback from torch.save or safetensors), and without the checkpoint it cut short: the
    Trainer writes trainer_state.json last, so a folder without one is removed (it frees the
    space it took; a resume would only set it aside)."""
    try:
        with atomic.writing(checkpoints):
            yield
    except OSError:
        partial = checkpoints / f"checkpoint-{trainer.state.global_step}"
        if partial.is_dir() and not (partial / "trainer_state.json").exists():
            shutil.rmtree(partial, ignore_errors=True)
        raise


MISSING_KEYS = "There were missing keys in the checkpoint model loaded: "


def tied_copies_quietly(model):
    """Train without the Trainer's "There were missing keys in the checkpoint model loaded:
    [encoder.embed_tokens.weight, ...]" when it loads the best checkpoint of a full fine-tune:
    safetensors stores a tied weight once, so T5's embedding copies (tied to ``shared``) are
    "missing" from every checkpoint, and ``load_state_dict`` leaves them tied to the weight it
    loaded. The Trainer only recognises that through ``_keys_to_ignore_on_save``, which T5 leaves
    empty. The line is dropped only when every missing key is such a copy; any other missing key
    still warns (tests/test_train_lora.py)."""
    tied = set(getattr(model, "all_tied_weights_keys", None) or {})

    def only_tied_copies(message: str) -> bool:
        if not message.startswith(MISSING_KEYS):
            return False
        try:
            return set(ast.literal_eval(message.removeprefix(MISSING_KEYS).rstrip("."))) <= tied
        except (ValueError, SyntaxError):
            return False

    return modeling.dropping_log_lines("transformers.trainer", only_tied_copies)


def finish(trainer, checkpoint: Path):
    """End a run whose ``checkpoint`` is its last step, as ``trainer.train`` would have ended it:
    the state of that step, the best checkpoint's weights, the curves replayed."""
    from transformers import TrainerState
    from transformers.trainer_utils import TrainOutput

    from stages import tracking

    trainer.state = TrainerState.load_from_json(str(checkpoint / "trainer_state.json"))
    trainer._load_best_model()  # what load_best_model_at_end does at the end of train()
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, tracking.LiveCurves):
            callback.on_train_begin(trainer.args, trainer.state, trainer.control)
            callback.on_train_end(trainer.args, trainer.state, trainer.control)
    return TrainOutput(trainer.state.global_step, 0.0, {})


def cost_metrics(trainer, output, wall: float, resume: Path | None, weights_mb: float,
                 peak_mb: float) -> dict:
    """What training gave and cost; rates count this run's work only (not a resumed run's past).

    Input tokens are the examples this run trained on times the training set's mean source
    length (padding excluded): exact over whole epochs, which a real run's 1000 steps of 64 span
    five times over; on the demo's 20 steps, 13 % of an epoch, it read 10 % below a per-batch count.
    """
    import statistics

    state, args = trainer.state, trainer.args
    resumed_step = int(resume.name.split("-")[-1]) if resume else 0
    effective = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    tokens = (state.global_step - resumed_step) * effective * statistics.fmean(trainer.train_dataset["length"])
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in trainer.model.parameters())
    best = state.best_model_checkpoint
    return {
        "trainable_params": trainable,
        "total_params": total,
        "trainable_percent": round(100 * trainable / total, 4),
        # What the batch probe settled on (stages/batching.py); the effective batch is params'.
        "batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "effective_batch_size": effective,
        "fsdp": bool(trainer.is_fsdp_enabled),  # weights and optimizer state sharded (full.fsdp)
        "devices": devices.in_use(),
        "best_eval_loss": state.best_metric,
        "best_step": int(best.rsplit("-", 1)[-1]) if best else None,
        "steps": state.global_step,
        "resumed_from_step": resumed_step,
        "wall_time_s": round(wall, 2),
        "samples_per_second": output.metrics.get("train_samples_per_second"),
        "input_tokens_per_second": round(tokens / wall, 1),
        "peak_memory_mb": peak_mb,  # the largest of any process's (GPU memory, else resident memory)
        "bf16": args.bf16,
        "weights_mb": weights_mb,
    }


def run(variant: str, doc: str, argv: list[str] | None,
        train: Callable[[Params], dict | None], sections: tuple[str, ...]) -> None:
    """A fine-tuning stage's command line: read params, relaunch under torchrun when
    ``train.processes > 1``, train, and write ``{paths.metrics}/train_<variant>.json`` and its
    record (``stages/records.py``)."""
    args = cli.parser(doc).parse_args(argv)
    held = ExitStack()  # the checkpoint folder's lock, held until the outputs are in place

    def body() -> None:
        params = load_params(args.params)
        # One training per checkpoint folder; workers train under their launcher's lock, the
        # nodes of a multi-node run under node 0's (they share the folder).
        if not launch.launched() and launch.node_rank() == 0:
            held.enter_context(locks.exclusive(checkpoint_folder(params, variant)))
        checksums.verify(params.paths.tokenized)  # before its hash decides which checkpoints resume
        log.debug("train %s params: seed=%s model=%s %s=%s train=%s runtime=%s tracking=%s", variant,
                 params.seed, params.model, variant, getattr(params, variant), params.train, params.runtime,
                 params.tracking)
        if not launch.launched():  # torchrun's workers inherit the GPUs claimed here
            devices.claim(params.train.processes, "train.processes")
        if launch.needed(params.train.processes):
            if launch.node_rank() == 0:  # once, not in every rank or node (the folder is shared)
                folder = checkpoint_folder(params, variant)
                prepare_checkpoints(folder, fingerprint(params, variant, Path(params.paths.tokenized), launch.nodes()))
                decide_resume(folder, params.train.max_steps, launch.run_id())
            launch.relaunch(f"stages.train_{variant}", params.train.processes, sys.argv[1:])
        metrics = train(params)
        if metrics is not None:
            metrics["versions"] = modeling.library_versions()
            metrics["params_sha256"] = cli.params_digest()  # of ``sections``, as read at the start
            records.write(params.paths.train_record(variant), metrics, params.paths.train_metrics(variant),
                          records.TRAIN)
            log.info("trained %s: best eval loss %.4f at step %s of %s, %.0f s, batch %s x %s (all figures: %s)",
                     variant, metrics["best_eval_loss"], metrics["best_step"], metrics["steps"],
                     metrics["wall_time_s"], metrics["batch_size"], metrics["gradient_accumulation_steps"],
                     params.paths.train_record(variant))

    with held:  # released after cli.run has moved the outputs in place and cleared the checkpoints
        cli.run(body, sections, args.params)
