import numpy as np
import pytest
import torch
from torch.nn import functional as F

from asr_helpers.models.attention import (AttentionDecoder, DecoderConfig, DotAttentionDecoder, attention_decoder,
                                   label_smoothed_cross_entropy, teacher_forcing_pairs)
from asr_helpers.models.attention_maps import attention_figure, lock_on, mean_lock_on, monotonic_path

VOCAB, ENCODER_DIM = 6, 8
CONFIG = DecoderConfig(embed_dim=8, hidden=12, layers=2, attention_dim=10, location_channels=3, location_width=5)


def _decoder(attention: str = "location") -> AttentionDecoder | DotAttentionDecoder:
    torch.manual_seed(0)
    return attention_decoder(VOCAB, ENCODER_DIM, DecoderConfig(**{**CONFIG.to_dict(), "attention": attention})).eval()


@pytest.mark.parametrize("attention", ["location", "dot"])
def test_padded_encoder_frames_change_neither_weights_nor_outputs(attention):
    decoder = _decoder(attention)
    lengths = torch.tensor([9, 5])
    states = torch.randn(2, 9, ENCODER_DIM)
    changed = states.clone()
    changed[1, 5:] = 100 * torch.randn(4, ENCODER_DIM)
    inputs = torch.tensor([[VOCAB, 1, 2, 3], [VOCAB, 4, 4, 5]])
    logits, weights = decoder(decoder.memory(states, lengths), inputs)
    logits_changed, weights_changed = decoder(decoder.memory(changed, lengths), inputs)
    assert torch.equal(logits, logits_changed) and torch.equal(weights, weights_changed)
    assert (weights[1, :, 5:] == 0).all()
    assert torch.allclose(weights.sum(-1), torch.ones(2, 4))
    alone_logits, alone_weights = decoder(decoder.memory(states[1:, :5], lengths[1:]), inputs[1:])
    assert torch.allclose(alone_logits, logits[1:], atol=1e-6)
    assert torch.allclose(alone_weights, weights[1:, :, :5], atol=1e-6)


@pytest.mark.parametrize("attention", ["location", "dot"])
def test_decoder_never_emits_the_blank_and_step_matches_teacher_forcing(attention):
    decoder = _decoder(attention)
    memory = decoder.memory(torch.randn(1, 7, ENCODER_DIM), torch.tensor([7]))
    inputs = torch.tensor([[VOCAB, 3, 1]])
    logits, weights = decoder(memory, inputs)
    assert logits.shape == (1, 3, VOCAB + 1) and weights.shape == (1, 3, 7)
    assert torch.isneginf(logits[..., 0]).all() and torch.isfinite(logits[..., 1:]).all()
    state = decoder.initial_state(memory)
    for position in range(3):
        step_logits, state = decoder.step(memory, inputs[:, position], state)
        assert torch.allclose(step_logits, logits[:, position], atol=1e-6)
        assert torch.allclose(state.weights, weights[:, position], atol=1e-6)


def test_teacher_forcing_pairs_put_start_before_and_end_after_each_target():
    inputs, outputs, lengths = teacher_forcing_pairs(torch.tensor([1, 2, 3, 4, 5]), torch.tensor([3, 2]), eos=9)
    assert inputs.tolist() == [[9, 1, 2, 3], [9, 4, 5, 9]]
    assert outputs.tolist() == [[1, 2, 3, 9], [4, 5, 9, 9]]
    assert lengths.tolist() == [4, 3]


def test_label_smoothing_spreads_mass_over_every_class_but_the_blank_and_ignores_padding():
    torch.manual_seed(1)
    logits = torch.randn(2, 4, VOCAB + 1)
    logits[..., 0] = float("-inf")
    targets = torch.tensor([[1, 2, 6, 6], [3, 6, 6, 6]])
    lengths = torch.tensor([3, 2])
    loss = label_smoothed_cross_entropy(logits, targets, lengths, 0.1, excluded_class=0)
    keep = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.bool)
    expected = F.cross_entropy(logits[keep][:, 1:], targets[keep] - 1, label_smoothing=0.1)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    logits[1, 3] = 50.0  # a padded position
    assert label_smoothed_cross_entropy(logits, targets, lengths, 0.1, excluded_class=0).item() == pytest.approx(loss.item())


def test_decoder_config_refuses_bad_settings():
    with pytest.raises(ValueError, match="layers"):
        DecoderConfig(layers=3)
    with pytest.raises(ValueError, match="odd"):
        DecoderConfig(location_width=4)
    with pytest.raises(ValueError, match="attention must be one of"):
        DecoderConfig(attention="additive")


def test_the_config_names_the_decoder_class():
    assert type(_decoder("location")) is AttentionDecoder
    assert type(_decoder("dot")) is DotAttentionDecoder


def test_lock_on_is_one_on_a_staircase_and_small_when_smeared_or_stuck():
    staircase = np.zeros((6, 30))
    for u in range(6):
        staircase[u, 5 * u], staircase[u, 5 * u + 1] = 0.7, 0.3
    assert monotonic_path(staircase).tolist() == [0, 5, 10, 15, 20, 25]
    assert lock_on(staircase, band=1) == pytest.approx(1.0)
    uniform = np.full((6, 30), 1 / 30)
    assert 0 <= lock_on(uniform, band=1) <= 3 / 30 + 1e-12  # at most 3 of 30 frames per symbol
    assert mean_lock_on([staircase, uniform], band=1) == pytest.approx((1 + lock_on(uniform, band=1)) / 2)
    stuck = np.zeros((6, 30))
    stuck[:, 14], stuck[:, 15] = 0.6, 0.4  # every symbol on the same frames: concentrated, never moving
    assert lock_on(stuck, band=1) == 0.0


def test_monotonic_path_never_goes_back_even_when_the_peak_does():
    weights = np.array([[0, 0, 0.9, 0.1], [0.8, 0.1, 0.07, 0.03], [0, 0, 0.1, 0.9]])
    path = monotonic_path(weights)
    assert (np.diff(path) >= 0).all()
    assert path.tolist() == [2, 2, 3]


def test_attention_figure_labels_frames_and_output_symbols():
    figure = attention_figure(np.eye(3, 8), ["a", " ", "b"], title="dev 1")
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "\u2423", "b"]
    assert ax.get_xlabel() == "encoder frame" and ax.get_ylabel() == "output symbol"
    with pytest.raises(ValueError, match="symbol labels"):
        attention_figure(np.eye(3, 8), ["a"])
