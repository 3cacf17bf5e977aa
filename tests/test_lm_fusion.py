"""The word LM inside the joint search: prefix look-ahead and the gains the search adds."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from asr_helpers.decoding.lm_fusion import FusionLM, LMBatch, PrefixLookahead
from asr_helpers.data.text import CharTokenizer


def write_arpa(path: Path, unigrams: dict[str, float], bigrams: dict[str, float]) -> Path:
    """A hand-written bigram ARPA model (log10 probabilities; kenlm needs order 2), backoffs -0.3."""
    words = {"<s>": -99.0, "</s>": -1.0, "<unk>": -3.0, **unigrams}
    lines = ["\\data\\", f"ngram 1={len(words)}", f"ngram 2={len(bigrams)}", "", "\\1-grams:"]
    lines += [f"{p}\t{w}\t-0.3" for w, p in words.items()] + ["", "\\2-grams:"]
    lines += [f"{p}\t{pair}" for pair, p in bigrams.items()] + ["", "\\end\\", ""]
    path.write_text("\n".join(lines))
    return path


def test_look_ahead_is_the_unigram_mass_of_the_words_a_prefix_can_become():
    probs = {"the": 0.2, "then": 0.05, "there": 0.05, "cat": 0.1}
    lookahead = PrefixLookahead(list(probs), [math.log10(p) for p in probs.values()], unk_penalty=-7.0)
    assert lookahead("") == 0.0
    assert lookahead("th") == lookahead("the") == pytest.approx(math.log(0.3))
    assert lookahead("ther") == pytest.approx(math.log(0.05))
    assert lookahead("ca") == pytest.approx(math.log(0.1))
    assert lookahead("thx") == pytest.approx(math.log(0.3) - 7.0), "each letter beyond the vocabulary costs the penalty"
    assert lookahead("thxy") == pytest.approx(math.log(0.3) - 14.0)


@pytest.fixture
def arpa(tmp_path) -> Path:
    return write_arpa(tmp_path / "words.arpa", {"the": -0.5, "cat": -1.0, "cap": -1.5, "sat": -1.2},
                      {"<s> the": -0.2, "the cat": -0.3, "cat sat": -0.4, "sat </s>": -0.1})


def walk(lm: FusionLM, tokens: list[int]):
    """The gains of ``tokens`` unit by unit, summed, and the LM state after them (a batch of one)."""
    state, total = lm.init_state(1), 0.0
    for i, token in enumerate(tokens):
        gains, after = lm.score([tokens[:i]], state, torch.tensor([[token]]))
        total, state = total + gains[0, 0].item(), lm.select(after, [0], [0])
    return total, state


def gains_over(lm: FusionLM, tokens: list[int]) -> float:
    total, state = walk(lm, tokens)
    return total + lm.score([tokens], state, torch.tensor([[lm.eos]]))[0][0, 0].item()


@pytest.mark.parametrize("text", ["the cat sat", "the cap", "the dog sat", "cat"])
def test_the_gains_over_a_transcript_add_up_to_its_lm_score_and_word_bonus(arpa, text):
    tokenizer = CharTokenizer()
    lm = FusionLM.for_tokenizer(arpa, tokenizer, alpha=0.7, beta=0.5)
    expected = 0.7 * lm.sentence_score(text) + 0.5 * len(text.split())
    assert gains_over(lm, tokenizer.encode(text)) == pytest.approx(expected, abs=1e-4)


def test_pieces_that_start_words_score_like_characters(arpa):
    pieces = ["", " the", " c", "at", " sat"]  # a BPE-like tokenizer: the word-start mark is a space
    lm = FusionLM(arpa, pieces, alpha=1.0, beta=0.0)
    assert gains_over(lm, [1, 2, 3, 4]) == pytest.approx(lm.sentence_score("the cat sat"), abs=1e-4)
    _, state = walk(lm, [1, 2])
    assert state.words[0] == 1 and state.score[0] - state.completed[0] == pytest.approx(lm.lookahead("c"))


def test_a_word_in_progress_is_charged_what_it_can_still_become(arpa):
    tokenizer = CharTokenizer()
    lm = FusionLM.for_tokenizer(arpa, tokenizer, alpha=1.0, beta=0.0)
    _, state = walk(lm, tokenizer.encode("the ca"))
    assert state.words[0] == 1
    assert state.score[0] == pytest.approx(state.completed[0] + math.log(10 ** -1.0 + 10 ** -1.5), abs=1e-6)
    gains, _ = lm.score([tokenizer.encode("the ca")], state, torch.tensor([tokenizer.encode("x")]))
    assert gains[0, 0].item() < -5, "a prefix no word has"


def test_as_a_scorer_it_scores_a_batch_of_rows_and_candidates_as_each_alone(arpa):
    tokenizer = CharTokenizer()
    lm = FusionLM.for_tokenizer(arpa, tokenizer, alpha=0.7, beta=0.5)
    assert lm.eos == tokenizer.vocab_size and not lm.full
    texts = ["", "the", "the ca", "the"]
    rows = [walk(lm, tokenizer.encode(text))[1] for text in texts]
    state = LMBatch(*(np.concatenate([getattr(r, name) for r in rows]) for name in
                      ("history", "node", "completed", "words", "score")))
    candidates = torch.tensor([tokenizer.encode("c ") + [lm.eos]] * len(texts))
    gains, after = lm.score([tokenizer.encode(t) for t in texts], state, candidates)
    assert gains.shape == (4, 3)
    for row, text in enumerate(texts):
        for column, token in enumerate(candidates[row].tolist()):
            alone = (gains_over(lm, tokenizer.encode(text)) - walk(lm, tokenizer.encode(text))[0] if token == lm.eos
                     else walk(lm, tokenizer.encode(text) + [token])[0] - walk(lm, tokenizer.encode(text))[0])
            assert gains[row, column].item() == pytest.approx(alone, abs=1e-9), (text, token)
    chosen = lm.select(after, [2], [1])
    assert chosen.words[0] == 2 and chosen.score[0] == chosen.completed[0], "a space completes the word"
    assert lm.with_weights(1.0, 0.0).alpha == 1.0 and lm.alpha == 0.7, "a reweighted copy leaves the original be"


class _CountingModel:
    """A KenLM model that counts the word scores asked of it."""

    def __init__(self, model):
        self.model, self.calls = model, []

    def BaseScore(self, context, word, after):  # noqa: N802 (KenLM's name)
        self.calls.append(word)
        return self.model.BaseScore(context, word, after)

    def __getattr__(self, name):
        return getattr(self.model, name)


def test_kenlm_is_asked_once_per_distinct_history_and_word(arpa):
    tokenizer = CharTokenizer()
    lm = FusionLM.for_tokenizer(arpa, tokenizer, alpha=0.7, beta=0.5)
    _, one = walk(lm, tokenizer.encode("the"))
    lm.model = counting = _CountingModel(lm.model)
    state = LMBatch(*(np.repeat(getattr(one, name), 3) for name in ("history", "node", "completed", "words", "score")))
    candidates = torch.tensor([tokenizer.encode(" c") + [lm.eos]] * 3)
    first, _ = lm.score([tokenizer.encode("the")] * 3, state, candidates)
    assert sorted(counting.calls) == ["</s>", "the"], "three rows, each ending the word twice: two KenLM calls"
    again, _ = lm.score([tokenizer.encode("the")] * 3, state, candidates)
    assert len(counting.calls) == 2 and torch.equal(first, again), "remembered"
