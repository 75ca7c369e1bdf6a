"""The faithfulness figures on hand-made (summary, dialogue) cases with known answers, near misses
included: a number in words, a name in another case, a possessive, a time said three ways."""

from __future__ import annotations

import pytest

from stages import faithfulness

TWO = "#Person1#: Hello.\n#Person2#: Hi."  # two speakers, no number, no name

# (summary, dialogue, the invented numbers as written)
NUMBERS = [
    ("They meet at 7 pm.", "#Person1#: Come at seven o'clock.", []),
    ("#Person2# waits seven minutes.", "#Person1#: It takes 7 minutes.", []),
    ("Dinner is at 7:00 pm.", "#Person1#: Dinner is at 7 pm.", []),
    ("Dinner is at 7 pm.", "#Person1#: Dinner is at 7 am.", ["7 pm"]),
    ("The show starts at 7:30 pm.", "#Person1#: It starts at half past seven.", []),
    ("The rent is $3000.", "#Person1#: It's $3,000 a month.", []),
    ("It costs $30.00.", "#Person1#: That's $30.", []),
    ("The coffee maker costs $11.", "#Person2#: I can give you store credit of $138.99.", ["11"]),
    ("Twenty-five people come.", "#Person1#: We are 25.", []),
    ("It costs two hundred and fifty dollars.", "#Person1#: It's $250.", []),
    ("It costs a hundred dollars.", "#Person1#: That's 100 dollars.", []),
    ("They fly on November 3rd.", "#Person1#: On the third of November.", []),
    ("They fly on the third.", "#Person1#: On the 3rd.", []),
    ("They go on Sunday.", "#Person1#: Let's go on Saturday.", ["Sunday"]),
    ("#Person2# takes the direct one.", "#Person1#: The direct flight or the cheap flight?", []),
    ("They pay $1,500 each.", "#Person1#: It's $3,000. We can split it.", ["1,500"]),
    ("The train leaves at 19:00.", "#Person1#: It leaves at 7 pm.", []),
    ("Check-out is at 12 pm.", "#Person1#: Check-out is at noon.", []),
    ("A table for five.", "#Person1#: A table for six, please.", ["five"]),
    ("#Person2# gets room 1010.", "#Person1#: Your room is 1010.", []),
    ("#Person1# and #Person2# talk.", TWO, []),  # the tags' digits are no numbers
    ("Take it twice a day.", "#Person1#: Two times a day.", []),
    ("A 24-month contract.", "#Person1#: The contract is 24 months.", []),
    ("Ten percent off.", "#Person1#: You get 10% off.", []),
    ("#Person1# pays in May.", "#Person1#: You may pay later.", ["May"]),
    ("They meet at quarter to eight.", "#Person1#: See you at 7:45.", []),
    ("They meet at 7 pm.", "#Person1#: At seven in the evening.", []),
    ("They meet at 7:30.", "#Person1#: See you at seven.", ["7:30"]),
    ("The flight takes five hours; the return is on the 7th.", "#Person1#: About 5 hours. Back on the seventh.", []),
    ("It costs $35 for 24 months.", "#Person1#: $30 a month for 24 months.", ["35"]),
]

# (summary, dialogue, the invented names as written)
NAMES = [
    ("Ms. Johnson's room is on the tenth floor.", "#Person2#: I'm Helen Johnson.", []),
    ("#Person1# books a table at Harbor Grill.", "#Person1#: Is this the harbor grill?", []),
    ("#Person2# stays at the Mountain View Inn.", "#Person1#: Welcome to the Park View Hotel.", ["Mountain View Inn"]),
    ("#Person1# books a table at the Oak Room.", "#Person1#: Harbor Grill. A room for six?", ["Oak Room"]),
    ("Since #Person1# has no receipt, #Person2# gives credit.", "#Person1#: I lost the receipt.", []),
    ("Anna books a table.", "#Person1#: A table for two, please.", ["Anna"]),
    ("The Smiths arrive.", "#Person1#: Mr. Smith is here.", []),
    ("The room has free Wi-Fi.", "#Person1#: The wifi is free.", []),
    ("I think it's OK to watch TV.", "#Person1#: Fine.", []),
    ("Tom and Mary go out.", "#Person1#: Tom, shall we go?", ["Mary"]),
    ("#Person2#, John Cohen, reserves a table.", "#Person2#: My name is John Cohen.", []),
    ("They leave on Friday.", "#Person1#: We leave tomorrow.", []),  # a date, counted as a number
    ("They eat at Luigi's.", "#Person1#: Let's try Luigi's.", []),
    ("#Person1# meets Ms. O'Brien.", "#Person1#: Thank you, Ms. O'Brien.", []),
    ("#Person1# helps Mr. Li.", "#Person1#: Good morning, Mr. Lee.", ["Li"]),
    ("They rent a flat in Brighton.", "#Person1#: I found a flat in Brighton Park.", []),
    ("#Person1# works for BrightTel.", "#Person1#: Welcome to BRIGHTTEL.", []),
    ("Finally, they agree. Eventually #Person2# pays.", TWO, []),
    ("#Person1# calls Dr. Patel at City Hospital.", "#Person1#: Dr. Patel, please.", ["City Hospital"]),
    ("#Person1#: Let me check. Lie down here, please.", TWO, []),  # an imperative opens a sentence
    ("Take this to the desk. Really?", TWO, []),
    ("They'll come back. Golf is fun.", TWO, []),
    ("Anna's brother calls.", TWO, ["Anna's"]),
]

# (summary, dialogue, the speakers named who have no turn)
SPEAKERS = [
    ("#Person3# joins them.", TWO, ["#Person3#"]),
    ("#Person1# checks #Person2#'s passport.", TWO, []),
    ("#person1# greets #PERSON2#.", TWO, []),
    ("#Person3# agrees.", TWO + "\n#Person3#: Sure.", []),
    ("Person3 agrees.", TWO, ["Person3"]),
    ("#Person3# is mentioned.", "#Person1#: Ask #Person3#.\n#Person2#: OK.", ["#Person3#"]),
    ("#Person2# answers.", "#Person1#: Hi. #Person2#: Hello.", []),  # turns on one line
]

# (summary, dialogue, share of novel bigrams, repeats a 3-gram)
SHAPES = [
    ("I found an apartment.", "#Person1#: I found an apartment in Brighton.", 0.0, False),
    ("Blue cats sing loudly.", TWO, 1.0, False),
    ("The table is booked.", "#Person1#: The table is free.", 1 / 3, False),
    ("Hello", TWO, 0.0, False),
    ("He says he says he says.", TWO, 1.0, True),
    ("He says that she says so.", TWO, 1.0, False),
    ("#Person1# says hello.", "#Person1#: #Person1# says hello.", 0.0, False),
]


def test_there_are_at_least_forty_labelled_cases():
    assert len(NUMBERS) + len(NAMES) + len(SPEAKERS) + len(SHAPES) >= 40


@pytest.mark.parametrize(("summary", "dialogue", "expected"), NUMBERS, ids=[c[0] for c in NUMBERS])
def test_invented_numbers(summary, dialogue, expected):
    assert faithfulness.invented_numbers(summary, dialogue) == expected


@pytest.mark.parametrize(("summary", "dialogue", "expected"), NAMES, ids=[c[0] for c in NAMES])
def test_invented_names(summary, dialogue, expected):
    assert faithfulness.invented_names(summary, dialogue) == expected


@pytest.mark.parametrize(("summary", "dialogue", "expected"), SPEAKERS, ids=[c[0] for c in SPEAKERS])
def test_speaker_errors(summary, dialogue, expected):
    assert faithfulness.speaker_errors(summary, dialogue) == expected


@pytest.mark.parametrize(("summary", "dialogue", "novel", "repeats"), SHAPES, ids=[c[0] for c in SHAPES])
def test_novel_bigrams_and_repeated_trigrams(summary, dialogue, novel, repeats):
    assert faithfulness.novel_bigram_share(summary, dialogue) == pytest.approx(novel)
    assert faithfulness.repeats_trigram(summary) is repeats


def test_number_words_combine_only_as_numbers_are_said():
    runs = faithfulness._number_word_runs(
        "two hundred and fifty, twenty-first, a hundred, one of them, five twenty, twice, seven and eight")
    assert [int(v) for _, _, v in runs] == [250, 21, 100, 5, 20, 2, 7, 8]


def test_per_summary_values_are_the_shares_the_scores_average():
    dialogue = "#Person1#: A table for six at Harbor Grill, please.\n#Person2#: Sure."
    values = faithfulness.per_summary(
        ["#Person1# books a table for six at Harbor Grill.", "#Person3# books a table for five at the Oak Room."],
        [dialogue, dialogue])
    assert set(values) == set(faithfulness.FIGURES)
    assert values["invented_numbers"] == [0.0, 1.0]
    assert values["invented_names"] == [0.0, 1.0]
    assert values["speaker_errors"] == [0.0, 1.0]
    assert values["repeated_trigrams"] == [0.0, 0.0]
    assert 0 < values["novel_bigrams"][0] < values["novel_bigrams"][1] <= 1
    found = faithfulness.check("#Person3# books a table for five at the Oak Room.", dialogue)
    assert found.invented() == ["five", "Oak Room", "#Person3#"]
    with pytest.raises(ValueError):  # misaligned lists are refused, never cut short
        faithfulness.per_summary(["a"], [])
