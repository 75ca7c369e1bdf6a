"""Training wiring: LoRA targets checked, loss not inflated by accumulation, resume guarded."""

from __future__ import annotations

import json

import pytest

from stages import modeling
from stages.errors import ModelError
from stages.finetune import FINGERPRINT, newest_checkpoint, prepare_checkpoints
from stages.params import Lora
from stages.train_lora import add_lora

LORA = Lora(r=4, alpha=8, dropout=0.0, target_modules=["q", "v"], bias="none", task_type="SEQ_2_SEQ_LM")


def test_unknown_target_module_is_named(tiny_model):
    bad = LORA.model_copy(update={"target_modules": ["q", "query_proj"]})
    with pytest.raises(ModelError, match="lora.target_modules: .*query_proj"):
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
    assert newest_checkpoint(folder) is None
    assert not (folder / "checkpoint-10").exists()
    assert json.loads((folder / FINGERPRINT).read_text()) == {"fingerprint": "new"}


def test_newest_complete_checkpoint_is_resumed(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / FINGERPRINT).write_text(json.dumps({"fingerprint": "same"}))
    states = {10: "{}", 20: "{}", 30: '{"log_history": [', 40: None}  # 30, 40 were cut short
    for step, state in states.items():
        (folder / f"checkpoint-{step}").mkdir()
        if state is not None:
            (folder / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    prepare_checkpoints(folder, "same")
    assert newest_checkpoint(folder) == folder / "checkpoint-20"
