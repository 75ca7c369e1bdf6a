"""Build the offline demo's tiny T5: a few-MB model of the flan-T5 family's shape that has learned
the *language* of the sample dialogues but has never been trained to summarize.

    python -m demo.make_tiny_t5 [--out demo/tiny-t5] [--steps 3000]

Why pretrain at all: LoRA adapts what a base model already knows. On a randomly initialised base
the demo's LoRA learns next to nothing (ROUGE-L ~0.05), which would tell the wrong story. The
text is dialogues only, from the sample generator with a *different seed* than the committed
sample: the model has seen none of the demo's dialogues and no summary at all, so what LoRA
gains is learned from the training split alone.

The objective (``denoise+next``, measured against the others in demo/README.md) is two
self-supervised tasks, told apart by their input as they would be in any corpus:
- BART's text infilling, every other example: spans covering 30 % of a dialogue window each become
  ONE mask token and the decoder writes the whole window back. Most of what it writes is in its
  input, so it learns to copy from the encoder: names, places, times and amounts, which is what a
  summary needs. (T5's span corruption only asks for the *missing* words: on it the demo's LoRA
  learned the shape of a summary without reading the dialogue.)
- the next turn, the other half: the turns so far in, the next one out. An input without a mask
  token, like the demo's prompt, is a conversation to go on with, not a text to copy: the base
  answers a summarize prompt with one more turn of the dialogue. A base trained on infilling alone
  copies the prompt's dialogue back instead, which scores ROUGE-L ~0.18 without summarizing.

Steps:
1. a Unigram tokenizer (``tokenizers``) trained on the dialogues and the prompt's words, with
   T5's special tokens (pad 0, </s> 1, <unk> 2) and 100 ``<extra_id_N>`` sentinels (the first is
   the mask token), every printable character in its alphabet (summaries use a few characters
   the dialogues never do, which would otherwise become <unk>);
2. a ``T5Config`` with flan-T5's architecture choices (gated-gelu, relative attention, no
   rescaling of decoder outputs) at a tiny size. transformers 5 always ties a new T5's lm_head
   to its embeddings (a checkpoint that carries its own lm_head, like flan-T5's, stays untied),
   so this model's head is tied;
3. pretraining, then ``save_pretrained`` (safetensors) of model and tokenizer, so the folder
   loads by path exactly like a hub model.

Deterministic: fixed seeds, one thread, no data-dependent ordering; the same command on the same
library versions reproduces the same weights (the script prints the folder's ``sha256:`` pin).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import string
from pathlib import Path

log = logging.getLogger(__name__)
PROMPT = "Summarize the following conversation. Summary:"  # params.yaml's prompt.template, less the dialogue

SPECIAL = ["<pad>", "</s>", "<unk>"]
SENTINELS = 100
SIZE = dict(d_model=128, d_kv=32, d_ff=512, num_layers=2, num_decoder_layers=2, num_heads=4)


def corpus(n_dialogues: int, seed: int) -> list[str]:
    """Fresh dialogues (never their summaries) from the sample generator, disjoint from the sample."""
    from demo.make_sample import generate

    return list(dict.fromkeys(r["dialogue"] for r in generate(n_dialogues, seed)))


def train_tokenizer(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace("\n", " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    # Every printable ASCII character too: the pretraining text has no summaries, and summaries
    # use a few characters dialogues never do (';'), which would otherwise become <unk>.
    alphabet = sorted({c for t in texts for c in t if not c.isspace()} | set(string.printable.strip()))
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=SPECIAL, unk_token="<unk>",
                                      initial_alphabet=alphabet, show_progress=False)
    tok.train_from_iterator(texts, trainer)
    tok = _round_scores(tok)
    sentinels = [f"<extra_id_{i}>" for i in range(SENTINELS - 1, -1, -1)]  # T5 order: 99 first
    tok.add_special_tokens(sentinels)
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
        extra_special_tokens=sentinels, model_max_length=512)


def _round_scores(tok):
    """The Unigram trainer works in hash-map order, which Rust randomises per process: the last
    bits of the scores change run to run, and characters it saw too rarely to score get the
    lowest scores, 1e-4 apart, in random order. Pieces sorted by score, near-tied ones by name,
    given the sorted scores in turn, make the tokenizer (and the model trained on it)
    reproducible."""
    from tokenizers import Tokenizer

    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    special, pieces = vocab[: len(SPECIAL)], vocab[len(SPECIAL):]
    pieces = sorted(pieces, key=lambda ps: -ps[1])
    scores = [round(s, 6) for _, s in pieces]
    # Near-tied pieces (scores < 1e-3 apart, chained) form one group, ordered by name: rounding
    # to fixed decimals would split such a band at a rounding boundary that differs run to run.
    group, groups = 0, []
    for i, (_, score) in enumerate(pieces):
        group += i > 0 and pieces[i - 1][1] - score >= 1e-3
        groups.append(group)
    names = [p for _, p in sorted(zip(groups, (p for p, _ in pieces)))]
    spec["model"]["vocab"] = special + [[p, s] for p, s in zip(names, scores)]
    return Tokenizer.from_str(json.dumps(spec))


def build_model(vocab_size: int, seed: int):
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    config = T5Config(vocab_size=vocab_size, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                      dropout_rate=0.1, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
                      relative_attention_num_buckets=32, relative_attention_max_distance=128, **SIZE)
    model = T5ForConditionalGeneration(config)
    # Embeddings (tied to the head) start as N(0, 1) and, as in T5 v1.1, decoder outputs are not
    # rescaled: initial logits would be huge (loss ~75 instead of ~ln V). Scale them down.
    with torch.no_grad():
        model.lm_head.weight.mul_(config.d_model ** -0.5)
    return model


def span_corrupt(ids: list[int], rng: random.Random, sentinel_ids: list[int], eos: int,
                 noise: float = 0.15, mean_span: int = 3) -> tuple[list[int], list[int]]:
    """T5's objective: masked spans replaced by sentinels in the input, spelled out in the target."""
    n = len(ids)
    spans = max(1, round(n * noise / mean_span))
    starts = sorted(rng.sample(range(max(1, n - mean_span)), min(spans, max(1, n - mean_span))))
    source, target, pos, k = [], [], 0, 0
    for start in starts:
        if start < pos or k >= len(sentinel_ids) - 1:
            continue
        end = min(n, start + max(1, round(rng.expovariate(1 / mean_span))))
        source += ids[pos:start] + [sentinel_ids[k]]
        target += [sentinel_ids[k]] + ids[start:end]
        pos, k = end, k + 1
    source += ids[pos:] + [eos]
    target += [sentinel_ids[k], eos]
    return source, target


def _poisson(rng: random.Random, lam: float) -> int:
    # Knuth's method: the stdlib has no Poisson sampler, and numpy's would need its own seed.
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k, p = k + 1, p * rng.random()
    return k


def text_infill(ids: list[int], rng: random.Random, mask: int, eos: int, noise: float = 0.3,
                mean_span: float = 3.0) -> tuple[list[int], list[int]]:
    """BART's objective: spans (Poisson lengths) covering ``noise`` of the tokens each become ONE
    mask token in the input, and the target is the whole original text. Most target tokens are
    visible in the input, so the decoder learns to copy from the encoder (names, numbers, places),
    which is what a summary needs and what span corruption never asks of it."""
    n = len(ids)
    masked = [False] * n
    budget = round(n * noise)
    while budget > 0 and n:
        length = min(budget, max(1, _poisson(rng, mean_span)))
        start = rng.randrange(n)
        masked[start:start + length] = [True] * len(masked[start:start + length])
        budget -= length
    source = [mask if m else t for i, (t, m) in enumerate(zip(ids, masked)) if not (m and i and masked[i - 1])]
    return source + [eos], ids + [eos]


def next_turn(turns: list[list[int]], rng: random.Random, eos: int, window: int) -> tuple[list[int], list[int]]:
    """Conversation continuation: the turns before a random turn (at most ``window`` tokens, the
    latest kept) in, that one turn out. Its input has no mask token, like a prompt's."""
    k = rng.randrange(1, len(turns))
    source = [t for turn in turns[:k] for t in turn][-window:]
    return source + [eos], turns[k][:window] + [eos]


def turn_ids(tokenizer, dialogue: str) -> list[list[int]]:
    """A dialogue's turns, tokenized one by one (no </s>). The normalizer makes "\n" a space and
    every word starts with the metaspace, so the turns concatenate to exactly the dialogue's
    tokens: next_turn sees the same tokens text infilling does."""
    return [ids[:-1] for ids in tokenizer(dialogue.split("\n"))["input_ids"]]


def gap_turns(turns: list[list[int]], rng: random.Random, mask: int, eos: int, window: int,
              ratio: float = 0.3) -> tuple[list[int], list[int]]:
    """PEGASUS's gap-sentence generation, on turns: of a run of whole turns (at most ``window``
    tokens), the ``ratio`` that share the most words with the rest (unigram F1, PEGASUS's
    "principal" selection) each become ONE mask token in the input, and the target is those turns.
    Their words are mostly elsewhere in the input, but not in order: the decoder learns to pick
    them out of the encoder, as a summary must pick a dialogue's names and amounts."""
    start = rng.randrange(len(turns) - 1) if len(turns) > 1 else 0
    chunk, size = [], 0
    for turn in turns[start:]:
        if chunk and size + len(turn) > window:
            break
        chunk.append(turn[:window])
        size += len(chunk[-1])
    if len(chunk) < 2:  # one turn left: nothing to recover it from; ask for it from the one before
        chunk = [t[:window // 2] for t in turns[max(0, start - 1):start + 1]]

    def f1(i: int) -> float:
        own = set(chunk[i])
        rest = {t for j, turn in enumerate(chunk) if j != i for t in turn}
        both = len(own & rest)
        return 2 * both / (len(own) + len(rest)) if both else 0.0

    m = max(1, round(ratio * len(chunk)))
    picked = set(sorted(range(len(chunk)), key=lambda i: (-f1(i), i))[:m])
    source = [t for i, turn in enumerate(chunk) for t in ([mask] if i in picked else turn)]
    target = [t for i in sorted(picked) for t in chunk[i]]
    return source + [eos], target + [eos]


# Which task each example of a batch gets, by its position in the batch (cycled).
OBJECTIVES = {
    "denoise": ("infill",),
    "span": ("span",),
    "mix": ("infill", "span"),
    "denoise+next": None,  # infill, and every --next-every'th example a next turn
    "denoise+next+gap": ("infill", "next", "gap"),
    "next+gap": ("next", "gap"),
}


def tasks(objective: str, next_every: int) -> tuple[str, ...]:
    return OBJECTIVES[objective] or ("infill",) * (next_every - 1) + ("next",)


def pretrain(model, tokenizer, texts: list[str], steps: int, batch_size: int, lr: float,
             seed: int, objective: str = "denoise+next", next_every: int = 2,
             window: int = 128) -> list[float]:
    import torch
    from tqdm.auto import tqdm

    rng = random.Random(seed)
    encoded = [ids[:-1] for ids in tokenizer(texts)["input_ids"]]  # drop </s>
    turns = [turn_ids(tokenizer, t) for t in texts]
    sentinel_ids = tokenizer.convert_tokens_to_ids([f"<extra_id_{i}>" for i in range(SENTINELS)])
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warmup, 0.5 * (1 + math.cos(math.pi * s / steps))))
    model.train()
    losses = []
    eos = tokenizer.eos_token_id
    cycle = tasks(objective, next_every)
    for _ in (bar := tqdm(range(steps), desc=f"{objective} pretraining", mininterval=30)):
        pairs = []
        for k in range(batch_size):
            d = rng.randrange(len(encoded))
            # Drawn for every example, turn-level ones too (which do not use it): the random
            # stream, and so the committed model's weights, depend on it.
            ids = _window(encoded[d], window, rng)
            task = cycle[k % len(cycle)]
            if task == "span":
                pairs.append(span_corrupt(ids, rng, sentinel_ids, eos))
            elif task == "next":
                pairs.append(next_turn(turns[d], rng, eos, window))
            elif task == "gap":  # its own mask token, as PEGASUS's: a missing turn, not a span
                pairs.append(gap_turns(turns[d], rng, sentinel_ids[1], eos, window))
            else:
                pairs.append(text_infill(ids, rng, sentinel_ids[0], eos))
        src = _pad([s for s, _ in pairs], 0)
        tgt = _pad([t for _, t in pairs], -100)
        loss = model(input_ids=src, attention_mask=(src != 0).long(), labels=tgt).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.3f}")
    return losses


def _window(ids: list[int], size: int, rng: random.Random) -> list[int]:
    # Random windows instead of whole dialogues: twice the steps for the same CPU time.
    start = rng.randrange(max(1, len(ids) - size + 1))
    return ids[start:start + size]


def _pad(rows: list[list[int]], value: int):
    import torch

    width = max(map(len, rows))
    return torch.tensor([r + [value] * (width - len(r)) for r in rows])


MODEL_CARD = """# tiny-t5 (offline demo base model)

A {params:,}-parameter T5 ({size}) with flan-T5's architecture choices (gated-gelu, no decoder
output rescaling) and a {vocab}-token Unigram vocabulary (incl. 100 sentinels), pretrained for
{steps} steps with the `{objective}` objective on {n_dialogues} generated dialogues (seed {seed},
not the demo data's seed; no summaries). {tasks} It has never seen a summary: it cannot summarize before
fine-tuning.
Made by `{command}`; final pretraining loss {loss:.3f}.
"""

# What each task asks, for the model card.
TASK_TEXT = {
    "infill": "`infill` is BART's text infilling: spans covering 30 % of a dialogue window each become "
              "one mask token, and the model writes the whole window back (copying from its encoder)",
    "next": "`next` is the next turn of a conversation from the turns before it (an input without a "
            "mask token is a conversation to go on with)",
    "gap": "`gap` is PEGASUS's gap turns: the 30 % of a run of turns most like the rest each become one "
           "mask token, and the model writes them (copying out of order)",
    "span": "`span` is T5's span corruption: spans become sentinels, and the model writes the missing spans",
}


def model_card(args: argparse.Namespace, params: int, vocab: int, n_dialogues: int, loss: float) -> str:
    """The folder's README.md. It is part of the folder's sha256 pin, so the same command must
    write the same card: ``--out`` (where it went) is left out of the command it records."""
    cycle = tasks(args.objective, args.next_every)
    text = (f"The examples of a batch take the tasks {', '.join(cycle)} in turn: "
            + "; ".join(TASK_TEXT[t] for t in dict.fromkeys(cycle)) + ".")
    command = " ".join(["python -m demo.make_tiny_t5", *(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out")])
    return MODEL_CARD.format(params=params, size=json.dumps(SIZE), vocab=vocab, steps=args.steps,
                             objective=args.objective, n_dialogues=n_dialogues, seed=args.seed,
                             tasks=text, command=command, loss=loss)


def arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m demo.make_tiny_t5", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="demo/tiny-t5")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--objective", choices=list(OBJECTIVES), default="denoise+next",
                        help="denoise+next: text infilling, and one example in --next-every a next turn; "
                             "the others cycle their tasks over a batch (gap: PEGASUS's gap turns)")
    parser.add_argument("--next-every", type=int, default=2)
    parser.add_argument("--n-dialogues", type=int, default=3000)
    parser.add_argument("--vocab-size", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1234)
    return parser


def main(argv: list[str] | None = None) -> None:
    import torch

    args = arg_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    # One thread, fixed: the float reductions (and so the weights) depend on the thread count, and
    # a model this small trains as fast on one thread as on two (measured: 1.7 steps/s either way).
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    from stages.atomic import atomic_path

    dialogues = corpus(args.n_dialogues, args.seed)
    # The prompt's words too, so the prompt tokenizes into whole pieces, as it will in the demo.
    tokenizer = train_tokenizer(dialogues + [PROMPT], args.vocab_size)
    model = build_model(len(tokenizer), args.seed)
    losses = pretrain(model, tokenizer, dialogues, args.steps, args.batch_size, args.lr, args.seed,
                      args.objective, args.next_every)
    params = sum(p.numel() for p in model.parameters())
    with atomic_path(args.out) as out:
        model.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
        (out / "README.md").write_text(model_card(args, params, len(tokenizer), len(dialogues),
                                                  sum(losses[-50:]) / len(losses[-50:])))
    from stages.modeling import folder_hash

    log.info("wrote %s: %d parameters, final loss %.3f; pin it in params with revision: '%s'",
             args.out, params, losses[-1], folder_hash(Path(args.out)))


if __name__ == "__main__":
    main()
