"""The seeded template grammar that writes the book's tiny pretraining corpus.

``python -m attnlib.data.grammar`` rewrites ``tiny_corpus.txt`` next to this file;
``make_corpus(seed)`` returns the same text. The corpus is a list of short
paragraphs, one sentence per line, paragraphs separated by a blank line. Each
paragraph is about one thing (an animal, a country, a month, a restaurant
review, ...) and states facts that stay consistent across the whole corpus, so
a masked word can often be recovered from the rest of its sentence or from
the sentence next to it.
"""

from __future__ import annotations

import random

from attnlib.data import CORPUS_FILE

SEED = 2024
N_PARAGRAPHS = 1400

# name, plural, food, home, sound, size, legs
ANIMALS = [
    ("cat", "cats", "fish", "house", "meow", "small", "four"),
    ("dog", "dogs", "bones", "yard", "woof", "friendly", "four"),
    ("cow", "cows", "grass", "field", "moo", "big", "four"),
    ("duck", "ducks", "bread", "pond", "quack", "small", "two"),
    ("owl", "owls", "mice", "tree", "hoot", "wise", "two"),
    ("horse", "horses", "hay", "stable", "neigh", "strong", "four"),
    ("sheep", "sheep", "clover", "meadow", "baa", "woolly", "four"),
    ("frog", "frogs", "flies", "marsh", "croak", "green", "four"),
    ("bee", "bees", "nectar", "hive", "buzz", "busy", "six"),
    ("spider", "spiders", "insects", "web", "nothing", "tiny", "eight"),
    ("lion", "lions", "meat", "savanna", "roar", "fierce", "four"),
    ("mouse", "mice", "cheese", "hole", "squeak", "tiny", "four"),
    ("pig", "pigs", "apples", "sty", "oink", "muddy", "four"),
    ("hen", "hens", "corn", "coop", "cluck", "small", "two"),
    ("monkey", "monkeys", "bananas", "jungle", "ooh", "clever", "two"),
    ("bear", "bears", "honey", "forest", "growl", "huge", "four"),
]

# country, capital, language, continent
COUNTRIES = [
    ("france", "paris", "french", "europe"),
    ("spain", "madrid", "spanish", "europe"),
    ("italy", "rome", "italian", "europe"),
    ("germany", "berlin", "german", "europe"),
    ("greece", "athens", "greek", "europe"),
    ("poland", "warsaw", "polish", "europe"),
    ("sweden", "stockholm", "swedish", "europe"),
    ("portugal", "lisbon", "portuguese", "europe"),
    ("japan", "tokyo", "japanese", "asia"),
    ("china", "beijing", "chinese", "asia"),
    ("korea", "seoul", "korean", "asia"),
    ("turkey", "ankara", "turkish", "asia"),
    ("egypt", "cairo", "arabic", "africa"),
    ("kenya", "nairobi", "swahili", "africa"),
    ("peru", "lima", "spanish", "america"),
    ("brazil", "brasilia", "portuguese", "america"),
    ("canada", "ottawa", "english", "america"),
    ("chile", "santiago", "spanish", "america"),
    ("australia", "canberra", "english", "oceania"),
    ("russia", "moscow", "russian", "europe"),
]

DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august",
          "september", "october", "november", "december"]
SEASONS = ["winter", "winter", "spring", "spring", "spring", "summer", "summer", "summer",
           "autumn", "autumn", "autumn", "winter"]
NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
           "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
           "seventeen", "eighteen", "nineteen", "twenty"]

# thing, colour
COLOURS = [
    ("banana", "yellow"), ("lemon", "yellow"), ("sun", "yellow"), ("cherry", "red"),
    ("strawberry", "red"), ("tomato", "red"), ("grape", "purple"), ("plum", "purple"),
    ("lime", "green"), ("leaf", "green"), ("sky", "blue"), ("sea", "blue"),
    ("snow", "white"), ("milk", "white"), ("coal", "black"), ("crow", "black"),
    ("carrot", "orange"), ("pumpkin", "orange"), ("chestnut", "brown"), ("acorn", "brown"),
]

OPPOSITES = [
    ("hot", "cold"), ("big", "small"), ("up", "down"), ("day", "night"), ("fast", "slow"),
    ("old", "young"), ("happy", "sad"), ("open", "closed"), ("light", "dark"), ("wet", "dry"),
    ("early", "late"), ("full", "empty"), ("high", "low"), ("left", "right"), ("loud", "quiet"),
    ("hard", "soft"), ("rich", "poor"), ("first", "last"),
]

DISHES = ["soup", "pasta", "pizza", "curry", "salad", "bread", "cake", "fish", "rice", "pie",
          "stew", "omelette"]
PLACES = ["cafe", "diner", "bistro", "restaurant", "canteen", "inn", "bakery", "tavern"]
GOOD_FOOD = ["delicious", "tasty", "wonderful", "excellent", "superb", "lovely", "fantastic",
             "perfect", "amazing", "splendid"]
BAD_FOOD = ["awful", "terrible", "bland", "stale", "horrible", "disgusting", "dreadful",
            "soggy", "greasy", "inedible"]
GOOD_STAFF = ["friendly", "kind", "helpful", "polite", "cheerful"]
BAD_STAFF = ["rude", "careless", "grumpy", "unfriendly", "impatient"]
GOOD_END = ["we will come back soon.", "i would recommend it to a friend.",
            "we had a great evening.", "it was worth every penny."]
BAD_END = ["we will never go back.", "i would not recommend it to anyone.",
           "we had a miserable evening.", "it was a waste of money."]
NAMES = ["anna", "ben", "clara", "david", "emma", "felix", "grace", "henry", "iris", "jack",
         "lucy", "max", "nora", "oscar", "paul", "rosa", "sam", "tom", "vera", "zoe"]


def _animal(rng: random.Random) -> list[str]:
    name, plural, food, home, sound, size, legs = rng.choice(ANIMALS)
    be = "are" if plural != name else "is"
    sound_line = ("a spider makes no sound." if sound == "nothing"
                  else f"the {name} says {sound}.")
    pool = [
        f"the {name} eats {food}.",
        f"a {name} likes to eat {food}.",
        f"{plural} eat {food} every day.",
        f"the {name} lives in the {home}.",
        f"{plural} live in the {home}.",
        sound_line,
        f"the {name} is {size}.",
        f"the {plural} {be} {size}." if plural != name else f"the {name} is very {size}.",
        f"a {name} has {legs} legs.",
        f"{plural} have {legs} legs.",
        f"{rng.choice(NAMES)} saw a {name} near the {home}.",
        f"{rng.choice(NAMES)} gave {food} to the {plural}.",
    ]
    return rng.sample(pool, rng.randint(3, 5))


def _country(rng: random.Random) -> list[str]:
    country, capital, language, continent = rng.choice(COUNTRIES)
    who = rng.choice(NAMES)
    pool = [
        f"{capital} is the capital of {country}.",
        f"the capital of {country} is {capital}.",
        f"people in {country} speak {language}.",
        f"in {capital}, people speak {language}.",
        f"{country} is a country in {continent}.",
        f"{capital} is a city in {country}.",
        f"{who} flew to {capital}, the capital of {country}.",
        f"{who} learned {language} before the trip to {country}.",
    ]
    return rng.sample(pool, rng.randint(3, 5))


def _calendar(rng: random.Random) -> list[str]:
    d = rng.randrange(7)
    m = rng.randrange(12)
    pool = [
        f"{DAYS[(d + 1) % 7]} comes after {DAYS[d]}.",
        f"{DAYS[d]} comes before {DAYS[(d + 1) % 7]}.",
        f"the day after {DAYS[d]} is {DAYS[(d + 1) % 7]}.",
        f"the day before {DAYS[d]} is {DAYS[(d - 1) % 7]}.",
        f"{MONTHS[(m + 1) % 12]} comes after {MONTHS[m]}.",
        f"the month after {MONTHS[m]} is {MONTHS[(m + 1) % 12]}.",
        f"{MONTHS[m]} is in {SEASONS[m]}.",
        f"{rng.choice(NAMES)} was born in {MONTHS[m]}, in the {SEASONS[m]}.",
    ]
    return rng.sample(pool, rng.randint(3, 5))


def _numbers(rng: random.Random) -> list[str]:
    a, b = rng.randint(0, 10), rng.randint(0, 10)
    n = rng.randint(0, 15)
    k = rng.randint(1, 9)
    pool = [
        f"{NUMBERS[a]} plus {NUMBERS[b]} is {NUMBERS[a + b]}.",
        f"{NUMBERS[a + b]} minus {NUMBERS[b]} is {NUMBERS[a]}.",
        "we count " + ", ".join(NUMBERS[n:n + 5]) + ".",
        f"after {NUMBERS[n]} comes {NUMBERS[n + 1]}.",
        f"{rng.choice(NAMES)} has {NUMBERS[k]} apples and eats one, so {NUMBERS[k - 1]} "
        f"{'is' if k == 2 else 'are'} left.",
    ]
    return rng.sample(pool, rng.randint(3, 4))


def _colours(rng: random.Random) -> list[str]:
    picks = rng.sample(COLOURS, 3)
    (a, b), (c, d) = rng.sample(OPPOSITES, 2)
    lines = [rng.choice([f"the {t} is {col}.", f"a {t} is {col}.", f"the colour of the {t} is {col}."])
             for t, col in picks]
    lines += [f"the opposite of {a} is {b}.", f"{d} is the opposite of {c}."]
    return rng.sample(lines, rng.randint(3, 5))


def _review(rng: random.Random) -> list[str]:
    good = rng.random() < 0.5
    dish, place, who = rng.choice(DISHES), rng.choice(PLACES), rng.choice(NAMES)
    food = GOOD_FOOD if good else BAD_FOOD
    staff = GOOD_STAFF if good else BAD_STAFF
    end = GOOD_END if good else BAD_END
    lines = [
        f"the {dish} at the {place} was {rng.choice(food)}.",
        rng.choice([f"the waiter was {rng.choice(staff)}.", f"the staff were {rng.choice(staff)}.",
                    f"{who} said the {rng.choice(DISHES)} was {rng.choice(food)}."]),
        f"the {rng.choice(DISHES)} was {rng.choice(food)} too.",
        rng.choice(end),
    ]
    return lines[:1] + rng.sample(lines[1:3], rng.randint(1, 2)) + lines[3:]


TOPICS = [(_animal, 3), (_country, 3), (_review, 3), (_calendar, 2), (_numbers, 2), (_colours, 2)]
TOPIC_NAMES = ("animals", "countries", "reviews", "calendar", "numbers", "colours")


def make_corpus(seed: int = SEED, n_paragraphs: int = N_PARAGRAPHS) -> str:
    """The corpus text: ``n_paragraphs`` paragraphs drawn with ``random.Random(seed)``."""
    rng = random.Random(seed)
    makers = [m for m, weight in TOPICS for _ in range(weight)]
    paragraphs = ["\n".join(rng.choice(makers)(rng)) for _ in range(n_paragraphs)]
    return "\n\n".join(paragraphs) + "\n"


def labelled_sentences(n: int, seed: int) -> list[tuple[str, int]]:
    """``n`` sentences with the index of their topic in ``TOPIC_NAMES``, topics uniform."""
    rng = random.Random(seed)
    makers = [maker for maker, _ in TOPICS]
    out = []
    for _ in range(n):
        label = rng.randrange(len(makers))
        out.append((rng.choice(makers[label](rng)), label))
    return out


if __name__ == "__main__":
    CORPUS_FILE.write_text(make_corpus(), encoding="utf-8")
    print(f"wrote {CORPUS_FILE} ({CORPUS_FILE.stat().st_size / 1024:.0f} KB)")
