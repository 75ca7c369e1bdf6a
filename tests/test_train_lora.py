"""Training wiring: LoRA targets checked, loss not inflated by accumulation, resume guarded."""

from __future__ import annotations

import json

import pytest

from stages import modeling
from stages.errors import ModelError
from stages.finetune import FINGERPRINT, newest_checkpoint, prepare_checkpoints
from stages.params import Lora
from stages.train_lora import add_lora, save_adapter

LORA = Lora(r=4, alpha=8, dropout=0.0, target_modules=["q", "v"], bias="none", task_type="SEQ_2_SEQ_LM")


def test_unknown_target_module_is_named(tiny_model):
    bad = LORA.model_copy(update={"target_modules": ["q", "query_proj"]})
    with pytest.raises(ModelError, match=r"lora.target_modules: .*query_proj \(its linear layers: k, lm_head, o, q, v, "
                                         r"wi_0, wi_1, wo\)"):
        add_lora(modeling.load_model(tiny_model), bad, seed=0)


def test_only_the_adapter_trains_and_init_is_seeded(tiny_model):
    a = add_lora(modeling.load_model(tiny_model), LORA, seed=3)
    b = add_lora(modeling.load_model(tiny_model), LORA, seed=3)
    trainable = {n for n, p in a.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    sa, sb = a.state_dict(), b.state_dict()
    assert all((sa[k] == sb[k]).all() for k in sa if "lora_A" in k)


def _logged_loss(tiny_model, tmp_path, batch: int, accumulation: int) -> float:
    """The first logged training loss over the same 8 examples, in the same order."""
    import datasets
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments

    tokenizer = modeling.load_tokenizer(tiny_model)
    texts = [f"#Person1#: I need {n} tickets to Boston.\n#Person2#: That is ${10 * n}." for n in range(8)]
    data = datasets.Dataset.from_dict({
        "input_ids": tokenizer(texts)["input_ids"],
        "labels": tokenizer(text_target=[f"{n} tickets cost ${10 * n}." for n in range(8)])["input_ids"],
    })
    model = add_lora(modeling.load_model(tiny_model, dropout_rate=0.0), LORA, seed=0)
    args = Seq2SeqTrainingArguments(
        output_dir=str(tmp_path / f"{batch}x{accumulation}"), per_device_train_batch_size=batch,
        gradient_accumulation_steps=accumulation, max_steps=1, logging_steps=1, learning_rate=1e-9,
        train_sampling_strategy="sequential", report_to=[], save_strategy="no", use_cpu=True)
    trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=data,
                             data_collator=DataCollatorForSeq2Seq(tokenizer, model=model))
    trainer.train()
    return next(e["loss"] for e in trainer.state.log_history if "loss" in e)


def test_gradient_accumulation_does_not_multiply_the_loss(tiny_model, tmp_path):
    # T5 ignores num_items_in_batch; without accepts_loss_kwargs=False the loss logged with
    # accumulation 2 is twice the loss of the same examples in one batch.
    single = _logged_loss(tiny_model, tmp_path, batch=8, accumulation=1)
    accumulated = _logged_loss(tiny_model, tmp_path, batch=4, accumulation=2)
    assert accumulated == pytest.approx(single, rel=0.15)


def test_checkpoints_of_other_params_are_cleared(tmp_path):
    folder = tmp_path / "checkpoints"
    (folder / "checkpoint-10").mkdir(parents=True)
    (folder / "checkpoint-10" / "trainer_state.json").write_text("{}")
    (folder / FINGERPRINT).write_text(json.dumps({"fingerprint": "old"}))
    prepare_checkpoints(folder, "new")
    assert newest_checkpoint(folder, max_steps=100) is None
    assert not (folder / "checkpoint-10").exists()
    assert json.loads((folder / FINGERPRINT).read_text()) == {"fingerprint": "new"}


def test_checkpoints_cut_short_are_set_aside(tmp_path):
    """A checkpoint without trainer_state.json (the Trainer writes it last), or with a truncated
    one, is never resumed from: it is moved out of the way, and nothing older is left to use."""
    folder = tmp_path / "checkpoints"
    for step, state in {30: '{"log_history": [', 40: None}.items():
        (folder / f"checkpoint-{step}").mkdir(parents=True)
        if state is not None:
            (folder / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    assert newest_checkpoint(folder, max_steps=100) is None
    assert sorted(p.name for p in (folder / "set-aside").iterdir()) == ["checkpoint-30", "checkpoint-40"]


def test_adapter_bytes_do_not_depend_on_the_cache_folder(tiny_model, tmp_path):
    """The adapter names its base model by hub id and revision, never by the snapshot folder it
    was loaded from: trained from two cache folders, its files are byte-identical, and another
    machine can find the base model from its config and card."""
    import shutil
    import warnings

    hub_id, revision = "google/flan-t5-base", "7bcac572ce56db69c1ea7c8af255c5d7c9672fc2"
    saved = []
    for cache in ("cache-a", "cache-b"):
        snapshot = shutil.copytree(tiny_model, tmp_path / cache / "snapshots" / revision)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # saving asks the hub nothing (peft would, for the embeddings)
            save_adapter(add_lora(modeling.load_model(snapshot), LORA, seed=0), tmp_path / f"out-{cache}",
                         (hub_id, revision))
        saved.append({p.name: p.read_bytes() for p in sorted((tmp_path / f"out-{cache}").iterdir())})
    assert saved[0] == saved[1]
    config = json.loads(saved[0]["adapter_config.json"])
    assert (config["base_model_name_or_path"], config["revision"]) == (hub_id, revision)
    card = saved[0]["README.md"].decode()
    assert f"base_model: {hub_id}" in card and "cache-a" not in card


def _early_stopped_run(tiny_model, folder, interrupt_at: int | None = None, resume: str | None = None):
    """Train the tiny LoRA model with the stage's TrainingArguments (stages.finetune), evaluating
    every step, where no evaluation counts as an improvement (threshold 1e9): early stopping's
    patience of 3 ends the run after 3 evaluations, unless its counter is lost."""
    import datasets
    from transformers import DataCollatorForSeq2Seq, EarlyStoppingCallback, Seq2SeqTrainer, TrainerCallback

    from stages.finetune import training_args
    from stages.params import load_params
    from tests.conftest import ROOT

    class Interrupt(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == interrupt_at:
                raise KeyboardInterrupt  # the process is killed right after this checkpoint

    tokenizer = modeling.load_tokenizer(tiny_model)
    texts = [f"#Person1#: I need {n} tickets to Boston.\n#Person2#: That is ${10 * n}." for n in range(8)]
    data = datasets.Dataset.from_dict({
        "input_ids": tokenizer(texts)["input_ids"],
        "labels": tokenizer(text_target=[f"{n} tickets cost ${10 * n}." for n in range(8)])["input_ids"],
    })
    cfg = load_params(ROOT / "params.yaml").train.model_copy(update={
        "max_steps": 10, "eval_steps": 1, "logging_steps": 1, "warmup_steps": 0, "batch_size": 4,
        "eval_batch_size": 8, "gradient_accumulation_steps": 1, "group_by_length": False,
        "save_total_limit": 10, "early_stopping_patience": 3, "early_stopping_threshold": 1e9})
    model = add_lora(modeling.load_model(tiny_model, dropout_rate=0.0), LORA, seed=0)
    trainer = Seq2SeqTrainer(
        model=model, args=training_args(cfg, 1e-3, folder, seed=0, bf16=False, report_to=[], dataloader_workers=0),
        train_dataset=data, eval_dataset=data, data_collator=DataCollatorForSeq2Seq(tokenizer, model=model),
        callbacks=[EarlyStoppingCallback(cfg.early_stopping_patience, cfg.early_stopping_threshold), Interrupt()])
    try:
        trainer.train(resume_from_checkpoint=resume)
    except KeyboardInterrupt:
        return None
    return trainer.state.global_step, trainer.state.best_model_checkpoint.rsplit("-", 1)[-1]


def test_a_resume_keeps_early_stoppings_patience(tiny_model, tmp_path):
    """Interrupted after an evaluation that did not improve, the resumed run stops at the same
    step and keeps the same best checkpoint as the run that was never interrupted."""
    uninterrupted = _early_stopped_run(tiny_model, tmp_path / "once")
    assert uninterrupted[0] < 10  # early stopping ended it
    assert _early_stopped_run(tiny_model, tmp_path / "twice", interrupt_at=2) is None
    resumed = _early_stopped_run(tiny_model, tmp_path / "twice", resume=str(tmp_path / "twice" / "checkpoint-2"))
    assert resumed == uninterrupted


def test_the_private_trainer_method_finish_relies_on_is_there():
    """``finetune.finish`` (a checkpoint at the last step, whose final save failed) loads the best
    checkpoint's weights the way ``load_best_model_at_end`` does, through the Trainer's private
    ``_load_best_model``; no public API does this for a PEFT model and a full one alike. If an
    upgrade renames or changes it, this fails here, not at the end of a user's run."""
    import inspect

    from transformers import Seq2SeqTrainer

    method = getattr(Seq2SeqTrainer, "_load_best_model", None)
    assert method is not None, "transformers removed Trainer._load_best_model: rewrite finetune.finish"
    assert list(inspect.signature(method).parameters) == ["self"]
    assert "best_model_checkpoint" in inspect.getsource(method)


def test_training_steps_do_not_sync_with_the_device_to_count_tokens(tiny_model, tmp_path, monkeypatch):
    """Counting input tokens per micro-batch (include_num_input_tokens_seen) gathers across
    processes and copies to the host on every micro-batch; the stage's arguments never do."""
    import datasets
    from accelerate import Accelerator
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer

    from stages.finetune import training_args
    from stages.params import load_params
    from tests.conftest import ROOT

    gathered = []
    gather = Accelerator.gather
    monkeypatch.setattr(Accelerator, "gather", lambda self, t: gathered.append(t) or gather(self, t))
    tokenizer = modeling.load_tokenizer(tiny_model)
    data = datasets.Dataset.from_dict({
        "input_ids": tokenizer(["#Person1#: Hi.", "#Person2#: Hello."] * 4)["input_ids"],
        "labels": tokenizer(text_target=["They greet."] * 8)["input_ids"]})
    cfg = load_params(ROOT / "params.yaml").train.model_copy(update={
        "max_steps": 3, "eval_steps": 100, "logging_steps": 100, "warmup_steps": 0, "batch_size": 2,
        "gradient_accumulation_steps": 2, "group_by_length": False})
    model = add_lora(modeling.load_model(tiny_model), LORA, seed=0)
    trainer = Seq2SeqTrainer(model=model, args=training_args(cfg, 1e-3, tmp_path, 0, False, [], 0),
                             train_dataset=data, eval_dataset=data,
                             data_collator=DataCollatorForSeq2Seq(tokenizer, model=model))
    trainer.train()
    # One gather at the end (the mean training loss); counting tokens gathers on each of the
    # 3 x 2 micro-batches.
    assert trainer.state.global_step == 3 and len(gathered) <= 1


def test_a_bf16_frozen_base_trains_fp32_lora_weights(tiny_model):
    """train.base_weights: bf16 halves the frozen base; LoRA's weights (and their gradients and
    optimizer state) stay fp32, and a training step moves them."""
    import torch

    model = add_lora(modeling.load_model(tiny_model, dropout_rate=0.0, weights="bf16"), LORA, seed=0)
    dtypes = {n: p.dtype for n, p in model.named_parameters()}
    assert {d for n, d in dtypes.items() if "lora_" in n} == {torch.float32}
    assert {d for n, d in dtypes.items() if "lora_" not in n} == {torch.bfloat16}
    tokenizer = modeling.load_tokenizer(tiny_model)
    batch = tokenizer(["#Person1#: Two tickets to Boston.\n#Person2#: That is $20."], return_tensors="pt")
    labels = tokenizer(text_target=["Two tickets cost $20."], return_tensors="pt")["input_ids"]
    loss = model(**batch, labels=labels).loss
    loss.backward()
    assert torch.isfinite(loss)
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert grads and all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads.values())


@pytest.mark.parametrize("weights", ["int8", "int4"])
def test_quantized_bases_are_plumbed_and_refused_without_a_gpu(weights, tiny_model):
    """int8/int4 need bitsandbytes on a CUDA GPU (benchmarks' GPU rehearsal runs them): here the
    settings they load with, and the one-line refusal on a CPU."""
    import torch

    kwargs = modeling.weights_kwargs(weights, cuda=True)
    quant = kwargs["quantization_config"]
    assert quant.llm_int8_skip_modules == ["wo", "lm_head"]  # T5's wo quantized writes nonsense
    assert (quant.load_in_8bit, quant.load_in_4bit) == (weights == "int8", weights == "int4")
    if weights == "int4":
        assert quant.bnb_4bit_quant_type == "nf4" and quant.bnb_4bit_compute_dtype == torch.bfloat16
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match=f"^train.base_weights: {weights} needs a CUDA GPU"):
            modeling.load_model(tiny_model, weights=weights)


def test_the_full_fine_tune_on_several_processes_is_sharded_by_t5_block(tiny_model, tmp_path, monkeypatch):
    """``full.fsdp``: FSDP2 over the processes, a T5 block the wrap unit, full state dicts in the
    checkpoints, FSDP's own activation checkpointing. accelerate runs FSDP on GPUs only, so on
    CPU what is checked is the plumbing into the Trainer's FSDP plugin."""
    from transformers.models.t5.modeling_t5 import T5Block

    from stages.finetune import FSDP_WRAP, sharded, training_args
    from stages.params import load_params
    from tests.conftest import ROOT

    params = load_params(ROOT / "params.yaml")
    assert FSDP_WRAP == [T5Block.__name__] and params.full.fsdp
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not sharded(True)  # one process: nothing to shard over
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert sharded(True) and not sharded(False)
    monkeypatch.delenv("WORLD_SIZE")  # the arguments themselves, built in this one process
    cfg = params.train.model_copy(update={"gradient_checkpointing": True})
    args = training_args(cfg, 1e-4, tmp_path, seed=0, bf16=False, report_to=[], dataloader_workers=0, fsdp=True)
    plugin = args.fsdp_plugin_args
    assert plugin["fsdp_version"] == 2 and plugin["transformer_cls_names_to_wrap"] == "T5Block"
    assert plugin["state_dict_type"] == "FULL_STATE_DICT"
    # The Trainer's activation checkpointing, not FSDP's: accelerate's wraps blocks without
    # preserving the RNG state, so a recomputed block would draw other dropout masks.
    assert not plugin.get("activation_checkpointing") and args.activation_checkpointing
    plain = training_args(cfg, 1e-4, tmp_path, seed=0, bf16=False, report_to=[], dataloader_workers=0)
    assert plain.fsdp_plugin_args is None and plain.activation_checkpointing


def test_a_checkpoint_written_under_fsdp_is_resumable(tiny_model, tmp_path):
    """Under FSDP the Trainer writes optimizer.bin and pytorch_model_fsdp.bin (accelerate's
    names), not optimizer.pt: such a checkpoint must pass the resume check, and lose its
    optimizer state like any other to be set aside."""
    import torch

    from stages.finetune import check_checkpoint

    checkpoint = tmp_path / "checkpoint-20"
    model = modeling.load_model(tiny_model)
    model.save_pretrained(checkpoint)
    torch.save(model.state_dict(), checkpoint / "pytorch_model_fsdp.bin")
    optimizer = torch.optim.AdamW(model.parameters())
    torch.save(optimizer.state_dict(), checkpoint / "optimizer.bin")
    torch.save(torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0).state_dict(), checkpoint / "scheduler.pt")
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 20}))
    assert check_checkpoint(checkpoint, max_steps=100) is None
    (checkpoint / "optimizer.bin").write_bytes(b"cut short")
    assert check_checkpoint(checkpoint, max_steps=100).startswith("optimizer.bin does not load")


def test_a_full_fine_tunes_best_checkpoint_loads_without_a_warning_about_tied_copies(tiny_model, tmp_path,
                                                                                     transformers_log):
    """Loading the best checkpoint of a full fine-tune, the Trainer finds T5's tied embedding
    copies "missing" (stored once) and warns, though they stay tied to the loaded weight. Only
    that case is quiet: a weight really missing still warns."""
    from types import SimpleNamespace

    from transformers import Seq2SeqTrainer

    from stages.finetune import tied_copies_quietly, training_args
    from stages.params import load_params
    from tests.conftest import ROOT

    model = modeling.load_model(tiny_model)
    args = training_args(load_params(ROOT / "params.yaml").train, 1e-4, tmp_path, seed=0, bf16=False,
                         report_to=[], dataloader_workers=0)
    trainer = Seq2SeqTrainer(model=model, args=args, eval_dataset=[{}])  # evaluation is never run here
    tied = SimpleNamespace(missing_keys=sorted(model.all_tied_weights_keys), unexpected_keys=[])
    lost = SimpleNamespace(missing_keys=["encoder.block.0.layer.0.SelfAttention.q.weight"], unexpected_keys=[])
    trainer._issue_warnings_after_load(tied)
    assert transformers_log, "the Trainer no longer warns of tied copies: tied_copies_quietly can go"
    transformers_log.clear()
    with tied_copies_quietly(model):
        trainer._issue_warnings_after_load(tied)
        assert transformers_log == []
        trainer._issue_warnings_after_load(lost)
        assert len(transformers_log) == 1 and "q.weight" in transformers_log[0]


def test_the_trainer_logs_one_line_per_event_and_prints_no_dict(tiny_model, tmp_path, caplog, capsys):
    """The Trainer's progress callback printed each log event as a dict on stdout (24 lines in the
    demo): here it is one log line, and the bar stays."""
    import logging

    from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments
    from transformers.trainer_callback import ProgressCallback

    from stages import tracking

    args = Seq2SeqTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], disable_tqdm=False)
    trainer = Seq2SeqTrainer(model=modeling.load_model(tiny_model), args=args)
    tracking.show_progress(trainer)
    progress = [type(c) for c in trainer.callback_handler.callbacks if isinstance(c, ProgressCallback)]
    assert progress == [tracking.ProgressLines]
    trainer.state.global_step = 20
    with caplog.at_level(logging.INFO, logger="stages.tracking"):
        trainer.callback_handler.on_log(trainer.args, trainer.state, trainer.control,
                                        {"loss": 1.234567, "grad_norm": 0.5, "learning_rate": 1e-3, "epoch": 0.13,
                                         "total_flos": 5e12})
    assert capsys.readouterr().out == ""
    assert [r.getMessage() for r in caplog.records] == [
        "step 20: loss 1.235, grad_norm 0.5, learning_rate 0.001, epoch 0.13"]
