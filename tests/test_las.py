import json

import pytest
import torch

from asr_helpers.decoding.attention_decoding import attention_greedy, search_batch
from asr_helpers.models.deepspeech2 import ctc_loss
from asr_helpers.models.las import JointConfig, JointCTCAttention, joint_config
from asr_helpers.models.deepspeech2 import DeepSpeech2
from asr_helpers.data.text import CharTokenizer, train_bpe

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
