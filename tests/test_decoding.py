"""Greedy and prefix beam search on tiny hand-made log-prob matrices, checked against brute force.

LM fusion with a real KenLM model is tested in test_lm.py (it needs the compiled lmplz).
"""
from __future__ import annotations

import itertools
import logging
import os

import numpy as np
import pytest
import torch

from asr_helpers.decoding.ctc import (
    LMDecoder,
    beam_decode,
    greedy_decode,
    greedy_ids,
    prefix_beam_search,
)
from asr_helpers.tools.bench_decode import bench_decode, peaky_log_probs
from asr_helpers.decoding.ctc import available_decoders, build_decoder
from asr_helpers.decoding.decoders import DECODERS, TABLE, decoders_for, file_safe, spec
from asr_helpers.decoding.forked_pool import ForkedPool
from asr_helpers.data.text import CharTokenizer

TOK = CharTokenizer()
A, B = TOK.encode("ab")


def log_rows(rows: list[list[float]]) -> np.ndarray:
    """Log-probs from rows of (unnormalised) probabilities."""
    probs = np.asarray(rows, dtype=np.float64)
    return np.log(probs / probs.sum(axis=1, keepdims=True))


def spelled(text: str, vocab: int = TOK.vocab_size) -> np.ndarray:
    """One confident frame per character, a blank frame after each: greedy reads back ``text``."""
    rows = []
    for token in TOK.encode(text):
        for label in (token, 0):
            row = np.full(vocab, 1e-3)
            row[label] = 1.0
            rows.append(row)
    return log_rows(rows)


def brute_force(log_probs: np.ndarray, blank: int = 0) -> dict[tuple[int, ...], float]:
    """log P(prefix) by summing over every one of the V^T alignments."""
    frames, vocab = log_probs.shape
    totals: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(vocab), repeat=frames):
        score = sum(log_probs[t, c] for t, c in enumerate(path))
        collapsed = tuple(c for i, c in enumerate(path) if c != blank and (i == 0 or c != path[i - 1]))
        totals[collapsed] = np.logaddexp(totals.get(collapsed, -np.inf), score)
    return totals


def ctc_log_prob(log_probs: np.ndarray, prefix: tuple[int, ...]) -> float:
    """Exact log P(prefix) for longer matrices, from torch's CTC forward algorithm."""
    lp = torch.from_numpy(log_probs)[:, None, :]
    target = torch.tensor([prefix], dtype=torch.long) if prefix else torch.zeros((1, 0), dtype=torch.long)
    loss = torch.nn.functional.ctc_loss(lp, target, torch.tensor([len(log_probs)]), torch.tensor([len(prefix)]),
                                        reduction="sum")
    return -float(loss)


# ----------------------------------------------------------------------------- greedy

def test_greedy_collapses_repeats_drops_blanks_and_ignores_padding():
    # frames: a a _ a b b | padding that would read "b" if it were not cut by the length
    ids = [[A, A, 0, A, B, B, B], [B, 0, B, A, 0, 0, 0]]
    lengths = [6, 5]
    log_probs = np.log(np.full((2, 7, TOK.vocab_size), 1e-3))
    for b, row in enumerate(ids):
        log_probs[b, np.arange(7), row] = 0.0
    log_probs[0, 6] = np.log(np.eye(TOK.vocab_size)[B] + 1e-3)
    assert greedy_ids(log_probs, np.array(lengths)) == [[A, A, B], [B, B, A]]
    assert greedy_decode(torch.from_numpy(log_probs), torch.tensor(lengths), TOK) == ["aab", "bba"]


def test_greedy_zero_length_is_empty_text():
    log_probs = torch.from_numpy(spelled("ab"))[None]
    assert greedy_decode(log_probs, torch.tensor([0]), TOK) == [""]


def test_greedy_rejects_wrong_shapes():
    log_probs = torch.zeros(2, 5, TOK.vocab_size)
    with pytest.raises(ValueError, match="lengths must lie in"):
        greedy_decode(log_probs, torch.tensor([5, 6]), TOK)
    with pytest.raises(ValueError, match="1 lengths for a batch of 2"):
        greedy_decode(log_probs, torch.tensor([5]), TOK)
    with pytest.raises(ValueError, match="10 classes but the tokenizer has 29"):
        greedy_decode(torch.zeros(1, 5, 10), torch.tensor([5]), TOK)
    with pytest.raises(ValueError, match=r"\[batch, frames, vocab\]"):
        greedy_decode(torch.zeros(5, TOK.vocab_size), torch.tensor([5]), TOK)


# ----------------------------------------------------------------------------- prefix beam search

@pytest.mark.parametrize("seed", range(60))
def test_beam_search_matches_brute_force_over_all_alignments(seed):
    rng = np.random.default_rng(seed)
    frames, vocab = int(rng.integers(1, 6)), int(rng.integers(2, 4))
    log_probs = log_rows(np.exp(2.0 * rng.standard_normal((frames, vocab))))
    exact = brute_force(log_probs)
    found = prefix_beam_search(log_probs, beam_width=1000, token_prune=None)
    assert found[0][0] == max(exact, key=exact.get)
    assert np.isclose(found[0][1], exact[found[0][0]])
    assert {prefix for prefix, _ in found} == set(exact)
    for prefix, score in found:
        assert np.isclose(score, exact[prefix])
    assert [s for _, s in found] == sorted((s for _, s in found), reverse=True)


def test_repeat_needs_a_blank_between():
    # a, a: one "a" held for two frames ... a, _, a: two "a"s
    held = log_rows([[0.1, 0.8, 0.1], [0.1, 0.8, 0.1]])
    split = log_rows([[0.1, 0.8, 0.1], [0.8, 0.1, 0.1], [0.1, 0.8, 0.1]])
    assert prefix_beam_search(held, blank=0)[0][0] == (1,)
    assert prefix_beam_search(split, blank=0)[0][0] == (1, 1)


def test_beam_finds_the_prefix_greedy_misses():
    # greedy path is "_ _" (0.6 * 0.6 = 0.36); P("a") = 1 - 0.36 - 0 = 0.64 over three alignments
    log_probs = log_rows([[0.6, 0.4], [0.6, 0.4]])
    assert greedy_ids(log_probs[None], [2]) == [[]]
    best, score = prefix_beam_search(log_probs, beam_width=4)[0]
    assert best == (1,)
    assert np.isclose(np.exp(score), 0.64)


def test_all_blank_and_empty_input_give_the_empty_prefix():
    blanks = log_rows([[0.9, 0.05, 0.05]] * 3)
    best, score = prefix_beam_search(blanks)[0]
    assert best == ()
    assert np.isclose(score, 3 * np.log(0.9))
    assert prefix_beam_search(np.zeros((0, 3))) == [((), 0.0)]


@pytest.mark.parametrize("seed", range(5))
def test_beam_beats_greedy_and_its_score_is_a_lower_bound(seed):
    rng = np.random.default_rng(seed)
    log_probs = log_rows(np.exp(1.5 * rng.standard_normal((40, 6))))
    greedy = tuple(greedy_ids(log_probs[None], [40])[0])
    (best, score), *_ = prefix_beam_search(log_probs, beam_width=8)
    assert ctc_log_prob(log_probs, best) >= ctc_log_prob(log_probs, greedy) - 1e-9
    assert score <= ctc_log_prob(log_probs, best) + 1e-9  # pruned alignments only lower it


def test_unpruned_scores_equal_torch_ctc_on_longer_input():
    rng = np.random.default_rng(7)
    log_probs = log_rows(np.exp(rng.standard_normal((10, 3))))  # at most 2^11 - 1 prefixes: none pruned
    found = prefix_beam_search(log_probs, beam_width=4096, token_prune=None)
    assert np.isclose(np.logaddexp.reduce([s for _, s in found]), 0.0)  # every alignment accounted for
    for prefix, score in found[:50]:
        assert np.isclose(score, ctc_log_prob(log_probs, prefix))


def test_token_pruning_keeps_the_answer_on_peaky_input():
    rng = np.random.default_rng(0)
    log_probs = peaky_log_probs(TOK.encode("hello world"), 60, TOK.vocab_size, rng=rng)
    full = prefix_beam_search(log_probs, token_prune=None)[0][0]
    assert prefix_beam_search(log_probs, token_prune=-5.0)[0][0] == full
    assert prefix_beam_search(log_probs, token_prune=None, top_k=2)[0][0] == full
    assert TOK.decode(list(full)) == "hello world"


def test_beam_search_rejects_logits_and_bad_settings():
    with pytest.raises(ValueError, match="log_softmax"):
        prefix_beam_search(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="beam_width"):
        prefix_beam_search(spelled("a"), beam_width=0)
    with pytest.raises(ValueError, match=r"\[frames, vocab\]"):
        prefix_beam_search(spelled("a")[None])
    with pytest.raises(ValueError, match="blank id 40"):
        prefix_beam_search(spelled("a"), blank=40)


def test_beam_decode_batch_with_lengths():
    first, second = spelled("abba"), spelled("cab")
    batch = np.full((2, len(first), TOK.vocab_size), np.log(1 / TOK.vocab_size))
    batch[0], batch[1, : len(second)] = first, second
    texts = beam_decode(torch.from_numpy(batch), torch.tensor([len(first), len(second)]), TOK, beam_width=4)
    assert texts == ["abba", "cab"]


class PieceTokenizer:
    """A BPE-like tokenizer: multi-character labels, blank 0."""

    labels = ["", "\u2581he", "llo", "\u2581wor", "ld"]
    blank_id, vocab_size = 0, 5

    def decode(self, ids: list[int]) -> str:
        return "".join(self.labels[i] for i in ids).replace("\u2581", " ").strip()


def test_decoders_work_on_token_ids_not_characters():
    log_probs = log_rows([[0.05, 0.9, 0.02, 0.02, 0.01], [0.05, 0.02, 0.9, 0.02, 0.01],
                          [0.05, 0.02, 0.02, 0.9, 0.01], [0.05, 0.02, 0.02, 0.01, 0.9]])[None]
    tokenizer = PieceTokenizer()
    assert greedy_decode(log_probs, [4], tokenizer) == ["hello world"]
    assert beam_decode(log_probs, np.array([4]), tokenizer) == ["hello world"]


# ----------------------------------------------------------------------------- helpers, LM-free pyctcdecode

def test_peaky_log_probs_read_back_with_double_letters():
    rng = np.random.default_rng(1)
    log_probs = peaky_log_probs(TOK.encode("a little bookkeeping"), 100, TOK.vocab_size, rng=rng)
    assert np.allclose(np.exp(log_probs).sum(axis=1), 1.0, atol=1e-5)
    assert greedy_decode(log_probs[None], [100], TOK) == ["a little bookkeeping"]
    with pytest.raises(ValueError, match="need at least"):
        peaky_log_probs([1, 2, 3], 5, TOK.vocab_size)


def test_lm_decoder_without_lm_matches_greedy_and_pool_matches_serial():
    rng = np.random.default_rng(2)
    texts = ["the cat", "sat on", "a mat", "by the fire", "her sister"]
    matrices = [peaky_log_probs(TOK.encode(t), 40, TOK.vocab_size, rng=rng) for t in texts]
    with LMDecoder(TOK.labels, beam_width=8) as decoder:
        assert decoder.decode_batch(matrices) == texts
        assert decoder.decode_batch(matrices, pool_size=2) == texts
        with pytest.raises(ValueError, match=r"\[frames, 29\]"):
            decoder.decode(np.zeros((4, 5), dtype=np.float32))


def test_lm_decoder_names_a_missing_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="download_lm"):
        LMDecoder(TOK.labels, tmp_path / "nope.bin")
    with pytest.raises(ValueError, match="pass lm_path"):
        LMDecoder(TOK.labels, unigrams=["the"])


def test_bench_decode_reports_rates(caplog):
    rng = np.random.default_rng(3)
    matrices = [peaky_log_probs(TOK.encode("the cat sat"), 40, TOK.vocab_size, rng=rng) for _ in range(6)]
    with caplog.at_level(logging.WARNING):
        result = bench_decode(matrices, TOK, pool_sizes=(1, 2))
    assert result["utterances"] == 6 and result["frames"] == 240
    for key in ("greedy", "beam", "lm_pool1", "lm_pool2", "lm_pool_speedup"):
        assert result[key] > 0


class FakeLM:
    """Stands in for an LMDecoder: records the pool size and answers one text per utterance."""

    def __init__(self):
        self.pool_sizes = []

    def decode_batch(self, matrices, pool_size=1):
        self.pool_sizes.append(pool_size)
        return [f"lm{len(m)}" for m in matrices]


def test_registry_resolves_every_decoder_name_in_one_place():
    matrices = [spelled("abba"), spelled("cab")]
    assert build_decoder("greedy", TOK).decode(matrices) == ["abba", "cab"]
    assert build_decoder("beam", TOK, beam_width=4).decode(matrices) == ["abba", "cab"]
    lm = FakeLM()
    assert build_decoder("lm", TOK, lm_decoder=lm, pool_size=3).decode(matrices) == [f"lm{len(m)}" for m in matrices]
    assert lm.pool_sizes == [3]
    assert available_decoders() == ["greedy", "beam"] and available_decoders(lm) == ["greedy", "beam", "lm"]
    with pytest.raises(ValueError, match="language model"):
        build_decoder("lm", TOK)
    with pytest.raises(ValueError, match="greedy"):
        build_decoder("beam+lm", TOK)


def test_registry_beam_decoder_is_the_prefix_beam_search():
    # Frame-wise "a" wins each frame, but "b" collects more probability over its alignments.
    matrix = log_rows([[0.4, 0.35, 0.25], [0.4, 0.35, 0.25]])
    tok = CharTokenizer()
    lp = np.full((2, tok.vocab_size), -30.0)
    lp[:, :3] = matrix
    lp -= np.logaddexp.reduce(lp, axis=1, keepdims=True)
    best = prefix_beam_search(lp, 8, tok.blank_id)[0][0]
    assert build_decoder("beam", tok, beam_width=8).decode([lp]) == [tok.decode(list(best))]
    assert build_decoder("greedy", tok).decode([lp]) == greedy_decode(lp[None], np.array([2]), tok)


def test_the_decoder_table_holds_every_decoder_fact():
    assert DECODERS == ("greedy", "beam", "lm", "attention", "attention_beam", "joint", "joint+lm")
    assert [d for d in DECODERS if TABLE[d].needs_lm] == ["lm", "joint+lm"]
    assert decoders_for({"ctc"}) == ["greedy", "beam", "lm"] and decoders_for({"ctc"}, with_lm=False) == ["greedy", "beam"]
    assert decoders_for({"ctc", "attention"}, with_lm=False)[-1] == "joint"
    assert {d: (spec(d).tuned, spec(d).metric) for d in DECODERS if spec(d).tuned} == {
        "lm": (("alpha", "beta"), "wer"), "joint": (("ctc_weight",), "cer"),
        "joint+lm": (("ctc_weight", "alpha", "beta"), "cer")}
    assert [file_safe(d) for d in ("joint+lm", "attention_beam")] == ["joint_lm", "attention_beam"]
    with pytest.raises(ValueError, match="unknown decoder 'beam\\+lm'; choose from greedy, beam"):
        spec("beam+lm")


class _EchoDecoder:
    """``forked_pool``'s protocol without an LM: answers with its weights, the matrix's length and its process."""

    def __init__(self):
        self.params = (0.5, 1.0)

    def set_params(self, alpha, beta):
        self.params = (alpha, beta)

    def decode_prepared(self, matrix):
        return f"{self.params[0]} {self.params[1]} {len(matrix)} {os.getpid()}"


def test_forked_pool_runs_in_workers_that_follow_the_parents_weights():
    decoder, pool = _EchoDecoder(), ForkedPool()
    try:
        first = [text.split() for text in pool.decode(decoder, [np.zeros((n, 3)) for n in (1, 2, 3)], 2)]
        decoder.set_params(2.0, 0.0)
        later = [text.split() for text in pool.decode(decoder, [np.zeros((n, 3)) for n in (4, 5)], 2)]
    finally:
        pool.close()
    assert [t[:3] for t in first] == [["0.5", "1.0", "1"], ["0.5", "1.0", "2"], ["0.5", "1.0", "3"]]
    assert [t[:3] for t in later] == [["2.0", "0.0", "4"], ["2.0", "0.0", "5"]]
    assert str(os.getpid()) not in {t[3] for t in first + later}
