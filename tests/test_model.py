import pytest
import torch

from asr_helpers.data.features import LogMelFeatures
from asr_helpers.models.deepspeech2 import (DeepSpeech2, PRESETS, config_from_dict, config_to_dict, conv_output_lengths,
                               model_config, reverse_within_lengths)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_output_length_rule_matches_real_shapes(preset):
    config = model_config(preset, vocab_size=29, rnn_layers=1, rnn_hidden=16)
    model = DeepSpeech2(config).eval()
    for frames in [1, 2, 3, 7, 10, 11, 50, 101, 257]:
        feats = torch.randn(1, config.n_mels, frames)
        log_probs, out_lengths = model(feats, torch.tensor([frames]))
        assert log_probs.shape[1] == out_lengths.item() == conv_output_lengths(torch.tensor([frames]), config).item()


def test_presets_sizes():
    counts = {p: DeepSpeech2(model_config(p, 29)).parameter_count() for p in PRESETS}
    assert counts["tiny"] < 1_000_000
    assert 20_000_000 <= counts["base"] <= 40_000_000
    assert counts["tiny"] < counts["small"] < counts["base"]


def test_channels_last_convolutions_read_contiguous_checkpoints_unchanged():
    """Checkpoints of older code hold contiguous conv weights: they load into channels-last weights and
    give the log-probs the contiguous weights give."""
    torch.manual_seed(0)
    config = model_config("tiny", 29)
    written = {name: value.contiguous() for name, value in DeepSpeech2(config).eval().state_dict().items()}
    model = DeepSpeech2(config).eval()
    model.load_state_dict(written)
    weight = model.convs[-1][0].weight
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    feats, lengths = torch.randn(2, config.n_mels, 90), torch.tensor([90, 61])
    with torch.no_grad():
        channels_last, _ = model(feats, lengths)
        model.convs.to(memory_format=torch.contiguous_format)
        contiguous, _ = model(feats, lengths)
    assert torch.allclose(channels_last, contiguous, atol=1e-5)


@pytest.mark.parametrize("rnn_type", ["gru", "lstm"])
def test_padding_never_leaks_and_packed_equals_masked(rnn_type):
    torch.manual_seed(0)
    masked = DeepSpeech2(model_config("tiny", 29, rnn_mode="masked", rnn_type=rnn_type)).eval()
    packed = DeepSpeech2(model_config("tiny", 29, rnn_mode="packed", rnn_type=rnn_type)).eval()
    assert isinstance(masked.rnns[0].forward_rnn, torch.nn.LSTM if rnn_type == "lstm" else torch.nn.GRU)
    packed.load_state_dict(masked.state_dict())
    lengths = torch.tensor([120, 77, 31])
    feats = torch.randn(3, 40, 120)
    out, out_lengths = masked(feats, lengths)
    out_packed, _ = packed(feats, lengths)
    for row, length in enumerate(out_lengths.tolist()):
        alone, _ = masked(feats[row:row + 1, :, : lengths[row]], lengths[row:row + 1])
        assert torch.allclose(alone[0], out[row, :length], atol=1e-5)
        assert torch.allclose(out_packed[row, :length], out[row, :length], atol=1e-5)


def test_log_probs_normalised_and_config_round_trip():
    model = DeepSpeech2(model_config("tiny", 29)).eval()
    log_probs, _ = model(torch.randn(2, 40, 60), torch.tensor([60, 40]))
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(2, log_probs.shape[1]), atol=1e-5)
    assert config_from_dict(config_to_dict(model.config)) == model.config
    with pytest.raises(ValueError, match="unknown"):
        config_from_dict({"bogus": 1})
    with pytest.raises(ValueError, match="preset"):
        model_config("huge", 29)
    with pytest.raises(ValueError, match="rnn_type"):
        model_config("tiny", 29, rnn_type="transformer")


def test_reverse_within_lengths():
    x = torch.arange(10.0).reshape(2, 5, 1)
    out = reverse_within_lengths(x, torch.tensor([5, 3]))
    assert out[:, :, 0].tolist() == [[4, 3, 2, 1, 0], [7, 6, 5, 8, 9]]


def test_features_are_log_normalised_and_padding_zero():
    features = LogMelFeatures(n_mels=40)
    waves = torch.zeros(2, 16000)
    waves[0] = torch.randn(16000) * 0.1
    waves[1, :8000] = torch.randn(8000) * 0.1
    feats, lengths = features(waves, torch.tensor([16000, 8000]))
    assert feats.shape == (2, 40, 101) and lengths.tolist() == [101, 51]
    valid = feats[1, :, :51]
    assert torch.allclose(valid.mean(-1), torch.zeros(40), atol=1e-4)
    assert torch.allclose(valid.std(-1, unbiased=False), torch.ones(40), atol=1e-2)
    assert torch.all(feats[1, :, 51:] == 0)
    loud, _ = features(waves * 100, torch.tensor([16000, 8000]))
    assert torch.allclose(loud[0], feats[0], atol=1e-3)  # log + normalisation removes the level


def voiced(f0: float, seconds: float = 0.5) -> torch.Tensor:
    """A pulse train at ``f0`` through two fixed resonances (formants near 700 and 1200 Hz)."""
    t = torch.arange(int(0.03 * 16000)) / 16000
    response = sum(torch.exp(-t * 300) * torch.sin(2 * torch.pi * f * t) for f in (700.0, 1200.0))
    pulses = torch.zeros(int(seconds * 16000))
    pulses[:: round(16000 / f0)] = 1.0
    return torch.nn.functional.conv1d(pulses[None, None], response.flip(0)[None, None],
                                      padding=len(response) - 1)[0, 0, : len(pulses)]


def test_lifter_keeps_the_envelope_and_drops_the_pitch():
    waves = torch.stack([voiced(110.0), voiced(190.0)])  # a low and a high voice, same vowel
    lengths = torch.tensor([waves.shape[1]] * 2)
    smoothing = LogMelFeatures(64, lifter=20)
    spectra = torch.log(smoothing.mel(waves) + 1e-6).mean(-1)  # [2, 64] log-mel before normalisation
    spectra = spectra - spectra.mean(-1, keepdim=True)  # level removed
    smooth = spectra @ smoothing.smoothing.T
    assert (smooth[0] - smooth[1]).abs().mean() < 0.6 * (spectra[0] - spectra[1]).abs().mean()
    assert smooth[0].argmax() == smooth[1].argmax() == spectra[0].argmax()  # the formant peak stays
    assert torch.allclose(LogMelFeatures(64, lifter=64)(waves, lengths)[0], LogMelFeatures(64)(waves, lengths)[0],
                          atol=1e-3)  # keeping every coefficient changes nothing
    with pytest.raises(ValueError, match="lifter"):
        LogMelFeatures(64, lifter=65)


def test_features_follow_the_model_config_and_old_configs_have_no_lifter():
    assert LogMelFeatures.for_model(model_config("small", 29)).lifter == 20
    old = config_to_dict(model_config("tiny", 29))
    old.pop("lifter")  # a checkpoint written before the lifter existed
    restored = config_from_dict(old)
    assert restored.lifter == 0 and LogMelFeatures.for_model(restored).smoothing is None
