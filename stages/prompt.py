"""The one prompt template, applied and fitted to the model's input length the same way at
training (``stages/tokenize.py``) and at inference (``stages/infer.py``) time."""

from __future__ import annotations

from stages.errors import InputError
from stages.params import Prompt


def build(prompt: Prompt, dialogue: str) -> str:
    # str.replace, not str.format: dialogues may contain braces.
    return prompt.template.replace("{dialogue}", dialogue)


def build_all(prompt: Prompt, dialogues: list[str]) -> list[str]:
    return [build(prompt, d) for d in dialogues]


# A token of T5's SentencePiece vocabulary spans at most 16 characters (SentencePiece's default
# max_sentencepiece_length; the demo's vocabulary too), more only where the normalizer folds a run
# of spaces into one. 64 characters per token leaves four times that: a dialogue cut there still
# holds far more than max_source_length tokens, so the cut below lands where it always did.
CHARS_PER_TOKEN = 64


def fit(tokenizer, prompt: Prompt, dialogues: list[str]) -> tuple[list[str], list[bool]]:
    """Prompts that tokenize to at most ``max_source_length`` tokens (the closing ``</s>``
    included), and which of them had to be cut.

    A dialogue too long is cut at its end; the instruction around it stays whole. Cutting the
    tokenized prompt instead (the tokenizer's own truncation) would drop ``Summary: ``, the cue
    the model answers, exactly for the longest dialogues. Prompts that fit are returned
    unchanged, so they tokenize as they always did.

    Nothing longer than ``max_source_length x CHARS_PER_TOKEN`` characters of a dialogue is ever
    tokenized: the rest is cut first, by characters. Tokenizing with offsets takes hundreds of
    bytes per character, so one 50 MB dialogue line once took 16 GB; now memory is bounded by
    what the model reads, whatever the input's size.
    """
    bound = prompt.max_source_length * CHARS_PER_TOKEN
    texts = build_all(prompt, [d[:bound] for d in dialogues])
    # verbose=False here and below: measuring a prompt longer than the model takes is the point,
    # and the tokenizer's "longer than the specified maximum ... indexing errors" warning would
    # tell users of a problem that this function is about to remove.
    lengths = [len(ids) for ids in tokenizer(texts, verbose=False)["input_ids"]]
    fitted, cut = [], []
    for dialogue, text, length in zip(dialogues, texts, lengths):
        too_long = length > prompt.max_source_length
        fitted.append(_cut(tokenizer, prompt, dialogue[:bound], length) if too_long else text)
        cut.append(too_long or len(dialogue) > bound)
    return fitted, cut


def _cut(tokenizer, prompt: Prompt, dialogue: str, length: int) -> str:
    """The prompt around the longest start of ``dialogue`` (whole tokens) that fits."""
    limit = prompt.max_source_length
    offsets = tokenizer(dialogue, add_special_tokens=False, return_offsets_mapping=True,
                        verbose=False)["offset_mapping"]
    keep = len(offsets) - (length - limit)
    while keep > 0:
        text = build(prompt, dialogue[:offsets[keep - 1][1]].rstrip())
        length = len(tokenizer(text, verbose=False)["input_ids"])
        if length <= limit:
            return text
        keep -= length - limit  # a cut can join or split a token at the seam: try again shorter
    empty = len(tokenizer(build(prompt, ""), verbose=False)["input_ids"])
    if empty <= limit:  # room for the template and not one token of dialogue
        return build(prompt, "")
    raise InputError(f"prompt.max_source_length: {limit} tokens cannot hold the template itself "
                     f"({empty} tokens with an empty dialogue)")
