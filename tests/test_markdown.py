"""Untrusted text (dialogues, human summaries, model outputs, ids) renders as text on every page
that shows it: ``stages/markdown.py`` alone, in each context it is used in, and in the pages that
use it (``metrics/examples.md`` from stages/score.py, the review report from review/report.py).

Pages are rendered as CommonMark with GitHub's tables and strikethrough, raw HTML passed through as
GitHub passes it before sanitizing (markdown-it-py). A page made with hostile texts must have the
same elements as the page made with a plain word in their place, and show the same text with the
hostile text's words in the word's place. What GitHub links after rendering (mentions, issue
references, autolinks, emoji codes) and its ``$`` math are checked in the text it would scan.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from review.report import Side, example, params_section, truncated
from review.revisions import Revision
from stages.markdown import WORD_JOINER, code_block, code_span, escape, visible
from stages.score import examples_markdown
from tests.conftest import copy_project

CRAFTED = "</details><img src=x onerror=alert(1)> [click me](http://evil.example) @octocat"
HOSTILE = {
    "crafted": CRAFTED,
    "heading": "A fine summary.\n# Injected heading\nand more",
    "table": "| a | b |\n|---|---|\n| 1 | 2 |",
    "nested fences": "```\n````python\nprint(1)\n````\n```\n~~~\nx\n~~~",
    "script": "<script>alert(document.cookie)</script>",
    "javascript link": "[press](javascript:alert(1)) <javascript:alert(1)> <http://evil.example>",
    "image": "![x](http://evil.example/pixel.png) [![a](b)](c)",
    "html link": '<a href="http://evil.example">x</a><details open><summary>s</summary>',
    "comment": "<!-- hidden --> shown",
    "mentions": "@team @org/team-name and mail someone@evil.example",
    "references": "fixes #1, see GH-2 and owner/repo#3",
    "autolinks": "www.evil.example https://evil.example/path ftp://evil.example _www.evil.example",
    "emoji": ":smile: :+1: at 10:30",
    "bidi": "abc\u202edcba\u202c then \u2066isolated\u2069 \u200fmark",
    "controls": "nul\x00bell\x07esc\x1b[31mred\x7f",
    "entities": "&lt;b&gt; &amp; &#64;octocat &#x3C;img&#x3E;",
    "lists": "- item\n* star\n+ plus\n1. one\n2) two",
    "quote": "> quoted\n>> nested",
    "emphasis": "***both*** _em_ ~~strike~~ `code` ``two``",
    "breaks": "---\n===\n***\nsetext above\n===",
    "indented": "    four spaces of indented code\n\tand a tab",
    "definitions": "[ref]: http://evil.example\n[ref] [^1]\n\n[^1]: a footnote",
    "math": "$x^2$ and $$\\int f$$ and It's $3,000 a month",
    "backslashes": "back\\slash \\*not bold\\* and a hard break\\\nand trailing  \nspaces",
    "pipes": "a | b || c \\| d",
    "line endings": "one\r\ntwo\rthree",
    "unicode": "Zoë's café — naïve 日本語 🙂 #Person1#: hi",
    "empty": "",
    "blank": "  \n\t ",
    "long": ("word <b>x</b> @user #7 [l](http://e.x) | " * 250)[:10_000],
}
INLINE, BLOCK = "PLACEHOLDERINLINE", "PLACEHOLDERBLOCK"  # plain words: what a text stands in for
PAGE_TAGS = re.compile(r"h[1-6]|p|ul|li|strong|pre|code|table|thead|tbody|tr|th|td|details|summary")


def render(markdown: str) -> str:
    return MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"]).render(markdown)


class Page(HTMLParser):
    """A rendered page: its elements, its text, and the text GitHub scans for links (not in code)."""

    def __init__(self, rendered: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple] = []
        self.text, self.scanned, self._code = [], [], 0
        self.feed(rendered)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.elements.append(("<", tag, tuple(attrs)))
        self._code += tag in ("pre", "code")

    def handle_endtag(self, tag):
        self.elements.append(("/", tag))
        self._code -= tag in ("pre", "code")

    def handle_data(self, data):
        self.text.append(data)
        if not self._code:
            self.scanned.append(data)

    def handle_comment(self, data):
        self.elements.append(("!--", data))


def words(text: str) -> str:
    """What a reader reads: no word joiners, any run of white space one space."""
    return " ".join(text.replace(WORD_JOINER, "").split())


def inline_words(text: str) -> str:
    return words(visible(text))


def assert_shown_as_text(hostile_md: str, plain_md: str, inline: str, block: str | None = None) -> None:
    """``hostile_md`` renders as ``plain_md`` does, with ``inline`` (and ``block``) for the words."""
    hostile, plain = Page(render(hostile_md)), Page(render(plain_md))
    assert hostile.elements == plain.elements
    assert all(PAGE_TAGS.fullmatch(e[1]) for e in hostile.elements), hostile.elements
    expected = "".join(plain.text).replace(INLINE, inline).replace(BLOCK, block or "")
    assert words("".join(hostile.text)) == words(expected)
    assert_nothing_github_links(hostile, hostile_md)


def assert_nothing_github_links(page: Page, markdown: str) -> None:
    scanned = " ".join(page.scanned)
    mention, email = r"(?<!\w)@[A-Za-z0-9]", r"@[\w-]+\.\w"  # infer@base is neither
    for live in (mention, email, r"#[0-9]", r"(?i)gh-[0-9]", r"(?i)[a-z]://", r"(?i)www\.", r":[\w+-]+:"):
        assert not re.search(live, scanned), (live, scanned[:300])
    fenced = {n for t in MarkdownIt("commonmark").parse(markdown) if t.type == "fence" for n in range(*t.map)}
    for n, line in enumerate(markdown.splitlines()):
        assert n in fenced or not re.search(r"(?<!\\)\$", line), line  # GitHub's math: only \$


CONTEXTS = {
    "paragraph": "Intro line.\n{}\n",  # the start of a line, after a paragraph: setext, lists
    "list item": "- **lora**: {}\n",
    "table cell": "| | summary |\n|---|---|\n| lora | {} |\n",
    "heading": "## {}\n",
}


@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize("name", HOSTILE)
def test_escape_shows_the_words_and_nothing_else(name, context):
    text, template = HOSTILE[name], CONTEXTS[context]
    assert "\n" not in escape(text)
    assert_shown_as_text(template.format(escape(text)), template.format(INLINE), inline_words(text))


@pytest.mark.parametrize("name", HOSTILE)
def test_code_block_shows_the_text_exactly(name):
    text = HOSTILE[name]
    rendered = render(f"Before.\n\n{code_block(text)}\n\nAfter.\n")
    assert [e[1] for e in Page(rendered).elements] == ["p", "p", "pre", "code", "code", "pre", "p", "p"]
    code = re.search(r'<code class="language-text">(.*)</code>', rendered, re.S).group(1)
    shown = visible(text).strip("\n")
    assert html.unescape(code) == f"{shown}\n"


@pytest.mark.parametrize("context", ["paragraph", "list item", "heading"])
@pytest.mark.parametrize("name", [n for n in HOSTILE if HOSTILE[n].strip()])
def test_code_span_shows_the_text_exactly(name, context):
    text = HOSTILE[name]
    rendered = render(CONTEXTS[context].format(f"a {code_span(text)} b"))
    page = Page(rendered)
    assert [e[1] for e in page.elements if e[1] == "code"] == ["code", "code"]  # one span, whole
    code = re.search(r"a <code>(.*)</code> b", rendered, re.S).group(1)
    assert html.unescape(code) == visible(text).replace("\n", " ")
    assert_nothing_github_links(page, "")


def test_escape_keeps_ordinary_text_readable():
    assert escape("#Person1#: pays $30.") == "\\#Person1\\#: pays \\$30."
    assert escape("1.5 kg, -3 degrees") == "1.5 kg, -3 degrees" and escape("-3 kg") == "\\-3 kg"
    assert escape("1. first") == "1\\. first" and escape("@me") == f"@{WORD_JOINER}me"
    assert escape("a\u202eb") == "a&lt;U+202E&gt;b"  # bidi controls are shown, not obeyed


@pytest.mark.parametrize("name", HOSTILE)
def test_examples_md_shows_hostile_texts_as_text(name):
    text = HOSTILE[name]
    hostile = {v: [{"id": text, "dialogue": text, "references": [text] * 2, "prediction": text}]
               for v in ("base", "lora")}
    plain = {v: [{"id": INLINE, "dialogue": BLOCK, "references": [INLINE] * 2, "prediction": INLINE}]
             for v in ("base", "lora")}
    assert_shown_as_text(examples_markdown(hostile, 5), examples_markdown(plain, 5), inline_words(text),
                         visible(text).strip("\n"))


def side(label: str, sha: str | None, dialogue_id: str, text: str, rouge: float) -> Side:
    row = {"id": dialogue_id, "dialogue": text, "references": [text, text], "prediction": text}
    return Side(Revision(label, sha), {dialogue_id: {"lora.rougeL": rouge}}, {"lora": {dialogue_id: row}})


@pytest.mark.parametrize("name", HOSTILE)
def test_report_examples_show_hostile_texts_as_text(name):
    text = HOSTILE[name]
    hostile = example(text, side("HEAD", "0" * 40, text, text, 0.1), side("workspace", None, text, text, 0.2), "lora")
    plain_old = side("HEAD", "0" * 40, INLINE, BLOCK, 0.1)
    plain_new = side("workspace", None, INLINE, BLOCK, 0.2)
    for row in (plain_old.predictions["lora"][INLINE], plain_new.predictions["lora"][INLINE]):
        row.update(references=[INLINE, INLINE], prediction=INLINE)
    plain = example(INLINE, plain_old, plain_new, "lora")
    assert_shown_as_text("\n".join(hostile), "\n".join(plain), inline_words(text),
                         visible(truncated(text)).strip("\n"))


@pytest.mark.parametrize("name", HOSTILE)
def test_report_params_show_hostile_values_as_text(name):
    text = HOSTILE[name]
    hostile = params_section({"prompt.template": {"old": text, "new": text}})
    plain = params_section({"prompt.template": {"old": INLINE, "new": INLINE}})
    assert_shown_as_text("\n".join(hostile), "\n".join(plain), inline_words(text))


# --- end to end: the crafted predictions in a finished demo project ------------------------------------

CRAFTED_PREDICTIONS = [CRAFTED + "\n# Injected heading", HOSTILE["table"], HOSTILE["nested fences"]]


def run_module(project: Path, *args: str) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(project), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, "-m", *args], cwd=project, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


def test_score_and_report_show_crafted_predictions_as_text(built_project, tmp_path):
    project = copy_project(built_project, tmp_path / "project")
    predictions = project / "data" / "predictions" / "lora.jsonl"
    lines = [json.loads(line) for line in predictions.read_text().splitlines()]
    for row, text in zip(lines, CRAFTED_PREDICTIONS, strict=False):
        row["prediction"] = text
    predictions.write_text("".join(json.dumps(row) + "\n" for row in lines))

    run_module(project, "stages.score")
    run_module(project, "review.report", "--rev", "HEAD", "--bootstrap", "20", "--examples", "3",
               "--out", "report.md")

    examples = (project / "metrics" / "examples.md").read_text()
    report = (project / "report.md").read_text()
    for markdown, headings in ((examples, {"h1": 1, "h2": 5}), (report, {"h2": 1, "h4": 3})):
        page = Page(render(markdown))
        tags = [e[1] for e in page.elements if e[0] == "<"]
        assert all(PAGE_TAGS.fullmatch(tag) for tag in tags), set(tags)
        assert {h: tags.count(h) for h in headings} == headings
        assert_nothing_github_links(page, markdown)
        shown = words("".join(page.text))
        assert all(inline_words(text) in shown for text in CRAFTED_PREDICTIONS)
    assert Page(render(examples)).elements.count(("<", "table", ())) == 0
    # The report's own tables: scores (changed, and unchanged folded), cost (only score reran:
    # all folded), significance, and one per example (no params changed).
    assert Page(render(report)).elements.count(("<", "table", ())) == 4 + 3
