"""attnlib.bert, attnlib.tokenizer and the shipped corpus.

BERT is checked against Hugging Face ``transformers`` (a test dependency only):
``BertModel`` and ``BertForMaskedLM`` built offline from a random-init
``BertConfig``, every parameter (biases and LayerNorm included) redrawn to be far
from its default, with padding and token types. Outputs agree to 1e-5 in float32
and 1e-10 in float64, for both of transformers' attention implementations.

``mask_tokens`` is checked statistically on 10^6 tokens: every rate must lie
within 5 binomial standard deviations of its target (a false alarm has
probability below 1e-6 per rate, and the draws are seeded anyway).
"""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

transformers = pytest.importorskip("transformers")

from attnlib import BertConfig, BertForMaskedLM, BertModel, WordTokenizer, load_corpus  # noqa: E402
from attnlib import mask_tokens, topic_dataset  # noqa: E402
from attnlib.bert import IGNORE_INDEX  # noqa: E402
from attnlib.data import CORPUS_FILE  # noqa: E402
from attnlib.data.grammar import make_corpus  # noqa: E402
from attnlib.tokenizer import SPECIAL_TOKENS, tokenize  # noqa: E402
from tests.arrays import randomized  # noqa: E402

V, E, LAYERS, HEADS, FF, MAXLEN = 40, 24, 2, 4, 36, 16


def hf_config(attn="sdpa", **kw):
    cfg = dict(vocab_size=V, hidden_size=E, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
               intermediate_size=FF, max_position_embeddings=MAXLEN, type_vocab_size=3,
               hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, layer_norm_eps=1e-12)
    cfg.update(kw)
    return transformers.BertConfig(**cfg, attn_implementation=attn)


def batch(seed=1, b=4, length=11):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V, (b, length), generator=g)
    types = torch.randint(0, 3, (b, length), generator=g)
    mask = torch.ones(b, length, dtype=torch.long)
    for row, n in enumerate([length, 3, 7, 1][:b]):
        mask[row, n:] = 0
    return ids, types, mask


# --- equivalence with transformers -------------------------------------------------

@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_bert_model_matches_hf(attn):
    hf = randomized(transformers.BertModel(hf_config(attn)))
    ours = BertModel.from_hf(hf)
    ids, types, mask = batch()
    with torch.no_grad():
        want = hf(input_ids=ids, token_type_ids=types, attention_mask=mask)
        got = ours(ids, types, mask)
    assert got.last_hidden_state.abs().max() > 1.0                     # not a trivial output
    torch.testing.assert_close(got.last_hidden_state, want.last_hidden_state, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.pooler_output, want.pooler_output, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_masked_lm_logits_match_hf(attn):
    hf = randomized(transformers.BertForMaskedLM(hf_config(attn)))
    ours = BertForMaskedLM.from_hf(hf)
    ids, types, mask = batch()
    with torch.no_grad():
        want = hf(input_ids=ids, token_type_ids=types, attention_mask=mask).logits
        got = ours(ids, types, mask)
    assert got.shape == (4, 11, V)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_float64_matches_tightly_and_defaults_match():
    hf = randomized(transformers.BertForMaskedLM(hf_config("eager"))).double()
    ours = BertForMaskedLM.from_hf(hf)
    assert ours.head.bias.dtype == torch.float64
    ids, types, mask = batch(seed=3)
    with torch.no_grad():
        torch.testing.assert_close(ours(ids, types, mask), hf(input_ids=ids, token_type_ids=types,
                                   attention_mask=mask).logits, atol=1e-10, rtol=1e-10)
        # no token types and no mask: both default to zeros / all tokens
        torch.testing.assert_close(ours(ids), hf(input_ids=ids).logits, atol=1e-10, rtol=1e-10)


def test_attention_weights_match_hf():
    hf = randomized(transformers.BertModel(hf_config("eager")))
    ours = BertModel.from_hf(hf)
    ids, types, mask = batch()
    with torch.no_grad():
        want = hf(input_ids=ids, token_type_ids=types, attention_mask=mask, output_attentions=True)
        got = ours(ids, types, mask, need_weights=True)
    assert len(got.attentions) == LAYERS
    for w, ref in zip(got.attentions, want.attentions):
        assert w.shape == (4, HEADS, 11, 11)
        torch.testing.assert_close(w, ref, atol=1e-5, rtol=1e-5)
        assert (w[1, ..., 3:] == 0).all()                              # padding gets no weight


def test_gradients_match_hf():
    hf = randomized(transformers.BertForMaskedLM(hf_config("eager"))).double()
    ours = BertForMaskedLM.from_hf(hf)
    ids, types, mask = batch()
    labels = torch.where(mask.bool() & (ids % 3 == 0), ids, IGNORE_INDEX)
    hf(input_ids=ids, token_type_ids=types, attention_mask=mask, labels=labels).loss.backward()
    logits = ours(ids, types, mask)
    F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1)).backward()
    word = ours.bert.embeddings.word_embeddings.weight.grad      # input and output use (tied)
    torch.testing.assert_close(word, hf.bert.embeddings.word_embeddings.weight.grad,
                               atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(ours.bert.layers[0].self_attn.q_proj.weight.grad,
                               hf.bert.encoder.layer[0].attention.self.query.weight.grad,
                               atol=1e-10, rtol=1e-10)


def test_parameter_counts_match_hf():
    for hf_cls, ours_cls in [(transformers.BertModel, BertModel),
                             (transformers.BertForMaskedLM, BertForMaskedLM)]:
        hf = hf_cls(hf_config())
        ours = ours_cls(BertConfig.from_hf(hf.config))
        assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in hf.parameters())


def test_bert_base_parameter_count():
    cfg = BertConfig(30522, 768, 12, 12, 3072, 512)
    assert sum(p.numel() for p in BertModel(cfg).parameters()) == 109_482_240


# --- loading state dicts ----------------------------------------------------------

def test_load_ignores_legacy_buffers_and_bert_prefix():
    hf = randomized(transformers.BertModel(hf_config()))
    sd = hf.state_dict()
    sd["embeddings.position_ids"] = torch.arange(MAXLEN)[None]          # legacy checkpoints
    sd["embeddings.token_type_ids"] = torch.zeros(1, MAXLEN, dtype=torch.long)
    ours = BertModel(BertConfig.from_hf(hf.config)).load_hf_state_dict(sd).eval()
    prefixed = BertModel(BertConfig.from_hf(hf.config)).load_hf_state_dict(
        {f"bert.{k}": v for k, v in sd.items()}).eval()
    ids, types, mask = batch()
    with torch.no_grad():
        torch.testing.assert_close(ours(ids, types, mask).last_hidden_state,
                                   prefixed(ids, types, mask).last_hidden_state)


def test_bert_model_from_masked_lm_state_dict():
    mlm = randomized(transformers.BertForMaskedLM(hf_config()))
    cfg = BertConfig.from_hf(mlm.config)
    with pytest.raises(KeyError, match="pooler.dense.weight"):
        BertModel(cfg).load_hf_state_dict(mlm.state_dict())             # no pooler in an MLM model
    ours = BertModel(cfg, add_pooling_layer=False).load_hf_state_dict(mlm.state_dict()).eval()
    ids, types, mask = batch()
    with torch.no_grad():
        want = mlm.bert(input_ids=ids, token_type_ids=types, attention_mask=mask)
        torch.testing.assert_close(ours(ids, types, mask).last_hidden_state,
                                   want.last_hidden_state, atol=1e-5, rtol=1e-5)
    partial = BertModel(cfg).load_hf_state_dict(mlm.state_dict(), strict=False)
    torch.testing.assert_close(partial.embeddings.word_embeddings.weight,
                               mlm.bert.embeddings.word_embeddings.weight)


def test_load_rejects_unknown_missing_mismatched_and_untied():
    hf = randomized(transformers.BertForMaskedLM(hf_config()))
    cfg = BertConfig.from_hf(hf.config)
    sd = hf.state_dict()
    with pytest.raises(KeyError, match="unexpected keys.*bert.encoder.layer.9"):
        BertForMaskedLM(cfg).load_hf_state_dict({**sd, "bert.encoder.layer.9.output.dense.bias": sd[
            "bert.encoder.layer.0.output.dense.bias"]})
    with pytest.raises(KeyError, match="missing keys.*head|missing keys.*cls.predictions"):
        BertForMaskedLM(cfg).load_hf_state_dict(
            {k: v for k, v in sd.items() if not k.startswith("cls.predictions.transform")})
    small = BertConfig(V, E, LAYERS, HEADS, FF + 4, MAXLEN, type_vocab_size=3)
    with pytest.raises(ValueError, match="intermediate.dense.weight has shape"):
        BertForMaskedLM(small).load_hf_state_dict(sd)
    untied = dict(sd)
    untied["cls.predictions.decoder.weight"] = sd["cls.predictions.decoder.weight"] + 1.0
    with pytest.raises(ValueError, match="tied"):
        BertForMaskedLM(cfg).load_hf_state_dict(untied)
    # an old checkpoint with only the decoder bias still loads
    old = {k: v for k, v in sd.items() if k != "cls.predictions.bias"}
    loaded = BertForMaskedLM(cfg).load_hf_state_dict(old)
    torch.testing.assert_close(loaded.head.bias, sd["cls.predictions.bias"])


def test_mlm_head_is_tied_to_the_word_embeddings():
    model = BertForMaskedLM(BertConfig(V, E, 1, HEADS, FF, MAXLEN)).eval()
    ids = torch.randint(0, V, (2, 5))
    before = model(ids)
    names = [n for n, _ in model.named_parameters()]
    assert not any("decoder" in n for n in names)                      # no separate output matrix
    with torch.no_grad():
        model.bert.embeddings.word_embeddings.weight[7] += torch.randn(E)
        after = model(ids)
    changed = (after - before).abs().amax(dim=(0, 1))
    assert changed[7] > 0.1                                            # the logit of token 7 moved


def test_from_hf_config_rejects_what_attnlib_lacks():
    with pytest.raises(ValueError, match="hidden_act"):
        BertConfig.from_hf(hf_config(hidden_act="relu"))
    with pytest.raises(ValueError, match="one dropout probability"):
        BertConfig.from_hf(hf_config(attention_probs_dropout_prob=0.2))


def test_learned_positions_are_added_at_the_input():
    model = BertModel(BertConfig(V, E, 1, HEADS, FF, MAXLEN, dropout=0.0)).eval()
    ids = torch.tensor([[5, 6, 7]])
    emb = model.embeddings
    want = emb.norm(emb.word_embeddings(ids) + emb.token_type_embeddings(torch.zeros_like(ids))
                    + emb.position_embeddings.weight[:3])
    torch.testing.assert_close(emb(ids, torch.zeros_like(ids)), want)
    # the same token at two positions gets two different input vectors
    same = model.embeddings(torch.tensor([[5, 5]]), torch.zeros(1, 2, dtype=torch.long))
    assert (same[0, 0] - same[0, 1]).abs().max() > 1e-3


# --- bad input --------------------------------------------------------------------

def test_bad_config():
    with pytest.raises(ValueError, match="not divisible"):
        BertConfig(V, 10, 1, 4, 8, 8)
    with pytest.raises(ValueError, match="num_layers must be >= 1"):
        BertConfig(V, 8, 0, 2, 8, 8)
    with pytest.raises(ValueError, match="dropout must lie in"):
        BertConfig(V, 8, 1, 2, 8, 8, dropout=1.0)
    with pytest.raises(TypeError, match="attnlib BertConfig"):
        BertModel(hf_config())


def test_bad_batches():
    model = BertModel(BertConfig(V, 8, 1, 2, 8, 6))
    ids = torch.randint(0, V, (2, 5))
    with pytest.raises(TypeError, match="int64"):
        model(ids.float())
    with pytest.raises(ValueError, match=r"input_ids must have shape \(B, L\), got shape \(5,\)"):
        model(ids[0])
    with pytest.raises(ValueError, match="longer than max_position_embeddings=6"):
        model(torch.randint(0, V, (2, 7)))
    with pytest.raises(ValueError, match=r"input_ids must lie in \[0, 40\)"):
        model(ids + V)
    with pytest.raises(ValueError, match=r"token_type_ids must lie in \[0, 2\)"):
        model(ids, torch.full_like(ids, 2))
    with pytest.raises(ValueError, match=r"token_type_ids must be a tensor of shape \(2, 5\)"):
        model(ids, torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"attention_mask must be a tensor of shape \(2, 5\)"):
        model(ids, None, torch.ones(5))
    with pytest.raises(ValueError, match="only 0 and 1"):
        model(ids, None, torch.full_like(ids, 2))


# --- mask_tokens ------------------------------------------------------------------

SPECIAL = (0, 1, 2, 3, 4)
MASK_ID = 4


def sample(n_rows=1000, length=1000, vocab=1000, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (n_rows, length), generator=g)
    ids[:, 0], ids[:, -1] = 2, 3                                          # [CLS] ... [SEP]
    ids[::7, -50:] = 0                                                     # some padding
    inputs, labels = mask_tokens(ids, vocab_size=vocab, mask_token_id=MASK_ID, special_ids=SPECIAL,
                                 generator=torch.Generator().manual_seed(seed + 1))
    return ids, inputs, labels


def within(rate, p, n, sigmas=5.0):
    sd = math.sqrt(p * (1 - p) / n)
    return abs(rate - p) <= sigmas * sd, f"rate {rate:.5f}, expected {p} +- {sigmas * sd:.5f}"


def test_mask_tokens_rates_over_a_million_tokens():
    vocab = 1000
    ids, inputs, labels = sample(vocab=vocab)
    assert ids.numel() == 10**6
    normal = ~torch.isin(ids, torch.tensor(SPECIAL))
    selected = labels != IGNORE_INDEX
    n_normal, n_sel = int(normal.sum()), int(selected.sum())
    ok, msg = within(n_sel / n_normal, 0.15, n_normal)
    assert ok, f"selected: {msg}"
    masked = selected & (inputs == MASK_ID)
    randomised = selected & (inputs != MASK_ID) & (inputs != ids)
    unchanged = selected & (inputs == ids)
    # a random replacement equals the original with probability 1 / (number of candidates)
    coincide = 0.1 / (vocab - len(SPECIAL))
    for name, part, p in [("[MASK]", masked, 0.8), ("random", randomised, 0.1 - coincide),
                          ("unchanged", unchanged, 0.1 + coincide)]:
        ok, msg = within(int(part.sum()) / n_sel, p, n_sel)
        assert ok, f"{name}: {msg}"


def test_mask_tokens_never_selects_special_tokens_and_labels_are_minus_100_elsewhere():
    ids, inputs, labels = sample(n_rows=200)
    special = torch.isin(ids, torch.tensor(SPECIAL))
    assert (labels[special] == IGNORE_INDEX).all()
    assert torch.equal(inputs[special], ids[special])
    selected = labels != IGNORE_INDEX
    assert torch.equal(labels[selected], ids[selected])
    assert torch.equal(inputs[~selected], ids[~selected])                 # nothing else changes
    replaced = inputs[selected & (inputs != ids) & (inputs != MASK_ID)]
    assert replaced.numel() > 0 and not torch.isin(replaced, torch.tensor(SPECIAL)).any()


def test_mask_tokens_is_seeded_and_returns_new_tensors():
    ids = torch.randint(5, 50, (8, 30), generator=torch.Generator().manual_seed(0))
    copy = ids.clone()
    run = lambda seed: mask_tokens(ids, vocab_size=50, mask_token_id=4, special_ids=SPECIAL,  # noqa: E731
                                   generator=torch.Generator().manual_seed(seed))
    a, b, c = run(1), run(1), run(2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])
    assert torch.equal(ids, copy) and a[0].dtype == a[1].dtype == torch.long


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_mask_tokens_extreme_probabilities(p):
    ids = torch.randint(0, 30, (6, 20), generator=torch.Generator().manual_seed(0))
    _, labels = mask_tokens(ids, vocab_size=30, mask_token_id=4, special_ids=SPECIAL,
                            mlm_probability=p, generator=torch.Generator().manual_seed(0))
    normal = ~torch.isin(ids, torch.tensor(SPECIAL))
    assert torch.equal(labels != IGNORE_INDEX, normal if p == 1.0 else torch.zeros_like(normal))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), p=st.floats(0.0, 1.0), rows=st.integers(1, 5),
       length=st.integers(1, 30))
def test_mask_tokens_invariants(seed, p, rows, length):
    """Whatever the draw: only selected positions change, labels hold the originals, specials stay."""
    ids = torch.randint(0, 25, (rows, length), generator=torch.Generator().manual_seed(seed))
    inputs, labels = mask_tokens(ids, vocab_size=25, mask_token_id=4, special_ids=torch.tensor(SPECIAL),
                                 mlm_probability=p, generator=torch.Generator().manual_seed(seed + 1))
    selected = labels != IGNORE_INDEX
    assert torch.equal(inputs[~selected], ids[~selected])
    assert torch.equal(labels[selected], ids[selected])
    assert not torch.isin(ids[selected], torch.tensor(SPECIAL)).any()
    changed = inputs[selected & (inputs != ids)]
    assert ((changed == 4) | ~torch.isin(changed, torch.tensor(SPECIAL))).all()


def test_mask_tokens_bad_input():
    ids = torch.randint(0, 30, (2, 5))
    kw = dict(vocab_size=30, mask_token_id=4, special_ids=SPECIAL)
    with pytest.raises(TypeError, match="integer torch tensor"):
        mask_tokens(ids.float(), **kw)
    with pytest.raises(ValueError, match=r"input_ids must lie in \[0, 30\)"):
        mask_tokens(ids + 30, **kw)
    with pytest.raises(ValueError, match="mlm_probability"):
        mask_tokens(ids, **kw, mlm_probability=1.5)
    with pytest.raises(TypeError, match="mlm_probability must be a real number"):
        mask_tokens(ids, **kw, mlm_probability="0.15")
    with pytest.raises(ValueError, match="special_ids must be >= 0"):
        mask_tokens(ids, vocab_size=30, mask_token_id=4, special_ids=(-1,))
    with pytest.raises(ValueError, match="mask_token_id and special_ids"):
        mask_tokens(ids, vocab_size=30, mask_token_id=30)
    with pytest.raises(ValueError, match="every id is special"):
        mask_tokens(torch.zeros(2, 2, dtype=torch.long), vocab_size=2, mask_token_id=1,
                    special_ids=(0,))


# --- tokenizer and corpus ---------------------------------------------------------

@pytest.fixture(scope="module")
def corpus():
    return load_corpus()


@pytest.fixture(scope="module")
def tokenizer(corpus):
    return WordTokenizer.train(s for p in corpus for s in p)


def test_corpus_is_small_shipped_and_regenerates(corpus):
    assert CORPUS_FILE.stat().st_size < 300_000
    assert len(corpus) > 1000 and all(2 <= len(p) <= 6 for p in corpus)
    assert CORPUS_FILE.read_text(encoding="utf-8") == make_corpus()     # the file is the grammar's


def test_topic_dataset_is_seeded_and_labelled():
    s1, y1, names = topic_dataset(300, seed=4)
    s2, y2, _ = topic_dataset(300, seed=4)
    assert (s1, y1) == (s2, y2) and len(s1) == 300
    assert set(y1) == set(range(len(names))) and len(names) == 6
    assert topic_dataset(300, seed=5)[0] != s1


def test_tokenizer_round_trips_the_whole_corpus(corpus, tokenizer):
    for sentence in (s for p in corpus for s in p):
        assert tokenizer.decode(tokenizer.encode(sentence)[0]) == sentence


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_tokenizer_round_trip_property(tokenizer, data):
    words = data.draw(st.lists(st.sampled_from(tokenizer.vocab[len(SPECIAL_TOKENS):]), min_size=1,
                               max_size=12))
    text = WordTokenizer.normalize(" ".join(words))
    ids, types = tokenizer.encode(text)
    assert ids[0] == tokenizer.cls_id and ids[-1] == tokenizer.sep_id and set(types) == {0}
    assert tokenizer.decode(ids) == text
    assert tokenizer.unk_id not in ids


def test_tokenizer_basics(tokenizer):
    assert tuple(tokenizer.vocab[:5]) == SPECIAL_TOKENS
    assert tokenizer.special_ids == (0, 1, 2, 3, 4) and tokenizer.mask_id == 4
    assert tokenize("The Cat, sat.") == ["the", "cat", ",", "sat", "."]
    assert tokenize("The capital is [MASK].[SEP]") == ["the", "capital", "is", "[MASK]", ".", "[SEP]"]
    assert tokenize("[mask]") == ["[", "mask", "]"]                   # only the exact spelling
    masked, _ = tokenizer.encode("the cat eats [MASK].")
    assert masked[4] == tokenizer.mask_id and tokenizer.decode(masked) == "the cat eats."
    ids, types = tokenizer.encode("the cat eats fish.", "cats eat fish every day.")
    assert tokenizer.convert_ids_to_tokens(ids) == [
        "[CLS]", "the", "cat", "eats", "fish", ".", "[SEP]",
        "cats", "eat", "fish", "every", "day", ".", "[SEP]"]
    assert types == [0] * 7 + [1] * 7
    assert tokenizer.encode("the zebra eats fish.")[0][2] == tokenizer.unk_id
    assert tokenizer.decode(tokenizer.encode("the zebra")[0]) == "the"            # [UNK] is special
    assert tokenizer.decode(ids, skip_special_tokens=False).startswith("[CLS] the cat")


def test_tokenizer_truncation_and_batches(tokenizer):
    ids, types = tokenizer.encode("the cat eats fish every day.", "the dog eats bones.", max_length=9)
    assert len(ids) == 9 and types.count(1) >= 2
    enc = tokenizer.batch_encode(["the cat eats fish.", "the dog."], ["cats eat fish.", "dogs."])
    assert enc["input_ids"].shape == enc["attention_mask"].shape == (2, 12)
    assert enc["attention_mask"][1].tolist() == [1] * 8 + [0] * 4
    assert (enc["input_ids"][1, 8:] == tokenizer.pad_id).all()
    assert enc["token_type_ids"][0].tolist() == [0] * 7 + [1] * 5


def test_tokenizer_vocab_options_and_bad_input():
    tok = WordTokenizer.train(["a b b c c c", "c"], min_count=2)
    assert tok.vocab[5:] == ["c", "b"]
    assert WordTokenizer.train(["a b b c c c"], max_size=6).vocab[5:] == ["c"]
    with pytest.raises(ValueError, match="must start with the special tokens"):
        WordTokenizer(["a", "b"])
    with pytest.raises(ValueError, match="duplicate"):
        WordTokenizer([*SPECIAL_TOKENS, "a", "a"])
    with pytest.raises(TypeError, match="text must be a str"):
        tok.encode(3)
    with pytest.raises(TypeError, match="single str"):
        tok.batch_encode("the cat")
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 7\)"):
        tok.decode([9])
