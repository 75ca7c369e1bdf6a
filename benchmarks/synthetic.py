"""DialogSum-shaped synthetic workloads and the two model shapes the benchmarks run on.

Speed depends on sequence lengths and on the model's shape, not on what the tokens mean, so the
data are random token ids with DialogSum's lengths, written as text through a tokenizer that maps
word ``w<i>`` to id ``i``: the pipeline's own code (prompt, ``stages.tokenize``, ``stages.infer``)
then runs on it unchanged, and every sequence has exactly the length drawn for it.

The ``base`` shape is a random-initialised model of flan-t5-base's exact shape (no hub here);
the ``tiny`` shape is the offline demo's ``demo/tiny-t5``.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = ROOT / "demo" / "tiny-t5"
SHAPES = ("tiny", "base")

# flan-t5-base's config.json, less what is not shape (the ids are T5's: pad 0, </s> 1).
BASE_SHAPE = dict(d_model=768, d_kv=64, d_ff=2048, num_layers=12, num_decoder_layers=12, num_heads=12,
                  feed_forward_proj="gated-gelu", vocab_size=32128, tie_word_embeddings=False,
                  decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
# The other flan-T5 sizes' config.json, as BASE_SHAPE: what differs from base.
SIZES = {
    "small": BASE_SHAPE | dict(d_model=512, d_ff=1024, num_layers=8, num_decoder_layers=8, num_heads=6),
    "base": BASE_SHAPE,
    "large": BASE_SHAPE | dict(d_model=1024, d_ff=2816, num_layers=24, num_decoder_layers=24, num_heads=16),
    "xl": BASE_SHAPE | dict(d_model=2048, d_ff=5120, num_layers=24, num_decoder_layers=24, num_heads=32),
    "xxl": BASE_SHAPE | dict(d_model=4096, d_ff=10240, num_layers=24, num_decoder_layers=24, num_heads=64),
}
SPECIAL = ("<pad>", "</s>", "<unk>")  # ids 0, 1, 2 as in T5's vocabulary


def id_tokenizer(vocab_size: int):
    """A tokenizer over ``vocab_size`` ids whose text for id ``i >= 3`` is ``w<i>``.

    It appends ``</s>`` like T5's tokenizer; words outside the vocabulary (the prompt's English)
    become ``<unk>``, one token each, which is about what the real tokenizer spends on them.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL)}
    vocab.update({f"w{i}": i for i in range(len(SPECIAL), vocab_size)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", model_max_length=512)


def synthetic_texts(n: int, vocab_size: int, seed: int) -> tuple[list[str], list[str]]:
    """``n`` dialogues and summaries of DialogSum-like token lengths, as ``id_tokenizer`` text.

    Dialogues: log-normal around 200 tokens, 5-95 % range about 100-390, a few past 512 (truncated
    by the tokenizer, as in DialogSum). Summaries: normal around 36 tokens, 5-95 % about 18-54.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    sources = np.clip(rng.lognormal(np.log(200), 0.4, n), 40, 700).astype(int)
    targets = np.clip(rng.normal(36, 11, n), 8, 100).astype(int)

    def text(length: int) -> str:
        ids = rng.integers(len(SPECIAL), vocab_size, length - 1)  # the tokenizer adds </s>
        return " ".join(f"w{i}" for i in ids)

    return [text(k) for k in sources], [text(k) for k in targets]


def tokenized_dataset(tokenizer, template, n: int, seed: int):  # -> datasets.Dataset
    """``n`` training examples exactly as the tokenize stage writes them (prompt applied,
    truncated): columns input_ids, attention_mask, labels, length."""
    import pandas as pd

    from stages.tokenize import tokenize_frame

    dialogues, summaries = synthetic_texts(n, len(tokenizer), seed)
    dataset, _ = tokenize_frame(pd.DataFrame({"dialogue": dialogues, "summary": summaries}),
                                tokenizer, template, tokenizer_pin="synthetic")
    return dataset


def tokenized_examples(tokenizer, template, n: int, seed: int) -> list[dict]:
    """``tokenized_dataset`` as a list of rows."""
    return tokenized_dataset(tokenizer, template, n, seed).to_list()


def base_shape_model(seed: int, device: str | None = None, size: str = "base"):
    """A random-initialised T5 of flan-t5-base's exact shape (247,577,856 parameters), or of
    another flan-T5 size's (``SIZES``).

    ``device="meta"`` builds it without memory or init time (for counting parameters).
    """
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    with torch.device(device or "cpu"):
        model = T5ForConditionalGeneration(T5Config(**SIZES[size]))
        # transformers 5 forces T5Config.tie_word_embeddings to True and ties lm_head to the input
        # embedding whatever the config says; flan-t5's checkpoint has its own lm_head (loading
        # it unties them), so untie here. N(0, d_model^-0.5) keeps the initial loss near ln(V)
        # instead of ~75 (T5's N(0, 1) init is meant for the embedding, not the head).
        head = torch.empty_like(model.shared.weight).normal_(std=model.config.d_model ** -0.5)
    model.lm_head.weight = torch.nn.Parameter(head)
    model.all_tied_weights_keys.pop("lm_head.weight", None)  # or save/tie_weights would re-tie it
    return model


def load_shape(shape: str, seed: int):
    """The model of a shape and a note on where it came from."""
    if shape == "base":
        return base_shape_model(seed), "random init, flan-t5-base's exact shape"
    if shape != "tiny":
        raise ValueError(f"unknown shape {shape!r} (one of {', '.join(SHAPES)})")
    if (TINY_MODEL / "config.json").is_file():
        from stages.modeling import load_model

        return load_model(TINY_MODEL), "demo/tiny-t5 via stages.modeling.load_model"
    # Weights do not change speed: without the demo asset, time a random model of its shape.
    from demo.make_tiny_t5 import build_model

    log.warning("%s not found (python -m demo.make_tiny_t5 builds it): using a random model of its shape",
                TINY_MODEL)
    return build_model(1100, seed), "random init of demo/tiny-t5's shape (demo/tiny-t5 missing)"
