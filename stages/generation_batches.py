"""How many dialogues each generation batch holds: as many as the GPU's memory allows.

Decoding is sequential: a batch takes as many steps as its longest summary, whatever its size,
and a step of a larger batch costs about as much time on a GPU as a small one (the weights are
read once per step either way). So the number of *sequential decode steps* is what generation
time follows, and fewer, larger batches take fewer: 500 DialogSum-length dialogues take ~970
steps in batches of 32, ~67 in one batch.

``plan`` sizes the batches of a length-sorted (longest first) list of prompts from a memory
budget (``generate.batch_memory`` x the GPU's free memory once the model is loaded): each batch
takes dialogues while ``dialogues x sequence_bytes(its longest prompt)`` fits. What a sequence
holds (``sequence_bytes``), counted generously, for T5:

- the KV cache: per decoder layer, self-attention keys and values for every new token and
  cross-attention keys and values for every prompt token: ``2 x layers x (prompt + new) x
  heads x d_kv`` values;
- the encoder's working set, per prompt token in the layer being computed: its hidden state, the
  gated feed-forward's two ``d_ff`` activations, and the attention scores, position bias and
  probabilities (``3 x heads x prompt`` per token, the quadratic term), plus the encoder's
  output kept for decoding;
- a step's logits and the processed scores (fp32, the vocabulary, three copies);

all times ``num_beams``, the encoder's phase counted on top of the decoder's (they are not
alive at once: a margin). Where a batch still runs out of memory (another process took some),
``stages.infer.generate`` splits it in two and goes on.

On the CPU memory is not what limits a batch (and nothing catches running out of it): batches
are ``generate.batch_size`` dialogues there, as with ``batch_memory: 0`` anywhere. Greedy outputs
do not depend on how dialogues are batched (padding is masked), up to float rounding in kernels
chosen by shape.
"""

from __future__ import annotations

from dataclasses import dataclass

LOGIT_COPIES = 3  # the logits, the processed scores and their argmax's working copy


@dataclass(frozen=True)
class Shape:
    """What a sequence's memory depends on, from a T5 config."""

    encoder_layers: int
    decoder_layers: int
    d_model: int
    heads: int
    d_kv: int
    d_ff: int
    vocab: int

    @classmethod
    def of(cls, config) -> Shape:
        return cls(config.num_layers, config.num_decoder_layers, config.d_model, config.num_heads,
                   config.d_kv, config.d_ff, config.vocab_size)


def sequence_bytes(shape: Shape, prompt_tokens: int, new_tokens: int, beams: int, value_bytes: int) -> int:
    """The memory one dialogue of ``prompt_tokens`` takes while it is generated, generously."""
    inner = shape.heads * shape.d_kv
    kv_cache = 2 * shape.decoder_layers * (prompt_tokens + new_tokens) * inner
    encoder = prompt_tokens * (3 * shape.d_model + 2 * shape.d_ff + 3 * shape.heads * prompt_tokens)
    logits = LOGIT_COPIES * shape.vocab * 4 // value_bytes  # fp32, in units of value_bytes
    return beams * (kv_cache + encoder + logits) * value_bytes


def plan(lengths: list[int], budget_bytes: int, shape: Shape, new_tokens: int, beams: int,
         value_bytes: int) -> list[int]:
    """The sizes of consecutive batches over ``lengths`` (prompt tokens, longest first): each as
    large as ``budget_bytes`` holds, at least one dialogue."""
    sizes: list[int] = []
    start = 0
    while start < len(lengths):
        each = sequence_bytes(shape, lengths[start], new_tokens, beams, value_bytes)  # the longest pads the rest
        size = max(1, min(len(lengths) - start, budget_bytes // each))
        sizes.append(size)
        start += size
    return sizes


def fixed(count: int, batch_size: int) -> list[int]:
    """``count`` dialogues in batches of ``batch_size`` (the last one smaller)."""
    return [min(batch_size, count - start) for start in range(0, count, batch_size)]


def decode_steps(sizes: list[int], new_tokens: list[int]) -> int:
    """Sequential decode steps of batches ``sizes`` over dialogues (in batch order) that generate
    ``new_tokens`` each: every batch runs until its longest summary ends."""
    steps, start = 0, 0
    for size in sizes:
        steps += max(new_tokens[start:start + size])
        start += size
    return steps


def batch_sizes(model, lengths: list[int], batch_size: int, batch_memory: float, new_tokens: int, beams: int,
                device: str) -> list[int]:
    """The batches ``stages.infer.generate`` runs, over prompts of ``lengths`` (longest first): by
    memory on a CUDA GPU (``batch_memory`` of what is free with the model loaded), else
    ``batch_size`` each."""
    import torch

    if batch_memory == 0 or torch.device(device).type != "cuda":
        return fixed(len(lengths), batch_size)
    free, _ = torch.cuda.mem_get_info(torch.device(device))
    return plan(lengths, int(free * batch_memory), Shape.of(model.config), new_tokens, beams, model.dtype.itemsize)
