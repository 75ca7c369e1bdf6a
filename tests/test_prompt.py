"""prompt.fit: what a dialogue of any size costs is bounded by what the model reads."""

from __future__ import annotations

import pytest

from stages import modeling, prompt
from stages.params import Prompt

TEMPLATE = "Summarize the following conversation.\n\n{dialogue}\n\nSummary: "
TURN = "#Person1#: Hello there, how are you today?\n#Person2#: Fine, thanks. And you?\n"


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    return modeling.load_tokenizer(tiny_model)


class Spy:
    """The tokenizer, noting the longest text it was given."""

    def __init__(self, tokenizer):
        self.tokenizer, self.longest = tokenizer, 0

    def __call__(self, text, **kwargs):
        self.longest = max([self.longest, *(len(t) for t in ([text] if isinstance(text, str) else text))])
        return self.tokenizer(text, **kwargs)


def test_a_huge_dialogue_is_cut_by_characters_before_anything_tokenizes_it(tokenizer):
    """One 50 MB dialogue line once took 16 GB: it was tokenized whole, with offsets, before the
    cut. Now no text longer than max_source_length x CHARS_PER_TOKEN characters (and the template)
    reaches the tokenizer, and the result is the one its generous prefix gives, which is the one a
    dialogue just a little too long gives: the characters cut never reached the model anyway."""
    cfg = Prompt(template=TEMPLATE, max_source_length=64, max_target_length=8)
    bound = cfg.max_source_length * prompt.CHARS_PER_TOKEN
    huge = TURN * (20 * bound // len(TURN))
    spy = Spy(tokenizer)
    texts, cut = prompt.fit(spy, cfg, [huge, "#Person1#: Bye."])
    assert spy.longest <= bound + len(TEMPLATE)
    assert (texts, cut) == prompt.fit(tokenizer, cfg, [huge[:bound], "#Person1#: Bye."])
    assert cut == [True, False] and len(tokenizer(texts[0])["input_ids"]) <= 64
    assert texts[0] == prompt.fit(tokenizer, cfg, [TURN * 10])[0][0]  # cut where a short excess is cut
