import itertools

import numpy as np
import pytest
import torch

from asr_helpers.decoding.ctc_prefix import LOG_ZERO, CTCPrefixScorer, PrefixState

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


def _walk(scorer: CTCPrefixScorer, prefix, utterance: int = 0):
    """Score ``prefix`` token by token from utterance ``utterance``'s empty prefix; returns the last psi and state."""
    empty = scorer.init_state(len(scorer.x))
    state = PrefixState(*(getattr(empty, name)[[utterance]] for name in ("r_n", "r_b", "psi", "utterances")))
    psi = 0.0
    for i, token in enumerate(prefix):
        scores, pending = _one(scorer, list(prefix[:i]), state, [token])
        psi, state = float(scores[0]), scorer.select(pending, [0], [0])
    return psi, state


def _one(scorer: CTCPrefixScorer, prefix, state, candidates):
    """Prefix scores of one hypothesis's candidates, and the pending step."""
    pending = scorer.prefix_scores([prefix], state, [candidates])
    return pending.psi[0].numpy(), pending


@pytest.mark.parametrize("prefix", [(1,), (2,), (1, 2), (1, 1), (2, 1, 2), (1, 2, 1), (2, 2)])
def test_prefix_score_equals_brute_force_sum_over_alignments(prefix):
    log_probs = _log_probs(frames=6)
    totals = _brute_force(log_probs)
    scorer = CTCPrefixScorer([log_probs], BLANK, EOS)
    psi, state = _walk(scorer, prefix)
    assert psi == pytest.approx(np.log(_starts_with(totals, prefix)), abs=1e-9)
    exact, _ = _one(scorer, list(prefix), state, [EOS])
    assert exact[0] == pytest.approx(np.log(totals[tuple(prefix)]), abs=1e-9)


def test_utterances_of_different_lengths_scored_together_each_match_brute_force():
    matrices = [_log_probs(frames=6, seed=1), _log_probs(frames=3, seed=2), _log_probs(frames=5, seed=3)]
    scorer = CTCPrefixScorer(matrices, BLANK, EOS)
    for utterance, log_probs in enumerate(matrices):
        totals = _brute_force(log_probs)
        for prefix in [(1,), (2, 1), (1, 1)]:
            psi, state = _walk(scorer, prefix, utterance)
            assert psi == pytest.approx(np.log(max(_starts_with(totals, prefix), 1e-300)), abs=1e-9)
            exact, _ = _one(scorer, list(prefix), state, [EOS])
            assert exact[0] == pytest.approx(np.log(max(totals.get(prefix, 0.0), 1e-300)), abs=1e-9)
    rows = [_walk(scorer, (1, 2), u)[1] for u in range(3)]
    together = scorer.prefix_scores([[1, 2]] * 3, _stack(rows), [[1, EOS], [2, EOS], [1, 2]]).psi.numpy()
    for u, candidates in enumerate([[1, EOS], [2, EOS], [1, 2]]):
        alone = CTCPrefixScorer([matrices[u]], BLANK, EOS)
        assert np.allclose(together[u], _one(alone, [1, 2], _walk(alone, (1, 2))[1], candidates)[0], atol=1e-9)


def _stack(states):
    """One batch state of single-row states."""
    return PrefixState(*(torch.cat([getattr(s, name) for s in states]) for name in ("r_n", "r_b", "psi", "utterances")))


def test_candidates_scored_together_equal_one_at_a_time_and_blank_is_vetoed():
    scorer = CTCPrefixScorer([torch.from_numpy(_log_probs(frames=7, seed=3)).float()], BLANK, EOS)
    _, state = _walk(scorer, (2, 1))
    together, pending = _one(scorer, [2, 1], state, [1, EOS, 2, BLANK])
    for position, token in enumerate([1, EOS, 2]):
        alone, alone_pending = _one(scorer, [2, 1], state, [token])
        assert together[position] == pytest.approx(alone[0], abs=1e-12)
        if token != EOS:
            chosen, single = scorer.select(pending, [0], [position]), scorer.select(alone_pending, [0], [0])
            assert torch.allclose(chosen.r_n, single.r_n) and torch.allclose(chosen.r_b, single.r_b)
    assert together[3] == LOG_ZERO
    assert np.isclose(np.logaddexp.reduce(together[:3]), _walk(scorer, (2, 1))[0], atol=1e-9)


def test_prefix_longer_than_the_frames_allow_scores_log_zero():
    scorer = CTCPrefixScorer([_log_probs(frames=2)], BLANK, EOS)
    psi, state = _walk(scorer, (1, 1))  # needs a blank between the two 1s: 3 frames
    assert psi <= LOG_ZERO / 2
    scores, _ = _one(scorer, [1, 1], state, [2, EOS])
    assert (scores <= LOG_ZERO / 2).all()


def test_bad_log_probs_are_refused_with_a_message():
    with pytest.raises(ValueError, match="frames, vocab"):
        CTCPrefixScorer([np.zeros((0, 3))], BLANK, EOS)
    with pytest.raises(ValueError, match="frames, vocab"):
        CTCPrefixScorer([np.zeros((2, 3, 1))], BLANK, EOS)
    with pytest.raises(ValueError, match="holds 1 utterances, not 2"):
        CTCPrefixScorer([np.zeros((2, 3))], BLANK, EOS).init_state(2)


def test_a_beam_of_hypotheses_scored_together_equals_each_alone():
    scorer = CTCPrefixScorer([_log_probs(frames=8, seed=4)], BLANK, EOS)
    prefixes = [(1, 2), (2, 2), (1, 1)]
    walked = [_walk(scorer, p)[1] for p in prefixes]
    candidates = [[1, 2, EOS], [EOS, 1, 2], [2, BLANK, 1]]
    together = scorer.prefix_scores([list(p) for p in prefixes], _stack(walked), candidates)
    for h, prefix in enumerate(prefixes):
        alone, alone_pending = _one(scorer, list(prefix), walked[h], candidates[h])
        assert np.allclose(together.psi[h].numpy(), alone, atol=1e-12)
        column = candidates[h].index(1)
        assert torch.allclose(scorer.select(together, [h], [column]).r_b, scorer.select(alone_pending, [0], [column]).r_b)
    with pytest.raises(ValueError, match="one length"):
        scorer.prefix_scores([[1], [1, 2]], _stack(walked[:2]), [[1], [2]])


def test_as_a_scorer_it_gives_the_change_of_the_prefix_score_and_selects_the_chosen_states():
    scorer = CTCPrefixScorer([_log_probs(frames=8, seed=5)], BLANK, EOS)
    prefixes = [[1], [2]]
    walked = _stack([_walk(scorer, p)[1] for p in prefixes])
    candidates = torch.tensor([[2, EOS], [1, 2]])
    steps, pending = scorer.score(prefixes, walked, candidates)
    assert steps.shape == (2, 2)
    assert np.allclose(steps.numpy(), pending.psi.numpy() - walked.psi.numpy()[:, None], atol=1e-12)
    chosen = scorer.select(pending, [1, 0], [0, 0])
    assert chosen.psi[0].item() == pytest.approx(_walk(scorer, (2, 1))[0], abs=1e-9)
    assert torch.allclose(chosen.r_n[1], _walk(scorer, (1, 2))[1].r_n[0])


def test_a_candidate_hundreds_of_nats_below_the_prefix_keeps_its_exact_score():
    """``b`` is only likely once ``a`` has long been sung through frames that cost 400 nats each: the batched
    product of probabilities underflows, and the score must still be the exact log-space sum."""
    log_probs = np.array([[-1e3, 0.0, -1e3], [-400.0, -400.0, -1e3], [-400.0, -400.0, -1e3], [-1e3, -1e3, 0.0]])
    paths = {}
    for path in itertools.product(range(3), repeat=4):
        paths.setdefault(_collapse(path), []).append(sum(log_probs[t, k] for t, k in enumerate(path)))
    starting = [np.logaddexp.reduce(v) for k, v in paths.items() if k[:2] == (1, 2)]
    psi, _ = _walk(CTCPrefixScorer([log_probs], BLANK, EOS), (1, 2))
    assert psi == pytest.approx(np.logaddexp.reduce(starting), abs=1e-9) and psi < -700
