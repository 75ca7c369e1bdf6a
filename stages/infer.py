"""infer: ``{paths.split}/test.parquet`` -> ``{paths.predictions}/<variant>.jsonl``.

Reads params ``paths``, ``model``, ``prompt``, ``generate``; ``--variant`` picks the model:
``base`` is the original model, freshly loaded (never the one LoRA modified in place), ``lora``
is base + the trained adapter, ``full`` the fully fine-tuned model (``{paths.models}/<variant>``).
dvc.yaml runs one stage per variant, so retraining LoRA does not rerun base inference.

Each dialogue is generated once, with all of its human summaries kept as references (DialogSum's
test set repeats a dialogue once per reference). Batches are formed from dialogues of similar
length, so little compute goes to padding, and on a GPU each holds as many dialogues as memory
allows (``generate.batch_memory``, ``stages/generation_batches.py``): decoding is sequential,
and fewer, larger batches take fewer sequential steps. The output keeps the test set's order;
the record states the batches and the sequential decode steps they took. With
``generate.processes > 1`` the dialogues are dealt out to that many processes (one per GPU) and
gathered back in order; greedy outputs are the same as from one process.

``generate.bf16`` casts the weights (the adapter merged first) to bf16 where the GPU has it
(``auto``): about half the memory traffic of fp32 per generated token, which is what decoding is
bound by. The dtype used is recorded in the stage's record (``metrics/records/infer_<variant>.json``).
"""

from __future__ import annotations

import logging
import os
import sys
import time

import pandas as pd

from stages import cli, devices, generation_batches, launch, modeling, prompt, records, sources
from stages.atomic import write_jsonl
from stages.params import Generate, load_params

log = logging.getLogger(__name__)
PARAMS = ("paths", "model", "prompt", "generate")  # sections read = dvc.yaml's `params:` (tests/test_faults.py)
VARIANTS = ("base", "lora", "full")


def group_references(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per dialogue, in first-seen order: the first row's id, every summary a reference."""
    keyed = frame.assign(key=frame["dialogue"].map(sources.dialogue_key))
    grouped = keyed.groupby("key", sort=False).agg(
        id=("id", "first"), dialogue=("dialogue", "first"), references=("summary", list))
    return grouped.reset_index(drop=True)


def generation_dtype(cfg: Generate):
    """torch.bfloat16 or torch.float32, from ``generate.bf16`` and this machine."""
    import torch

    return torch.bfloat16 if modeling.use_bf16(cfg.bf16, "generate.bf16") else torch.float32


def generate(model, tokenizer, texts: list[str], cfg: Generate, device: str,
             batches: list[tuple[int, int]] | None = None) -> tuple[list[str], list[int]]:
    """Greedy/beam generation from prompts already fitted to the model's input length
    (``prompt.fit``, as the tokenize stage fits the training data), in length-sorted batches as
    large as memory allows (``stages.generation_batches``); returns texts and token counts in
    input order. Each batch's (dialogues, sequential decode steps) is appended to ``batches``."""
    import torch
    from tqdm.auto import tqdm

    lengths = [len(ids) for ids in tokenizer(texts)["input_ids"]]
    order = sorted(range(len(texts)), key=lambda i: -lengths[i])  # longest first: OOM shows at once
    outputs: list[str] = [""] * len(texts)
    counts: list[int] = [0] * len(texts)
    model.to(device)
    sizes = generation_batches.batch_sizes(model, [lengths[i] for i in order], cfg.batch_size, cfg.batch_memory,
                                           cfg.max_new_tokens, cfg.num_beams, device)
    starts = [sum(sizes[:k]) for k in range(len(sizes))]
    pending = [order[start:start + size] for start, size in zip(starts, sizes)]
    with torch.inference_mode(), tqdm(total=len(texts), desc="generating", unit="dialogue") as bar:
        while pending:
            batch = pending.pop(0)
            enc = tokenizer([texts[i] for i in batch], return_tensors="pt", padding=True).to(device)
            try:
                out = model.generate(**enc, max_new_tokens=cfg.max_new_tokens, num_beams=cfg.num_beams,
                                     no_repeat_ngram_size=cfg.no_repeat_ngram_size, do_sample=False,
                                     **({"cache_implementation": "static"} if cfg.static_cache else {}))
            except torch.OutOfMemoryError:
                if len(batch) == 1:
                    raise
                out = None  # freed once the error's frames are gone, below
            if out is None:  # memory taken since the batch was planned (another process): halve it
                del enc
                torch.cuda.empty_cache()
                log.warning("generation: out of memory at %d dialogues, splitting the batch", len(batch))
                pending[:0] = [batch[:len(batch) // 2], batch[len(batch) // 2:]]
                continue
            decoded = tokenizer.batch_decode(out, skip_special_tokens=True)
            for i, ids, text in zip(batch, out, decoded):
                outputs[i] = text.strip()
                counts[i] = int((ids != tokenizer.pad_token_id).sum())
            if batches is not None:
                batches.append((len(batch), out.shape[1] - 1))  # the decoder's start token is not a step
            bar.update(len(batch))
    return outputs, counts


def generate_distributed(model, tokenizer, texts: list[str], cfg: Generate,
                         batches: list[tuple[int, int]] | None = None) -> tuple[list[str], list[int]]:
    """``generate`` on this process's share of the prompts; every process gets all results (and
    every process's batches in ``batches``)."""
    import torch
    import torch.distributed as dist

    launch.init_process_group()  # on cuda:LOCAL_RANK with NCCL, so the gather below is too
    mine = list(range(launch.rank(), len(texts), launch.world_size()))
    device = f"cuda:{os.environ['LOCAL_RANK']}" if torch.cuda.is_available() else "cpu"
    own: list[tuple[int, int]] = []
    outputs, counts = generate(model, tokenizer, [texts[i] for i in mine], cfg, device, own)
    shares: list = [None] * launch.world_size()
    dist.all_gather_object(shares, (mine, outputs, counts, own))  # the group ends with the stage (cli.run)
    outputs, lengths = [""] * len(texts), [0] * len(texts)
    for indices, share_texts, share_counts, share_batches in shares:
        for i, text, count in zip(indices, share_texts, share_counts):
            outputs[i], lengths[i] = text, count
        if batches is not None:
            batches.extend(share_batches)
    return outputs, lengths


def main(argv: list[str] | None = None) -> None:
    parser = cli.parser(__doc__)
    parser.add_argument("--variant", required=True, choices=VARIANTS)
    args = parser.parse_args(argv)

    def body() -> None:
        params = load_params(args.params)
        if not launch.launched():  # torchrun's workers inherit the GPUs claimed here
            devices.claim(params.generate.processes, "generate.processes")
        if launch.needed(params.generate.processes):
            launch.relaunch("stages.infer", params.generate.processes, sys.argv[1:])
        log.debug("infer %s params: model=%s prompt=%s generate=%s", args.variant, params.model,
                 params.prompt, params.generate)
        dtype = generation_dtype(params.generate)  # before loading anything: a bad setting fails at once
        test = group_references(sources.read_parquet(params.paths.split_file("test")))
        resolved = modeling.resolve(params.model, params.hub)
        tokenizer = modeling.load_tokenizer(resolved.folder)
        model = modeling.load_variant(resolved.folder, args.variant, params.paths.model_dir(args.variant),
                                      params.generate.merge_lora, dtype)
        started = time.perf_counter()
        texts, cut = prompt.fit(tokenizer, params.prompt, test["dialogue"].tolist())
        batches: list[tuple[int, int]] = []  # (dialogues, sequential decode steps) of each batch
        if launch.world_size() > 1:
            predictions, counts = generate_distributed(model, tokenizer, texts, params.generate, batches)
        else:
            predictions, counts = generate(model, tokenizer, texts, params.generate, modeling.device(), batches)
        seconds = time.perf_counter() - started
        if launch.rank() > 0:
            return
        rows = test.assign(prediction=predictions, gen_tokens=counts).to_dict("records")
        write_jsonl(params.paths.predictions_file(args.variant), rows)
        cost = {"dialogues": len(rows), "source_truncated": sum(cut), "wall_time_s": round(seconds, 2),
                "dialogues_per_second": round(len(rows) / seconds, 3),
                "generated_tokens_per_second": round(sum(counts) / seconds, 1),
                "peak_memory_mb": modeling.peak_memory_mb(), "processes": launch.world_size(),
                "batches": len(batches), "largest_batch": max(size for size, _ in batches),
                # what generation time follows; with processes > 1, every process's steps, summed
                "decode_steps": sum(steps for _, steps in batches),
                "devices": devices.in_use(),
                "dtype": str(dtype).removeprefix("torch."),
                "params_sha256": cli.params_digest()}  # of PARAMS as read
        records.write(params.paths.infer_record(args.variant), cost, params.paths.infer_metrics(args.variant),
                      records.INFER)
        log.info("%s: %d dialogues in %.0f s, %.1f generated tokens/s, %s (all figures: %s)", args.variant,
                 cost["dialogues"], cost["wall_time_s"], cost["generated_tokens_per_second"], cost["dtype"],
                 params.paths.infer_record(args.variant))

    cli.run(body, PARAMS, args.params)


if __name__ == "__main__":
    main()
