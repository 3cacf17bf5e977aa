import math

import pytest
import torch

from asr_helpers.data.augment import (
    AUGMENTATION_NOTES, AUGMENTATIONS, PRESETS, Filter, Gain, Noise, Pitch, Reverb, Shift, Speed, WaveAugment,
    colored_noise, max_speed_factor, single_augmentations,
)
from asr_helpers.data.spec_augment import SpecAugment, spec_augment_from_preset

SR = 16000


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tone(freq: float, seconds: float = 1.0, amplitude: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(seconds * SR)) / SR
    return (amplitude * torch.sin(2 * math.pi * freq * t)).float()


def speechlike(seconds: float = 1.5, seed: int = 1) -> torch.Tensor:
    """Noise bursts under a syllable-rate envelope, with silent gaps."""
    t = torch.arange(int(seconds * SR)) / SR
    envelope = torch.relu(torch.sin(2 * math.pi * 3 * t))
    return (0.1 * envelope * torch.randn(t.numel(), generator=gen(seed))).float()


def dominant_hz(wave: torch.Tensor) -> float:
    spectrum = torch.fft.rfft(wave * torch.hann_window(wave.numel())).abs()
    return float(torch.fft.rfftfreq(wave.numel(), 1 / SR)[spectrum.argmax()])


def all_at_p1(config: str) -> list[dict]:
    return [{**spec, "p": 1.0} for spec in PRESETS[config]]


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_each_augmentation_keeps_dtype_length_and_range(name):
    wave = speechlike()
    out = single_augmentations(SR)[name](wave, gen())
    assert out.dtype == torch.float32 and out.dim() == 1
    assert torch.isfinite(out).all() and out.abs().max() <= 1.0
    assert not torch.equal(out, wave)
    if name == "speed":
        assert out.numel() == pytest.approx(wave.numel() / 1.1, abs=2)
    else:
        assert out.numel() == wave.numel()
    assert AUGMENTATION_NOTES[name]


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_probability_zero_is_exact_identity(name):
    wave = speechlike()
    assert torch.equal(AUGMENTATIONS[name](p=0.0)(wave, gen()), wave)


def test_presets_none_and_all_p_zero_are_identity():
    wave = speechlike()
    assert torch.equal(WaveAugment.from_config("none")(wave, gen()), wave)
    silent = WaveAugment.from_config([{**spec, "p": 0.0} for spec in PRESETS["full"]])
    assert torch.equal(silent(wave, gen()), wave)
    assert silent.names == []


def test_same_seed_same_output_different_seed_different():
    augment = WaveAugment.from_config(all_at_p1("full"))
    wave = speechlike()
    first, again, other = augment(wave, gen(7)), augment(wave, gen(7)), augment(wave, gen(8))
    assert torch.equal(first, again)
    assert first.shape != other.shape or not torch.allclose(first, other)


@pytest.mark.parametrize("config", ["light", "full"])
def test_presets_output_is_float32_finite_unclipped(config):
    augment = WaveAugment.from_config(all_at_p1(config))
    for seed in range(4):
        out = augment(speechlike(seed=seed) * 10, gen(seed))  # starts above full scale
        assert out.dtype == torch.float32 and torch.isfinite(out).all()
        assert out.abs().max() <= 1.0


def test_speed_length_stays_within_factor_range():
    wave = speechlike(2.0)
    speed = Speed(factors=(0.9, 1.1))
    lengths = {speed(wave, gen(seed)).numel() for seed in range(12)}
    assert len(lengths) > 3
    assert all(wave.numel() / 1.1 - 2 <= n <= wave.numel() / 0.9 + 2 for n in lengths)
    assert max_speed_factor("full") == pytest.approx(1.1)
    assert max_speed_factor("none") == 1.0
    assert max_speed_factor([{"name": "speed", "p": 0.0, "factors": [0.8, 1.3]}]) == 1.0


def test_speed_and_pitch_move_a_tone_as_expected():
    wave = tone(440.0)
    sped = Speed(factors=1.1)(wave, gen())
    assert dominant_hz(sped) == pytest.approx(484.0, abs=4)
    shifted = Pitch(semitones=2.0)(wave, gen())
    assert shifted.numel() == wave.numel()
    assert dominant_hz(shifted) == pytest.approx(440.0 * 2 ** (2 / 12), abs=4)


@pytest.mark.parametrize("color", ["white", "pink", "brown"])
@pytest.mark.parametrize("snr", [0.0, 5.0, 10.0, 20.0, 30.0])
def test_noise_hits_requested_snr(color, snr):
    wave = speechlike(seed=3)
    out = Noise(snr_db=snr, colors=color)(wave, gen(int(snr)))
    noise = out - wave
    measured = 10 * math.log10(wave.square().mean() / noise.square().mean())
    assert measured == pytest.approx(snr, abs=0.5)


def test_noise_colours_have_the_expected_slope():
    def low_over_high(color):
        power = torch.fft.rfft(colored_noise(4 * SR, color, SR, gen())).abs().square()
        freqs = torch.fft.rfftfreq(4 * SR, 1 / SR)
        band = lambda lo, hi: power[(freqs >= lo) & (freqs < hi)].mean()
        return float(band(100, 200) / band(4000, 8000))

    assert 0.5 < low_over_high("white") < 2
    assert 10 < low_over_high("pink") < 160
    assert low_over_high("brown") > 400


def test_gain_scales_and_never_clips():
    wave = speechlike()
    out = Gain(db=-6.0)(wave, gen())
    assert torch.allclose(out, wave * 10 ** (-6 / 20))
    loud = tone(300.0, amplitude=0.99)
    boosted = Gain(db=12.0)(loud, gen())
    assert boosted.abs().max() == pytest.approx(1.0)
    assert torch.allclose(boosted, loud / 0.99, atol=1e-6)  # rescaled, same shape: not clipped


def test_reverb_adds_a_decaying_tail_and_keeps_length():
    wave = torch.zeros(SR)
    wave[:1600] = speechlike(0.1)
    out = Reverb(rt60=0.5, wet=0.5)(wave, gen())
    assert out.numel() == wave.numel() and torch.isfinite(out).all()
    early, late = out[1600:3200].square().mean(), out[8000:9600].square().mean()
    assert early > 1e-6 and late < early


def test_filter_telephone_band():
    band = Filter(kinds="bandpass", low_hz=300.0, high_hz=3400.0)

    def gain_at(freq):
        wave = tone(freq, amplitude=0.3)
        return float(band(wave, gen())[4000:].abs().max() / 0.3)

    assert gain_at(1000) > 0.9
    assert gain_at(60) < 0.05 and gain_at(7000) < 0.05


def test_shift_pads_or_rolls():
    wave = speechlike()
    out = Shift(max_ms=50.0)(wave, gen(3))
    shift = next(s for s in range(-800, 801) if torch.equal(out, _shifted(wave, s)))
    assert shift != 0
    rolled = Shift(max_ms=50.0, circular=True)(wave, gen(3))
    assert torch.equal(rolled, torch.roll(wave, shift))


def _shifted(wave, shift):
    out = torch.zeros_like(wave)
    if shift >= 0:
        out[shift:] = wave[: wave.numel() - shift]
    else:
        out[:shift] = wave[-shift:]
    return out


@pytest.mark.parametrize("bad", [
    [{"name": "echo"}],
    [{"name": "noise", "snr": [10, 20]}],
    [{"name": "gain", "p": 1.5}],
    [{"name": "speed", "factors": [1.1, 0.9]}],
    [{"name": "noise", "colors": ["blue"]}],
    [{"name": "filter", "low_hz": [200, 4000], "high_hz": [3000, 5000]}],
    "heavy",
])
def test_bad_configs_raise_value_error(bad):
    with pytest.raises(ValueError):
        WaveAugment.from_config(bad)


def test_names_and_describe():
    augment = WaveAugment.from_config("full")
    assert augment.names == [spec["name"] for spec in PRESETS["full"]]
    table = augment.describe()
    assert all(name in table for name in augment.names) and "rt60" in table
    with pytest.raises(ValueError):
        augment(torch.zeros(2, 100), gen())


def spec_batch(device="cpu"):
    lengths = torch.tensor([300, 120, 57, 1, 0], device=device)
    features = torch.randn(len(lengths), 80, 300, generator=gen(5)).to(device) + 10.0
    return features, lengths


def test_spec_augment_masks_only_valid_frames_within_width_limits():
    features, lengths = spec_batch()
    freq = SpecAugment(freq_masks=1, freq_width=20, p=1.0).train()
    time_ = SpecAugment(time_masks=1, time_width_ratio=0.1, p=1.0).train()
    saw_freq = saw_time = False
    for seed in range(20):
        for module in (freq, time_):
            out = module(features, lengths, generator=gen(seed))
            for b, length in enumerate(lengths.tolist()):
                assert torch.equal(out[b, :, length:], features[b, :, length:])  # padding untouched
                if length == 0:
                    continue
                zero = out[b, :, :length] == 0
                if module is freq:
                    rows = zero.all(dim=1).nonzero().flatten()
                    assert torch.equal(zero.any(dim=1).nonzero().flatten(), rows)
                    assert len(rows) <= 20
                    saw_freq |= len(rows) > 0
                    spans = rows
                else:
                    cols = zero.all(dim=0).nonzero().flatten()
                    assert torch.equal(zero.any(dim=0).nonzero().flatten(), cols)
                    assert len(cols) <= int(0.1 * length)
                    saw_time |= len(cols) > 0
                    spans = cols
                if len(spans):
                    assert spans[-1] - spans[0] + 1 == len(spans)  # one contiguous span
    assert saw_freq and saw_time


def test_spec_augment_identity_cases_and_determinism():
    features, lengths = spec_batch()
    full = spec_augment_from_preset("full")
    assert torch.equal(full.eval()(features, lengths), features)
    full.train()
    assert torch.equal(spec_augment_from_preset("none").train()(features, lengths), features)
    assert torch.equal(SpecAugment(2, 27, 2, 0.05, p=0.0).train()(features, lengths), features)
    a, b = full(features, lengths, generator=gen(1)), full(features, lengths, generator=gen(1))
    assert torch.equal(a, b) and not torch.equal(a, features)
    assert not torch.equal(a, full(features, lengths, generator=gen(2)))


def test_frequency_warp_moves_a_formant_by_the_factor_and_keeps_padding():
    features = torch.zeros(2, 64, 10)
    features[:, 20, :] = 1.0  # one "formant" at mel bin 20, at about 1.2 kHz
    lengths = torch.tensor([10, 6])
    features[1, :, 6:] = 0.0  # padding, as LogMelFeatures leaves it
    peaks = {}
    for factor in (0.8, 1.0, 1.25):
        out = SpecAugment(warp=(factor, factor), warp_p=1.0).train()(features, lengths)
        assert torch.equal(out[1, :, 6:], features[1, :, 6:])  # padding frames stay exactly zero
        peaks[factor] = int(out[0, :, 0].argmax())
    # a higher voice (factor > 1) puts the formant higher: 1.2 kHz x 1.25 is mel bin 23 of 64
    assert peaks == {0.8: 17, 1.0: 20, 1.25: 23}
    warped = SpecAugment(warp=(0.9, 1.3), warp_p=1.0)
    assert torch.equal(warped.eval()(features, lengths), features)
    assert torch.equal(SpecAugment(warp=(0.9, 1.3), warp_p=0.0).train()(features, lengths), features)
    a = warped.train()(features, lengths, generator=gen(3))
    assert torch.equal(a, warped(features, lengths, generator=gen(3))) and not torch.equal(a, features)


@pytest.mark.parametrize("kwargs", [
    {"freq_masks": -1}, {"freq_width": 2.5}, {"time_width_ratio": 1.5}, {"p": -0.1},
    {"warp": (1.3, 0.9)}, {"warp": (0.2, 1.0)}, {"warp_p": 1.5},
])
def test_spec_augment_bad_params(kwargs):
    with pytest.raises(ValueError):
        SpecAugment(**kwargs)
    with pytest.raises(ValueError):
        spec_augment_from_preset("heavy")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_spec_augment_on_cuda():
    features, lengths = spec_batch("cuda")
    out = spec_augment_from_preset("full").train()(features, lengths)
    assert out.device.type == "cuda"
    assert torch.equal(out[1, :, 120:], features[1, :, 120:])
