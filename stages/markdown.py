r"""Untrusted text shown as text in Markdown: dialogues, human summaries, model outputs and dialogue
ids, as ``metrics/examples.md`` (stages/score.py) and the review report (review/report.py, posted as
a pull-request comment) put them on a page that GitHub, DVC's tools and any CommonMark viewer render.

Model outputs and third-party data sets are untrusted: pasted as they are, a ``</details>`` or an
``<img>`` restructures the page or fetches from any server, ``[x](http://…)`` is a link, ``@name``
notifies a person, ``#12`` links an issue, ``# …`` and ``| a | b |`` lines become the page's own
headings and tables. Two layouts, one rule (what a reader sees is the text the model wrote, and
nothing of it is markup):

- ``escape(text)``: the one escaping function, for running text on one line (a list item, a table
  cell, a heading): summaries and ids.
- ``code_block(text)``: a fenced block for text whose lines matter (dialogues). Nothing inside a
  fence is Markdown, HTML, a link or a mention (GitHub skips code for mentions, references and
  emoji), so the text goes in as it is, under a fence longer than any backtick run it holds: no
  line of it can close the fence.
- ``code_span(text)``: the same in running text, on one line, for a value a reader may copy as it
  is (a path, a revision, a model id from params): a code span whose backtick string is longer
  than any run in the text. Not for a table cell, where a ``|`` in it would still end the cell.

How ``escape`` works, and why this way rather than a code span per text (which would show the
text verbatim too, but cannot hold a ``|`` in a table cell or wrap like prose):

1. ``& < >`` become entities: no tag, comment, autolink or entity of the text survives, and every
   renderer shows an entity as the character itself.
2. The ASCII punctuation that starts structure is backslash-escaped (CommonMark and GitHub show
   ``\X`` as ``X`` for any ASCII punctuation X): backslash (escapes), backtick (code spans,
   fences), ``* _ ~`` (emphasis, strikethrough), ``[ ]`` (links, images, footnotes, task boxes),
   ``|`` (table cells), ``#`` (headings), ``$`` (GitHub's math). At the start of the line also
   ``- + =`` and the ``.``/``)`` of ``1.``/``1)`` (list items, thematic breaks, setext underlines).
3. What GitHub links *after* rendering, in the text itself, is broken with an invisible WORD JOINER
   (U+2060), since no backslash reaches that far: after ``@`` (mentions, e-mail addresses), ``#``
   and ``GH-`` before a digit (issue references), ``:`` before a word character (``:emoji:``
   codes), before ``://`` (``http://`` autolinks) and inside ``www.``. Unlike a zero-width space
   it offers no line break inside a word, and unlike a zero-width joiner it joins no emoji.
4. Line breaks and runs of spaces become one space (a table cell cannot hold a line break, and a
   browser shows runs of spaces as one anyway), and the ends are trimmed.

Exceptions to "the reader sees the model's text", in both layouts: line endings become ``\n``;
Unicode bidi controls (U+061C, U+200E/F, U+202A-E, U+2066-9), which reorder what is displayed
around them (the "Trojan Source" trick), and other control characters but tab and newline are
shown as visible marks, ``<U+202E>``. Copying text from the page copies the word joiners with it.
"""

from __future__ import annotations

import html
import re

WORD_JOINER = "\u2060"  # zero width, no line break opportunity, no joining

_NEWLINES = re.compile(r"\r\n?")
# Bidi controls, C0 and C1 controls (tab and newline excepted) and DEL.
_INVISIBLE = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SPACES = re.compile(r"[ \t\n]+")
_LINKED_BY_GITHUB = re.compile(
    r"(?<=@)(?=[A-Za-z0-9])"  # @user, @org/team, user@example.com
    r"|(?<=#)(?=[0-9])"  # #12, owner/repo#12
    r"|(?i:(?<=gh-))(?=[0-9])"  # GH-12
    r"|(?<=:)(?=[A-Za-z0-9_+-])"  # :emoji: (a text ending in ":smile" may meet a page's ":")
    r"|(?i:(?<=[a-z])(?=://))"  # http://, https://, ftp://
    r"|(?i:(?<=www)(?=\.))"  # www.example.com (also after "_", which GitHub's autolinker allows)
)
_PUNCTUATION = re.compile(r"([\\`*_~\[\]|#$])")
# A list item, thematic break or setext underline: "- x", "+ x", "===", "1. x", "1)".
_BLOCK_START = re.compile(r"^(?=[-+=])|^[0-9]{1,9}(?=[.)](?: |$))")


def visible(text: str) -> str:
    """``text`` with ``\\n`` line endings and every bidi or control character shown as a mark."""
    return _INVISIBLE.sub(lambda m: f"<U+{ord(m.group()):04X}>", _NEWLINES.sub("\n", text))


def escape(text: str) -> str:
    """``text`` as one line of Markdown that renders as exactly its words (see the module)."""
    line = _SPACES.sub(" ", visible(text)).strip(" ")
    line = _LINKED_BY_GITHUB.sub(WORD_JOINER, line)
    line = html.escape(_PUNCTUATION.sub(r"\\\1", line), quote=False)
    return _BLOCK_START.sub(lambda m: m.group() + "\\", line, count=1)


def code_block(text: str, info: str = "text") -> str:
    """``text`` verbatim in a fenced code block that none of its lines can close."""
    text = visible(text).strip("\n")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text}\n{fence}"


def code_span(text: str) -> str:
    """``text`` verbatim in an inline code span that none of its backticks can close."""
    line = visible(text).replace("\n", " ")
    longest = max((len(run) for run in re.findall(r"`+", line)), default=0)
    ticks = "`" * (longest + 1)
    # CommonMark strips one space from each end of a span that begins and ends with one: pad
    # both ends where the text begins or ends with a backtick or a space, and it shows exactly.
    # (A span of spaces only is never stripped.)
    pad = " " if line.strip(" ") and (line[:1] in ("`", " ") or line[-1:] in ("`", " ")) else ""
    return f"{ticks}{pad}{line}{pad}{ticks}"
