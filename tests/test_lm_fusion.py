"""The word LM inside the joint search: prefix look-ahead and the gains the search adds."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from asr_helpers.decoding.lm_fusion import FusionLM, PrefixLookahead
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


def gains_over(lm: FusionLM, tokens: list[int]) -> float:
    state, total = lm.init_state()[0], 0.0
    for token in tokens:
        after = lm.advance(state, token)
        total, state = total + lm.gain(state, after), after
    return total + lm.gain(state, lm.finish(state))


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
    assert lm.advance(lm.advance(lm.init_state()[0], 1), 2).partial == "c"


def test_a_word_in_progress_is_charged_what_it_can_still_become(arpa):
    tokenizer = CharTokenizer()
    lm = FusionLM.for_tokenizer(arpa, tokenizer, alpha=1.0, beta=0.0)
    state = lm.init_state()[0]
    for token in tokenizer.encode("the ca"):
        state = lm.advance(state, token)
    assert state.partial == "ca" and state.words == 1
    assert state.score == pytest.approx(state.completed + math.log(10 ** -1.0 + 10 ** -1.5), abs=1e-6)
    assert lm.advance(state, tokenizer.encode("x")[0]).score < state.score - 5, "a prefix no word has"


def test_as_a_scorer_it_gives_the_gains_of_a_batch_of_candidates_and_finishes_on_the_end_symbol(arpa):
    tokenizer = CharTokenizer()
    lm = FusionLM.for_tokenizer(arpa, tokenizer, alpha=0.7, beta=0.5)
    assert lm.eos == tokenizer.vocab_size and not lm.full
    start = lm.init_state()[0]
    the = start
    for token in tokenizer.encode("the"):
        the = lm.advance(the, token)
    c, space = tokenizer.encode("c")[0], tokenizer.encode(" ")[0]
    gains, states = lm.score([[], tokenizer.encode("the")], [start, the], torch.tensor([[c, lm.eos], [space, lm.eos]]))
    assert gains.shape == (2, 2)
    assert gains[1, 1].item() == pytest.approx(lm.gain(the, lm.finish(the)))
    assert gains[1, 0].item() == pytest.approx(lm.gain(the, lm.advance(the, space)))
    assert gains[0, 0].item() == pytest.approx(lm.gain(start, lm.advance(start, c)))
    assert lm.select(states, [1], [0])[0] == lm.advance(the, space)
    assert lm.with_weights(1.0, 0.0).alpha == 1.0 and lm.alpha == 0.7, "a reweighted copy leaves the original be"
