"""Training wiring: LoRA targets checked, loss not inflated by accumulation, resume guarded."""

from __future__ import annotations

import json
import re

import pytest

from stages import modeling
from stages.errors import InputError, ModelError
from stages.finetune import FINGERPRINT, newest_checkpoint, prepare_checkpoints, remove_checkpoints, stamp_of
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


def test_a_checkpoints_folder_without_the_stamp_is_refused_never_deleted(tmp_path):
    """Only a folder this project stamped is cleared: one without the stamp (``paths.checkpoints``
    naming someone's folder) is refused in one line, and its files stay; an empty one is taken."""
    folder = tmp_path / "checkpoints" / "lora"
    (folder / "checkpoint-10").mkdir(parents=True)
    (folder / "notes.txt").write_text("mine\n")
    with pytest.raises(InputError, match=f"^{re.escape(str(folder))} exists and this project did not make it"):
        prepare_checkpoints(folder, "new")
    remove_checkpoints(folder)  # the end of a training: not ours, not removed
    assert (folder / "notes.txt").read_text() == "mine\n" and (folder / "checkpoint-10").is_dir()
    assert not (folder / FINGERPRINT).exists()

    empty = tmp_path / "checkpoints" / "full"
    empty.mkdir()
    prepare_checkpoints(empty, "new")
    assert stamp_of(empty) == "new"
    remove_checkpoints(empty)  # stamped: the whole folder goes
    assert not empty.exists()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["lora"]  # nothing half-built


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


def test_workers_resume_where_the_launcher_chose_and_move_no_checkpoint(tmp_path, monkeypatch):
    """With several processes the launcher chooses the checkpoint once; a worker whose own load of
    it would fail (an allocation failure on rank 1) still resumes from it, as rank 0 does, and
    neither checks nor sets aside the checkpoint the others resume from."""
    from stages import finetune
    from stages.params import load_params
    from tests.conftest import ROOT

    params = load_params(ROOT / "params.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    folder = finetune.checkpoint_folder(params, "lora")
    for step in (100, 200):
        (folder / f"checkpoint-{step}").mkdir(parents=True)
        (folder / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    monkeypatch.setattr(finetune, "check_checkpoint", lambda checkpoint, max_steps: None)
    assert finetune.decide_resume(folder, params.train.max_steps, "run-1") == folder / "checkpoint-200"

    def rank_1_cannot_load(checkpoint, max_steps):
        return "optimizer.pt does not load (OutOfMemoryError: DefaultCPUAllocator: can't allocate memory)"

    resumed = []

    class Trainer:  # stands for the Trainer the worker builds: only what fit() asks of it
        def train(self, resume_from_checkpoint=None):
            resumed.append(resume_from_checkpoint)

        def is_world_process_zero(self):
            return False

    monkeypatch.setattr(finetune, "check_checkpoint", rank_1_cannot_load)
    monkeypatch.setattr(finetune, "make_trainer", lambda *args, **kwargs: Trainer())
    for name, value in {"LOCAL_RANK": "1", "RANK": "1", "WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": "run-1"}.items():
        monkeypatch.setenv(name, value)
    assert finetune.fit(params, "lora", object(), None, 1e-3, save=None) is None
    assert resumed == [str(folder / "checkpoint-200")]
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["checkpoint-100", "checkpoint-200"]
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "run-2")  # a launch that chose nothing: never a guess
    with pytest.raises(RuntimeError, match="no checkpoint was chosen for this launch"):
        finetune.decided_resume(folder, "run-2")


def test_a_checkpoint_of_another_node_count_is_not_resumed(tmp_path, monkeypatch):
    """The world size decides the effective batch and the data a resume skips: checkpoints of a
    job requeued on another number of nodes are cleared, as those of other params are; a queued
    experiment's folder is keyed by it too."""
    from stages import finetune
    from stages.params import load_params
    from tests.conftest import ROOT

    params = load_params(ROOT / "params.yaml")
    tokenized = tmp_path / "tokenized"
    tokenized.mkdir()
    (tokenized / "data.arrow").write_bytes(b"rows")
    folder = tmp_path / "checkpoints"
    prepare_checkpoints(folder, finetune.fingerprint(params, "lora", tokenized, nodes=2))
    (folder / "checkpoint-10").mkdir()
    prepare_checkpoints(folder, finetune.fingerprint(params, "lora", tokenized, nodes=1))
    assert not (folder / "checkpoint-10").exists()

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "repo"))
    folders = set()
    for nodes in ("1", "2"):
        monkeypatch.setenv("STAGES_NNODES", nodes)
        folders.add(finetune.checkpoint_folder(params.model_copy(update={"paths": params.paths.model_copy(
            update={"tokenized": str(tokenized)})}), "lora"))
    assert len(folders) == 2


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


def test_training_steps_do_not_sync_with_the_device_per_micro_batch(tiny_model, tmp_path, monkeypatch):
    """Counting input tokens per micro-batch (include_num_input_tokens_seen) gathers across
    processes, and the Trainer's NaN/inf log filter (logging_nan_inf_filter) asks whether each
    micro-batch's loss is NaN: both copy to the host on every micro-batch; the stage's arguments
    never do."""
    import datasets
    import torch
    from accelerate import Accelerator
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer

    from stages.finetune import trainer_class, training_args
    from stages.params import load_params
    from tests.conftest import ROOT

    gathered, nan_checks, counts = [], [], []
    gather, isnan = Accelerator.gather, torch.isnan
    monkeypatch.setattr(Accelerator, "gather", lambda self, t: gathered.append(t) or gather(self, t))
    tokenizer = modeling.load_tokenizer(tiny_model)
    data = datasets.Dataset.from_dict({
        "input_ids": tokenizer(["#Person1#: Hi.", "#Person2#: Hello."] * 4)["input_ids"],
        "labels": tokenizer(text_target=["They greet."] * 8)["input_ids"]})
    cfg = load_params(ROOT / "params.yaml").train.model_copy(update={
        "max_steps": 3, "eval_steps": 100, "logging_steps": 100, "warmup_steps": 0, "batch_size": 2,
        "gradient_accumulation_steps": 2, "group_by_length": False})
    model = add_lora(modeling.load_model(tiny_model), LORA, seed=0)
    trainer = trainer_class()(model=model, args=training_args(cfg, 1e-3, tmp_path, 0, False, [], 0),
                              train_dataset=data, eval_dataset=data,
                              data_collator=DataCollatorForSeq2Seq(tokenizer, model=model))
    assert isinstance(trainer, Seq2SeqTrainer)
    monkeypatch.setattr(torch, "isnan", lambda t: nan_checks.append(t) or isnan(t))
    t5 = type(model.get_base_model())  # peft's model hands num_parameters on to T5's
    count = t5.num_parameters
    monkeypatch.setattr(t5, "num_parameters", lambda self, **kw: counts.append(kw) or count(self, **kw))
    trainer.train()
    # One gather at the end (the mean training loss); counting tokens gathers on each of the
    # 3 x 2 micro-batches, and the log filter checks each of their losses.
    assert trainer.state.global_step == 3 and len(gathered) <= 1 and nan_checks == []
    # The FLOP count's parameters are counted once, not on each micro-batch; the count is the library's.
    assert counts.count({"exclude_embeddings": True}) == 1
    batch = trainer.data_collator(data.select(range(3)).to_list())
    assert trainer.floating_point_ops(batch) == Seq2SeqTrainer.floating_point_ops(trainer, batch) > 0
    assert trainer.state.total_flos > 0
    assert not trainer.args.average_tokens_across_devices  # a collective per step, for a count T5 ignores


@pytest.mark.parametrize("compile", [False, True])
def test_train_compile_is_the_trainers_torch_compile(compile, tmp_path):
    from stages.finetune import training_args
    from stages.params import load_params
    from tests.conftest import ROOT

    cfg = load_params(ROOT / "params.yaml").train.model_copy(update={"compile": compile})
    assert training_args(cfg, 1e-3, tmp_path, 0, False, [], 0).torch_compile is compile


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


def _autocast_losses(tiny_model, weights: str, steps: int, lora_dropout: float = 0.0, tweak=None) -> list[float]:
    """Per-step training losses of LoRA on the tiny model under CPU bf16 autocast (what a GPU
    runs), the frozen base in ``weights``: 16 sample dialogues in batches of 4, AdamW at the
    demo's learning rate, no dropout but LoRA's ``lora_dropout`` (the same arithmetic in both runs
    but for the base's dtype); ``tweak(model)`` applied to the model before training."""
    import torch
    from transformers import DataCollatorForSeq2Seq

    from benchmarks.training import bf16_autocast
    from stages.params import load_params
    from stages.sources import jsonl_lines
    from stages.train_lora import trainable_model
    from tests.conftest import ROOT

    params = load_params(ROOT / "params.yaml")
    params = params.model_copy(update={"lora": params.lora.model_copy(update={"dropout": lora_dropout})})
    tokenizer = modeling.load_tokenizer(tiny_model)
    rows = [json.loads(line) for _, line in jsonl_lines((ROOT / "data/sample/dialogsum_sample.jsonl").read_text())][:16]
    sources = tokenizer([params.prompt.template.format(dialogue=r["dialogue"]) for r in rows],
                        max_length=128, truncation=True)["input_ids"]
    targets = tokenizer(text_target=[r["summary"] for r in rows], max_length=48, truncation=True)["input_ids"]
    model = trainable_model(modeling.load_model(tiny_model, 0.0, weights), params, weights).train()
    if tweak is not None:
        tweak(model)
    collator = DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3, weight_decay=0.0)
    losses = []
    for step in range(steps):
        first = step * 4 % len(rows)
        batch = collator([{"input_ids": s, "labels": t} for s, t in
                          zip(sources[first:first + 4], targets[first:first + 4])])
        with bf16_autocast("cpu"):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


def test_a_bf16_frozen_base_follows_the_fp32_bases_loss_curve(tiny_model):
    """train.base_weights auto loads the frozen base in bf16 where training autocasts to bf16.
    Under the same autocast, the bf16 base's loss curve stays within 2 % of the fp32 base's at
    every step and within 0.5 % on average, while the loss falls by a quarter (measured here: at
    most 0.23 %, on average 0.11 %; over 40 steps of batch 8 at most 1.0 %, on average 0.2 %)."""
    fp32 = _autocast_losses(tiny_model, "fp32", steps=12)
    bf16 = _autocast_losses(tiny_model, "bf16", steps=12)
    gaps = [abs(b - f) / f for f, b in zip(fp32, bf16)]
    assert fp32[-1] < 0.75 * fp32[0]  # it learns: the curves compared are not flat
    assert max(gaps) <= 0.02 and sum(gaps) / len(gaps) <= 0.005, (fp32, bf16)


def _uncast_lora_inputs(model) -> None:
    """peft's switch alone, of the two ``fewer_bf16_kernels`` sets."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            module.cast_input_dtype_enabled = False


def test_a_bf16_base_trains_with_fewer_kernels_and_the_same_loss_curve_within_tolerance(tiny_model):
    """Under bf16 autocast with a bf16 base the stage turns off peft's cast of each LoRA input to
    fp32 (autocast casts it back to bf16 for the matmul) and runs T5's gelu_new as one kernel
    (``train_lora.fewer_bf16_kernels``). Without LoRA dropout the cast's roundtrip was exact: the
    same losses to the bit. With both changes and LoRA dropout 0.05 (the recipe's; drawn now on the
    bf16 input), the curve stays within 1 % of the unchanged bf16 base's and of the fp32 base's at
    every step and within 0.3 % on average (measured: 0.08 % and 0.03 % against the unchanged one,
    0.34 % and 0.13 % against the fp32 base, which the unchanged one is within 0.34 % and 0.12 % of)."""
    from stages.train_lora import fewer_bf16_kernels

    plain = _autocast_losses(tiny_model, "bf16", steps=6)
    assert _autocast_losses(tiny_model, "bf16", steps=6, tweak=_uncast_lora_inputs) == plain
    unchanged = _autocast_losses(tiny_model, "bf16", steps=12, lora_dropout=0.05)
    fewer = _autocast_losses(tiny_model, "bf16", steps=12, lora_dropout=0.05, tweak=fewer_bf16_kernels)
    fp32 = _autocast_losses(tiny_model, "fp32", steps=12, lora_dropout=0.05)
    for reference in (unchanged, fp32):
        gaps = [abs(f - r) / r for r, f in zip(reference, fewer)]
        assert max(gaps) <= 0.01 and sum(gaps) / len(gaps) <= 0.003, (reference, fewer)


def test_fewer_bf16_kernels_only_for_a_bf16_base_under_bf16_autocast(tiny_model):
    """The fp32 base (the CPU demo's) and a bf16 base without autocast keep peft's cast and
    gelu_new: without autocast a bf16 input would not meet LoRA's fp32 weights."""
    from peft.tuners.tuners_utils import BaseTunerLayer
    from transformers.activations import GELUTanh, NewGELUActivation

    from stages.params import load_params
    from stages.train_lora import trainable_model
    from tests.conftest import ROOT

    params = load_params(ROOT / "params.yaml")
    for weights, autocast_bf16, fewer in (("bf16", True, True), ("bf16", False, False), ("fp32", True, False)):
        model = trainable_model(modeling.load_model(tiny_model), params, weights, autocast_bf16)
        modules = list(model.modules())
        casts = {m.cast_input_dtype_enabled for m in modules if isinstance(m, BaseTunerLayer)}
        acts = {type(m) for m in modules if isinstance(m, (GELUTanh, NewGELUActivation))}
        assert (casts, acts) == (({False}, {GELUTanh}) if fewer else ({True}, {NewGELUActivation})), weights


def test_auto_base_weights_are_bf16_only_where_training_computes_in_bf16(tiny_model):
    """auto follows the training's autocast; a base built in fp32 (a benchmark's) is cast to the
    dtype the stage would load it in, LoRA's weights staying fp32."""
    import torch

    from stages.params import load_params
    from stages.train_lora import trainable_model
    from tests.conftest import ROOT

    assert modeling.base_weights("auto", bf16=True) == "bf16"
    assert modeling.base_weights("auto", bf16=False) == "fp32"  # CPU: the demo's bytes unchanged
    assert [modeling.base_weights(w, bf16=True) for w in ("fp32", "bf16", "int8")] == ["fp32", "bf16", "int8"]
    model = trainable_model(modeling.load_model(tiny_model), load_params(ROOT / "params.yaml"), "bf16")
    dtypes = {n: p.dtype for n, p in model.named_parameters()}
    assert {d for n, d in dtypes.items() if "lora_" in n} == {torch.float32}
    assert {d for n, d in dtypes.items() if "lora_" not in n} == {torch.bfloat16}


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


def test_a_quantized_base_loads_onto_each_processs_own_gpu(tiny_model, monkeypatch):
    """With several processes each rank loads its int8/int4 base onto cuda:LOCAL_RANK: nothing has
    set a rank's device when the base loads, so "the current device" is GPU 0 in every rank, and
    accelerate refuses a quantized model that transformers then spreads over another device."""
    import importlib.util

    import torch
    import transformers

    from stages import train_lora
    from stages.params import load_params
    from tests.conftest import ROOT

    class Loaded(Exception):
        pass

    asked = {}

    def load_model(folder, dropout_rate=None, weights="fp32", gpu=0):
        asked.update(weights=weights, gpu=gpu)
        raise Loaded

    params = load_params(ROOT / "params.yaml")
    params = params.model_copy(update={"train": params.train.model_copy(update={"base_weights": "int4"})})
    monkeypatch.setattr(modeling, "resolve", lambda model, hub: modeling.ResolvedModel(tiny_model, "pin"))
    monkeypatch.setattr(modeling, "load_model", load_model)
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(Loaded):
        train_lora.train(params)
    assert asked == {"weights": "int4", "gpu": 1}

    monkeypatch.undo()
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",  # bitsandbytes "installed"
                        lambda name, *a: object() if name == "bitsandbytes" else find_spec(name, *a))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)  # no rank has set its device yet
    monkeypatch.setattr(transformers.AutoModelForSeq2SeqLM, "from_pretrained",
                        lambda folder, **kwargs: asked.update(kwargs) or "model")
    assert modeling.load_model(tiny_model, weights="int4", gpu=1) == "model"
    assert asked["device_map"] == {"": 1} and asked["quantization_config"].load_in_4bit


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


def test_fsdp_reduces_gradients_in_fp32_as_one_process_and_ddp_do(tmp_path):
    """Under train.bf16 accelerate gives FSDP a bf16 policy (weights gathered and gradients
    reduced in bf16) where one process and DDP keep fp32 weights and gradients under autocast:
    the plugin the Trainer builds keeps fp32 after accelerate applied the run's bf16."""
    import torch
    from accelerate.utils import FullyShardedDataParallelPlugin

    from stages.finetune import training_args
    from stages.params import load_params
    from tests.conftest import ROOT

    cfg = load_params(ROOT / "params.yaml").train
    args = training_args(cfg, 1e-4, tmp_path, seed=0, bf16=True, report_to=[], dataloader_workers=0, fsdp=True)
    plugin = FullyShardedDataParallelPlugin(**args.fsdp_plugin_args)
    plugin.set_mixed_precision("bf16")  # what accelerate's state does with the Trainer's bf16
    policy = plugin.mixed_precision_policy
    assert (policy.param_dtype, policy.reduce_dtype) == (torch.float32, torch.float32)


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


def _batches_trained(tiny_model, folder, interrupt_at: int | None = None, resume: str | None = None):
    """The micro-batches (their source lengths) a 14-step run over 12 dialogues of different
    lengths trains on with the stage's Trainer, length-grouped, 6 steps an epoch, with dropout
    drawing from the global random state; a checkpoint every 4 steps."""
    import datasets
    from transformers import DataCollatorForSeq2Seq, TrainerCallback

    from stages.finetune import seq2seq_trainer, training_args
    from stages.params import load_params
    from tests.conftest import ROOT

    class Interrupt(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == interrupt_at:
                raise KeyboardInterrupt

    tokenizer = modeling.load_tokenizer(tiny_model)
    texts = [f"#Person1#: {'Two tickets to Boston, please. ' * n}\n#Person2#: That is ${n}." for n in range(1, 13)]
    tokens = tokenizer(texts)["input_ids"]
    data = datasets.Dataset.from_dict({
        "input_ids": tokens, "length": [len(t) for t in tokens],
        "labels": tokenizer(text_target=[f"{n} tickets." for n in range(1, 13)])["input_ids"]})
    cfg = load_params(ROOT / "params.yaml").train.model_copy(update={
        "max_steps": 14, "eval_steps": 4, "logging_steps": 100, "warmup_steps": 0, "batch_size": 2,
        "eval_batch_size": 12, "gradient_accumulation_steps": 1, "group_by_length": True,
        "save_total_limit": 10})
    model = add_lora(modeling.load_model(tiny_model, dropout_rate=0.1), LORA, seed=0)
    collate = DataCollatorForSeq2Seq(tokenizer, model=model)
    seen = []

    def recording(features):
        seen.append(sorted(len(f["input_ids"]) for f in features))
        return collate(features)

    trainer = seq2seq_trainer(
        model=model, args=training_args(cfg, 1e-3, folder, seed=0, bf16=False, report_to=[], dataloader_workers=0),
        train_dataset=data, eval_dataset=data.select(range(3)), data_collator=recording, callbacks=[Interrupt()])
    try:
        trainer.train(resume_from_checkpoint=resume)
    except KeyboardInterrupt:
        pass
    return seen if trainer.state.global_step == cfg.max_steps else None


def test_a_resumed_length_grouped_run_trains_on_the_batches_the_uninterrupted_one_would(tiny_model, tmp_path):
    """Interrupted at step 8 (mid-epoch 2), the resumed run trains steps 9-14 on the batches the
    uninterrupted run trained them on: the length-grouped order is drawn per epoch from the seed,
    not from a random state that dropout moved."""
    uninterrupted = [batch for batch in _batches_trained(tiny_model, tmp_path / "once") if len(batch) == 2]
    assert _batches_trained(tiny_model, tmp_path / "twice", interrupt_at=8) is None
    resumed = _batches_trained(tiny_model, tmp_path / "twice", resume=str(tmp_path / "twice" / "checkpoint-8"))
    resumed = [batch for batch in resumed if len(batch) == 2]
    # (accelerate's loader collates one batch ahead: a run collates one batch beyond its last step)
    assert len(uninterrupted) >= 14 and len(resumed) >= 6
    assert resumed == uninterrupted[-len(resumed):]
    assert uninterrupted[:6] != uninterrupted[6:12]  # each epoch has an order of its own


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
