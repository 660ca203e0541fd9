"""A word-level tokenizer with BERT's special tokens.

Text is lowercased and split into words (runs of letters and digits) and single
punctuation marks. Each token gets an id from a vocabulary built by counting a
corpus; the first ids are the special tokens::

    [PAD]=0  [UNK]=1  [CLS]=2  [SEP]=3  [MASK]=4

A sentence pair becomes ``[CLS] a [SEP] b [SEP]`` with token type (segment) 0 on
``[CLS] a [SEP]`` and 1 on ``b [SEP]``, as in BERT. Real BERT splits rare words
into WordPiece sub-words; here a word outside the vocabulary becomes ``[UNK]``.
"""

from __future__ import annotations

import re
from collections import Counter

import torch

from ._common import check_count, check_flag

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_SPECIAL = re.compile("(" + "|".join(re.escape(t) for t in SPECIAL_TOKENS) + ")")
_TOKEN = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")
_NO_SPACE_BEFORE = set(".,;:!?)")


def tokenize(text: str) -> list[str]:
    """Split ``text`` into lowercase words and single punctuation marks.

    The special tokens, written exactly (``"the capital is [MASK]."``), stay whole.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    pieces = _SPECIAL.split(text)     # odd indices hold the special tokens
    return [tok for i, piece in enumerate(pieces)
            for tok in ([piece] if i % 2 else _TOKEN.findall(piece.lower()))]


def detokenize(tokens) -> str:
    """Join the str ``tokens`` with spaces, without a space before ``. , ; : ! ? )``."""
    out = ""
    for tok in tokens:
        out += tok if (not out or tok in _NO_SPACE_BEFORE) else " " + tok
    return out


class WordTokenizer:
    """Word-level tokenizer: ``text <-> ids`` over a fixed vocabulary.

    Args:
        vocab: the tokens, in id order; it must start with ``SPECIAL_TOKENS``
            and hold no duplicates. ``WordTokenizer.train`` builds one.
    """

    def __init__(self, vocab):
        vocab = list(vocab)
        if tuple(vocab[:len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(f"vocab must start with the special tokens {SPECIAL_TOKENS}, "
                             f"got {vocab[:len(SPECIAL_TOKENS)]}")
        if len(set(vocab)) != len(vocab):
            dup = sorted(t for t, n in Counter(vocab).items() if n > 1)
            raise ValueError(f"vocab holds duplicate tokens: {dup[:5]}")
        self.vocab = vocab
        self.token_to_id = {t: i for i, t in enumerate(vocab)}
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = range(5)
        self.special_ids = tuple(range(len(SPECIAL_TOKENS)))

    @classmethod
    def train(cls, texts, *, min_count: int = 1,
              max_size: int | None = None) -> "WordTokenizer":
        """Build the vocabulary of ``texts`` (an iterable of str): special tokens, then words by
        decreasing count (ties alphabetically), keeping words seen at least
        ``min_count`` times and at most ``max_size`` tokens in all."""
        min_count = check_count(min_count, "min_count", 1)
        counts = Counter(tok for text in texts for tok in tokenize(text))
        words = sorted((w for w, n in counts.items() if n >= min_count and w not in SPECIAL_TOKENS),
                       key=lambda w: (-counts[w], w))
        if max_size is not None:
            max_size = check_count(max_size, "max_size", len(SPECIAL_TOKENS))
            words = words[:max_size - len(SPECIAL_TOKENS)]
        return cls([*SPECIAL_TOKENS, *words])

    def __len__(self) -> int:
        return len(self.vocab)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def __repr__(self) -> str:
        return f"WordTokenizer(vocab_size={self.vocab_size})"

    def convert_tokens_to_ids(self, tokens) -> list[int]:
        """Ids of ``tokens`` (an iterable of str); unknown tokens get ``unk_id``."""
        return [self.token_to_id.get(t, self.unk_id) for t in tokens]

    def convert_ids_to_tokens(self, ids) -> list[str]:
        """Tokens of ``ids`` (ints, or a 1-D tensor)."""
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        bad = [i for i in ids if not 0 <= i < len(self.vocab)]
        if bad:
            raise ValueError(f"ids must lie in [0, {len(self.vocab)}), got {bad[:5]}")
        return [self.vocab[i] for i in ids]

    def encode(self, text: str, pair: str | None = None, *,
               max_length: int | None = None) -> tuple[list[int], list[int]]:
        """``(input_ids, token_type_ids)`` of ``[CLS] text [SEP]`` or
        ``[CLS] text [SEP] pair [SEP]``.

        With ``max_length``, words are dropped from the end of the longer of the
        two texts until the whole fits.
        """
        a = self.convert_tokens_to_ids(tokenize(text))
        b = None if pair is None else self.convert_tokens_to_ids(tokenize(pair))
        n_special = 2 if b is None else 3
        if max_length is not None:
            max_length = check_count(max_length, "max_length", n_special)
            while len(a) + len(b or []) + n_special > max_length:
                (a if b is None or len(a) >= len(b) else b).pop()
        ids = [self.cls_id, *a, self.sep_id]
        types = [0] * len(ids)
        if b is not None:
            ids += [*b, self.sep_id]
            types += [1] * (len(b) + 1)
        return ids, types

    def decode(self, ids, *, skip_special_tokens: bool = True) -> str:
        """The text of ``ids`` (ints, or a 1-D tensor); ``decode(encode(t)[0]) == t`` for normalised text
        whose words are all in the vocabulary (see ``normalize``)."""
        tokens = self.convert_ids_to_tokens(ids)
        if check_flag(skip_special_tokens, "skip_special_tokens"):
            tokens = [t for t in tokens if t not in SPECIAL_TOKENS]
        return detokenize(tokens)

    @staticmethod
    def normalize(text: str) -> str:
        """``text`` as the tokenizer sees it: lowercase, single spaces, punctuation attached."""
        return detokenize(tokenize(text))

    def batch_encode(self, texts, pairs=None, *,
                     max_length: int | None = None) -> dict[str, torch.Tensor]:
        """Encode a batch (a list of str ``texts``, optionally ``pairs``) and pad it to its longest member.

        Returns a dict of three ``(B, L)`` int64 tensors: ``input_ids`` (padded
        with ``pad_id``), ``token_type_ids`` and ``attention_mask`` (1 = token,
        0 = padding), the inputs of ``attnlib.bert.BertModel``.
        """
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of str, got a single str")
        if pairs is not None and len(pairs) != len(texts):
            raise ValueError(f"texts and pairs must have the same length, got {len(texts)} "
                             f"and {len(pairs)}")
        encoded = [self.encode(t, None if pairs is None else pairs[i], max_length=max_length)
                   for i, t in enumerate(texts)]
        length = max((len(ids) for ids, _ in encoded), default=0)
        out = {name: torch.zeros(len(encoded), length, dtype=torch.long)
               for name in ("input_ids", "token_type_ids", "attention_mask")}
        out["input_ids"].fill_(self.pad_id)
        for row, (ids, types) in enumerate(encoded):
            out["input_ids"][row, :len(ids)] = torch.tensor(ids)
            out["token_type_ids"][row, :len(ids)] = torch.tensor(types)
            out["attention_mask"][row, :len(ids)] = 1
        return out
