"""Generate a synthetic data set in the exact shape of DialogSum.

Inputs: a seed and a number of dialogues (command-line flags, defaults below).
Output: a JSON Lines file (default ``data/sample/dialogsum_sample.jsonl``), one object per line
with the keys ``id``, ``dialogue``, ``summary`` and ``topic``, as DialogSum has them.

Why synthetic: the demo and the tests must run where no model or data hub can be reached (an
air-gapped cluster, CI), so they cannot download DialogSum. This file stands in for it. It is built
to exercise the pipeline the way the real data does: ``#Person1#:``-style turns with small talk
that the summaries leave out; third-person summaries that must copy names, times, places and
amounts from the dialogue; about 14 common topics and a few rare ones that a stratified split has
to pool; and, like DialogSum's test set, some dialogues with two or three reference summaries.

Determinism: the only source of randomness is ``random.Random(seed)``, and nothing iterates over
sets or depends on hash order, so the same seed gives a byte-identical file. The committed file
is the output of ``python -m demo.make_sample`` with the defaults; a test checks it.

Template syntax: a dialogue script is one turn per line, ``1: text`` for ``#Person1#`` (``2:``,
``3:`` likewise). Consecutive lines starting with ``?`` form an optional exchange that is kept or
dropped as a whole. In a script or a summary, ``{name}`` is a slot and ``{a|b|c}`` picks one
alternative at random; slot values may themselves contain slots.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from random import Random

DEFAULT_OUT = Path("data/sample/dialogsum_sample.jsonl")
DEFAULT_N_DIALOGUES = 1500
DEFAULT_SEED = 0

MULTI_REF_RATE = 0.15  # share of dialogues with 2 or 3 references, like DialogSum's test set
MIN_TURNS, MAX_TURNS = 4, 14
MAX_TRIES = 100  # redraws allowed when a dialogue comes out identical to an earlier one

# --- Shared slot pools. Names are deliberately of varied origins: the model has to copy them.
FEMALE_FIRST = (
    "Anna", "Maria", "Sophie", "Emily", "Laura", "Priya", "Aisha", "Mei", "Yuki", "Fatima",
    "Olga", "Elena", "Grace", "Hannah", "Chloe", "Isabel", "Nadia", "Amara", "Ingrid", "Lucia",
    "Sara", "Jessica", "Rachel", "Linda", "Kate", "Mary", "Helen", "Zoe", "Leila", "Ana",
    "Ngozi", "Camille", "Keiko", "Svetlana", "Rosa",
)
MALE_FIRST = (
    "James", "John", "David", "Michael", "Tom", "Peter", "Daniel", "Carlos", "Ahmed", "Raj",
    "Kenji", "Wei", "Ivan", "Luca", "Pierre", "Omar", "Kwame", "Sven", "Mateo", "Hiroshi",
    "Jack", "Sam", "Ben", "Mark", "Steve", "Paul", "Diego", "Arjun", "Felix", "Ali",
    "Chidi", "Lars", "Tariq", "Dmitri", "Jorge",
)
LAST_NAMES = (
    "Smith", "Johnson", "Brown", "Wilson", "Taylor", "Clark", "Lewis", "Walker", "Green", "Baker",
    "Garcia", "Martinez", "Lopez", "Rossi", "Bianchi", "Müller", "Schmidt", "Dubois", "Martin",
    "Kowalski", "Nowak", "Ivanov", "Petrov", "Chen", "Wang", "Li", "Zhang", "Kim", "Park", "Lee",
    "Tanaka", "Sato", "Suzuki", "Nguyen", "Tran", "Patel", "Sharma", "Singh", "Gupta", "Khan",
    "Hassan", "Haddad", "Mensah", "Okafor", "Adeyemi", "Andersson", "Hansen", "Novak", "O'Brien",
    "Murphy", "Kelly", "Silva", "Santos", "Costa", "Cohen", "Yilmaz", "Demir",
)
CITIES = (
    "Boston", "Chicago", "Seattle", "Denver", "London", "Manchester", "Edinburgh", "Paris",
    "Berlin", "Rome", "Madrid", "Toronto", "Vancouver", "Sydney", "Tokyo", "Shanghai", "Beijing",
    "New York", "San Francisco", "Dublin", "Amsterdam", "Vienna", "Lisbon", "Prague",
)
STREET_NAMES = (
    "Maple Street", "Oak Avenue", "King Street", "Park Road", "Elm Street", "High Street",
    "Queen Street", "Baker Street", "Church Road", "Mill Lane", "River Road", "Station Road",
    "Victoria Avenue", "Cedar Lane", "Hill Street", "Green Street", "Market Street", "Pine Avenue",
)
TOWNS = (
    "Millbrook", "Riverton", "Ashford", "Kingsbridge", "Oakdale", "Elmwood", "Fairview",
    "Stonehill", "Brookfield", "Westbury",
)
COUNTRIES = (
    "Canada", "Brazil", "India", "Poland", "Japan", "Kenya", "Mexico", "Germany", "Australia",
    "the Philippines", "Ireland", "Vietnam", "Nigeria", "Spain",
)
RESTAURANTS = (
    "Luigi's", "the Golden Dragon", "Blue Harbor", "Café Rosa", "the Olive Tree", "Sakura",
    "Bella Napoli", "the Green Table", "Spice Garden", "Le Petit Bistro", "Casa Miguel",
    "the Red Lantern", "Harbor Grill", "the Oak Room",
)
HOTELS = (
    "Grand Plaza Hotel", "Riverside Inn", "Park View Hotel", "Royal Garden Hotel",
    "Harbor Lights Hotel", "Sunset Lodge", "Kingsway Hotel", "Ocean Breeze Resort",
    "Mountain View Inn", "City Central Hotel",
)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)
COLORS = (
    "black", "navy blue", "gray", "red", "green", "white", "beige", "brown", "dark green",
    "light blue", "pink", "yellow",
)
ID_DOCS = ("passport", "driver's license", "ID card")
NUMBER_WORDS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen", "twenty",
)
ORDINAL_WORDS = (
    "zeroth", "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth",
    "ninth", "tenth", "eleventh", "twelfth",
)

Slots = dict[str, str]


@dataclass(frozen=True)
class Template:
    script: str  # dialogue, in the syntax described in the module docstring
    summaries: tuple[str, ...]  # paraphrases; multi-reference rows take distinct ones


@dataclass(frozen=True)
class Topic:
    name: str
    slots: Callable[[Random], Slots]
    templates: tuple[Template, ...]
    weight: float = 0.0  # share of the common-topic dialogues
    rare_count: int = 0  # > 0: a rare topic with this many dialogues in a full-size set


# --- Small formatting helpers.
def words(n: int) -> str:
    return NUMBER_WORDS[n]


def ordinal(n: int) -> str:
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def money(amount: float) -> str:
    if amount == int(amount):
        return f"${int(amount):,}"
    return f"${amount:,.2f}"


def clock(minutes: int) -> str:
    """Format minutes after midnight the way people say it: '7 pm', '10:30 am'."""
    hour, minute = divmod(minutes % (24 * 60), 60)
    suffix = "am" if hour < 12 else "pm"
    if (hour, minute) == (12, 0):
        return "noon"
    hour12 = hour % 12 or 12
    return f"{hour12} {suffix}" if minute == 0 else f"{hour12}:{minute:02d} {suffix}"


def pick_time(rng: Random, first_hour: int, last_hour: int, step: int = 30) -> int:
    """A time in minutes after midnight, on a `step`-minute grid."""
    return rng.randrange(first_hour * 60, last_hour * 60 + 1, step)


def article(noun: str) -> str:
    return ("an " if noun[0].lower() in "aeiou" else "a ") + noun


def cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def distinct(rng: Random, pool: tuple[str, ...], k: int) -> list[str]:
    return rng.sample(pool, k)


# --- Slots every dialogue gets; topics add their own on top.
def person(rng: Random, suffix: str = "") -> Slots:
    female = rng.random() < 0.5
    first = rng.choice(FEMALE_FIRST if female else MALE_FIRST)
    last = rng.choice(LAST_NAMES)
    return {
        f"first{suffix}": first,
        f"last{suffix}": last,
        f"full{suffix}": f"{first} {last}",
        f"title{suffix}": "Ms." if female else "Mr.",
        f"he_she{suffix}": "she" if female else "he",
        f"his_her{suffix}": "her" if female else "his",
        f"him_her{suffix}": "her" if female else "him",
        f"parent{suffix}": "Mom" if female else "Dad",
    }


def base_slots(rng: Random) -> Slots:
    slots = person(rng)
    while True:  # a second speaker with the same first or last name would read as a template bug
        second = person(rng, "2")
        if second["first2"] != slots["first"] and second["last2"] != slots["last"]:
            break
    slots.update(second)
    friend = person(rng, "_f")
    city, city2 = distinct(rng, CITIES, 2)
    day, day2 = distinct(rng, WEEKDAYS, 2)
    month = rng.randrange(12)
    date_day = rng.randint(1, 20)
    slots.update(
        He_She=cap(slots["he_she"]),
        His_Her=cap(slots["his_her"]),
        friend=friend["first_f"],
        f_he=friend["he_she_f"],
        f_him=friend["him_her_f"],
        f_his=friend["his_her_f"],
        day=day,
        day2=day2,
        date=f"{MONTHS[month]} {ordinal(date_day)}",
        date2=f"{MONTHS[month]} {ordinal(date_day + rng.randint(3, 9))}",
        time=clock(pick_time(rng, 9, 16)),
        phone=f"555-{rng.randint(0, 9999):04d}",
        city=city,
        city2=city2,
        street_name=rng.choice(STREET_NAMES),
        minutes=str(rng.choice((5, 10, 15, 20, 25))),
        restaurant=rng.choice(RESTAURANTS),
        hotel=rng.choice(HOTELS),
        country=rng.choice(COUNTRIES),
        id_doc=rng.choice(ID_DOCS),
        town=rng.choice(TOWNS),
        floor=ORDINAL_WORDS[rng.randint(2, 9)],
    )
    slots["street"] = f"{rng.randint(3, 250)} {slots['street_name']}"
    return slots


# ---------------------------------------------------------------------------------------------
# Topics. Each has a slot function (only the topic's own slots) and its templates.
# ---------------------------------------------------------------------------------------------

OCCASIONS = (  # (as the speaker says it, as a summary says it)
    ("my wife's birthday", "{his_her} wife's birthday"),
    ("my husband's birthday", "{his_her} husband's birthday"),
    ("our wedding anniversary", "{his_her} wedding anniversary"),
    ("my father's retirement", "{his_her} father's retirement"),
    ("my sister's graduation", "{his_her} sister's graduation"),
    ("my mother's sixtieth birthday", "{his_her} mother's sixtieth birthday"),
)


def restaurant_slots(rng: Random) -> Slots:
    time = pick_time(rng, 18, 21)
    shift = rng.choice((-90, -60, 60, 90))
    people = rng.randint(2, 8)
    extra = rng.randint(2, 4)
    occasion, occasion_s = rng.choice(OCCASIONS)
    return {
        "people": words(people),
        "new_people": words(people + extra),
        "extra": words(extra),
        "extra_cap": cap(words(extra)),
        "time": clock(time),
        "alt_time": clock(time + shift),
        "late_early": "late" if shift > 0 else "early",
        "occasion": occasion,
        "occasion_s": occasion_s,
    }


RESTAURANT = (
    Template(
        """
        1: {Hello|Hi|Good afternoon}, is this {restaurant}?
        2: Yes, it is. How can I help you?
        1: I'd like to {book|reserve} a table for {people} on {day} evening, please.
        2: {Let me check.|Just a moment, please.|One moment, let me have a look.} What time would you like?
        1: Around {time}, if possible.
        2: Yes, we have a table for {people} at {time}. May I have your name, please?
        1: It's {full}.
        2: And a phone number, please?
        1: Sure, it's {phone}.
        ?2: Would you prefer a table inside or on the terrace?
        ?1: Inside, please. It might get cold in the evening.
        2: {All right|Great|OK}, {title} {last}. Your table is booked for {time} on {day}. See you then.
        1: Thank you so much. Bye.
        """,
        (
            "#Person1# books a table for {people} at {restaurant} at {time} on {day}. #Person2# asks for {his_her} name and phone number and confirms the booking.",
            "{full} calls {restaurant} to reserve a table for {people} on {day} at {time}. #Person2# takes {his_her} phone number and confirms.",
            "#Person1#, {full}, reserves a table for {people} people at {restaurant} for {time} on {day}, and #Person2# confirms the reservation.",
        ),
    ),
    Template(
        """
        1: {Good evening|Good afternoon}, {restaurant}. {How may I help you?|What can I do for you?}
        2: Hi. Do you have a table for {people} this {day} at {time}?
        1: I'm afraid we're fully booked at {time}. We could do {alt_time}, though.
        2: Hmm, {alt_time} is a bit {late_early} for us. But OK, we'll take it.
        1: {Great.|Wonderful.} Is it for a special occasion?
        2: Yes, it's {occasion}.
        1: {Then I'll give you a quiet table by the window.|Then I'll ask the chef to prepare a small dessert.} What name should I put it under?
        2: {last}. {first} {last}.
        1: Thank you, {title} {last}. We'll see you on {day} at {alt_time}.
        ?2: Thanks. Bye.
        ?1: Goodbye.
        """,
        (
            "#Person2# wants a table for {people} at {restaurant} on {day} at {time}, but it's fully booked, so #Person1# offers {alt_time} instead. #Person2# accepts. The dinner is for {occasion_s}.",
            "{full} books a table for {people} at {restaurant} to celebrate {occasion_s}. There is no table at {time}, so they'll come at {alt_time} on {day}.",
            "#Person1# can't give #Person2# a table at {time} on {day} and suggests {alt_time}. {full} takes it, since it's for {occasion_s}.",
        ),
    ),
    Template(
        """
        1: {restaurant}, good evening. How can I help you?
        2: {Hello.|Hi.} I booked a table for {people} on {day} at {time}, under the name {last}.
        1: Let me check. Yes, here it is. {title} {last}, a table for {people} at {time}.
        2: Could we make it {new_people}? {extra_cap} more {friends|colleagues|relatives} are joining us.
        1: {Sure.|No problem.} {We have a larger table free at the same time.|We'll move you to a bigger table in the back.}
        2: {Great.|Perfect.} And do you have vegetarian dishes? One of my friends doesn't eat meat.
        1: Yes, we have several. {The mushroom risotto is very popular.|Our vegetable curry is very popular.}
        2: Thank you so much.
        1: You're welcome. See you on {day}.
        """,
        (
            "{title} {last} changes {his_her} booking at {restaurant} on {day} at {time} from {people} to {new_people} people. #Person1# confirms that there are vegetarian dishes.",
            "#Person2# calls {restaurant} to add {extra} people to a reservation for {day} at {time}, making it {new_people}, and asks about vegetarian food.",
            "#Person1# changes #Person2#'s table for {day} at {time} to one for {new_people} and tells #Person2# that the restaurant has several vegetarian dishes.",
        ),
    ),
)

CLINICS = (
    "Greenwood Clinic", "City Health Center", "Riverside Medical Center", "Parkview Clinic",
    "St. Mary's Clinic", "Hillside Family Practice",
)
# Kept apart from LAST_NAMES so a patient is never seen by a namesake doctor.
DOCTOR_NAMES = (
    "Roberts", "Fischer", "Moreau", "Yamamoto", "Okonkwo", "Ferreira", "Lindqvist", "Horvat",
    "Mehta", "Kaplan", "Reyes", "Byrne", "Abbott", "Carter", "Evans", "Jensen", "Osei", "Romano",
)
SYMPTOMS = (  # (symptom, what the doctor prescribes for it)
    ("a bad cough", "a cough syrup"),
    ("a sore throat", "some antibiotics"),
    ("headaches", "some painkillers"),
    ("pain in my lower back", "some painkillers and a cream"),
    ("a rash on my arm", "an ointment"),
    ("stomach aches", "some stomach tablets"),
    ("a fever", "some fever tablets"),
)
EXAMS = (  # (what the doctor says while examining, the patient's reply)
    ("Does this hurt?", "A little."),
    ("Take a deep breath, please.", "OK."),
    ("Open your mouth, please.", "Ah."),
    ("Lie down here, please.", "All right."),
)
BLOOD_PRESSURE = (  # (reading, doctor's comment, summary's verdict, advice)
    ("145 over 95", "a little high", "slightly high", "eat less salt and walk every day"),
    ("150 over 100", "too high", "too high", "cut down on salt and coffee"),
    ("120 over 80", "perfectly normal", "normal", "keep exercising and get more sleep"),
    ("118 over 76", "fine", "fine", "try to get more sleep"),
)


def doctor_slots(rng: Random) -> Slots:
    symptom, medicine = rng.choice(SYMPTOMS)
    bp, bp_comment, bp_summary, advice = rng.choice(BLOOD_PRESSURE)
    exam, exam_reply = rng.choice(EXAMS)
    return {
        "clinic": rng.choice(CLINICS),
        "doc": rng.choice(DOCTOR_NAMES),
        "symptom": symptom,
        "symptom_s": symptom.replace("my ", "the "),
        "medicine": medicine,
        "exam": exam,
        "exam_reply": exam_reply,
        "duration": rng.choice(("three days", "a week", "two weeks", "about ten days", "a month")),
        "dosage": rng.choice(("twice a day", "three times a day", "every morning and evening")),
        "treat_days": words(rng.choice((5, 7, 10))),
        "birth_date": f"{rng.choice(MONTHS)} {ordinal(rng.randint(1, 28))}, {rng.randint(1950, 2004)}",
        "bp": bp,
        "bp_comment": bp_comment,
        "bp_summary": bp_summary,
        "advice": advice,
        "exercise": rng.choice(("once", "twice", "three times")),
        "result_days": words(rng.randint(2, 5)),
    }


DOCTOR = (
    Template(
        """
        1: {Good morning|Good afternoon}, {clinic}. How can I help you?
        2: Hello. I'd like to make an appointment with Dr. {doc}, please.
        1: Is it urgent?
        2: Not really. I've had {symptom} for {duration}, and it's not getting better.
        1: Let me check. Dr. {doc} is free on {day} at {time}. Would that suit you?
        2: {day} at {time}? Yes, that's fine.
        1: Can I have your name and date of birth, please?
        2: {full}, {birth_date}.
        ?1: Is this your first visit to our clinic?
        ?2: No, I came here last {year|spring|winter} for a check-up.
        1: OK, {title} {last}. Please come ten minutes early. {See you on {day}.|Have a good day.}
        2: Thank you so much.
        """,
        (
            "#Person2# calls {clinic} to see Dr. {doc} because #Person2# has had {symptom_s} for {duration}. #Person1# books {him_her} in for {day} at {time}.",
            "{full} has had {symptom_s} for {duration} and makes an appointment with Dr. {doc} for {day} at {time}. #Person1# asks {him_her} to come ten minutes early.",
            "#Person1# books {full} an appointment with Dr. {doc} at {clinic} on {day} at {time}. #Person2# has had {symptom_s} for {duration}.",
        ),
    ),
    Template(
        """
        1: {Come in and have a seat.|Hello, please sit down.} What seems to be the problem?
        2: I've had {symptom} for {duration}, doctor.
        1: I see. Do you have any other symptoms?
        2: {I sleep badly.|I don't have much appetite.|Not really, just that.}
        1: Let me {have a look|check}. {exam}
        2: {exam_reply}
        1: It's nothing serious. I'll prescribe {medicine}, {dosage} for {treat_days} days.
        2: Should I stay home from work?
        1: {Yes, rest for a couple of days.|No, you can work, but don't overdo it.} If you don't feel better in {treat_days} days, come back and see me.
        2: Thank you, doctor.
        """,
        (
            "#Person2# has had {symptom_s} for {duration}. #Person1# examines #Person2#, says it's nothing serious, and prescribes {medicine} to take {dosage} for {treat_days} days.",
            "The doctor tells #Person2#, who has had {symptom_s} for {duration}, to take {medicine} {dosage}. #Person2# should come back if there's no improvement in {treat_days} days.",
            "#Person2# sees the doctor about {symptom_s}. It's not serious, and #Person1# prescribes {medicine}, {dosage} for {treat_days} days.",
        ),
    ),
    Template(
        """
        1: {Good morning|Hello}, {title} {last}. Come in. What brings you here today?
        2: Just my yearly check-up, Dr. {doc}.
        1: Good. How have you been feeling?
        2: Quite well, but I've been working long hours{ lately|}.
        1: Let me take your blood pressure. It's {bp}. That's {bp_comment}.
        2: {Oh.|I see.|Good to hear.}
        1: How often do you exercise?
        2: About {exercise} a week{, I'm afraid|}.
        1: I'd like you to {advice}. And let's do a blood test. The nurse will take some blood now.
        3: {Hello, {title} {last}.|Hi there.} Please roll up your sleeve. This won't hurt.
        2: OK. When will I get the results?
        1: In {result_days} days. We'll call you.
        """,
        (
            "{title} {last} has a yearly check-up with Dr. {doc}. {His_Her} blood pressure is {bp}, which is {bp_summary}, so the doctor tells {him_her} to {advice}. The results of a blood test will come in {result_days} days.",
            "Dr. {doc} gives #Person2# a check-up. #Person2#'s blood pressure is {bp_summary}, and #Person2# exercises {exercise} a week. #Person1# advises #Person2# to {advice} and orders a blood test.",
            "#Person2# goes for an annual check-up. #Person1# says the blood pressure is {bp_summary} and asks #Person2# to {advice}. #Person3# takes blood, and the results will be ready in {result_days} days.",
        ),
    ),
)

POSITIONS = (
    "sales manager", "accountant", "software engineer", "marketing assistant", "nurse",
    "English teacher", "graphic designer", "receptionist", "project manager", "engineer",
)
COMPANIES = (
    "Brightway Consulting", "Nordic Foods", "Apex Software", "Sunrise Media", "Greenleaf Insurance",
    "Harbor Logistics", "Bluewater Bank", "Maple Leaf Publishing", "Silverline Motors",
    "Everest Travel", "Orion Pharmaceuticals", "Lotus Design Studio",
)
MAJORS = (
    "economics", "computer science", "business administration", "English literature",
    "mechanical engineering", "graphic design", "psychology", "accounting",
)
UNIVERSITIES = (
    "the University of Toronto", "Boston University", "the University of Manchester",
    "Melbourne University", "Peking University", "the University of Lagos",
    "Trinity College Dublin", "Seoul National University", "the University of Edinburgh",
)


def job_slots(rng: Random) -> Slots:
    position = rng.choice(POSITIONS)
    company, prev_company = distinct(rng, COMPANIES, 2)
    years = rng.randint(2, 12)
    salary = rng.randrange(35, 96) * 1000
    raise_ = rng.randrange(4, 11) * 1000
    return {
        "position": position,
        "a_position": article(position),
        "company": company,
        "prev_company": prev_company,
        "years": words(years),
        "salary": money(salary),
        "salary_high": money(salary + raise_),
        "salary_mid": money(salary + raise_ // 2000 * 1000),
        "vacation": words(rng.choice((15, 20))),
        "hr_title": rng.choice(("HR manager", "head of recruitment", "department manager")),
        "dept": rng.choice(("marketing", "finance", "sales", "engineering", "customer service")),
        "major": rng.choice(MAJORS),
        "university": rng.choice(UNIVERSITIES),
        "grad_year": str(2023 - years - rng.randint(0, 2)),
        "travel": words(rng.choice((5, 7, 10))),
    }


JOB = (
    Template(
        """
        1: {Good morning|Good afternoon}. You must be {full}. Please {take a seat|sit down}.
        2: Thank you. {Nice to meet you.|Good to meet you.}
        1: I'm {full2}, the {hr_title} here at {company}. So, you're applying for the {position} position. Why do you want to work for us?
        2: {company} has a great reputation, and I'd like to {grow|develop my career} in a bigger company.
        1: Tell me about your experience.
        2: I've worked as {a_position} at {prev_company} for {years} years.
        1: Why do you want to leave?
        2: {There's no chance of promotion there.|The company is moving to {city2}, and I don't want to move.|I'm looking for new challenges.}
        1: What salary do you expect?
        2: About {salary} a year.
        1: {OK.|I see.} We'll {let you know|contact you} by {day}.
        2: Thank you for your time.
        """,
        (
            "{full} has a job interview with {full2} at {company} for the {position} position. {first} has worked at {prev_company} for {years} years and expects about {salary} a year. #Person1# will answer by {day}.",
            "#Person2# applies for the job of {position} at {company}. #Person1# asks about #Person2#'s {years} years of experience at {prev_company}, reasons for leaving, and salary expectations of {salary}.",
            "#Person1# interviews {full} for {a_position} job at {company}. {first} wants about {salary} a year and will hear back by {day}.",
        ),
    ),
    Template(
        """
        1: Hello, is that {full}? This is {full2} from {company}.
        2: Oh, hello, {title2} {last2}.
        1: I'm calling to tell you that we'd like to offer you the {position} position.
        2: That's {wonderful|great news}! Thank you so much.
        1: The starting salary is {salary} a year, with {vacation} days of paid vacation.
        2: {Is there any room to negotiate? I was hoping for {salary_high}.|Could you make it {salary_high}?} I have {years} years of experience.
        1: Let me {talk to my manager|check with our director}. I think we can offer {salary_mid}.
        2: That sounds fair. When do I start?
        1: On {date}. Please come to the {floor} floor at nine.
        2: I'll be there. Thank you.
        """,
        (
            "{full2} from {company} calls to offer {full} the {position} job at {salary} a year. {first} asks for {salary_high}, and they agree on {salary_mid}. {first} starts on {date}.",
            "#Person1# offers #Person2# a job as {a_position} at {company} with {vacation} days of vacation. #Person2# negotiates the salary up from {salary} to {salary_mid} and will start on {date}.",
            "#Person2#, {full}, gets the {position} job at {company}. After some negotiation, the salary is {salary_mid} a year, and the start date is {date}.",
        ),
    ),
    Template(
        """
        1: {Come in|Please come in}. You must be {full}. This is my colleague {full2} from {dept}.
        3: Nice to meet you.
        2: Nice to meet you too.
        1: Your CV says you studied {major} at {university}.
        2: Yes, I graduated in {grad_year}. Since then I've worked as {a_position} for {years} years.
        3: The job involves a lot of travel, {about {travel} days a month|mostly to {city} and {city2}}. Is that a problem?
        2: Not at all. I enjoy travelling.
        1: Do you have any questions for us?
        2: Yes. {Is there any training for new staff?|When would the job start?}
        1: {There's a two-week training course.|We hope to fill the position by {date}.} We'll let you know our decision {within a week|by {day}}.
        2: Thank you. {I look forward to hearing from you.|Have a nice day.}
        """,
        (
            "#Person1# and #Person3# interview {full}, who studied {major} at {university} and has worked as {a_position} for {years} years. #Person3# explains that the job involves travel, which {first} doesn't mind.",
            "{full} has a job interview with #Person1# and {full2}. {first} graduated from {university} in {grad_year} and is happy to travel for work.",
            "In a job interview, #Person2# talks about studying {major} at {university} and {years} years of work as {a_position}. #Person2# says travelling is not a problem.",
        ),
    ),
)

SHOPS = (
    "Fashion Corner", "Urban Style", "Bella Moda", "the Denim House", "Northwind Outlet",
    "Kensington Clothing", "Lily's Boutique", "Metro Wear",
)
CLOTHES = (
    "jacket", "sweater", "dress", "shirt", "coat", "skirt", "raincoat", "blouse", "suit", "scarf",
    "cardigan",
)
SHOES = ("running shoes", "boots", "sandals", "sneakers", "loafers", "high heels")
EVENTS = ("a wedding", "a job interview", "a friend's party", "the office party", "a concert")


def clothes_slots(rng: Random) -> Slots:
    color, color2 = distinct(rng, COLORS, 2)
    item, item2 = distinct(rng, CLOTHES, 2)
    price = rng.randrange(4, 25) * 10
    discount = rng.choice((10, 20, 25, 30, 50))
    shoe_size = rng.randint(36, 45)
    return {
        "shop": rng.choice(SHOPS),
        "color": color,
        "color2": color2,
        "item": item,
        "a_item2": article(item2),
        "size": rng.choice(("small", "medium", "large", "extra large")),
        "price": money(price),
        "discount": str(discount),
        "sale_price": money(price * (100 - discount) / 100),
        "price2": money(rng.randrange(15, price // 2 + 20, 5)),
        "event": rng.choice(EVENTS),
        "close_time": clock(pick_time(rng, 18, 21, 60)),
        "shoes": rng.choice(SHOES),
        "shoe_size": str(shoe_size),
        "shoe_size2": str(shoe_size + rng.choice((-2, -1, 1, 2))),
        "pay": rng.choice(("in cash", "by card", "with my phone")),
        "pay_s": rng.choice(("in cash", "by card")),
        "return_days": str(rng.choice((14, 30))),
    }


CLOTHES_TEMPLATES = (
    Template(
        """
        1: Welcome to {shop}. {Can I help you?|Are you looking for anything in particular?}
        2: Yes, I'm looking for a {color} {item}.
        1: What size do you {wear|need}?
        2: {size}, I think.
        1: Here you are. {The fitting room is over there.|You can try it on over there.}
        ?2: Thanks. {I'll be right back.|}
        ?1: Take your time.
        2: It fits well. How much is it?
        1: It's {price}. But it's {discount}% off this week, so it's {sale_price}.
        2: {Great.|That's a good deal.} I'll take it. Can I pay by credit card?
        1: Of course.
        """,
        (
            "#Person2# wants a {color} {item} in size {size}. It costs {price}, but with {discount}% off it's {sale_price}, so #Person2# buys it by credit card.",
            "#Person1# helps #Person2# find a {color} {item} at {shop}. #Person2# tries it on and buys it for {sale_price} instead of {price}.",
            "At {shop}, #Person2# tries on a {color} {item}, which is {discount}% off this week, and buys it for {sale_price}.",
        ),
    ),
    Template(
        """
        1: {first2}, what do you think of this {color} {item}?
        2: It's nice, but {isn't it a bit expensive|I'm not sure the color suits you}. How much is it?
        1: {price}.
        2: {That's too much.|Hmm, that's quite a lot.} There's a sale at {shop} across the street. Why don't we look there first?
        1: Good idea. I need something to wear to {event} on {day}.
        2: {Then let's hurry. The shops close at {close_time}.|We still have time. The shops close at {close_time}.}
        1: Look, this one is only {price2}.
        2: {And it goes well with your shoes.|The color is perfect for you.} You should buy it.
        1: You're right. I'll take it.
        """,
        (
            "#Person1# likes a {color} {item}, but #Person2#, {first2}, thinks {price} is too much and suggests the sale at {shop}. There #Person1# buys something for {price2} to wear to {event} on {day}.",
            "#Person1# and #Person2# go shopping for an outfit for {event} on {day}. They skip the {item} that costs {price} and find something for {price2} at {shop}.",
            "#Person1# needs clothes for {event}. #Person2# says the {color} {item} is too expensive, so they go to the sale at {shop}, where #Person1# buys one for only {price2}.",
        ),
    ),
    Template(
        """
        1: Excuse me, do you have these {shoes} in size {shoe_size}?
        2: Let me check. Sorry, in {color} we only have size {shoe_size2} left. But we have your size in {color2}.
        1: Can I try them on?
        2: Of course. Here you are.
        1: They're very comfortable. How much are they?
        2: {price}. {If you buy two pairs, the second pair is half price.|They're new this season.}
        1: I'll take the {color2} ones. Can I pay {pay_s}?
        2: {Yes, of course.|Sure.} Please keep the receipt. You can return them within {return_days} days.
        ?1: Thank you so much.
        ?2: You're welcome. {Have a nice day.|Enjoy your new shoes.}
        """,
        (
            "#Person1# asks for {shoes} in size {shoe_size}. They're not available in {color}, so #Person1# buys the {color2} pair for {price}. #Person2# says they can be returned within {return_days} days.",
            "#Person1# buys a pair of {color2} {shoes} in size {shoe_size} for {price}, paying {pay_s}, because the {color} ones are sold out in that size.",
            "#Person2# helps #Person1# find {shoes} in size {shoe_size}. #Person1# tries on the {color2} pair and buys them for {price}.",
        ),
    ),
)


def hotel_slots(rng: Random) -> Slots:
    floor = rng.randint(2, 12)
    rate = rng.randrange(90, 321, 5)
    return {
        "room_type": rng.choice(("single", "double", "twin", "family")),
        "nights": words(rng.randint(2, 7)),
        "floor": ORDINAL_WORDS[floor],
        "room": str(floor * 100 + rng.randint(1, 40)),
        "bf_start": clock(rng.choice((390, 420))),
        "bf_end": clock(rng.choice((600, 630))),
        "checkout": rng.choice(("11 am", "noon")),
        "checkin": rng.choice(("2 pm", "3 pm")),
        "rate": money(rate),
        "rate_low": money(rate - rng.randrange(20, 61, 5)),
    }


HOTEL = (
    Template(
        """
        1: {Good evening|Good afternoon}. Welcome to the {hotel}. {How can I help you?|Are you checking in?}
        2: Yes, I have a reservation under the name {full}.
        1: Let me check. Yes, a {room_type} room for {nights} nights. May I see your passport, please?
        2: Here you are.
        1: Thank you. Your room is {room}, on the {floor} floor. Breakfast is served from {bf_start} to {bf_end} in the restaurant.
        2: Is there Wi-Fi in the room?
        1: Yes, it's free. The password is on your key card holder.
        ?2: And what time is check-out?
        ?1: Check-out is at {checkout}.
        2: Thank you.
        1: {Enjoy your stay|Have a pleasant stay}, {title} {last}.
        """,
        (
            "{full} checks in at the {hotel} for {nights} nights. #Person1# gives {him_her} room {room} on the {floor} floor and explains that breakfast is from {bf_start} to {bf_end} and the Wi-Fi is free.",
            "#Person2# has a reservation for a {room_type} room at the {hotel}. #Person1# checks #Person2#'s passport and gives #Person2# room {room}. Breakfast is served from {bf_start} to {bf_end}.",
            "#Person1# checks {title} {last} into room {room} at the {hotel} for {nights} nights and tells {him_her} about breakfast and the free Wi-Fi.",
        ),
    ),
    Template(
        """
        1: {Hi|Good evening}. I don't have a reservation. Do you have a {room_type} room for {nights} nights?
        2: {Let me see.|Let me check.} Yes, we have one left. It's {rate} a night, breakfast included.
        1: That's a bit more than I expected. Do you have anything cheaper?
        2: We have a smaller room without a view for {rate_low}, but breakfast is not included.
        1: I'll take the cheaper one. Can I pay by card?
        2: Of course. Please fill in this form. {Your room is {room}.|Here's your key. Room {room}.}
        1: {Thanks.|Thank you.} Where's the elevator?
        2: Just around the corner, on your left.
        """,
        (
            "#Person1# has no reservation and asks for a {room_type} room for {nights} nights. The room with breakfast costs {rate} a night, so #Person1# takes a smaller room for {rate_low} without breakfast.",
            "#Person2# offers #Person1# a room at {rate} a night, but #Person1# chooses a cheaper one at {rate_low} and gets room {room}.",
            "#Person1# checks into a hotel without a reservation for {nights} nights. #Person1# thinks {rate} is too expensive and takes room {room} for {rate_low} a night.",
        ),
    ),
    Template(
        """
        1: Good morning. I'd like to check in. My name is {full}.
        2: Good morning, {title} {last}. I'm afraid your room isn't ready yet. Check-in is from {checkin}.
        1: Oh, my flight from {city} arrived early. Can I leave my luggage here?
        2: Of course. {We'll keep it behind the desk.|The porter will take care of it.} You can wait in the {lounge|restaurant|lobby}.
        1: Thanks. Is there a good place to eat nearby?
        2: {restaurant} on {street_name} is very good, just {minutes} minutes' walk from here.
        1: Great. I'll come back at {checkin}, then.
        2: We'll call you if the room is ready earlier. Could I have your mobile number?
        1: Sure, it's {phone}.
        """,
        (
            "{full} arrives early from {city}, but #Person2# says the room won't be ready until {checkin}. #Person2# keeps {his_her} luggage and recommends {restaurant} on {street_name}.",
            "#Person1# wants to check in early, but check-in is from {checkin}. #Person1# leaves the luggage at the hotel, gets a restaurant recommendation, and gives #Person2# a phone number.",
            "#Person1#'s room isn't ready because #Person1# arrived early from {city}. #Person2# stores the bags and suggests eating at {restaurant}, {minutes} minutes away.",
        ),
    ),
)

DESTINATIONS = (
    "the train station", "the post office", "the City Museum", "the Central Library",
    "St. Mary's Hospital", "City Hall", "the shopping mall", "the bus station",
    "the Science Museum", "the art gallery", "the stadium", "the Grand Theater",
)
LANDMARKS = (
    "the bank", "the church", "the traffic lights", "the supermarket", "the gas station",
    "the big bookstore", "the pharmacy", "the fountain", "the police station",
)
BUS_STOPS = (
    "Market Square", "Park Street", "Central Station", "Green Lane", "University Road",
    "Riverside", "Town Hall", "Victoria Park",
)


def directions_slots(rng: Random) -> Slots:
    dest = rng.choice(DESTINATIONS)
    landmark, landmark2 = distinct(rng, LANDMARKS, 2)
    return {
        "dest": dest,
        "dest_cap": cap(dest),
        "landmark": landmark,
        "landmark2": landmark2,
        "dir": rng.choice(("left", "right")),
        "side": rng.choice(("left", "right")),
        "rel": rng.choice(("next to", "opposite", "across from")),
        "blocks": words(rng.randint(2, 5)),
        "bus": str(rng.randint(3, 99)),
        "interval": str(rng.choice((10, 15, 20, 30))),
        "stop": rng.choice(BUS_STOPS),
        "stops": words(rng.randint(2, 8)),
        "fare": money(rng.choice((1.5, 2, 2.25, 2.5, 2.75, 3))),
        "km": str(rng.randrange(10, 61, 5)),
        "km2": str(rng.randint(2, 8)),
        "rush": rng.choice(("5 pm", "6 pm", "8 am")),
    }


DIRECTIONS = (
    Template(
        """
        1: Excuse me. {Sorry to bother you, but |}could you tell me how to get to {dest}?
        2: Sure. Go straight along {street_name} for {blocks} blocks, then turn {dir} at {landmark}.
        1: Turn {dir} at {landmark}. And then?
        2: {dest_cap} is on your {side}, {rel} {landmark2}. You can't miss it.
        1: How long does it take to walk there?
        2: About {minutes} minutes.
        1: Thank you so much.
        2: You're welcome.
        """,
        (
            "#Person1# asks the way to {dest}. #Person2# tells #Person1# to go along {street_name} for {blocks} blocks and turn {dir} at {landmark}. It's about a {minutes}-minute walk.",
            "#Person2# gives #Person1# directions to {dest}: {blocks} blocks down {street_name}, {dir} at {landmark}, and it's {rel} {landmark2}.",
            "#Person1# is looking for {dest}. According to #Person2#, it's {minutes} minutes' walk: straight along {street_name}, then {dir} at {landmark}.",
        ),
    ),
    Template(
        """
        1: Excuse me, {is this the right bus for|does this bus go to} {dest}?
        2: No, {I'm afraid not|sorry}. You need the number {bus}. The stop is {across the street|around the corner}.
        1: How often does it come?
        2: Every {interval} minutes, I think.
        1: And where should I get off?
        2: Get off at {stop}. It's {stops} stops from here. {dest_cap} is right in front of the stop.
        1: How much is the fare?
        2: {fare}. You can pay the driver{, but you need exact change|}.
        1: Thank you so much.
        ?2: No problem. {Enjoy your day.|Good luck.}
        """,
        (
            "#Person1# wants to go to {dest}. #Person2# says #Person1# needs bus number {bus}, which comes every {interval} minutes, and should get off at {stop}, {stops} stops away. The fare is {fare}.",
            "#Person2# tells #Person1# to take the number {bus} bus to {stop} to reach {dest}. It comes every {interval} minutes and costs {fare}.",
            "#Person1# is on the wrong bus for {dest}. #Person2# explains that #Person1# needs the number {bus}, should get off at {stop}, and will pay {fare}.",
        ),
    ),
    Template(
        """
        1: Excuse me, we're trying to get to {town}. Are we on the right road?
        2: {Not quite.|You're close.} Take the next exit and follow the signs for {town}. It's about {km} kilometers.
        1: Is there a gas station on the way? We're almost out of gas.
        2: Yes, there's one just after the bridge, about {km2} kilometers from here.
        1: And is the road to {town} busy at this time?
        2: {Usually not.|It can be busy around {rush} because of the traffic from {city}.}
        1: Thanks {a lot|very much} for your help.
        2: No problem. Drive safely.
        """,
        (
            "#Person1# asks #Person2# the way to {town}. #Person2# says to take the next exit and follow the signs for about {km} kilometers, and there's a gas station {km2} kilometers away.",
            "#Person1# is driving to {town} and needs gas. #Person2# explains the route, {km} kilometers from the next exit, and points to a gas station after the bridge.",
            "#Person2# gives #Person1# directions to {town}, which is about {km} kilometers away, and tells #Person1# where to find a gas station.",
        ),
    ),
)

AREAS = (
    "Greenwich", "Riverside", "the Old Town", "Hillcrest", "Westfield", "Chinatown", "Midtown",
    "Lakeview", "Brighton Park", "Northgate",
)
PET_RULES = (  # (landlord's answer, summary)
    ("Small pets are fine.", "small pets are allowed"),
    ("I'm sorry, no pets are allowed in the building.", "pets are not allowed"),
)
DECISIONS = (  # (tenant's answer, summary)
    ("I'll take it. Where do I sign?", "decides to take it"),
    ("Can I think about it until {day}?", "wants to think about it until {day}"),
)


def apartment_slots(rng: Random) -> Slots:
    rent = rng.randrange(16, 65) * 50
    bedrooms = rng.randint(1, 3)
    pets, pets_s = rng.choice(PET_RULES)
    decision, decision_s = rng.choice(DECISIONS)
    area, area2 = distinct(rng, AREAS, 2)
    return {
        "bedrooms": words(bedrooms),
        "bedrooms_cap": cap(words(bedrooms)),
        "rent": money(rent),
        "rent_half": money(rent / 2),
        "deposit": money(rent * rng.randint(1, 2)),
        "pet": rng.choice(("cat", "small dog", "rabbit")),
        "pets": pets,
        "pets_s": pets_s,
        "decision": decision,
        "decision_s": decision_s,
        "lease": str(rng.choice((6, 12, 24))),
        "area": area,
        "area2": area2,
        "place": rng.choice(("the park", "a big supermarket", "the university", "the subway station")),
        "time": clock(pick_time(rng, 10, 19)),
    }


APARTMENT = (
    Template(
        """
        1: Hello, I'm calling about the {bedrooms}-bedroom apartment at {street}. Is it still available?
        2: Yes, it is.
        1: How much is the rent?
        2: It's {rent} a month, {plus utilities|including water and heating}.
        1: Is there a deposit?
        2: Yes, {deposit}, which you get back when you move out.
        1: Are pets allowed? I have a {pet}.
        2: {pets}
        1: Could I come and see the apartment?
        2: Sure. How about {day} at {time}?
        1: {day} at {time} is fine. My name is {full}.
        2: OK, {title} {last}. See you then.
        """,
        (
            "{full} calls about the {bedrooms}-bedroom apartment at {street}. The rent is {rent} a month with a deposit of {deposit}, and {pets_s}. {first} will see it on {day} at {time}.",
            "#Person1# asks #Person2# about an apartment for rent at {street}: {rent} a month, a {deposit} deposit, and {pets_s}. They arrange a viewing on {day} at {time}.",
            "#Person1# is interested in renting an apartment for {rent} a month. #Person2# tells #Person1# about the deposit of {deposit} and the pets rule and agrees to show it on {day} at {time}.",
        ),
    ),
    Template(
        """
        1: {Here we are.|This is it.} This is the living room. {It gets a lot of sun in the afternoon.|It's bigger than it looks in the photos.}
        2: It's nice. How many bedrooms?
        1: {bedrooms_cap}, and the kitchen was renovated {last year|two years ago}.
        2: Is it noisy? {street_name} looks busy.
        1: The bedrooms face the back, so it's quite {quiet|calm}.
        2: How far is it to the subway station?
        1: About {minutes} minutes on foot.
        2: And the rent is {rent}?
        1: Yes, and the lease is for {lease} months. You could move in on {date}.
        2: I like it. {decision}
        """,
        (
            "#Person1# shows #Person2# a {bedrooms}-bedroom apartment on {street_name}. It's quiet, {minutes} minutes from the subway, and costs {rent} a month on a {lease}-month lease. #Person2# {decision_s}.",
            "#Person2# views an apartment with #Person1#. The rent is {rent}, and #Person2# can move in on {date}. #Person2# {decision_s}.",
            "#Person1# shows #Person2# around an apartment that is available from {date} for {rent} a month. #Person2# likes it and {decision_s}.",
        ),
    ),
    Template(
        """
        1: {first2}, I found an apartment in {area} for us. It's {rent} a month.
        2: That's {rent_half} each. Not bad. How big is it?
        1: Two bedrooms and a small balcony, and it's close to {place}.
        2: What about the commute? I work in {area2}.
        1: It's {minutes} minutes by bus.
        2: Sounds good. When can we see it?
        1: The landlord said we can see it on {day} at {time}.
        2: {OK.|Great.} Do we need to pay a deposit?
        1: Yes, {deposit}. We can split it.
        2: {Fine.|Fair enough.} Let's go together.
        """,
        (
            "#Person1# found a two-bedroom apartment in {area} for {rent} a month, {rent_half} each for #Person1# and {first2}. It's {minutes} minutes by bus from {area2}, and they'll see it on {day} at {time}.",
            "#Person1# and #Person2# plan to share an apartment in {area}. They'll split the rent of {rent} and the deposit of {deposit} and visit it on {day}.",
            "#Person1# tells {first2} about an apartment in {area} near {place}. {first2} agrees to see it on {day} at {time} and to share the {deposit} deposit.",
        ),
    ),
)

AGENCIES = ("Sky Travel", "Globetrotter Travel", "Sunway Tours", "Compass Travel", "Blue Planet Travel")
AIRLINE_CODES = ("BA", "LH", "AF", "UA", "QF", "JL", "EK", "AC")


def tickets_slots(rng: Random) -> Slots:
    dep = pick_time(rng, 6, 11)
    price = rng.randrange(25, 181, 5)
    flight_price = rng.randrange(180, 1201, 10)
    return {
        "trip": rng.choice(("one-way", "round-trip")),
        "dep_time": clock(dep),
        "arr_time": clock(dep + rng.randrange(90, 301, 15)),
        "dep_time2": clock(pick_time(rng, 12, 16)),
        "ret_time": clock(pick_time(rng, 17, 21)),
        "meet_time": clock(pick_time(rng, 9, 15, 60)),
        "price": money(price),
        "price_first": money(price * 3 // 2 // 5 * 5),
        "flight_price": money(flight_price),
        "flight_low": money(flight_price - rng.randrange(40, 151, 10)),
        "hours": words(rng.randint(2, 11)),
        "platform": str(rng.randint(1, 12)),
        "seat": f"{rng.randint(3, 40)}{rng.choice('ACDF')}",
        "agency": rng.choice(AGENCIES),
        "flight": f"{rng.choice(AIRLINE_CODES)} {rng.randint(100, 999)}",
        "door": str(rng.randint(1, 9)),
    }


TICKETS = (
    Template(
        """
        1: {Good morning.|Hi.} I'd like a {trip} ticket to {city}, please.
        2: When would you like to travel?
        1: {day}, as early as possible.
        2: There's a train at {dep_time}. It arrives in {city} at {arr_time}.
        1: {That's fine.|Perfect.} How much is it?
        2: {price} in second class, or {price_first} in first class.
        1: Second class, please. {Can I have a window seat?|Is there a dining car?}
        2: {Sure.|Yes, there is.} Here's your ticket. The train leaves from platform {platform}.
        1: Thank you so much.
        """,
        (
            "#Person1# buys a {trip} second-class ticket to {city} for {price}. The train leaves at {dep_time} on {day} from platform {platform} and arrives at {arr_time}.",
            "#Person2# sells #Person1# a {trip} ticket to {city} for the {dep_time} train on {day}. #Person1# chooses second class for {price} instead of first class for {price_first}.",
            "#Person1# wants to go to {city} on {day}. #Person2# finds a train at {dep_time} that arrives at {arr_time}, and #Person1# pays {price} for a second-class ticket.",
        ),
    ),
    Template(
        """
        1: {agency}, good morning. How can I help you?
        2: Hi. I need a flight to {city} on {date}{ for a business trip|}.
        1: {Let me check.|One moment.} There's a direct flight at {dep_time} for {flight_price}, or one with a stop in {city2} at {dep_time2} for {flight_low}.
        2: I'll take the direct one. How long is the flight?
        1: About {hours} hours. Would you like a return flight?
        2: Yes, on {date2}, in the evening if possible.
        1: There's one at {ret_time}. {Economy class?|Window or aisle?}
        2: {Economy is fine.|Aisle, please.} The passenger's name is {full}.
        1: Thank you, {title} {last}. I'll email you the tickets.
        """,
        (
            "{full} books a direct flight to {city} on {date} at {dep_time} for {flight_price} through {agency}, returning on {date2} at {ret_time}.",
            "#Person2# asks #Person1# for a flight to {city} on {date}. #Person2# chooses the direct flight at {dep_time} instead of the cheaper one via {city2} and returns on {date2}.",
            "#Person1# helps {title} {last} book flights to {city}. The direct flight leaves at {dep_time} on {date} and takes about {hours} hours; the return is on {date2} at {ret_time}.",
        ),
    ),
    Template(
        """
        1: Excuse me, my flight to {city}, {flight}, has been cancelled. What should I do?
        2: I'm very sorry. {Let me check.|Just a moment.} The next available flight is tomorrow at {dep_time}.
        1: Tomorrow? I have a meeting in {city} at {meet_time} tomorrow.
        2: I'm afraid there's nothing earlier. {But we'll pay for your hotel tonight.|We'll give you a hotel voucher and a meal voucher.}
        1: Well, I guess I have no choice. Is there a window seat?
        2: Yes, seat {seat}. Here's your voucher for the {hotel}. The shuttle bus leaves from door {door}.
        1: Thank you.
        ?2: You're welcome. {Sorry again for the trouble.|Have a good evening.}
        """,
        (
            "#Person1#'s flight {flight} to {city} is cancelled. #Person2# books #Person1# on the next flight at {dep_time} tomorrow, seat {seat}, and gives #Person1# a voucher for the {hotel}.",
            "Because flight {flight} was cancelled, #Person1# has to fly to {city} tomorrow at {dep_time}, although #Person1# has a meeting there at {meet_time}. The airline pays for a night at the {hotel}.",
            "#Person2# tells #Person1# that the earliest flight to {city} is tomorrow at {dep_time}. #Person1# accepts, gets seat {seat}, and will stay at the {hotel} for free.",
        ),
    ),
)

BANKS = (
    "First National Bank", "City Savings Bank", "Union Bank", "Northern Trust Bank",
    "Pacific Bank", "Heritage Bank",
)
LOAN_PURPOSES = (  # (as said, as summarized)
    ("I want to buy a car.", "to buy a car"),
    ("We're renovating our kitchen.", "to renovate a kitchen"),
    ("I'm opening a small bakery.", "to open a small bakery"),
    ("I need to pay for my master's degree.", "to pay for a master's degree"),
    ("I'd like to buy new equipment for my shop.", "to buy equipment for a shop"),
)


def monthly_payment(principal: int, annual_rate: float, years: int) -> int:
    """Standard annuity formula, so the quoted payment is consistent with the loan terms."""
    i = annual_rate / 100 / 12
    n = years * 12
    return round(principal * i / (1 - (1 + i) ** -n))


def bank_slots(rng: Random) -> Slots:
    loan = rng.randrange(5, 61) * 1000
    years = rng.randint(2, 10)
    rate = rng.randrange(35, 100) / 10
    purpose, purpose_s = rng.choice(LOAN_PURPOSES)
    return {
        "bank": rng.choice(BANKS),
        "acct": rng.choice(("checking", "savings")),
        "min_dep": money(rng.choice((50, 100))),
        "deposit": money(rng.randrange(200, 5001, 50)),
        "fee": money(rng.choice((5, 8, 10, 12))),
        "min_bal": money(rng.choice((1000, 1500, 2500))),
        "card_days": words(rng.choice((5, 7, 10))),
        "loan": money(loan),
        "years": words(years),
        "rate": f"{rate:.1f}",
        "monthly": money(monthly_payment(loan, rate, years)),
        "purpose": purpose,
        "purpose_s": purpose_s,
        "decision_days": words(rng.choice((3, 5, 7))),
        "amount": money(rng.randrange(200, 3001, 50)),
        "tfee": money(rng.choice((15, 20, 25, 30))),
        "transfer_days": rng.choice(("one to two", "two to three", "three to five")),
        "relative": rng.choice(("sister", "brother", "son", "daughter", "mother", "father", "cousin")),
    }


BANK = (
    Template(
        """
        1: {Good morning.|Hello.} Welcome to {bank}. How can I help you?
        2: I'd like to open a {acct} account.
        1: Certainly. Do you have some ID with you?
        2: Yes, here's my {id_doc}.
        1: Thank you, {title} {last}. And proof of address? {A utility bill is fine.|A recent bill or bank statement will do.}
        2: {Here's my electricity bill.|I have my lease agreement here.}
        1: Good. The minimum deposit is {min_dep}. How much would you like to deposit today?
        2: {deposit}.
        1: There's a monthly fee of {fee}, but it's free if you keep at least {min_bal} in the account.
        2: {I see.|That's fine.} When will I get my card?
        1: In {card_days} working days, by mail. Please sign here.
        """,
        (
            "{title} {last} opens a {acct} account at {bank} with {his_her} {id_doc} and a proof of address, depositing {deposit}. The monthly fee is {fee} unless the balance stays above {min_bal}.",
            "#Person2# opens a {acct} account at {bank}. #Person1# explains the monthly fee of {fee} and says the card will come by mail in {card_days} working days.",
            "#Person1# helps #Person2# open a {acct} account. #Person2# deposits {deposit} and learns that the {fee} fee is waived with at least {min_bal} in the account.",
        ),
    ),
    Template(
        """
        1: {Good afternoon.|Hello.} I'd like to ask about a loan.
        2: Of course. {Please have a seat.|Take a seat, please.} What is the loan for?
        1: {purpose}
        2: How much do you need?
        1: About {loan}.
        2: And over how many years would you like to pay it back?
        1: {years} years{, if possible|}.
        2: Our interest rate for that is {rate}%. Your monthly payment would be about {monthly}.
        1: {That's OK.|That's a bit high, but OK.} What documents do I need?
        2: Your ID, your last three pay slips and a bank statement. You'll have an answer within {decision_days} days.
        1: I'll bring them {tomorrow|on {day}}. Thank you.
        """,
        (
            "#Person1# wants to borrow {loan} {purpose_s} over {years} years. #Person2# says the interest rate is {rate}% and the monthly payment would be about {monthly}, and lists the documents #Person1# needs.",
            "#Person1# asks #Person2# about a {loan} loan {purpose_s}. At {rate}% over {years} years, #Person1# would pay about {monthly} a month.",
            "#Person2# explains the loan conditions to #Person1#, who needs {loan} {purpose_s}: {rate}% interest, about {monthly} a month, and an answer within {decision_days} days.",
        ),
    ),
    Template(
        """
        1: Hi. I'd like to transfer {amount} to my {relative} in {country}.
        2: Sure. Do you have the account number and the bank's SWIFT code?
        1: Yes, {it's all on this paper|I wrote them down here}.
        2: Thank you. The fee for international transfers is {tfee}.
        1: How long will it take?
        2: {transfer_days} working days. Which account should I take it from?
        1: {My checking account.|The savings account, please.}
        2: Please sign here. Here's your receipt.
        1: Thank you so much.
        """,
        (
            "#Person1# transfers {amount} to #Person1#'s {relative} in {country}. #Person2# says the fee is {tfee} and the money will arrive in {transfer_days} working days.",
            "#Person1# sends {amount} abroad to a {relative} in {country}. The transfer costs {tfee} and takes {transfer_days} working days.",
            "#Person2# helps #Person1# make an international transfer of {amount} to {country}, explaining the {tfee} fee and that it takes {transfer_days} working days.",
        ),
    ),
)

PRODUCTS = (  # (product, what is wrong with it, price range in dollars)
    ("coffee maker", "leaks water all over the counter", (30, 150)),
    ("hair dryer", "smells like it's burning", (20, 80)),
    ("toaster", "doesn't turn on", (20, 70)),
    ("kettle", "switches itself off before the water boils", (20, 60)),
    ("printer", "jams every time I print", (60, 250)),
    ("vacuum cleaner", "makes a terrible noise", (80, 400)),
    ("laptop", "keeps shutting down", (400, 1500)),
    ("blender", "stopped working after two days", (30, 120)),
    ("pair of headphones", "only works on one side", (30, 300)),
)
RETURN_OUTCOMES = (  # (customer asks, clerk answers, summary)
    (
        "I'd like a refund, please.",
        "No problem. The {price} will go back to your card in {refund_days} working days.",
        "gets a refund of {price}",
    ),
    (
        "I'd rather exchange it for a new one.",
        "Of course. Here's a new one. Let me test it for you first.",
        "exchanges it for a new one",
    ),
    (
        "Actually, could you just repair it? I like this model.",
        "It's still under warranty, so the repair is free. It will take about {repair_days} days.",
        "leaves it for a free repair that takes about {repair_days} days",
    ),
)
ONLINE_SHOPS = ("ShopNow", "QuickCart", "HomeGoods Online", "Mercado Direct", "Clickmart")
SMALL_GOODS = ("backpack", "umbrella", "suitcase", "phone case", "lamp", "water bottle", "yoga mat")


def product_return_slots(rng: Random) -> Slots:
    product, problem, (low, high) = rng.choice(PRODUCTS)
    ask, reply, outcome_s = rng.choice(RETURN_OUTCOMES)
    color, color2 = distinct(rng, COLORS, 2)
    return {
        "product": product,
        "problem": problem,
        "problem_s": problem.replace("I print", "#Person1# prints"),
        "ago": rng.choice(("two days", "a week", "ten days", "three weeks")),
        "price": money(rng.randint(low, high) - 0.01 * rng.randint(0, 1)),
        "refund_days": rng.choice(("three to five", "five to seven")),
        "repair_days": words(rng.choice((5, 7, 10, 14))),
        "outcome_ask": ask,
        "outcome_reply": reply,
        "outcome_s": outcome_s,
        "valid": words(rng.choice((3, 6, 12))),
        "online_shop": rng.choice(ONLINE_SHOPS),
        "goods": rng.choice(SMALL_GOODS),
        "color": color,
        "color2": color2,
        "order_no": str(rng.randint(10000, 9999999)),
        "discount": str(rng.choice((10, 15, 20))),
    }


PRODUCT_RETURN = (
    Template(
        """
        1: {Hello.|Excuse me.} I bought this {product} here {ago} ago, and it {problem}.
        2: I'm sorry to hear that. Do you have the receipt?
        1: Yes, here it is.
        2: {Thank you.|OK.} Would you like a refund or an exchange?
        1: {outcome_ask}
        2: {outcome_reply}
        1: Thank you so much.
        2: You're welcome. {Sorry for the trouble.|Have a nice day.}
        """,
        (
            "#Person1# bought a {product} {ago} ago, but it {problem_s}. #Person1# shows the receipt and {outcome_s}.",
            "#Person1# returns a faulty {product} that {problem_s}. #Person2# checks the receipt, and #Person1# {outcome_s}.",
            "Because the {product} #Person1# bought {ago} ago {problem_s}, #Person1# goes back to the shop and {outcome_s}.",
        ),
    ),
    Template(
        """
        1: {Hi.|Good morning.} I'd like to return this {product}. It {problem}.
        2: When did you buy it?
        1: About {ago} ago{, as a gift for my {mother|brother|friend}|}.
        2: Do you have the receipt?
        1: No, I'm afraid I lost it.
        2: {I'm sorry, but we can't give a refund without a receipt.|Without a receipt I can't give you a refund.} But I can give you store credit of {price}.
        1: Store credit? {Hmm.|Can't I just get my money back?}
        2: I'm sorry. That's our policy.
        1: OK, I'll take the store credit.
        2: Here you are. It's valid for {valid} months.
        """,
        (
            "#Person1# wants to return a {product} that {problem_s}, but has no receipt. #Person2# can't give a refund and offers store credit of {price}, valid for {valid} months, which #Person1# accepts.",
            "#Person1# lost the receipt for a {product} bought {ago} ago. Instead of a refund, #Person1# gets {price} in store credit.",
            "Since #Person1# has no receipt for the faulty {product}, #Person2# offers store credit instead of a refund. #Person1# takes the {price} credit, which is valid for {valid} months.",
        ),
    ),
    Template(
        """
        1: {online_shop} customer service, this is {first2}. How can I help you?
        2: Hi. I ordered a {color} {goods} last week, but you sent me a {color2} one.
        1: I'm sorry about that. Can I have your order number?
        2: It's {order_no}.
        1: Thank you. Yes, I see the mistake. We'll send you the right one by {day}.
        2: And what should I do with the {color2} one?
        1: {We'll send a courier to pick it up.|Please send it back with the free return label we'll email you.}
        2: OK. {Thanks for your help.|Thank you so much.}
        1: You're welcome. {And we'll give you {discount}% off your next order.|Sorry again for the trouble.}
        """,
        (
            "#Person2# ordered a {color} {goods} from {online_shop} but received a {color2} one. #Person1#, {first2}, promises to send the right one by {day}.",
            "#Person2# calls {online_shop} because a {goods} in the wrong color arrived. #Person1# checks order {order_no} and will send a {color} one by {day}.",
            "{online_shop} sent #Person2# a {color2} {goods} instead of a {color} one. #Person1# apologizes and arranges a replacement by {day}.",
        ),
    ),
)

PARTY_VENUES = (  # (as said, as summarized)
    ("my apartment", "#Person1#'s apartment"),
    ("the Blue Moon Bar", "the Blue Moon Bar"),
    ("the back room of {restaurant}", "the back room of {restaurant}"),
    ("the park near the lake", "the park near the lake"),
    ("the rooftop café on {street_name}", "the rooftop café on {street_name}"),
)
KIDS_VENUES = ("Fun Park", "Jumping Jack's Play Center", "Splash City Pool", "Little Explorers Club", "Happy Days Bowling")
PARTY_PACKAGES = (
    "pizza, juice and two hours in the play area",
    "games, a magician and snacks",
    "a swimming lesson and lunch",
    "bowling, balloons and hot dogs",
)
BAKERIES = ("Sweet Corner Bakery", "Rosa's Bakery", "the Cake Shop", "Golden Crust Bakery", "Sugar & Spice")


def birthday_slots(rng: Random) -> Slots:
    venue, venue_s = rng.choice(PARTY_VENUES)
    start = pick_time(rng, 12, 15, 60)
    return {
        "nth": rng.choice(("eighteenth", "twenty-first", "twenty-fifth", "thirtieth", "fortieth", "fiftieth")),
        "venue": venue,
        "venue_s": venue_s,
        "guests": rng.choice(("fifteen", "twenty", "twenty-five", "thirty")),
        "cake": rng.choice(("chocolate", "lemon", "carrot", "strawberry", "cheese", "coconut")),
        "gift": rng.choice(("a nice watch", "concert tickets", "a new backpack", "a cooking class", "a Bluetooth speaker")),
        "share": money(rng.choice((10, 15, 20, 25))),
        "time": clock(pick_time(rng, 17, 20)),
        "kids_venue": rng.choice(KIDS_VENUES),
        "child": rng.choice(("son", "daughter")),
        "kid_age": words(rng.randint(5, 12)),
        "start": clock(start),
        "end": clock(start + 120),
        "kids": words(rng.randint(8, 20)),
        "pp_price": money(rng.randint(12, 30)),
        "party_deposit": money(rng.choice((50, 100))),
        "package": rng.choice(PARTY_PACKAGES),
        "cake_price": money(rng.randrange(25, 61, 5)),
        "bakery": rng.choice(BAKERIES),
    }


BIRTHDAY = (
    Template(
        """
        1: {friend}'s {nth} birthday is next {day}. Why don't we throw {f_him} a surprise party?
        2: Great idea! Where should we have it?
        1: How about {venue}? {It's big enough for everyone.|{friend} loves that place.}
        2: Good. How many people should we invite?
        1: About {guests}. I'll {send the invitations|start a group chat}.
        2: I'll order the cake. {friend} likes {cake} cake.
        1: Perfect. Let's all meet there at {time}, before {f_he} arrives.
        2: And what about a present?
        1: Let's get {f_him} {gift}. We can split the cost.
        2: {Deal.|Sounds good.} Don't tell {friend}!
        """,
        (
            "#Person1# and #Person2# plan a surprise party for {friend}'s {nth} birthday next {day} at {venue_s}. They'll invite about {guests} people, #Person2# will order a {cake} cake, and they'll buy {gift} together.",
            "#Person1# suggests a surprise party for {friend}. #Person2# agrees to order the cake, and they decide to meet at {time} at {venue_s} and give {friend} {gift}.",
            "For {friend}'s birthday next {day}, #Person1# will invite {guests} guests to {venue_s} while #Person2# orders a {cake} cake. They'll share the cost of {gift}.",
        ),
    ),
    Template(
        """
        1: {Hello|Good morning}, {kids_venue}. How can I help you?
        2: Hi. I'd like to book a birthday party. My {child} is turning {kid_age}.
        1: {Congratulations!|How lovely!} When would you like to have it?
        2: On {date}, in the afternoon.
        1: We have a slot from {start} to {end}. How many children?
        2: About {kids}.
        1: Our party package is {pp_price} per child. It includes {package}.
        2: Does it include a cake?
        1: No, but you can bring your own, or we can order one for {cake_price}.
        2: We'll bring our own. Can I book it now?
        1: Sure. We need a deposit of {party_deposit}. What's your name?
        2: {full}.
        """,
        (
            "{full} books a birthday party at {kids_venue} for {his_her} {child}, who is turning {kid_age}. It's on {date} from {start} to {end} for about {kids} children at {pp_price} per child.",
            "#Person2# books a party package for {kids} children at {kids_venue} on {date}. It costs {pp_price} per child, with a deposit of {party_deposit}, and #Person2# will bring a cake.",
            "#Person1# tells #Person2# about a children's party package that includes {package}. #Person2# books it for {date} from {start} to {end} and pays a {party_deposit} deposit.",
        ),
    ),
    Template(
        """
        1: Did you know it's {friend}'s birthday on {day}?
        2: Really? We should do something at the office.
        3: How about a cake and some snacks in the meeting room at {time}?
        1: Good idea. I'll collect money. {share} each should be enough.
        2: I'll buy a card and get everyone to sign it.
        3: And I'll order a {cake} cake from {bakery}.
        1: Great. Let's keep it a secret until {day}.
        2: {OK.|Sure.} {I'll ask {f_his} manager to keep {f_him} busy before {time}.|I won't say a word.}
        """,
        (
            "#Person1#, #Person2# and #Person3# plan a birthday surprise for their colleague {friend} on {day} at {time}. #Person1# will collect {share} from everyone, #Person2# will buy a card, and #Person3# will order a {cake} cake from {bakery}.",
            "For {friend}'s birthday, the colleagues plan cake and snacks in the meeting room at {time} on {day}. #Person3# orders the cake from {bakery}, and #Person2# gets a card.",
            "#Person1# reminds the others that {friend}'s birthday is on {day}. They decide to collect {share} each and surprise {friend} with a {cake} cake at {time}.",
        ),
    ),
)

CARS = (
    "Toyota Corolla", "Honda Civic", "Ford Focus", "Volkswagen Golf", "Nissan Altima",
    "Hyundai Elantra", "Mazda 3", "Kia Rio", "Subaru Outback", "Chevrolet Malibu", "Renault Clio",
    "Peugeot 208",
)
CAR_PROBLEMS = (  # (symptom, likely cause, the fix, the fix done, the part, price range)
    ("makes a strange noise when I brake", "the brake pads", "replace the brake pads", "replaced the brake pads", "brake pads", (150, 400)),
    ("won't start in the morning", "the battery", "replace the battery", "replaced the battery", "battery", (120, 250)),
    ("shakes at high speed", "the wheels", "balance the wheels", "balanced the wheels", "wheel balancing", (60, 150)),
    ("overheats in traffic", "the water pump", "replace the water pump", "replaced the water pump", "water pump", (300, 900)),
    ("has a warning light on", "a broken sensor", "replace the sensor", "replaced the sensor", "sensor", (100, 350)),
    ("pulls to the left", "the alignment", "fix the wheel alignment", "fixed the wheel alignment", "alignment", (80, 200)),
)
CAR_EXTRAS = (  # (what else was found, the part)
    ("the oil filter was very dirty", "oil filter"),
    ("the air filter needed changing", "air filter"),
    ("the wipers were worn out", "wipers"),
    ("one headlight wasn't working", "headlight bulb"),
)
READY_TIMES = (  # (as said, as summarized)
    ("Tomorrow afternoon.", "tomorrow afternoon"),
    ("By {day}.", "by {day}"),
    ("In about two hours.", "in about two hours"),
)


def car_slots(rng: Random) -> Slots:
    problem, cause, fix, fix_past, part, (low, high) = rng.choice(CAR_PROBLEMS)
    extra, extra_part = rng.choice(CAR_EXTRAS)
    ready, ready_s = rng.choice(READY_TIMES)
    cost = rng.randrange(low, high + 1, 10)
    extra_cost = rng.randrange(20, 151, 5)
    return {
        "car": rng.choice(CARS),
        "car_year": str(rng.randint(2008, 2022)),
        "car_problem": problem,
        "car_problem_s": problem.replace("I brake", "braking"),
        "cause": cause,
        "fix": fix,
        "fix_past": fix_past,
        "part": part,
        "extra": extra,
        "extra_part": extra_part,
        "ready": ready,
        "ready_s": ready_s,
        "since": rng.choice(("About a week ago.", "Since last {day2}.", "A few days ago.")),
        "cost": money(cost),
        "extra_cost": money(extra_cost),
        "total": money(cost + extra_cost),
        "off": money(rng.choice((20, 25, 30))),
        "service": rng.choice(("RoadHelp", "AutoAssist", "Highway Rescue")),
        "highway": f"{rng.choice(('Route', 'Highway'))} {rng.randint(1, 99)}",
        "wait": str(rng.randrange(20, 61, 5)),
        "tow_km": str(rng.choice((50, 80, 100))),
    }


CAR_REPAIR = (
    Template(
        """
        1: {Good morning.|Hi there.} What can I do for you?
        2: My car {car_problem}. {Could you take a look?|Can you check it?}
        1: Sure. What make is it?
        2: It's a {car_year} {car}.
        1: {OK.|I see.} When did it start?
        2: {since}
        1: It's probably {cause}. We'll have to {fix}.
        2: How much will that cost?
        1: About {cost}, including parts and labor.
        2: When will it be ready?
        1: {ready} {I'll call you when it's done.|}
        2: OK. Here are the keys. My number is {phone}.
        """,
        (
            "#Person2#'s {car} {car_problem_s}. #Person1# thinks it's {cause} and will {fix} for about {cost}. The car will be ready {ready_s}.",
            "#Person2# brings in a {car_year} {car} that {car_problem_s}. The repair will cost about {cost}, and it will be ready {ready_s}.",
            "#Person1#, a mechanic, says #Person2#'s {car} needs repairs because of {cause}. It costs about {cost} and will be done {ready_s}.",
        ),
    ),
    Template(
        """
        1: Hi, I'm here to pick up my car, the {car}. My name's {full}.
        2: {Ah, yes.|Right.} It's ready. We {fix_past}, and we also found that {extra}.
        1: {Oh no.|Really?} So what's the total?
        2: {total}. The {part} was {cost} and the {extra_part} was {extra_cost}.
        1: That's more than you told me. Why didn't you call me?
        2: I'm sorry, we tried, but nobody answered. I can give you {off} off.
        1: {OK, thanks.|Fine.} Can I pay by card?
        2: Sure. {Here are your keys.|Your car is parked outside.}
        """,
        (
            "{full} picks up {his_her} {car}. The bill is {total} because #Person2# {fix_past} and also found that {extra}. #Person1# complains about not being called, so #Person2# gives {off} off.",
            "#Person1# comes to collect the {car}. #Person2# explains that the total is {total}, {cost} for the {part} plus {extra_cost} for the {extra_part}, and offers {off} off.",
            "#Person1# is unhappy that the repair cost {total}, more than expected. #Person2# apologizes for not calling about the {extra_part} and gives {full} {off} off.",
        ),
    ),
    Template(
        """
        1: Oh no, the engine just stopped. {first2}, what do we do?
        2: Let's pull over. I'll call roadside assistance.
        3: {service}, how can I help?
        2: Hi, our car broke down on {highway} near {town}. It's a {car}.
        3: Is everyone safe?
        2: Yes, we're off the road.
        3: A tow truck will be there in about {wait} minutes. It will take you to a garage in {town}.
        2: Thank you. How much will the towing cost?
        3: It's free with your membership, up to {tow_km} kilometers.
        1: {Thank goodness.|What a relief.}
        """,
        (
            "The {car} breaks down on {highway} near {town}. #Person2# calls {service}, and #Person3# sends a tow truck that will come in about {wait} minutes. Towing is free up to {tow_km} kilometers.",
            "#Person1#'s car stops on {highway}. #Person2# calls roadside assistance, and the operator says a free tow truck will take them to a garage in {town}.",
            "#Person2# calls for help when the car breaks down near {town}. #Person3# says the tow truck arrives in {wait} minutes and costs nothing with their membership.",
        ),
    ),
)

PROVIDERS = ("Telco One", "SkyMobile", "NetWave", "BrightTel", "Fibrelink", "Orbit Mobile")
PLAN_NAMES = ("Unlimited Plus", "Smart", "Basic", "Family Max", "Flex", "Premium")
PLAN_QUESTIONS = (  # (customer asks, clerk answers)
    ("Can I keep my old number?", "Yes, of course. I'll transfer it for you."),
    ("Are calls abroad included?", "Calls to Europe and North America are included."),
    ("Is there a student discount?", "Not on this plan, I'm afraid."),
)
INSTALL_QUESTIONS = (
    ("Is the router included?", "Yes, the router is free."),
    ("Do I have to pay for installation?", "No, installation is free this month."),
)
BILL_CHARGES = (  # (what was charged, the customer's denial)
    ("international calls", "But I never call abroad!"),
    ("extra data", "But I didn't use that much data!"),
    ("a music streaming service", "But I never signed up for any music service!"),
)


def phone_slots(rng: Random) -> Slots:
    usage = rng.randint(4, 45)
    gb = next(size for size in (10, 20, 30, 50, 100) if size >= usage + 3)
    price = rng.randrange(20, 61, 5)
    question, answer = rng.choice(PLAN_QUESTIONS)
    install_q, install_a = rng.choice(INSTALL_QUESTIONS)
    charge, denial = rng.choice(BILL_CHARGES)
    extra = rng.randrange(8, 80) + 0.5 * rng.randint(0, 1)
    window = rng.choice((("8 am", "noon"), ("1 pm", "5 pm"), ("9 am", "1 pm")))
    return {
        "provider": rng.choice(PROVIDERS),
        "plan": rng.choice(PLAN_NAMES),
        "usage": str(usage),
        "gb": str(gb),
        "price": money(price),
        "price_nc": money(price + rng.randrange(5, 16, 5)),
        "months": str(rng.choice((12, 24))),
        "plan_q": question,
        "plan_a": answer,
        "mbps": str(rng.choice((500, 1000))),
        "mbps_low": str(rng.choice((100, 200, 300))),
        "net_price": money(rng.randrange(50, 81, 5)),
        "net_low": money(rng.randrange(30, 46, 5)),
        "win_start": window[0],
        "win_end": window[1],
        "install_q": install_q,
        "install_a": install_a,
        "charge": charge,
        "denial": denial,
        "extra": money(extra),
        "bill": money(price + extra),
    }


PHONE_PLAN = (
    Template(
        """
        1: {Hi, welcome to {provider}.|Welcome to {provider}.} How can I help you?
        2: I'm looking for a new phone plan. I use a lot of data{ for work|, mostly for videos|}.
        1: How much do you usually use a month?
        2: About {usage} gigabytes.
        1: Then I'd recommend our {plan} plan. It has {gb} gigabytes for {price} a month.
        2: Is there a contract?
        1: Yes, {months} months. Or you can pay {price_nc} a month with no contract.
        2: I'll take the contract. {plan_q}
        1: {plan_a} I just need your ID.
        """,
        (
            "#Person2# uses about {usage} gigabytes a month, so #Person1# recommends the {plan} plan at {provider}: {gb} gigabytes for {price} a month with a {months}-month contract. #Person2# takes it.",
            "#Person2# signs up for the {plan} plan with {gb} gigabytes. #Person2# chooses the {months}-month contract at {price} instead of paying {price_nc} without a contract.",
            "#Person1# helps #Person2# choose a phone plan at {provider}. The {plan} plan costs {price} a month on a {months}-month contract.",
        ),
    ),
    Template(
        """
        1: Hello, {provider} customer service. {How can I help you?|What can I do for you?}
        2: Hi, I'm moving to {street} next week, and I need home internet.
        1: Let me check what's available at that address. {OK.|Good news.} We offer speeds up to {mbps} megabits for {net_price} a month.
        2: That's more than I need. Is there anything cheaper?
        1: Yes, {mbps_low} megabits for {net_low}.
        2: That's enough for me. When can you install it?
        1: A technician can come on {date} between {win_start} and {win_end}.
        2: Fine. {install_q}
        1: {install_a} Could I have your name, please?
        2: {full}.
        1: Thank you, {title} {last}. You'll get a confirmation by email.
        """,
        (
            "{full} is moving to {street} and orders home internet from {provider}. {first} chooses {mbps_low} megabits for {net_low} a month instead of {mbps}, and a technician will come on {date} between {win_start} and {win_end}.",
            "#Person2# calls {provider} to get internet at a new address. #Person1# offers two plans, and #Person2# takes the cheaper one for {net_low}. Installation is on {date}.",
            "#Person1# books an internet installation for #Person2# on {date} between {win_start} and {win_end}. #Person2# picks the {mbps_low}-megabit plan for {net_low} a month.",
        ),
    ),
    Template(
        """
        1: {provider}, {first2} speaking. How can I help you?
        2: Hi. My bill this month is {bill}, but my plan is only {price} a month.
        1: Let me check your account. Can I have your phone number?
        2: It's {phone}.
        1: Thank you. I see you were charged {extra} for {charge}.
        2: {denial}
        1: I'm sorry. It looks like a mistake. I'll remove the charge, and you'll get {extra} back on your next bill.
        2: Thank you. Will I get a confirmation?
        1: Yes, I'll send you a text message. Is there anything else?
        2: No, that's all. Thanks.
        """,
        (
            "#Person2# complains that the bill is {bill} although the plan costs {price}. #Person1# finds a charge of {extra} for {charge}, agrees it's a mistake, and will refund it on the next bill.",
            "#Person2# calls {provider} about a bill of {bill}. #Person1#, {first2}, removes the {extra} charge for {charge} and will send a confirmation.",
            "{first2} from {provider} checks #Person2#'s account and finds an extra {extra} for {charge}, which #Person2# didn't use. The money will be returned on the next bill.",
        ),
    ),
)

BOOKS = (  # (title, author)
    ("Pride and Prejudice", "Jane Austen"), ("Great Expectations", "Charles Dickens"),
    ("The Old Man and the Sea", "Ernest Hemingway"), ("Moby Dick", "Herman Melville"),
    ("Jane Eyre", "Charlotte Brontë"), ("War and Peace", "Leo Tolstoy"),
    ("The Great Gatsby", "F. Scott Fitzgerald"), ("Frankenstein", "Mary Shelley"),
    ("Things Fall Apart", "Chinua Achebe"), ("One Hundred Years of Solitude", "Gabriel García Márquez"),
    ("The Little Prince", "Antoine de Saint-Exupéry"), ("Don Quixote", "Miguel de Cervantes"),
    ("Dracula", "Bram Stoker"), ("Middlemarch", "George Eliot"),
)
RESEARCH_TOPICS = (  # (paper topic, library section)
    ("climate change", "environmental science"), ("the history of jazz", "music"),
    ("social media and teenagers", "sociology"), ("the French Revolution", "history"),
    ("renewable energy", "engineering"), ("how children learn languages", "linguistics"),
)
RENEWALS = (  # (librarian's answer, summary)
    ("Sorry, someone has reserved it.", "#Person2# says someone else has reserved it"),
    ("Yes, I'll renew it for another {weeks} weeks.", "#Person2# renews it for {weeks} more weeks"),
)


def library_slots(rng: Random) -> Slots:
    book, author = rng.choice(BOOKS)
    research, subject = rng.choice(RESEARCH_TOPICS)
    renew, renew_s = rng.choice(RENEWALS)
    nbooks = rng.randint(2, 5)
    late_days = rng.randint(2, 12)
    fine_cents = rng.choice((10, 20, 25, 50))
    start = pick_time(rng, 9, 16, 60)
    return {
        "book": book,
        "author": author,
        "section": rng.choice(("fiction", "classics", "literature")),
        "max_books": words(rng.choice((5, 10, 15))),
        "weeks": words(rng.randint(2, 4)),
        "proof": rng.choice(("utility bill", "bank statement", "letter from my bank")),
        "nbooks": words(nbooks),
        "late_days": words(late_days),
        "fine_per": f"{fine_cents} cents",
        "fine_total": money(fine_cents * late_days * nbooks / 100),
        "renew": renew,
        "renew_s": renew_s,
        "research": research,
        "subject": subject,
        "room": str(rng.randint(1, 20)),
        "start": clock(start),
        "end": clock(start + rng.choice((60, 120, 180))),
        "card_no": str(rng.randint(10000000, 99999999)),
    }


LIBRARY = (
    Template(
        """
        1: {Excuse me.|Hi.} I'm looking for {book} by {author}.
        2: Let me check the catalog. It's on the {floor} floor, in the {section} section.
        1: {Thanks.|Thank you.} How many books can I borrow at a time?
        2: Up to {max_books}, for {weeks} weeks. Do you have a library card?
        1: No, I don't. {I just moved here.|I've never had one.}
        2: Then please fill in this form. I need to see a photo ID and something with your address.
        1: Here's my {id_doc} and a {proof}.
        2: Thank you. Here's your card, {title} {last}. {You can borrow the book now.|Enjoy your reading.}
        """,
        (
            "#Person1# is looking for {book} by {author}, which is on the {floor} floor. #Person2# explains that readers can borrow up to {max_books} books for {weeks} weeks and makes {title} {last} a library card.",
            "{title} {last} wants to borrow {book}. #Person1# has no library card, so #Person2# makes one after seeing #Person1#'s {id_doc} and proof of address.",
            "#Person2# helps #Person1# find {book} in the {section} section and issues a library card. Books can be borrowed for {weeks} weeks, {max_books} at a time.",
        ),
    ),
    Template(
        """
        1: Hi. I'd like to return these books. {I'm afraid they're a bit late.|I think they're overdue.}
        2: Let me see. Yes, they were due on {date}. That's {late_days} days late.
        1: How much is the fine?
        2: {fine_per} per book per day, so {fine_total} for {nbooks} books.
        1: {Oh dear.|Oh no.} Can I renew {book} instead of returning it? I haven't finished it yet.
        2: {renew}
        1: {OK.|I see.} Here's the money.
        2: Thank you. {Please try to return them on time next time.|Have a nice day.}
        """,
        (
            "#Person1# returns {nbooks} books {late_days} days late and pays a fine of {fine_total}. #Person1# asks to renew {book}, and {renew_s}.",
            "#Person2# tells #Person1# the books were due on {date}, so the fine is {fine_total} at {fine_per} per book per day. #Person1# wants to keep {book} longer, and {renew_s}.",
            "#Person1#'s {nbooks} library books are {late_days} days overdue. #Person1# pays {fine_total}, asks to renew {book}, and {renew_s}.",
        ),
    ),
    Template(
        """
        1: Excuse me, I'm writing a paper on {research}. Where can I find books on that?
        2: Try the {subject} section on the {floor} floor. You can also use our online databases.
        1: Can I use them from home?
        2: Yes, with your library card number and PIN.
        1: Great. And can I book a study room for {day}?
        2: Let me check. Room {room} is free from {start} to {end}.
        1: I'll take it. My card number is {card_no}.
        2: Done. {The room has a whiteboard and a projector.|Please don't bring food into the room.}
        """,
        (
            "#Person1# is writing a paper on {research}. #Person2# suggests the {subject} section on the {floor} floor and the online databases, and books room {room} for #Person1# on {day} from {start} to {end}.",
            "#Person2# helps #Person1# find books on {research} and reserves study room {room} for {day}, {start} to {end}.",
            "#Person1# asks a librarian about books on {research} and a study room. #Person2# explains that the online databases can be used from home and books room {room} for {day}.",
        ),
    ),
)

# --- Rare topics: only a handful of dialogues each, so a stratified split must pool them.


def passport_slots(rng: Random) -> Slots:
    return {
        "days": words(rng.randint(2, 5)),
        "fee": money(rng.choice((60, 75, 90, 120))),
        "nationality": rng.choice(("Canadian", "Australian", "German", "Brazilian", "Indian", "Japanese", "Irish")),
        "place": rng.choice(("the Central Market", "the train station", "the museum", "a taxi", "the beach")),
        "cash": money(rng.randrange(40, 301, 10)),
        "flight_time": clock(pick_time(rng, 7, 20)),
        "room": str(rng.randint(2, 9) * 100 + rng.randint(1, 30)),
    }


LOST_PASSPORT = (
    Template(
        """
        1: {Good morning.|Hello.} How can I help you?
        2: I've lost my passport. I think {someone stole it on the train from {city}|I left it at a café on {street_name}}.
        1: I'm sorry to hear that. When did you last see it?
        2: On {day} {morning|afternoon}.
        1: First you need to report it to the police. Then we can issue an emergency passport.
        2: How long does that take?
        1: About {days} working days. It costs {fee}. You'll need two photos and your police report.
        2: I'm flying home on {date}. Is that enough time?
        1: {Yes, it should be fine.|It's tight, but we'll try.} What's your full name?
        2: {full}.
        """,
        (
            "{full} lost {his_her} passport on {day}. #Person1# says {he_she} must report it to the police first, and an emergency passport costs {fee} and takes about {days} working days.",
            "#Person2# has lost a passport and is flying home on {date}. #Person1# explains the emergency passport: a police report, two photos, {fee}, and {days} working days.",
            "#Person1# tells #Person2#, {full}, how to get an emergency passport after losing one: report it to the police, bring photos, and pay {fee}.",
        ),
    ),
    Template(
        """
        1: {first2}, have you seen my passport? I can't find it anywhere.
        2: Did you check your bag?
        1: Yes, twice. Our flight to {city} is at {flight_time} tomorrow!
        2: Calm down. When did you last use it?
        1: At the hotel reception, when we checked in.
        2: Maybe they still have it. Let's call them.
        3: {hotel}, reception. How can I help you?
        1: Hi, this is {full} from room {room}. Did I leave my passport at the desk?
        3: Let me check. Yes, we have it here. You can pick it up anytime.
        1: Oh, thank goodness!
        """,
        (
            "#Person1# can't find the passport before the flight to {city} at {flight_time} tomorrow. #Person2# suggests calling the hotel, and #Person3# at the {hotel} says it was left at reception.",
            "{full} thinks {he_she} has lost {his_her} passport. After {first2} suggests calling the {hotel}, the receptionist confirms they have it.",
            "#Person1# panics about a missing passport before flying to {city}. It turns out #Person1# left it at the reception of the {hotel} when checking in.",
        ),
    ),
    Template(
        """
        1: {Excuse me.|Hello.} I'd like to report a lost passport.
        2: All right. Your name and nationality, please?
        1: {full}. I'm {nationality}.
        2: Where and when did you lose it?
        1: {Yesterday|This morning}, probably at {place}. My wallet is missing too, with about {cash} in it.
        2: I'll write that down. Here's a copy of the report. Take it to your embassy.
        1: Thank you. Will you call me if someone finds it?
        2: Yes. Please leave a phone number.
        1: It's {phone}.
        """,
        (
            "{full}, who is {nationality}, reports a lost passport and a wallet with about {cash} to #Person2#. #Person2# writes a report for the embassy and takes {his_her} phone number.",
            "#Person1# lost a passport and a wallet at {place}. #Person2# gives #Person1# a copy of the police report to take to the embassy.",
            "#Person1# tells #Person2# that the passport and about {cash} went missing at {place}. #Person2# will call if they're found.",
        ),
    ),
)

PET_NAMES = ("Max", "Bella", "Charlie", "Luna", "Rocky", "Daisy", "Milo", "Coco", "Buddy", "Nala")
SHELTERS = ("Happy Paws Shelter", "the City Animal Shelter", "Second Chance Rescue", "Furry Friends Home")


def pet_slots(rng: Random) -> Slots:
    return {
        "animal": rng.choice(("dog", "cat", "rabbit")),
        "pet_name": rng.choice(PET_NAMES),
        "pet_age": words(rng.randint(2, 8)),
        "fee": money(rng.choice((50, 75, 100, 150))),
        "close": rng.choice(("5 pm", "6 pm", "7 pm")),
        "monthly": money(rng.choice((40, 50, 60, 80))),
        "shelter": rng.choice(SHELTERS),
        "supplies": rng.choice(("a bed and some food", "a leash and a collar", "a cage and some hay", "a litter box")),
    }


PET_ADOPTION = (
    Template(
        """
        1: Hi. I saw a {animal} called {pet_name} on your website. Is {pet_name} still available?
        2: Yes! {pet_name} is {pet_age} years old and very friendly. Do you have a garden?
        1: {Yes, a small one.|No, but there's a big park near my apartment.}
        2: {That's fine.|OK.} The adoption fee is {fee}, which includes vaccinations.
        1: What do I need to do?
        2: Fill in an application, and we'll visit your home. Then you can take {pet_name} home.
        1: Can I come and meet {pet_name} first?
        2: Of course. We're open until {close} on {day}.
        """,
        (
            "#Person1# wants to adopt {pet_name}, a {pet_age}-year-old {animal}. #Person2# says the fee is {fee} with vaccinations, explains the application and home visit, and invites #Person1# to come on {day}.",
            "#Person1# asks about adopting {pet_name} from the shelter. The adoption fee is {fee}, and #Person1# can visit before {close} on {day}.",
            "#Person2# tells #Person1# that the {animal} {pet_name} is still available for {fee} and explains the adoption process.",
        ),
    ),
    Template(
        """
        1: {first2}, the kids really want a pet. What do you think about adopting a {animal}?
        2: A {animal}? Who's going to feed it and clean up after it?
        3: I will! I promise, {parent2}!
        1: The shelter on {street_name} has a {animal} called {pet_name}. The fee is only {fee}.
        2: Hmm. And the food and vet bills?
        1: About {monthly} a month, I think.
        3: I can help pay with my pocket money!
        2: {All right.|OK, fine.} Let's go and see {pet_name} on {day}. But you have to take care of it.
        """,
        (
            "#Person1# suggests adopting {pet_name}, a {animal} from the shelter on {street_name}, for {fee}. #Person2# worries about the care and the cost of about {monthly} a month, but agrees to see {pet_name} on {day}.",
            "#Person3# wants a pet, and #Person1# has found a {animal} at a shelter for {fee}. #Person2# agrees to visit the shelter on {day}.",
            "The family talks about adopting a {animal} named {pet_name}. #Person2# agrees to go on {day} if #Person3# takes care of it.",
        ),
    ),
    Template(
        """
        1: Hello, this is {full2} from {shelter}. I'm calling about your application for {pet_name}.
        2: Oh, hi! Thanks for calling.
        1: We've checked your application, and everything looks good. We'd like to do a home visit on {day} at {time}. Is that OK?
        2: {Yes, that's fine.|Sure, I'll be home.}
        1: If the visit goes well, you can take {pet_name} home the same week. Please buy {supplies} before then.
        2: Of course. How much is the adoption fee again?
        1: {fee}. You can pay when you pick {pet_name} up.
        2: Great. Thank you so much!
        """,
        (
            "{full2} from {shelter} calls #Person2# about the application to adopt {pet_name}. They arrange a home visit on {day} at {time}, and #Person2# will pay the {fee} fee when picking {pet_name} up.",
            "#Person1# tells #Person2# that the application for {pet_name} looks good and schedules a home visit for {day} at {time}.",
            "#Person2#'s application to adopt {pet_name} looks good, and a home visit is planned for {day}. #Person1# asks #Person2# to buy {supplies}.",
        ),
    ),
)


def noise_slots(rng: Random) -> Slots:
    floor = rng.randint(2, 9)
    apt, apt2 = rng.sample(range(1, 9), 2)
    return {
        "apt": f"apartment {floor}{chr(64 + apt)}",
        "apt2": f"apartment {floor + 1}{chr(64 + apt2)}",
        "late_time": rng.choice(("1 am", "2 am", "half past one", "3 am")),
        "early_time": rng.choice(("5 am", "5:30 am", "6 am")),
        "quiet_time": rng.choice(("10 pm", "11 pm")),
        "morning_time": rng.choice(("7 am", "8 am")),
        "freq": rng.choice(("almost every weekend", "two or three times a week")),
        "noise": rng.choice(("playing loud music", "having parties", "moving furniture around", "letting their dog bark")),
        "hotel_noise": rng.choice(("shouting", "playing loud music", "having a party")),
        "at_clock": rng.choice(("midnight", "one in the morning", "half past eleven")),
        "fine": money(rng.choice((100, 150, 200))),
        "room": str(floor * 100 + rng.randint(1, 30)),
        "room2": str((floor + 1) * 100 + rng.randint(1, 30)),
        "floor": ORDINAL_WORDS[floor + 1],
    }


NOISE_COMPLAINT = (
    Template(
        """
        1: {Hi|Hello}, sorry to bother you. I live {downstairs|next door}, in {apt}.
        2: Oh, hi. Is something wrong?
        1: Well, the music was very loud last night until about {late_time}. I have to get up at {early_time} for work.
        2: Oh, I'm so sorry. {It was my roommate's birthday.|We had a few friends over.}
        1: I understand, but it happens {freq}.
        2: You're right. We'll keep it down after {quiet_time} from now on.
        1: Thank you. I'm {first}, by the way.
        2: I'm {first2}. {Sorry again.|Nice to meet you, and sorry again.}
        """,
        (
            "#Person1#, {first}, complains to #Person2#, {first2}, about loud music until {late_time} last night, since #Person1# gets up at {early_time}. #Person2# apologizes and promises to keep it down after {quiet_time}.",
            "#Person1# tells the neighbor #Person2# that the noise happens {freq}. #Person2# says sorry and agrees to be quiet after {quiet_time}.",
            "{first} from {apt} asks {first2} to stop playing loud music late at night. {first2} promises to keep it down after {quiet_time}.",
        ),
    ),
    Template(
        """
        1: {Hello|Hi}, is this the building manager?
        2: Yes, {full2} speaking.
        1: This is {full} from {apt}. I'm calling about the neighbors in {apt2}. They've been {noise} every night this week.
        2: Have you talked to them?
        1: Yes, {twice|a few times}, but nothing changed.
        2: I see. Quiet hours in the building are from {quiet_time} to {morning_time}. I'll send them a written warning today.
        1: Thank you. {What if it continues?|And if they don't stop?}
        2: Then they could be fined {fine}. Please call me if it happens again.
        """,
        (
            "{full} from {apt} complains to {full2}, the building manager, that the neighbors in {apt2} have been {noise} every night. #Person2# will send them a warning; quiet hours are {quiet_time} to {morning_time}.",
            "#Person1# calls the building manager about noisy neighbors in {apt2}. #Person2# promises a written warning and says they could be fined {fine} if it continues.",
            "#Person2# tells #Person1# that the neighbors in {apt2}, who keep {noise}, will get a written warning and could be fined {fine}.",
        ),
    ),
    Template(
        """
        1: Front desk, how can I help you?
        2: Hi, this is room {room}. The people next door are {hotel_noise}, and it's {at_clock}. I can't sleep.
        1: I'm very sorry. I'll send someone up {right away|immediately}.
        2: {Thank you.|Thanks.} {This is the second time tonight.|I have an early flight tomorrow.}
        1: I understand. Would you like to move to another room? We have a quiet one on the {floor} floor.
        2: Yes, please. That would be great.
        1: I'll bring you the key for room {room2} in five minutes. {And breakfast is on us tomorrow.|I'm sorry again.}
        """,
        (
            "#Person2# in room {room} calls the front desk because the guests next door are {hotel_noise} at {at_clock}. #Person1# apologizes and moves #Person2# to a quiet room, {room2}, on the {floor} floor.",
            "#Person2# complains about noise from the next room at {at_clock}. #Person1# sends someone up and offers room {room2} instead.",
            "#Person1# deals with #Person2#'s noise complaint by sending someone to the noisy room and moving #Person2# from room {room} to room {room2}.",
        ),
    ),
)

# Weights give the common topics roughly 80-160 dialogues each in a 1,500-dialogue set.
TOPICS = (
    Topic("restaurant reservation", restaurant_slots, RESTAURANT, weight=1.5),
    Topic("doctor appointment", doctor_slots, DOCTOR, weight=1.4),
    Topic("job interview", job_slots, JOB, weight=1.3),
    Topic("shopping for clothes", clothes_slots, CLOTHES_TEMPLATES, weight=1.1),
    Topic("hotel check-in", hotel_slots, HOTEL, weight=1.0),
    Topic("asking for directions", directions_slots, DIRECTIONS, weight=0.9),
    Topic("renting an apartment", apartment_slots, APARTMENT, weight=1.0),
    Topic("ticket booking", tickets_slots, TICKETS, weight=1.2),
    Topic("bank account", bank_slots, BANK, weight=0.9),
    Topic("product return", product_return_slots, PRODUCT_RETURN, weight=0.8),
    Topic("birthday party", birthday_slots, BIRTHDAY, weight=0.8),
    Topic("car repair", car_slots, CAR_REPAIR, weight=0.8),
    Topic("phone plan", phone_slots, PHONE_PLAN, weight=0.85),
    Topic("library", library_slots, LIBRARY, weight=0.8),
    Topic("lost passport", passport_slots, LOST_PASSPORT, rare_count=4),
    Topic("pet adoption", pet_slots, PET_ADOPTION, rare_count=3),
    Topic("noise complaint", noise_slots, NOISE_COMPLAINT, rare_count=5),
)

# ---------------------------------------------------------------------------------------------
# Rendering.
# ---------------------------------------------------------------------------------------------

BRACES = re.compile(r"\{([^{}]*)\}")


def fill(text: str, slots: Slots, rng: Random) -> str:
    """Resolve slots and {a|b} choices, innermost first, so slot values may hold slots."""

    def resolve(match: re.Match[str]) -> str:
        body = match.group(1)
        return rng.choice(body.split("|")) if "|" in body else slots[body]

    while BRACES.search(text):
        text = BRACES.sub(resolve, text)
    return text


def script_turns(script: str, rng: Random) -> list[str]:
    """Keep or drop each run of '?' lines as a whole, so speakers still alternate."""
    turns: list[str] = []
    optional: list[str] = []
    for line in [ln.strip() for ln in script.strip().splitlines()] + [""]:
        if line.startswith("?"):
            optional.append(line[1:])
            continue
        if optional:
            if rng.random() < 0.5:
                turns.extend(optional)
            optional = []
        if line:
            turns.append(line)
    return turns


def render_dialogue(template: Template, slots: Slots, rng: Random) -> str:
    lines = []
    for turn in script_turns(template.script, rng):
        speaker, text = turn.split(":", 1)
        lines.append(f"#Person{speaker}#: {cap(fill(text.strip(), slots, rng))}")
    if not MIN_TURNS <= len(lines) <= MAX_TURNS:
        raise ValueError(f"template gives {len(lines)} turns: {template.script[:60]!r}")
    return "\n".join(lines)


def topic_counts(n_dialogues: int) -> list[int]:
    """Dialogues per topic, in TOPICS order: rare topics first, the rest by weight."""
    counts = [min(t.rare_count, max(1, n_dialogues // 300)) if t.rare_count else 0 for t in TOPICS]
    if n_dialogues < 10 * len(TOPICS):  # too small a set to afford rare topics
        counts = [0] * len(TOPICS)
    remaining = n_dialogues - sum(counts)
    total_weight = sum(t.weight for t in TOPICS)
    quotas = [remaining * t.weight / total_weight for t in TOPICS]
    common = [math.floor(q) for q in quotas]
    # Largest remainder; ties go to the earlier topic, so the result never depends on float noise.
    leftovers = sorted(range(len(TOPICS)), key=lambda i: (-(quotas[i] - common[i]), i))
    for i in leftovers[: remaining - sum(common)]:
        common[i] += 1
    return [c + r for c, r in zip(common, counts)]


def make_rows(n: int, topic: Topic, dialogue: str, summaries: list[str]) -> list[dict[str, str]]:
    if len(summaries) == 1:
        return [{"id": f"sample_{n:05d}", "dialogue": dialogue, "summary": summaries[0], "topic": topic.name}]
    return [
        {"id": f"sample_{n:05d}_{k}", "dialogue": dialogue, "summary": summary, "topic": topic.name}
        for k, summary in enumerate(summaries, start=1)
    ]


def generate(n_dialogues: int, seed: int) -> list[dict[str, str]]:
    """Rows for `n_dialogues` distinct dialogues; some dialogues get 2-3 reference rows."""
    if n_dialogues < 1:
        raise ValueError("n_dialogues must be at least 1")
    rng = Random(seed)
    order = [topic for topic, count in zip(TOPICS, topic_counts(n_dialogues)) for _ in range(count)]
    rng.shuffle(order)  # interleave topics, as a real corpus is not sorted by topic
    seen: set[str] = set()  # membership tests only; never iterated
    rows: list[dict[str, str]] = []
    for n, topic in enumerate(order):
        for _ in range(MAX_TRIES):
            template = rng.choice(topic.templates)
            slots = base_slots(rng) | topic.slots(rng)
            dialogue = render_dialogue(template, slots, rng)
            if dialogue not in seen:
                break
        else:
            raise RuntimeError(f"could not draw a new dialogue for {topic.name!r}")
        seen.add(dialogue)
        n_refs = 1 if rng.random() >= MULTI_REF_RATE else rng.choice((2, 2, 3))
        picks = rng.sample(range(len(template.summaries)), n_refs)
        summaries = [cap(fill(template.summaries[i], slots, rng)) for i in picks]
        rows.extend(make_rows(n, topic, dialogue, summaries))
    return rows


def write_jsonl(rows: list[dict[str, str]], path: Path) -> None:
    """Write atomically: a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the data file is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output JSON Lines file")
    parser.add_argument("--n-dialogues", type=int, default=DEFAULT_N_DIALOGUES, help="distinct dialogues")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed")
    args = parser.parse_args(argv)
    rows = generate(args.n_dialogues, args.seed)
    write_jsonl(rows, args.out)
    print(f"wrote {len(rows)} rows ({args.n_dialogues} dialogues) to {args.out}")


if __name__ == "__main__":
    main()
