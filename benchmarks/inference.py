"""Inference throughput: ``stages.infer.generate`` vs one dialogue at a time vs HF's ``predict``.

- ``pipeline``: ``stages.infer.generate`` as the infer stage calls it: length-sorted batches,
  ``inference_mode``, on the model with the LoRA adapter merged into its weights
  (``generate.merge_lora``);
- ``one_at_a_time``: the course lab's loop: ``peft_model.generate`` per dialogue, adapter unmerged;
- ``hf_predict``: ``Seq2SeqTrainer.predict(predict_with_generate=True)`` on the PEFT model, the
  same batch size, the Trainer's defaults (dataset order, padding per batch).

Every path generates exactly ``new_tokens`` tokens per dialogue (``min_new_tokens ==
max_new_tokens``): a model that stopped early on one path would otherwise make it look faster.
"""

from __future__ import annotations

import copy
import tempfile
import time

from benchmarks.memory import PeakMemory

PATHS = ("pipeline", "one_at_a_time", "hf_predict")


def fix_length(model, new_tokens: int) -> None:
    """Make ``generate`` produce exactly ``new_tokens`` tokens, also where the caller sets only the max."""
    config = model.generation_config
    config.min_new_tokens = new_tokens
    config.max_new_tokens = new_tokens


def merged_copy(peft_model):
    """The model the infer stage generates with: a copy with the adapter folded into the weights."""
    return copy.deepcopy(peft_model).merge_and_unload().eval()


def pipeline(model, tokenizer, dialogues: list[str], template, cfg, device: str) -> list[str]:
    from stages import prompt
    from stages.infer import generate

    prompts, _ = prompt.fit(tokenizer, template, dialogues)
    texts, _ = generate(model, tokenizer, prompts, cfg, device)
    return texts


def one_at_a_time(peft_model, tokenizer, dialogues: list[str], template, new_tokens: int,
                  device: str) -> list[str]:
    from stages.prompt import build

    peft_model.to(device).eval()
    outputs = []
    for dialogue in dialogues:  # as the lab: no batching, no inference_mode, adapter unmerged
        ids = tokenizer(build(template, dialogue), return_tensors="pt", truncation=True,
                        max_length=template.max_source_length).input_ids.to(device)
        out = peft_model.generate(input_ids=ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                  num_beams=1, do_sample=False)
        outputs.append(tokenizer.decode(out[0], skip_special_tokens=True).strip())
    return outputs


def hf_predict(peft_model, tokenizer, dialogues: list[str], template, new_tokens: int, batch_size: int,
               device: str) -> list[str]:
    import datasets
    from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments

    from stages.prompt import build_all

    encoded = tokenizer(build_all(template, dialogues), truncation=True, max_length=template.max_source_length)
    dataset = datasets.Dataset.from_dict({"input_ids": encoded["input_ids"],
                                          "attention_mask": encoded["attention_mask"]})
    with tempfile.TemporaryDirectory() as out:
        args = Seq2SeqTrainingArguments(output_dir=out, per_device_eval_batch_size=batch_size,
                                        predict_with_generate=True, use_cpu=device == "cpu",
                                        report_to=[], disable_tqdm=True)
        # The Trainer's default collator (DataCollatorWithPadding): DataCollatorForSeq2Seq would
        # add labels=None to unlabelled batches, which Seq2SeqTrainer 5.24 takes for labels and fails.
        trainer = Seq2SeqTrainer(model=peft_model, args=args, processing_class=tokenizer)
        ids = trainer.predict(dataset, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                              num_beams=1).predictions
    ids[ids == -100] = tokenizer.pad_token_id  # the Trainer pads batches' outputs with -100 to concatenate them
    return [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]


def encoder_seconds(model, tokenizer, dialogues: list[str], template, batch_size: int, device: str,
                    length_sorted: bool) -> float:
    """The encoder alone over the batches a path forms: the part of generation that batching
    cannot speed up where the encoder is compute-bound (CPU), however many dialogues share a batch."""
    import torch

    from stages.prompt import build_all

    encoded = tokenizer(build_all(template, dialogues), truncation=True,
                        max_length=template.max_source_length)["input_ids"]
    order = list(range(len(encoded)))
    if length_sorted:
        order.sort(key=lambda i: -len(encoded[i]))
    encoder = model.get_encoder()
    started = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            batch = tokenizer.pad({"input_ids": [encoded[i] for i in order[start:start + batch_size]]},
                                  return_tensors="pt").to(device)
            encoder(**batch).last_hidden_state.sum().item()  # .item(): wait for the GPU
    return time.perf_counter() - started


def measure(peft_model, tokenizer, dialogues: list[str], template, cfg, device: str
            ) -> tuple[dict[str, dict], dict]:
    """Each path's dialogues/s and peak memory, and how many outputs agree with the pipeline's.

    ``cfg`` is the ``generate`` params section (greedy); every path generates exactly
    ``cfg.max_new_tokens`` tokens in batches of ``cfg.batch_size``. The paths run one after
    another (each is one long call); the merged model is built before timing, as the infer
    stage's ``load_variant`` does before its clock starts.
    """
    new_tokens, batch_size = cfg.max_new_tokens, cfg.batch_size
    merged = merged_copy(peft_model)
    # A short untimed warm-up of each path's model: thread pools, allocator, kernels.
    pipeline(merged, tokenizer, dialogues[:2], template, cfg.model_copy(update={"max_new_tokens": 2}), device)
    one_at_a_time(peft_model, tokenizer, dialogues[:1], template, 2, device)
    for model in (merged, peft_model.get_base_model()):
        fix_length(model, new_tokens)
    runs = {
        "pipeline": lambda: pipeline(merged, tokenizer, dialogues, template, cfg, device),
        "one_at_a_time": lambda: one_at_a_time(peft_model, tokenizer, dialogues, template, new_tokens, device),
        "hf_predict": lambda: hf_predict(peft_model, tokenizer, dialogues, template, new_tokens,
                                         batch_size, device),
    }
    results, outputs = {}, {}
    for name, run in runs.items():
        # Sampled every 10 ms: a batch's memory lives far longer, and a busier sampler would
        # take the GIL from the timed path often enough to show in its time.
        with PeakMemory(device, interval_s=0.01) as peak:
            started = time.perf_counter()
            outputs[name] = run()
            seconds = time.perf_counter() - started
        results[name] = {"dialogues": len(dialogues), "seconds": round(seconds, 3),
                         "dialogues_per_s": len(dialogues) / seconds,
                         "generated_tokens_per_s": len(dialogues) * new_tokens / seconds,
                         "peak_memory_mb": round(peak.mb, 1)}
    # Where the time goes: the same encoder work, alone, for the batched and the one-at-a-time path.
    results["pipeline"]["encoder_seconds"] = round(encoder_seconds(
        merged, tokenizer, dialogues, template, batch_size, device, length_sorted=True), 3)
    results["one_at_a_time"]["encoder_seconds"] = round(encoder_seconds(
        peft_model.get_base_model(), tokenizer, dialogues, template, 1, device, length_sorted=False), 3)
    agreement = {f"{name}_identical_to_pipeline": sum(a == b for a, b in zip(outputs[name], outputs["pipeline"]))
                 for name in ("one_at_a_time", "hf_predict")}
    agreement["dialogues"] = len(dialogues)
    return results, agreement
