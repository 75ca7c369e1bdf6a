"""Where the time goes: torch.profiler's top operators for one piece of a benchmark path.

    python -m benchmarks.profile [--shape tiny|base] [--what infer|loop|train|train-hf] [--threads N]

``infer``: one batch of ``stages.infer.generate`` (the longest dialogues, as it sorts them);
``loop``: the same number of new tokens for two dialogues one at a time; ``train``/``train-hf``:
one optimizer step on a pipeline / HF-defaults batch. Sizes are ``benchmarks.run``'s workloads.
"""

from __future__ import annotations

import argparse
import contextlib
import os

from benchmarks import inference, synthetic, training
from benchmarks.run import SEED, WORKLOADS


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=synthetic.SHAPES, default="tiny")
    parser.add_argument("--what", choices=("infer", "loop", "train", "train-hf"), default="infer")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--rows", type=int, default=12)
    args = parser.parse_args(argv)
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    import torch
    from torch.profiler import ProfilerActivity, profile

    from stages.params import load_params
    from stages.train_lora import add_lora

    if args.threads:
        torch.set_num_threads(args.threads)
    params, w = load_params(), WORKLOADS[args.shape]
    base, _ = synthetic.load_shape(args.shape, SEED)
    tokenizer = synthetic.id_tokenizer(base.config.vocab_size)
    model = add_lora(base, params.lora, SEED)
    if args.what.startswith("train"):
        examples = synthetic.tokenized_examples(tokenizer, params.prompt, w.train_batch_size, SEED)
        strategy = "pipeline" if args.what == "train" else "hf_defaults"
        batch = training.collate(strategy, examples, tokenizer, model)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=training.LEARNING_RATE)
        work = lambda: training.train_step(model, optimizer, trainable, batch, contextlib.nullcontext)  # noqa: E731
    else:
        dialogues, _ = synthetic.synthetic_texts(w.infer_dialogues, base.config.vocab_size, SEED + 1)
        cfg = params.generate.model_copy(update={"max_new_tokens": w.new_tokens, "batch_size": w.infer_batch_size,
                                                 "num_beams": 1, "no_repeat_ngram_size": 0})
        if args.what == "infer":
            merged = inference.merged_copy(model)
            inference.fix_length(merged, w.new_tokens)
            first = sorted(dialogues, key=len, reverse=True)[:w.infer_batch_size]  # generate's first batch
            work = lambda: inference.pipeline(merged, tokenizer, first, params.prompt, cfg, "cpu")  # noqa: E731
        else:
            inference.fix_length(model.get_base_model(), w.new_tokens)
            work = lambda: inference.one_at_a_time(model, tokenizer, dialogues[:2], params.prompt,  # noqa: E731
                                                   w.new_tokens, "cpu")
    work()  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        work()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()


def decode_step(model, inputs: dict, device: str, rows: int = 10) -> dict:
    """One greedy decode step of ``model`` (its encoder run and a few steps already taken, as in
    ``generate``) under torch.profiler: its wall time, the aten ops it dispatches (top level),
    the CUDA kernels it launches, and the top ``rows`` ops by self time on the device (the CPU
    without a GPU). The model's forward only: ``generate``'s logits processors and stop checks
    add a few ops and host syncs per step on top."""
    import inspect
    import time

    import torch
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    mask = inputs["attention_mask"]
    # transformers 5.24 renamed the cache argument and output past_key_values -> cache
    key = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    with torch.inference_mode():
        encoded = model.get_encoder()(**inputs)
        token = torch.full((len(mask), 1), model.config.decoder_start_token_id, device=mask.device)
        cache = None

        def step() -> None:
            nonlocal token, cache
            out = model(encoder_outputs=encoded, attention_mask=mask, decoder_input_ids=token, use_cache=True,
                        **{key: cache})
            token, cache = out.logits[:, -1:].argmax(-1), out.get(key)

        for _ in range(4):  # the first step, and warm-up
            step()
        sync()
        started = time.perf_counter()
        step()
        sync()
        seconds = time.perf_counter() - started
        cuda = device == "cuda"
        with profile(activities=[ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]) as prof:
            step()
            sync()
    events = prof.events()
    top_level = [e for e in events if e.name.startswith("aten::")
                 and not (e.cpu_parent is not None and e.cpu_parent.name.startswith("aten::"))]
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    averages = sorted(prof.key_averages(), key=lambda e: getattr(e, key), reverse=True)
    total = sum(getattr(e, key) for e in averages) or 1
    return {"batch": len(mask), "step_ms": round(1e3 * seconds, 3), "aten_ops": len(top_level),
            "cuda_kernels": sum(e.device_type == DeviceType.CUDA for e in events) if cuda else None,
            "sorted_by": key, "top_ops": [{"op": e.key, "calls": e.count, "self_ms": round(getattr(e, key) / 1e3, 3),
                                           "share": round(getattr(e, key) / total, 4)} for e in averages[:rows]]}
