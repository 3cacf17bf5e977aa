import pytest
import torch

from asr_helpers.features import LogMelFeatures
from asr_helpers.model import (DeepSpeech2, PRESETS, config_from_dict, config_to_dict, conv_output_lengths,
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


def test_padding_never_leaks_and_packed_equals_masked():
    torch.manual_seed(0)
    masked = DeepSpeech2(model_config("tiny", 29, rnn_mode="masked")).eval()
    packed = DeepSpeech2(model_config("tiny", 29, rnn_mode="packed")).eval()
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
