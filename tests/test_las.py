import itertools
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from asr_helpers.models.attention import EncoderMemory
from asr_helpers.decoding.attention_decoding import Hypothesis, end_detected, attention_greedy, beam_search, search_batch
from asr_helpers.decoding.ctc_prefix import CTCPrefixScorer
from asr_helpers.models.deepspeech2 import ctc_loss
from asr_helpers.models.las import JointConfig, JointCTCAttention, joint_config
from asr_helpers.decoding.lm_fusion import FusionLM
from asr_helpers.models.deepspeech2 import DeepSpeech2
from asr_helpers.data.text import CharTokenizer, train_bpe
from test_lm_fusion import write_arpa

TEXTS = ["the cat sat", "a dog ran far"]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and on a shared 2-core machine threads fight (20x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _batch(tokenizer, texts=TEXTS, frames=(56, 44), seed=0):
    generator = torch.Generator().manual_seed(seed)
    ids = [tokenizer.encode(t) for t in texts]
    features = torch.randn(len(texts), 40, max(frames), generator=generator)
    return (features, torch.tensor(frames), torch.tensor([i for row in ids for i in row]),
            torch.tensor([len(row) for row in ids]))


def _bpe():
    return train_bpe(["the cat sat on a mat", "a dog ran far", "the dog sat", "a cat ran"] * 20, vocab_size=40)


@pytest.mark.parametrize("rnn_mode", ["masked", "packed"])
def test_ctc_weight_one_is_exactly_deepspeech2s_ctc_loss(rnn_mode):
    tokenizer = CharTokenizer()
    torch.manual_seed(0)
    model = JointCTCAttention(joint_config("tiny", tokenizer.vocab_size, ctc_weight=1.0, rnn_mode=rnn_mode)).eval()
    plain = DeepSpeech2(model.config.encoder).eval()
    plain.load_state_dict(model.encoder.state_dict())
    features, lengths, targets, target_lengths = _batch(tokenizer)
    output = model(features, lengths, targets, target_lengths)
    log_probs, out_lengths = plain(features, lengths)
    expected = ctc_loss(log_probs, out_lengths, targets, target_lengths, tokenizer.blank_id)
    assert torch.equal(output.log_probs, log_probs) and torch.equal(output.lengths, out_lengths)
    assert output.loss.item() == expected.item()
    assert output.attention is None and output.attention_loss is None
    assert set(model.state_dict()) == {f"encoder.{k}" for k in plain.state_dict()}


def test_loss_weights_ctc_and_attention_and_returns_attention_maps():
    tokenizer = CharTokenizer()
    torch.manual_seed(0)
    model = JointCTCAttention(joint_config("tiny", tokenizer.vocab_size, ctc_weight=0.3))
    output = model(*_batch(tokenizer))
    assert output.loss.item() == pytest.approx(0.3 * output.ctc_loss.item() + 0.7 * output.attention_loss.item(), rel=1e-5)
    assert output.attention.shape == (2, len(TEXTS[1]) + 1, output.log_probs.shape[1])
    assert output.attention_lengths.tolist() == [len(t) + 1 for t in TEXTS]
    pure = JointCTCAttention(JointConfig(model.config.encoder, model.config.decoder, ctc_weight=0.0))
    pure.load_state_dict(model.state_dict())
    pure_output = pure(*_batch(tokenizer))
    assert pure_output.loss.item() == pytest.approx(output.attention_loss.item(), rel=1e-5)
    pure_output.loss.backward()  # every parameter takes part (DDP needs it); the CTC head's gradient is zero
    assert all(p.grad is not None for p in pure.parameters())
    assert pure.encoder.head.weight.grad.abs().max() == 0


def test_mixed_precision_forward_and_backward_stay_finite():
    tokenizer = CharTokenizer()
    torch.manual_seed(0)
    model = JointCTCAttention(joint_config("tiny", tokenizer.vocab_size))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = model(*_batch(tokenizer))
    output.loss.backward()
    assert output.loss.dtype == torch.float32 and torch.isfinite(output.loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_config_and_weights_rebuild_the_same_model_and_bad_weights_are_refused():
    config = joint_config("small", 29, ctc_weight=0.5)
    assert JointConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config  # lists back to tuples
    tokenizer = CharTokenizer()
    torch.manual_seed(0)
    model = JointCTCAttention(joint_config("tiny", tokenizer.vocab_size)).eval()
    rebuilt = JointCTCAttention(JointConfig.from_dict(model.config.to_dict())).eval()
    rebuilt.load_state_dict(model.state_dict())
    assert torch.equal(rebuilt(*_batch(tokenizer)).loss, model(*_batch(tokenizer)).loss)
    with pytest.raises(ValueError, match="ctc_weight"):
        JointConfig(config.encoder, ctc_weight=1.5)


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_one_batch_overfit_then_every_decoder_reproduces_the_targets(kind):
    tokenizer = CharTokenizer() if kind == "char" else _bpe()
    torch.manual_seed(0)
    model = JointCTCAttention(joint_config("tiny", tokenizer.vocab_size, ctc_weight=0.3))
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    features, lengths, targets, target_lengths = _batch(tokenizer)
    losses, decoded = [], []
    for step in range(80):
        output = model(features, lengths, targets, target_lengths)
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
        losses.append(output.loss.item())
        if step % 5 == 4:
            model.eval()
            with torch.no_grad():
                encoded = model.encode(features, lengths)
                decoded = [tokenizer.decode(ids) for ids in
                           attention_greedy(model.decoder, model.memory(encoded), encoded.lengths)]
            model.train()
            if decoded == TEXTS:
                break
    assert decoded == TEXTS and losses[-1] < 0.3 * losses[0]
    model.eval()
    with torch.no_grad():
        encoded = model.encode(features, lengths)
        for weight in (0.0, 0.3):
            found = search_batch(model, encoded, beam=4, ctc_weight=weight)
            assert [tokenizer.decode(nbest[0].tokens) for nbest in found] == TEXTS


class _TableState(SimpleNamespace):
    def select(self, index):
        return _TableState(prefixes=[self.prefixes[i] for i in index.tolist()])


class TableDecoder:
    """Next-symbol probabilities looked up by prefix (blank 0, a 1, b 2, end 3); unknown prefixes end."""
    eos = 3

    def __init__(self, table: dict, otherwise=(0, 0.05, 0.05, 0.9)):
        self.table = table
        self.otherwise = list(otherwise)

    def initial_state(self, memory):
        return _TableState(prefixes=[None])

    def step(self, memory, tokens, state):
        prefixes = [() if p is None else p + (t,) for p, t in zip(state.prefixes, tokens.tolist())]
        rows = [self.table.get(p, self.otherwise) for p in prefixes]
        return torch.tensor(rows).log(), _TableState(prefixes=prefixes)


def _memory(frames: int) -> EncoderMemory:
    return EncoderMemory(torch.zeros(1, frames, 1), torch.zeros(1, frames, 1), torch.ones(1, frames, dtype=torch.bool))


def test_ctc_prefix_score_vetoes_what_attention_alone_prefers():
    decoder = TableDecoder({(): [0, 0.6, 0.4, 0], (1,): [0, 0.05, 0.9, 0.05], (2,): [0, 0.9, 0.05, 0.05],
                            (1, 2): [0, 0.05, 0.05, 0.9], (2, 1): [0, 0.05, 0.05, 0.9]})
    frames = np.full((4, 3), 0.02)
    for t, token in enumerate([2, 0, 1, 0]):  # the audio says "b" then "a"
        frames[t, token] = 0.96
    ctc = CTCPrefixScorer(np.log(frames), blank=0, eos=3)
    attention_only = beam_search(decoder, _memory(4), beam=2)[0]
    joint = beam_search(decoder, _memory(4), beam=2, ctc=ctc, ctc_weight=0.5)[0]
    assert attention_only.tokens == [1, 2]
    assert joint.tokens == [2, 1]
    assert beam_search(decoder, _memory(4), beam=2, ctc=ctc, ctc_weight=1.0)[0].tokens == [2, 1]
    assert joint.ctc == pytest.approx(math.log(ctc_sequence_probability(frames, [2, 1])), rel=1e-6)


def ctc_sequence_probability(frames: np.ndarray, tokens: list[int]) -> float:
    """P(exactly ``tokens``) for the 4-frame, 3-class case by enumerating every alignment."""
    total = 0.0
    for path in itertools.product(range(3), repeat=len(frames)):
        collapsed = [k for i, k in enumerate(path) if k != 0 and (i == 0 or path[i - 1] != k)]
        if collapsed == tokens:
            total += float(np.prod([frames[t, k] for t, k in enumerate(path)]))
    return total


def test_joint_search_with_ctc_weight_zero_is_attention_only_beam_search():
    tokenizer = CharTokenizer()
    torch.manual_seed(3)
    model = JointCTCAttention(joint_config("tiny", tokenizer.vocab_size)).eval()
    features, lengths, _, _ = _batch(tokenizer, seed=5)
    with torch.no_grad():
        encoded = model.encode(features[:1, :, :40], torch.tensor([40]))
    memory = model.memory(encoded)
    ctc = CTCPrefixScorer(encoded.log_probs[0], tokenizer.blank_id, model.eos)
    plain = beam_search(model.decoder, memory, beam=3, nbest=3)
    joint = beam_search(model.decoder, memory, beam=3, nbest=3, ctc=ctc, ctc_weight=0.0)
    assert [h.tokens for h in joint] == [h.tokens for h in plain]
    assert [h.score for h in joint] == pytest.approx([h.score for h in plain])


def test_beam_search_stops_at_the_maximum_length_and_on_a_batch_refuses():
    never_ends = TableDecoder({}, otherwise=(0, 0.97, 0.02, 0.01))
    best = beam_search(never_ends, _memory(5), beam=2)[0]
    assert best.tokens == [1] * 5
    assert len(beam_search(never_ends, _memory(9), beam=2, max_length=3)[0].tokens) == 3
    with pytest.raises(ValueError, match="one utterance"):
        beam_search(never_ends, EncoderMemory(*(t.expand(2, -1, -1) for t in _memory(4))))
    with pytest.raises(ValueError, match="CTC scorer"):
        beam_search(never_ends, _memory(4), ctc_weight=0.3)


def test_length_normalisation_keeps_a_long_confident_transcript_over_a_short_doubtful_one():
    decoder = TableDecoder({(): [0, 0.5, 0.1, 0.4], (1,): [0, 0.9, 0.05, 0.05], (1, 1): [0, 0.9, 0.05, 0.05],
                            (1, 1, 1): [0, 0.9, 0.05, 0.05], (1, 1, 1, 1): [0, 0.01, 0.01, 0.98]})
    raw = beam_search(decoder, _memory(8), beam=3, length_normalise=False)[0]
    normalised = beam_search(decoder, _memory(8), beam=3, length_normalise=True)[0]
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
    assert beam_search(decoder, _memory(4), beam=2)[0].tokens == [2, 1]
    fused = beam_search(decoder, _memory(4), beam=2, lm=lm)[0]
    assert fused.tokens == [1, 2]
    assert fused.lm.words == 1 and fused.lm.score == pytest.approx(lm.sentence_score("ab"))
    assert fused.score == pytest.approx(fused.attention + lm.sentence_score("ab"))
