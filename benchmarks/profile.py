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
