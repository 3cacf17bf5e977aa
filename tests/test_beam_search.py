"""The one label-synchronous beam search over weighted scorers, against brute force on a tiny vocabulary."""
from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from asr_helpers.data.text import CharTokenizer
from asr_helpers.decoding.attention_decoding import AttentionSearch
from asr_helpers.decoding.beam_search import Hypothesis, beam_search, end_detected, scorer_weights
from asr_helpers.decoding.ctc import Encoding
from asr_helpers.decoding.ctc_prefix import CTCPrefixScorer
from asr_helpers.decoding.lm_fusion import FusionLM
from asr_helpers.decoding.scorers import AttentionScorer
from asr_helpers.models.attention import EncoderMemory
from asr_helpers.models.las import JointCTCAttention, joint_config
from test_lm_fusion import write_arpa

EOS = 3  # the table decoder's symbols: blank 0, a 1, b 2, end 3


class _TableState(SimpleNamespace):
    def select(self, index):
        return _TableState(prefixes=[self.prefixes[i] for i in index.tolist()])


class TableDecoder:
    """Next-symbol probabilities looked up by prefix (blank 0, a 1, b 2, end 3); unknown prefixes get ``otherwise``."""
    eos = EOS

    def __init__(self, table: dict, otherwise=(0, 0.05, 0.05, 0.9)):
        self.table = table
        self.otherwise = list(otherwise)

    def initial_state(self, memory):
        return _TableState(prefixes=[None] * memory.values.shape[0])

    def step(self, memory, tokens, state):
        prefixes = [() if p is None else p + (t,) for p, t in zip(state.prefixes, tokens.tolist())]
        rows = [self.table.get(p, self.otherwise) for p in prefixes]
        return torch.tensor(rows).log(), _TableState(prefixes=prefixes)

    def log_prob(self, tokens: tuple[int, ...]) -> float:
        """log p(tokens, end) under the table."""
        rows = [self.table.get(tokens[:i], self.otherwise) for i in range(len(tokens) + 1)]
        return sum(math.log(row[k]) for row, k in zip(rows, tokens + (EOS,)))


def _memory(frames: int) -> EncoderMemory:
    return EncoderMemory(torch.zeros(1, frames, 1), torch.zeros(1, frames, 1), torch.ones(1, frames, dtype=torch.bool))


def _search(decoder, frames: int, weights: dict, ctc=None, lm=None, **options) -> list[Hypothesis]:
    scorers = {"attention": AttentionScorer(decoder, _memory(frames))}
    scorers.update({name: s for name, s in (("ctc", ctc), ("lm", lm)) if s is not None})
    return beam_search(scorers, weights, eos=EOS, max_lengths=[options.pop("max_length", frames)], **options)[0]


def ctc_sequence_probability(frames: np.ndarray, tokens: tuple[int, ...]) -> float:
    """P(exactly ``tokens``) by enumerating every alignment (3 classes, blank 0)."""
    total = 0.0
    for path in itertools.product(range(3), repeat=len(frames)):
        collapsed = [k for i, k in enumerate(path) if k != 0 and (i == 0 or path[i - 1] != k)]
        if collapsed == list(tokens):
            total += float(np.prod([frames[t, k] for t, k in enumerate(path)]))
    return total


def _frames(rng: np.random.Generator, count: int) -> np.ndarray:
    probs = rng.dirichlet(np.ones(3) * 0.5, size=count)
    return np.maximum(probs, 1e-6) / np.maximum(probs, 1e-6).sum(1, keepdims=True)


@pytest.mark.parametrize("ctc_weight", [0.0, 0.4, 1.0])
def test_the_search_finds_the_brute_force_best_transcript_of_its_weight_set(ctc_weight):
    """Every transcript up to the frame count, scored ``(1 - w) attention + w CTC`` per symbol: a beam wide
    enough to keep every hypothesis (and no end detection) must find the best one."""
    rng = np.random.default_rng(7)
    frames = 4
    prefixes = [p for n in range(frames + 1) for p in itertools.product((1, 2), repeat=n)]
    table = {p: [0.0, *rng.dirichlet(np.ones(3))] for p in prefixes}
    decoder, probs = TableDecoder(table), _frames(rng, frames)
    weights = scorer_weights("joint", {"ctc_weight": ctc_weight})
    ctc = CTCPrefixScorer([np.log(probs)], blank=0, eos=EOS)
    found = _search(decoder, frames, weights, ctc, beam=64, end_window=frames + 2, nbest=len(prefixes))

    def total(tokens):
        ctc_part = math.log(max(ctc_sequence_probability(probs, tokens), 1e-300)) if ctc_weight else 0.0
        return ((1 - ctc_weight) * decoder.log_prob(tokens) + ctc_weight * ctc_part) / (len(tokens) + 1)

    best = max(prefixes, key=total)
    assert tuple(found[0].tokens) == best
    assert found[0].normalised() == pytest.approx(total(best), rel=1e-6, abs=1e-9)
    assert found[0].scores["attention"] == pytest.approx(decoder.log_prob(best))
    assert ("ctc" in found[0].scores) == (ctc_weight > 0), "a scorer weighted 0 is not run"


def test_ctc_prefix_score_vetoes_what_attention_alone_prefers():
    decoder = TableDecoder({(): [0, 0.6, 0.4, 0], (1,): [0, 0.05, 0.9, 0.05], (2,): [0, 0.9, 0.05, 0.05],
                            (1, 2): [0, 0.05, 0.05, 0.9], (2, 1): [0, 0.05, 0.05, 0.9]})
    frames = np.full((4, 3), 0.02)
    for t, token in enumerate([2, 0, 1, 0]):  # the audio says "b" then "a"
        frames[t, token] = 0.96
    ctc = CTCPrefixScorer([np.log(frames)], blank=0, eos=EOS)
    assert _search(decoder, 4, {"attention": 1.0}, beam=2)[0].tokens == [1, 2]
    joint = _search(decoder, 4, {"attention": 0.5, "ctc": 0.5}, ctc, beam=2)[0]
    assert joint.tokens == [2, 1]
    assert _search(decoder, 4, {"attention": 0.0, "ctc": 1.0}, ctc, beam=2)[0].tokens == [2, 1]
    assert joint.scores["ctc"] == pytest.approx(math.log(ctc_sequence_probability(frames, (2, 1))), rel=1e-6)


def _tiny_model():
    tokenizer = CharTokenizer()
    torch.manual_seed(3)
    return JointCTCAttention(joint_config("tiny", tokenizer.vocab_size)).eval(), tokenizer


def test_each_scorer_scores_a_batch_of_hypotheses_as_it_scores_each_alone(tmp_path):
    model, tokenizer = _tiny_model()
    with torch.no_grad():
        encoded = model.encode(torch.randn(1, 40, 40, generator=torch.Generator().manual_seed(5)), torch.tensor([40]))
    attention = AttentionScorer(model.decoder, model.memory(encoded))
    arpa = write_arpa(tmp_path / "w.arpa", {"the": -0.5, "cat": -1.0}, {"<s> the": -0.2, "the cat": -0.3})
    scorers = {"attention": attention, "ctc": CTCPrefixScorer([encoded.log_probs[0]], tokenizer.blank_id, model.eos),
               "lm": FusionLM.for_tokenizer(arpa, tokenizer, alpha=0.6, beta=0.4)}
    prefixes = [tokenizer.encode(text) for text in ("th", "ca", "t ")]
    candidates = torch.tensor([tokenizer.encode("eat") + [model.eos]] * len(prefixes))
    for name, scorer in scorers.items():
        batch, _ = scorer.score(prefixes, _walk(scorer, prefixes), None if scorer.full else candidates)
        for row, prefix in enumerate(prefixes):
            alone, _ = scorer.score([prefix], _walk(scorer, [prefix]), None if scorer.full else candidates[row:row + 1])
            assert torch.allclose(batch[row:row + 1].double(), alone.double(), atol=1e-5), name


def _walk(scorer, prefixes: list[list[int]]):
    """The batch state of ``prefixes`` (one length), reached as the search reaches it: the empty prefix
    extended by each one's first symbol, then each row by its next symbol."""
    count = len(prefixes)
    state = scorer.init_state(1)
    for i in range(len(prefixes[0])):
        tokens = torch.tensor([[p[i]] for p in prefixes])
        current = [p[:i] for p in prefixes] if i else [[]]
        _, after = scorer.score(current, state, None if scorer.full else (tokens.T if i == 0 else tokens))
        state = scorer.select(after, [0] * count, range(count)) if i == 0 else scorer.select(after, range(count), [0] * count)
    return state


def test_the_search_stops_at_the_maximum_length_and_refuses_what_it_cannot_score():
    never_ends = TableDecoder({}, otherwise=(0, 0.97, 0.02, 0.01))
    assert _search(never_ends, 5, {"attention": 1.0}, beam=2)[0].tokens == [1] * 5
    assert len(_search(never_ends, 9, {"attention": 1.0}, beam=2, max_length=3)[0].tokens) == 3
    with pytest.raises(ValueError, match="holds 1 utterances, not 2"):
        beam_search({"attention": AttentionScorer(never_ends, _memory(4))}, {"attention": 1.0}, eos=EOS,
                    max_lengths=[4, 4])
    with pytest.raises(ValueError, match="needs a weight"):
        _search(never_ends, 4, {"attention": 0.7, "ctc": 0.3})
    ctc = CTCPrefixScorer([np.log(np.full((4, 3), 1 / 3))], blank=0, eos=5)
    with pytest.raises(ValueError, match="end symbol"):
        _search(never_ends, 4, {"attention": 0.7, "ctc": 0.3}, ctc)


def test_length_normalisation_keeps_a_long_confident_transcript_over_a_short_doubtful_one():
    decoder = TableDecoder({(): [0, 0.5, 0.1, 0.4], (1,): [0, 0.9, 0.05, 0.05], (1, 1): [0, 0.9, 0.05, 0.05],
                            (1, 1, 1): [0, 0.9, 0.05, 0.05], (1, 1, 1, 1): [0, 0.01, 0.01, 0.98]})
    raw = _search(decoder, 8, {"attention": 1.0}, beam=3, length_normalise=False)[0]
    normalised = _search(decoder, 8, {"attention": 1.0}, beam=3, length_normalise=True)[0]
    assert raw.tokens == []  # log 0.4 beats log(0.5 * 0.9^3 * 0.98)
    assert normalised.tokens == [1, 1, 1, 1]
    assert normalised.normalised() == pytest.approx(math.log(0.5 * 0.9 ** 3 * 0.98) / 5)


def test_end_detection_stops_once_recent_endings_fall_far_behind_the_best():
    ended = [Hypothesis([1], -1.0, ended_at=1), Hypothesis([1, 2], -20.0, ended_at=2),
             Hypothesis([1, 2, 2], -25.0, ended_at=3), Hypothesis([1, 2, 2, 1], -30.0, ended_at=4)]
    assert end_detected(ended, step=4, window=3, margin=10.0)
    assert not end_detected(ended, step=4, window=4, margin=10.0)  # step 1 ended with the best
    assert not end_detected(ended[:3], step=4, window=3, margin=10.0)  # nothing ended at step 4
    assert not end_detected([], step=4, window=3, margin=10.0)


def test_the_fused_lm_overturns_what_the_decoder_prefers(tmp_path):
    decoder = TableDecoder({(): [0, 0.45, 0.55, 0], (1,): [0, 0.05, 0.9, 0.05], (2,): [0, 0.9, 0.05, 0.05],
                            (1, 2): [0, 0.05, 0.05, 0.9], (2, 1): [0, 0.05, 0.05, 0.9]})
    arpa = write_arpa(tmp_path / "ab.arpa", {"ab": -0.1, "aa": -2.0}, {"<s> ab": -0.1, "ab </s>": -0.1})
    lm = FusionLM(arpa, ["", "a", "b"], alpha=1.0, beta=0.0)  # a word model knows "ab", not "ba"
    assert _search(decoder, 4, {"attention": 1.0}, beam=2)[0].tokens == [2, 1]
    fused = _search(decoder, 4, {"attention": 1.0, "lm": 1.0}, lm=lm, beam=2)[0]
    assert fused.tokens == [1, 2]
    assert fused.scores["lm"] == pytest.approx(lm.sentence_score("ab"))
    assert fused.score == pytest.approx(fused.scores["attention"] + lm.sentence_score("ab"))


def test_decoders_are_weight_sets_from_the_table_and_an_unknown_name_is_one_line():
    assert scorer_weights("attention_beam", {}) == {"attention": 1.0}
    assert scorer_weights("joint", {"ctc_weight": 0.25}) == {"attention": 0.75, "ctc": 0.25}
    assert scorer_weights("joint+lm", {"ctc_weight": 0.5, "alpha": 0.7, "beta": 0.0}) == {
        "attention": 0.5, "ctc": 0.5, "lm": 1.0}
    with pytest.raises(ValueError, match="not a beam search"):
        scorer_weights("attention", {})
    model, tokenizer = _tiny_model()
    search = AttentionSearch(model, tokenizer)
    item = Encoding(np.log(np.full((6, tokenizer.vocab_size), 1 / tokenizer.vocab_size)), np.zeros((6, 256)))
    with pytest.raises(ValueError, match="unknown decoder 'attention_bem'"):
        search.decode("attention_bem", [item])
    with pytest.raises(ValueError, match="not an attention decoder"):
        search.decode("greedy", [item])
    with pytest.raises(ValueError, match="needs a language model"):
        search.decode("joint+lm", [item])
