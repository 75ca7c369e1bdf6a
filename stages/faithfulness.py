"""What a summary states that its dialogue does not: the errors ROUGE cannot see, offline and cheap.

Each figure is a share of summaries (0-1), the mean over test dialogues of a per-summary value,
so the review report's paired bootstrap treats it as it treats ROUGE:

- ``invented_numbers``: the summary states a number its dialogue does not contain. Numbers are
  digits (``3,000`` = ``3000``, ``$30.00`` = ``30``, ``10th`` = ``10``), number words
  (``seven``, ``twenty-five``, ``a hundred``, ``tenth``, ``twice``), clock times and dates
  (weekdays and months), compared by value: "seven" = "7", "7 pm" = "7:00 pm" = "seven o'clock"
  = "19:00"; a time is also supported by its hour alone ("at seven" supports "7 pm"), am and pm
  must not contradict. Arithmetic counts as invented ("$1,500 each" from "$3,000, split").
  Not counted: "one", "first", "second", "once" (mostly not numbers: "the direct one").
- ``invented_names``: the summary names a person, place or organisation absent from the dialogue:
  a capitalised word (not the pronoun "I", a title, a number, a date or a contraction) none of
  whose forms occurs in the dialogue, in any case, with a possessive or plural ``s`` and hyphens
  and apostrophes ignored ("Johnson's" = "johnson", "Wi-Fi" = "wifi"). A word capitalised because
  it opens a sentence counts only when it reads as a name there: possessive, followed by a name,
  or the subject of a present-tense verb ("Anna books ..."; not "Lie down", "Since ...").
  Multi-word names are reported whole ("Mountain View Inn") and invented if any word is.
- ``speaker_errors``: the summary names a ``#PersonN#`` who has no turn in the dialogue.
- ``novel_bigrams``: the share of the summary's word bigrams (lower-cased; ``#PersonN#`` one
  word) that are not bigrams of the dialogue: abstractiveness, to read beside the two above
  (a summary that copies whole phrases invents little; 0 for a summary under two words).
- ``repeated_trigrams``: the summary repeats a word 3-gram (a decoding loop).

Beside them the score stage reports ``gen_len`` (mean generated tokens) and ``hit_max_tokens``
(how many predictions used all of ``generate.max_new_tokens``: cut off, or ended on the last
token allowed).

Why hand-written rules rather than an NER library: DialogSum's people are ``#PersonN#`` tags,
which NER does not see; the NER libraries' models (spaCy's, flair's) come from outside the package
index; and these rules check 1,500 summaries against their dialogues in about a second on one core
(``benchmarks/faithfulness.py``). They are a screen, not a judge: a name that is also a common
word at the start of a sentence, or a number derived correctly, is misread; a swapped speaker or
a negation is not seen at all. ``tests/test_faithfulness.py`` holds the cases, near misses
included, with their known answers.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from stages.scoring import FAITHFULNESS, REPEATED

FIGURES = (*FAITHFULNESS, REPEATED)  # named in stages/scoring.py, with every score

SPEAKER = re.compile(r"(?<![\w#])#?person\s?(\d+)\b#?", re.IGNORECASE)
TURN = re.compile(r"#person(\d+)#\s*:", re.IGNORECASE)  # a turn, wherever a line break was lost

_UNITS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
          "fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
CARDINALS = {w: i for i, w in enumerate(_UNITS)} | {w: 10 * i for i, w in enumerate(_TENS, 2)}
ORDINALS = {"third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8, "ninth": 9,
            "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13, "fourteenth": 14,
            "fifteenth": 15, "sixteenth": 16, "seventeenth": 17, "eighteenth": 18, "nineteenth": 19,
            **{w[:-1] + "ieth": v for w, v in CARDINALS.items() if v >= 20}}
UNIT_ORDINALS = {"first": 1, "second": 2, **{w: v for w, v in ORDINALS.items() if v < 10}}  # twenty-first
MULTIPLIERS = {"hundred": 100, "thousand": 1000, "million": 10**6}
ALONE = {"twice": 2}
NUMBER_WORDS = {*CARDINALS, *ORDINALS, *UNIT_ORDINALS, *MULTIPLIERS, *ALONE}

WEEKDAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
MONTHS = ("january february march april may june july august september october november "
          "december").split()
# "May" and "March" are also a modal and a verb: a date only when capitalised.
DATE = re.compile(r"\b(?:(?i:" + "|".join(w for w in WEEKDAYS + MONTHS if w not in ("may", "march"))
                  + r")|May|March)\b")

_HOUR = rf"(\d{{1,2}}|{'|'.join(w for w, v in CARDINALS.items() if 1 <= v <= 12)})"
_MERIDIEM = r"\s?([ap])(?:\.\s?m\b\.?|\s?m\b)"  # pm, p.m., 7pm
TIMES = [  # (pattern, how its groups read): the first that matches a span takes it
    (re.compile(rf"\b(\d{{1,2}})[:.](\d{{2}}){_MERIDIEM}", re.IGNORECASE), "h m ap"),
    (re.compile(r"\b(\d{1,2}):(\d{2})\b", re.IGNORECASE), "h m"),
    (re.compile(rf"\b{_HOUR}{_MERIDIEM}", re.IGNORECASE), "h ap"),
    (re.compile(rf"\b{_HOUR}\s?o[’']?\s?clock\b", re.IGNORECASE), "h"),
    (re.compile(rf"\b(half|quarter)\s+(past|to)\s+{_HOUR}\b", re.IGNORECASE), "part dir h"),
    (re.compile(r"\b(noon|midday|midnight)\b", re.IGNORECASE), "named"),
]
DIGITS = re.compile(r"(?<![\w.])(\d+(?:,\d{3})*(?:\.\d+)?|\d+)(?:st|nd|rd|th)?(?![\w])", re.IGNORECASE)

# Words capitalised that name no one: the pronoun, titles, abbreviations of everyday things.
NOT_NAMES = {"i", "mr", "mrs", "ms", "miss", "dr", "sir", "madam", "mister",
             "ok", "okay", "tv", "id", "am", "pm", "a.m", "p.m", "atm", "pin", "dvd", "cd", "pc", "usb", "faq",
             "today", "tomorrow", "tonight", "yesterday"}
TITLES = {"mr", "mrs", "ms", "dr", "st", "prof", "jr", "sr"}
# Capitalised only because they open a sentence (DialogSum's summaries mostly open with a tag).
OPENERS = set("""
a an the this that these those there then they them their he him his she her hers it its we our
us you your yours both all each every either neither everyone everybody someone somebody nobody
no none not one some many most more few several other another after before when while since
because although though if unless until as at in on of for from by with without about into onto
to so but and or yet also however finally first later meanwhile eventually instead afterwards
next now here still even only just soon again anyway besides otherwise therefore thus perhaps
maybe actually luckily unfortunately fortunately sadly what which who whom whose where why how
according during despite unlike like except whether once yes well oh please thanks thank sorry
hello hi dear good great let let's it's that's there's here's he's she's
""".split())
WORD = re.compile(r"[^\W\d_]+(?:['’.\-][^\W\d_]+)*")
# Words ending in "s" that are no verb: "Take this", "Golf is" do not make a name of their opener.
NOT_VERBS = set("""is was has his this as us yes its hers ours yours theirs does always perhaps sometimes
less unless across towards plus thus whereas besides news""".split())
CONTRACTION = re.compile(r"['’](?:ll|re|ve|d|m|t)$|n['’]t$")
SENTENCE_END = re.compile(r"[.!?:;\"“”()\n]")
TOKEN = re.compile(r"#person\d+#|\d+(?:[.,:]\d+)*|[^\W\d_]+(?:['’][^\W\d_]+)*")


@dataclass(frozen=True)
class Findings:
    """One summary against its dialogue: what it invents (as written), and its two shares."""

    numbers: tuple[str, ...]
    names: tuple[str, ...]
    speakers: tuple[str, ...]
    novel_bigrams: float
    repeated_trigram: bool

    def values(self) -> dict[str, float]:
        """The per-summary value of each figure in ``FIGURES``."""
        return {"invented_numbers": float(bool(self.numbers)), "invented_names": float(bool(self.names)),
                "speaker_errors": float(bool(self.speakers)), "novel_bigrams": self.novel_bigrams,
                "repeated_trigrams": float(self.repeated_trigram)}

    def invented(self) -> list[str]:
        """Everything invented, as written: numbers, names, speakers."""
        return [*self.numbers, *self.names, *self.speakers]


# --- numbers -----------------------------------------------------------------------------------

def _hour(text: str) -> int:
    return int(text) if text.isdigit() else CARDINALS[text.lower()]


def _time(match: re.Match, layout: str) -> tuple[int, int, str | None]:
    """(hour on a 12-hour clock, minute, "a"/"p" or None) of one time expression."""
    groups = dict(zip(layout.split(), match.groups()))
    if layout == "named":
        return (0, 0, "a" if groups["named"].lower() == "midnight" else "p")
    hour, minute = _hour(groups["h"]), int(groups.get("m") or 0)
    if "part" in groups:
        minute = 30 if groups["part"].lower() == "half" else 15
        if groups["dir"].lower() == "to":
            hour, minute = hour - 1, 60 - minute
    meridiem = (groups.get("ap") or "").lower() or None
    if meridiem is None and hour >= 13:  # 19:00 is 7 pm
        meridiem = "p"
    return hour % 12, minute, meridiem


def _number_word_runs(text: str) -> list[tuple[int, int, Decimal]]:
    """(start, end, value) of each run of number words: "twenty-five", "two hundred and fifty",
    "a hundred", "tenth", "twice". Words combine only as numbers are said ("five twenty" is two
    numbers); "one", "first" and "second" alone are skipped."""
    words = [(m.start(), m.end(), m.group().lower()) for m in re.finditer(r"[A-Za-z]+", text)]
    runs, i = [], 0
    while i < len(words):
        j, total, current, last = i, 0, 0, None
        while j < len(words):
            word = words[j][2]
            if j > i and not re.fullmatch(r"[\s-]+", text[words[j - 1][1]:words[j][0]]):
                break
            ordinal = word in ORDINALS or (word in UNIT_ORDINALS and last == "tens")
            value = CARDINALS.get(word, ORDINALS.get(word, UNIT_ORDINALS.get(word) if ordinal else None))
            if word == "a" and last is None and j + 1 < len(words) and words[j + 1][2] in MULTIPLIERS:
                current, last = 1, "unit"
            elif word == "and" and last == "mult" and j + 1 < len(words) and words[j + 1][2] in CARDINALS:
                pass
            elif value is not None and (last is None or (last == "tens" and 1 <= value <= 9)
                                        or (last == "mult" and value < 100)):
                current += value
                last = "tens" if word in _TENS else "unit"
                if ordinal:
                    j += 1
                    break
            elif word in MULTIPLIERS and last in ("unit", "tens", "mult") and (
                    last != "mult" or MULTIPLIERS[word] > current):
                current *= MULTIPLIERS[word]
                if MULTIPLIERS[word] >= 1000:
                    total, current = total + current, 0
                last = "mult"
            elif word in ALONE and last is None:
                current, last = ALONE[word], "alone"
                j += 1
                break
            else:
                break
            j += 1
        while j > i and words[j - 1][2] in ("a", "and"):  # a run never ends on these
            j -= 1
        said = [w for _, _, w in words[i:j]]
        if last is not None and j > i and said not in (["one"], ["first"], ["second"]):
            runs.append((words[i][0], words[j - 1][1], Decimal(total + current)))
            i = j
        else:
            i += 1
    return runs


def numbers(text: str) -> tuple[list[tuple[str, object]], set[object]]:
    """Every number, time and date of ``text``: (as written, value) pairs, and the values a
    dialogue offers as support (a time on the hour also supports its hour as a plain number)."""
    text = SPEAKER.sub(" ", text)
    found: list[tuple[int, str, object]] = []
    taken = [False] * len(text)

    def take_span(start: int, end: int, value: object) -> None:
        if not any(taken[start:end]):
            taken[start:end] = [True] * (end - start)
            found.append((start, text[start:end].strip(), value))

    def take(match: re.Match, value: object) -> None:
        take_span(*match.span(), value)

    for pattern, layout in TIMES:
        for m in pattern.finditer(text):
            take(m, ("time", *_time(m, layout)))
    for m in DATE.finditer(text):
        take(m, ("date", m.group().lower()))
    for m in DIGITS.finditer(text):
        take(m, Decimal(m.group(1).replace(",", "")))
    for start, end, value in _number_word_runs(text):
        take_span(start, end, value)
    found.sort(key=lambda f: f[0])
    written = [(surface, value) for _, surface, value in found]
    support = {value for _, value in written}
    support |= {("hour", Decimal(v[1] or 12)) for v in support if isinstance(v, tuple) and v[0] == "time" and v[2] == 0}
    return written, support


def _supported(value: object, support: set[object]) -> bool:
    if isinstance(value, Decimal):  # "7 pm" supports "at 7"
        return value in support or ("hour", value) in support
    if value[0] != "time":
        return value in support
    _, hour, minute, meridiem = value
    if minute == 0 and Decimal(hour or 12) in support:  # "at seven" supports "7 pm", "7 am" does not
        return True
    return any(isinstance(s, tuple) and s[0] == "time" and s[1:3] == (hour, minute)
               and (meridiem is None or s[3] is None or s[3] == meridiem) for s in support)


# A dialogue is checked against each of its summaries (base's, LoRA's, the human one): what it
# offers is read once. Pure functions of the text, their frozen results shared; the bound keeps
# a test set's dialogues (DialogSum: 500) with room to spare.
DIALOGUES_KEPT = 4096


@functools.lru_cache(maxsize=DIALOGUES_KEPT)
def _dialogue_support(dialogue: str) -> frozenset:
    return frozenset(numbers(dialogue)[1])


def invented_numbers(summary: str, dialogue: str) -> list[str]:
    """The numbers, times and dates of ``summary`` its dialogue does not contain, as written."""
    support = _dialogue_support(dialogue)
    return [surface for surface, value in numbers(summary)[0] if not _supported(value, support)]


# --- names -------------------------------------------------------------------------------------

def _forms(word: str) -> set[str]:
    """The forms a word is looked up under: case, possessive, plural, hyphens and apostrophes ignored."""
    key = re.sub(r"['’]s$|['’]$|\.$", "", word.casefold())
    key = re.sub(r"['’\-.]", "", key)
    return {key, key[:-1]} if key.endswith("s") and len(key) > 3 else {key}


@functools.lru_cache(maxsize=DIALOGUES_KEPT)
def _dialogue_forms(dialogue: str) -> frozenset[str]:
    return frozenset(form for word in WORD.findall(dialogue) for form in _forms(word))


def _capitalised(word: str) -> bool:
    """Capitalised, and not a word that names no one (the pronoun, a title, a number, a date)."""
    bare = word.casefold()
    return (word[0].isupper() and bare not in NOT_NAMES and bare not in TITLES and bare not in NUMBER_WORDS
            and not DATE.fullmatch(word) and not CONTRACTION.search(bare))


def _names_at_opening(word: str, following: str | None) -> bool:
    """Whether a capitalised word that opens a sentence is a name rather than any word: it is
    possessive ("Anna's"), starts a run of names ("John Cohen"), or is the subject of a summary's
    present-tense verb ("Anna books", "Tom and Mary go"); "Lie down" and "Take it" are not."""
    if word.casefold() in OPENERS:
        return False
    if re.search(r"['’]s$", word) or following is None:
        return bool(re.search(r"['’]s$", word))
    lower = following.casefold()
    return (_capitalised(following) or lower == "and"
            or (lower.endswith("s") and lower not in NOT_VERBS and following.islower()))


def name_spans(summary: str) -> list[list[str]]:
    """Runs of capitalised words that may name a person, place or organisation (see the module)."""
    text = SPEAKER.sub(". ", summary)  # a tag is no name, and ends any name before it
    matches = list(WORD.finditer(text))
    spans: list[list[str]] = []
    joined = False
    for k, m in enumerate(matches):
        word = m.group()
        previous = matches[k - 1] if k else None
        gap = text[previous.end() if previous else 0:m.start()]
        after_title = previous is not None and previous.group().casefold() in TITLES
        opener = (previous is None or bool(SENTENCE_END.search(gap))) and not after_title
        following = None
        if k + 1 < len(matches) and text[m.end():matches[k + 1].start()].strip() == "":
            following = matches[k + 1].group()
        candidate = _capitalised(word) and (not opener or _names_at_opening(word, following))
        if candidate and joined and gap.strip() == "":
            spans[-1].append(word)
        elif candidate:
            spans.append([word])
        joined = candidate
    return spans


def invented_names(summary: str, dialogue: str) -> list[str]:
    """The names of ``summary`` with a word its dialogue does not contain, as written."""
    forms = _dialogue_forms(dialogue)
    return [" ".join(span) for span in name_spans(summary)
            if any(not (_forms(word) & forms) for word in span)]


# --- speakers, bigrams, loops ------------------------------------------------------------------

def speaker_errors(summary: str, dialogue: str) -> list[str]:
    """The ``#PersonN#`` of ``summary`` who have no turn in the dialogue, as written."""
    speakers = {int(n) for n in TURN.findall(dialogue)}
    return [m.group() for m in SPEAKER.finditer(summary) if int(m.group(1)) not in speakers]


def tokens(text: str) -> list[str]:
    return TOKEN.findall(SPEAKER.sub(lambda m: f"#person{int(m.group(1))}#", text).lower())


def novel_bigram_share(summary: str, dialogue: str) -> float:
    words = tokens(summary)
    bigrams = list(zip(words, words[1:]))
    if not bigrams:
        return 0.0
    known = _dialogue_bigrams(dialogue)
    return sum(b not in known for b in bigrams) / len(bigrams)


@functools.lru_cache(maxsize=DIALOGUES_KEPT)
def _dialogue_bigrams(dialogue: str) -> frozenset[tuple[str, str]]:
    source = tokens(dialogue)
    return frozenset(zip(source, source[1:]))


def repeats_trigram(summary: str) -> bool:
    words = tokens(summary)
    return any(n > 1 for n in Counter(zip(words, words[1:], words[2:])).values())


# --- one summary, many ---------------------------------------------------------------------------

def check(summary: str, dialogue: str) -> Findings:
    return Findings(tuple(invented_numbers(summary, dialogue)), tuple(invented_names(summary, dialogue)),
                    tuple(speaker_errors(summary, dialogue)), novel_bigram_share(summary, dialogue),
                    repeats_trigram(summary))


def per_summary(summaries: Sequence[str], dialogues: Sequence[str]) -> dict[str, list[float]]:
    """Each figure of ``FIGURES`` for each summary, in order."""
    values = [check(s, d).values() for s, d in zip(summaries, dialogues, strict=True)]
    return {figure: [v[figure] for v in values] for figure in FIGURES}
