"""The shipped models of chapters 05 and 06 and the script that trains them.

The checkpoints must load into the configuration the chapter describes and meet the
chapter's assertions. A short run of the training script, written to a temporary
folder, must already beat the unigram baseline by a relaxed margin: the language models
after 60 steps instead of 1500 (perplexity a third of the baseline's instead of a
tenth), the BERT after 100 steps instead of 2500 (masked-token accuracy 0.05 above the
baseline's instead of 0.3).
"""

import math

import numpy as np
import pytest
import torch

from attnlib import CausalLM, kv_cache_bytes
from attnlib.data import train_checkpoints as lm


@pytest.fixture(scope="module")
def data():
    return lm.lm_data()


@pytest.fixture(scope="module")
def unigram(data):
    tokenizer, train_ids, valid_ids = data
    return lm.unigram_perplexity(train_ids, valid_ids, tokenizer.vocab_size, lm.MODEL["max_positions"])


def test_data_is_the_corpus_with_paragraph_markers(data):
    tokenizer, train_ids, valid_ids = data
    assert train_ids.dtype == valid_ids.dtype == torch.long
    assert 0.08 < len(valid_ids) / (len(train_ids) + len(valid_ids)) < 0.12
    for ids in (train_ids, valid_ids):
        assert ids[0] == tokenizer.cls_id and ids[-1] == tokenizer.sep_id
        assert (ids == tokenizer.cls_id).sum() == (ids == tokenizer.sep_id).sum()
        assert not (ids == tokenizer.unk_id).any()      # the vocabulary covers the whole corpus


@pytest.mark.parametrize("kv_heads", sorted(lm.KV_HEADS))
def test_shipped_checkpoint_loads_with_the_chapter_config(data, unigram, kv_heads):
    tokenizer, train_ids, valid_ids = data
    model, losses = lm.load_checkpoint(kv_heads)
    assert isinstance(model, CausalLM) and not model.training
    assert model.config == lm.lm_config(tokenizer.vocab_size, kv_heads)
    assert len(losses) == lm.TRAINING["steps"]
    ppl = lm.perplexity(model, valid_ids)
    assert ppl < unigram / 10                         # the chapter's claim
    assert math.exp(losses[-1]) < ppl


def test_fewer_key_value_heads_against_multi_head(data):
    """The chapter's comparison: caches 4:2:1, perplexities within 10%, training loss in
    the order of the key/value heads."""
    _, _, valid_ids = data
    models = {kv_heads: lm.load_checkpoint(kv_heads) for kv_heads in ("mha", "gqa", "mqa")}
    assert [m.config.num_kv_heads for m, _ in models.values()] == [4, 2, 1]
    ppls = [lm.perplexity(m, valid_ids) for m, _ in models.values()]
    assert max(ppls) < 1.1 * min(ppls)
    train_losses = [np.mean(losses[-100:]) for _, losses in models.values()]
    assert train_losses == sorted(train_losses)
    sizes = [kv_cache_bytes(m.config.num_layers, m.config.num_kv_heads, m.config.head_dim, 64)
             for m, _ in models.values()]
    assert sizes[0] == 2 * sizes[1] == 4 * sizes[2]


def test_the_script_with_few_steps_beats_the_unigram_baseline(data, unigram, tmp_path, capsys):
    _, _, valid_ids = data
    lm.main(["--models", "lm", "--steps", "60", "--out", str(tmp_path)])
    assert "held-out perplexity" in capsys.readouterr().out
    for kv_heads in lm.KV_HEADS:
        model, losses = lm.load_checkpoint(kv_heads, tmp_path)
        assert len(losses) == 60 and losses[-1] < losses[0] - 1.0
        assert lm.perplexity(model, valid_ids) < unigram / 3


def test_unknown_checkpoint_name():
    with pytest.raises(ValueError, match="kv_heads must be one of"):
        lm.lm_config(100, "sparse")


@pytest.fixture(scope="module")
def bert_data():
    return lm.bert_data()


def masked_accuracies(model, bert_data):
    """``(accuracy, baseline, on the 40 most frequent words, on the others)`` on the held-out
    pairs, as chapter 05 measures them."""
    tokenizer, train, valid = bert_data
    predictions, targets = lm.masked_predictions(model, tokenizer, valid)
    counts = torch.bincount(train["input_ids"][train["attention_mask"].bool()], minlength=tokenizer.vocab_size)
    counts[list(tokenizer.special_ids)] = 0
    right, frequent = predictions == targets, torch.isin(targets, counts.topk(40).indices)
    return (right.float().mean().item(), (targets == counts.argmax()).float().mean().item(),
            right[frequent].float().mean().item(), right[~frequent].float().mean().item())


def test_bert_data_pairs_consecutive_sentences(bert_data):
    tokenizer, train, valid = bert_data
    for pairs in (train, valid):
        assert pairs["input_ids"][:, 0].eq(tokenizer.cls_id).all()
        assert (pairs["input_ids"] == tokenizer.sep_id).sum() == 2 * len(pairs["input_ids"])
        assert pairs["token_type_ids"].max() == 1
    assert 0.08 < len(valid["input_ids"]) / (len(train["input_ids"]) + len(valid["input_ids"])) < 0.12


def test_shipped_bert_loads_and_meets_the_chapter_claims(bert_data):
    tokenizer, _, _ = bert_data
    model, losses = lm.load_bert_checkpoint()
    assert model.config == lm.bert_config(tokenizer.vocab_size) and not model.training
    assert len(losses) == lm.BERT_TRAINING["steps"]
    assert lm.bert_checkpoint_path().stat().st_size < 2 ** 19
    log_v = math.log(tokenizer.vocab_size)
    assert abs(np.mean(losses[:5]) - log_v) < 0.1 * log_v
    assert np.mean(losses[-50:]) < 0.25 * np.mean(losses[:50])
    accuracy, baseline, frequent, other = masked_accuracies(model, bert_data)
    assert accuracy > baseline + 0.3
    assert frequent > 0.9 and 0.4 < other < frequent


def test_the_script_with_few_steps_trains_a_bert_above_the_baseline(bert_data, tmp_path, capsys):
    lm.main(["--models", "bert", "--steps", "100", "--out", str(tmp_path)])
    assert "masked-token accuracy" in capsys.readouterr().out
    model, losses = lm.load_bert_checkpoint(tmp_path)
    assert len(losses) == 100 and np.mean(losses[-10:]) < np.mean(losses[:10]) - 1.0
    accuracy, baseline, _, _ = masked_accuracies(model, bert_data)
    assert accuracy > baseline + 0.05
