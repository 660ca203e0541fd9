"""Data shipped with attnlib: the tiny corpus of the BERT chapter and a labelled task.

The corpus is lowercase English written by the seeded template grammar in
``attnlib/data/grammar.py`` (about 160 KB, public domain); regenerate it with
``python -m attnlib.data.grammar``.
"""

from __future__ import annotations

from pathlib import Path

from .._common import check_count

CORPUS_FILE = Path(__file__).with_name("tiny_corpus.txt")


def load_corpus() -> list[list[str]]:
    """The tiny corpus as a list of paragraphs, each a list of sentences (str).

    Each paragraph is about one topic (an animal, a country, a restaurant
    review, the calendar, numbers, colours) and its facts are consistent across
    the corpus.
    """
    text = CORPUS_FILE.read_text(encoding="utf-8")
    return [p.splitlines() for p in text.strip().split("\n\n")]


def topic_dataset(n: int, *, seed: int = 0) -> tuple[list[str], list[int], tuple[str, ...]]:
    """A labelled task for fine-tuning: ``(sentences, labels, topic_names)``.

    ``n`` sentences written by the corpus grammar with ``random.Random(seed)``;
    ``labels[i]`` is the index of the topic of ``sentences[i]`` in ``topic_names``
    (6 topics, drawn uniformly).
    """
    from .grammar import TOPIC_NAMES, labelled_sentences  # the grammar is needed only here

    pairs = labelled_sentences(check_count(n, "n", 0), check_count(seed, "seed", 0))
    return [s for s, _ in pairs], [y for _, y in pairs], TOPIC_NAMES
