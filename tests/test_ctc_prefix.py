import itertools

import numpy as np
import pytest
import torch

from asr_helpers.decoding.ctc_prefix import LOG_ZERO, CTCPrefixScorer

BLANK, EOS = 0, 3


def _log_probs(frames: int, vocab: int = 3, seed: int = 0) -> np.ndarray:
    logits = np.random.default_rng(seed).normal(size=(frames, vocab)) * 1.5
    return logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)


def _collapse(path) -> tuple[int, ...]:
    out = []
    for previous, token in zip((None,) + tuple(path), path):
        if token != BLANK and token != previous:
            out.append(token)
    return tuple(out)


def _brute_force(log_probs: np.ndarray) -> dict[tuple[int, ...], float]:
    """Probability of every collapsed transcript, summed over all alignments."""
    frames, vocab = log_probs.shape
    totals: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(vocab), repeat=frames):
        p = float(np.exp(sum(log_probs[t, k] for t, k in enumerate(path))))
        key = _collapse(path)
        totals[key] = totals.get(key, 0.0) + p
    return totals


def _starts_with(totals, prefix) -> float:
    return sum(p for seq, p in totals.items() if seq[:len(prefix)] == tuple(prefix))


def _walk(scorer: CTCPrefixScorer, prefix):
    """Score ``prefix`` token by token from the empty prefix; returns the last psi and state."""
    state, psi = scorer.init_state()[0], 0.0
    for i, token in enumerate(prefix):
        scores, states = _one(scorer, list(prefix[:i]), state, [token])
        psi, state = float(scores[0]), states[0]
    return psi, state


def _one(scorer: CTCPrefixScorer, prefix, state, candidates):
    """Prefix scores and states of one hypothesis's candidates."""
    scores, states = scorer.prefix_scores([prefix], [state], [candidates])
    return scores[0], states[0]


@pytest.mark.parametrize("prefix", [(1,), (2,), (1, 2), (1, 1), (2, 1, 2), (1, 2, 1), (2, 2)])
def test_prefix_score_equals_brute_force_sum_over_alignments(prefix):
    log_probs = _log_probs(frames=6)
    totals = _brute_force(log_probs)
    scorer = CTCPrefixScorer(log_probs, BLANK, EOS)
    psi, state = _walk(scorer, prefix)
    assert psi == pytest.approx(np.log(_starts_with(totals, prefix)), abs=1e-9)
    exact, _ = _one(scorer, list(prefix), state, [EOS])
    assert exact[0] == pytest.approx(np.log(totals[tuple(prefix)]), abs=1e-9)


def test_candidates_scored_together_equal_one_at_a_time_and_blank_is_vetoed():
    scorer = CTCPrefixScorer(torch.from_numpy(_log_probs(frames=7, seed=3)).float(), BLANK, EOS)
    _, state = _walk(scorer, (2, 1))
    together, states = _one(scorer, [2, 1], state, [1, EOS, 2, BLANK])
    for position, token in enumerate([1, EOS, 2]):
        alone, alone_states = _one(scorer, [2, 1], state, [token])
        assert together[position] == pytest.approx(alone[0], abs=1e-12)
        assert np.allclose(states[position].r_n, alone_states[0].r_n)
    assert together[3] == LOG_ZERO
    assert np.isclose(np.logaddexp.reduce(together[:3]), _walk(scorer, (2, 1))[0], atol=1e-9)


def test_prefix_longer_than_the_frames_allow_scores_log_zero():
    scorer = CTCPrefixScorer(_log_probs(frames=2), BLANK, EOS)
    psi, state = _walk(scorer, (1, 1))  # needs a blank between the two 1s: 3 frames
    assert psi <= LOG_ZERO / 2
    scores, _ = _one(scorer, [1, 1], state, [2, EOS])
    assert (scores <= LOG_ZERO / 2).all()


def test_bad_log_probs_are_refused_with_a_message():
    with pytest.raises(ValueError, match="frames, vocab"):
        CTCPrefixScorer(np.zeros((0, 3)), BLANK, EOS)
    with pytest.raises(ValueError, match="frames, vocab"):
        CTCPrefixScorer(np.zeros((2, 3, 1)), BLANK, EOS)


def test_a_beam_of_hypotheses_scored_together_equals_each_alone():
    scorer = CTCPrefixScorer(_log_probs(frames=8, seed=4), BLANK, EOS)
    prefixes = [(1, 2), (2, 2), (1, 1)]
    walked = [_walk(scorer, p)[1] for p in prefixes]
    candidates = [[1, 2, EOS], [EOS, 1, 2], [2, BLANK, 1]]
    together, states = scorer.prefix_scores([list(p) for p in prefixes], walked, candidates)
    for h, prefix in enumerate(prefixes):
        alone, alone_states = _one(scorer, list(prefix), walked[h], candidates[h])
        assert np.allclose(together[h], alone, atol=1e-12)
        assert all(np.allclose(a.r_b, b.r_b) for a, b in zip(states[h], alone_states))
    with pytest.raises(ValueError, match="one length"):
        scorer.prefix_scores([[1], [1, 2]], walked[:2], [[1], [2]])


def test_as_a_scorer_it_gives_the_change_of_the_prefix_score_and_selects_the_chosen_states():
    scorer = CTCPrefixScorer(_log_probs(frames=8, seed=5), BLANK, EOS)
    prefixes = [[1], [2]]
    walked = [_walk(scorer, p)[1] for p in prefixes]
    candidates = torch.tensor([[2, EOS], [1, 2]])
    steps, states = scorer.score(prefixes, walked, candidates)
    absolute, _ = scorer.prefix_scores(prefixes, walked, candidates)
    assert steps.shape == (2, 2)
    assert np.allclose(steps.numpy(), absolute - np.array([[walked[0].psi], [walked[1].psi]]), atol=1e-12)
    chosen = scorer.select(states, [1, 0], [0, 1])
    assert chosen[0].psi == pytest.approx(_walk(scorer, (2, 1))[0], abs=1e-9)
    assert chosen[1] is walked[0], "ending keeps the hypothesis's own state"
