"""Wave-level augmentations that help ASR (per utterance, CPU); SpecAugment is in ``spec_augment``.

Wave augmentations run in the Dataset for training only. Every random draw comes from the
``torch.Generator`` passed in, which the dataset seeds per (seed, epoch, index), so an
utterance is augmented the same way whichever worker loads it. Each augmentation keeps the
output finite, float32, within [-1, 1] (by rescaling the peak, never by clipping) and of the
input length. Only speed perturbation changes the length: an utterance can become up to
``max_speed_factor`` times shorter, which the dataset needs when it checks that labels fit CTC.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Callable, ClassVar

import torch
import torchaudio.functional as AF

NOISE_COLORS = ("white", "pink", "brown")
FILTER_KINDS = ("lowpass", "highpass", "bandpass")
_RATIO_STEPS = 160  # speed/pitch ratios are quantised to 1/160 so resampling kernels stay small
_NOISE_FLOOR_HZ = 20.0  # pink/brown spectra stop rising below this, so rumble does not eat the SNR


def range_pair(name: str, value: float | tuple | list, low: float, high: float) -> tuple[float, float]:
    """A (min, max) range from a number or a pair, checked to lie within [low, high]."""
    lo, hi = (value, value) if isinstance(value, (int, float)) else tuple(value)
    if not low <= lo <= hi <= high:
        raise ValueError(f"{name} must be a number or a [min, max] pair within [{low}, {high}], got {value!r}")
    return float(lo), float(hi)


def _uniform(lo: float, hi: float, generator: torch.Generator) -> float:
    return lo + (hi - lo) * torch.rand((), generator=generator).item()


def _choice(options: tuple, generator: torch.Generator):
    return options[int(torch.randint(len(options), (), generator=generator))]


def _limit_peak(wave: torch.Tensor) -> torch.Tensor:
    """Rescale (not clip) so the peak is at most 1: clipping adds distortion the test set lacks."""
    peak = wave.abs().max() if wave.numel() else wave.new_zeros(())
    return wave / peak if peak > 1.0 else wave


def _ratio(factor: float) -> tuple[int, int]:
    """``factor`` as a resampling pair (orig, new) whose quotient is factor quantised to 1/160."""
    return max(1, round(factor * _RATIO_STEPS)), _RATIO_STEPS


def _convolve_head(wave: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """The first len(wave) samples of the linear convolution, by FFT.

    Own version rather than ``torchaudio.functional.fftconvolve``: padding to a power of two
    makes it about 5x faster on typical utterance lengths, whose exact sums are often nearly prime.
    """
    size = 1 << (wave.numel() + kernel.numel() - 2).bit_length()
    product = torch.fft.rfft(wave, size) * torch.fft.rfft(kernel, size)
    return torch.fft.irfft(product, size)[: wave.numel()]


def colored_noise(n: int, color: str, sample_rate: int, generator: torch.Generator) -> torch.Tensor:
    """White, pink (power ~ 1/f) or brown (~ 1/f^2) noise by shaping white noise's spectrum.

    Shaped at a power-of-two length and cropped: FFTs of nearly prime lengths are 5x slower.
    """
    if color == "white":
        return torch.randn(n, generator=generator)
    size = 1 << max(n - 1, 1).bit_length()
    spectrum = torch.fft.rfft(torch.randn(size, generator=generator))
    freqs = torch.fft.rfftfreq(size, d=1.0 / sample_rate).clamp(min=_NOISE_FLOOR_HZ)
    spectrum = spectrum / freqs ** {"pink": 0.5, "brown": 1.0}[color]
    spectrum[0] = 0
    return torch.fft.irfft(spectrum, n=size)[:n]


@dataclass(kw_only=True)
class Augmentation:
    """One wave augmentation applied with probability ``p``; subclasses implement ``apply``."""

    name: ClassVar[str] = ""
    p: float = 1.0
    sample_rate: int = 16000

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"{self.name}: p must be in [0, 1], got {self.p!r}")
        if self.sample_rate <= 0:
            raise ValueError(f"{self.name}: sample_rate must be positive, got {self.sample_rate!r}")

    def __call__(self, wave: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.p == 0.0 or torch.rand((), generator=generator).item() >= self.p or wave.numel() == 0:
            return wave
        return _limit_peak(self.apply(wave, generator).to(torch.float32))

    def apply(self, wave: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def params(self) -> str:
        """The parameters other than p and sample_rate, for tables."""
        return ", ".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self)
                         if f.name not in ("p", "sample_rate"))


@dataclass(kw_only=True)
class Gain(Augmentation):
    """Louder or quieter recording (distance to the microphone, recording level)."""

    name: ClassVar[str] = "gain"
    db: tuple[float, float] = (-6.0, 6.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.db = range_pair("gain db", self.db, -40.0, 40.0)

    def apply(self, wave, generator):
        return wave * 10.0 ** (_uniform(*self.db, generator) / 20.0)


@dataclass(kw_only=True)
class Noise(Augmentation):
    """Background noise at a signal-to-noise ratio measured on the utterance's own power."""

    name: ClassVar[str] = "noise"
    snr_db: tuple[float, float] = (10.0, 30.0)
    colors: tuple[str, ...] = NOISE_COLORS

    def __post_init__(self) -> None:
        super().__post_init__()
        self.snr_db = range_pair("noise snr_db", self.snr_db, -20.0, 100.0)
        self.colors = (self.colors,) if isinstance(self.colors, str) else tuple(self.colors)
        if not self.colors or set(self.colors) - set(NOISE_COLORS):
            raise ValueError(f"noise colors must be a non-empty subset of {NOISE_COLORS}, got {self.colors!r}")

    def apply(self, wave, generator):
        snr = _uniform(*self.snr_db, generator)
        noise = colored_noise(wave.numel(), _choice(self.colors, generator), self.sample_rate, generator)
        signal_power, noise_power = wave.square().mean(), noise.square().mean()
        if signal_power == 0 or noise_power == 0:
            return wave
        return wave + noise * torch.sqrt(signal_power / (noise_power * 10.0 ** (snr / 10.0)))


@dataclass(kw_only=True)
class Speed(Augmentation):
    """Faster or slower speech (speaking rate and pitch together), by resampling; changes length."""

    name: ClassVar[str] = "speed"
    factors: tuple[float, float] = (0.9, 1.1)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.factors = range_pair("speed factors", self.factors, 0.5, 2.0)

    @property
    def max_factor(self) -> float:
        """The fastest factor actually applied (after quantisation): the shortest output."""
        orig, new = _ratio(self.factors[1])
        return orig / new

    def apply(self, wave, generator):
        orig, new = _ratio(_uniform(*self.factors, generator))
        return wave if orig == new else AF.resample(wave, orig, new)


@dataclass(kw_only=True)
class Pitch(Augmentation):
    """Higher or lower voice at the same duration: resample, then phase-vocoder back to length."""

    name: ClassVar[str] = "pitch"
    semitones: tuple[float, float] = (-2.0, 2.0)
    n_fft: ClassVar[int] = 512
    hop: ClassVar[int] = 128

    def __post_init__(self) -> None:
        super().__post_init__()
        self.semitones = range_pair("pitch semitones", self.semitones, -12.0, 12.0)

    def apply(self, wave, generator):
        orig, new = _ratio(2.0 ** (_uniform(*self.semitones, generator) / 12.0))
        if orig == new or wave.numel() <= self.n_fft:
            return wave
        shifted = AF.resample(wave, orig, new)
        window = torch.hann_window(self.n_fft)
        spec = torch.stft(shifted, self.n_fft, self.hop, window=window, return_complex=True)
        advance = torch.linspace(0, math.pi * self.hop, spec.shape[0])[:, None]
        spec = AF.phase_vocoder(spec, new / orig, advance)
        return torch.istft(spec, self.n_fft, self.hop, window=window, length=wave.numel())


@dataclass(kw_only=True)
class Reverb(Augmentation):
    """A room: convolution with a synthetic impulse response (exponentially decaying noise)."""

    name: ClassVar[str] = "reverb"
    rt60: tuple[float, float] = (0.2, 0.8)
    wet: tuple[float, float] = (0.2, 0.7)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.rt60 = range_pair("reverb rt60", self.rt60, 0.05, 2.0)
        self.wet = range_pair("reverb wet", self.wet, 0.0, 1.0)

    def apply(self, wave, generator):
        rt60, wet = _uniform(*self.rt60, generator), _uniform(*self.wet, generator)
        t = torch.arange(1, int(rt60 * self.sample_rate) + 1) / self.sample_rate
        tail = torch.randn(t.numel(), generator=generator) * torch.exp(-math.log(1000.0) * t / rt60)
        reverberant = _convolve_head(wave, tail)
        scale = torch.sqrt(wave.square().mean() / reverberant.square().mean().clamp(min=1e-12))
        return (1.0 - wet) * wave + wet * reverberant * scale


@dataclass(kw_only=True)
class Filter(Augmentation):
    """A narrow channel: telephone band-pass, a dull low-pass microphone or a high-pass (no bass)."""

    name: ClassVar[str] = "filter"
    kinds: tuple[str, ...] = FILTER_KINDS
    low_hz: tuple[float, float] = (200.0, 500.0)
    high_hz: tuple[float, float] = (3000.0, 5000.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.kinds = (self.kinds,) if isinstance(self.kinds, str) else tuple(self.kinds)
        if not self.kinds or set(self.kinds) - set(FILTER_KINDS):
            raise ValueError(f"filter kinds must be a non-empty subset of {FILTER_KINDS}, got {self.kinds!r}")
        nyquist = self.sample_rate / 2
        self.low_hz = range_pair("filter low_hz", self.low_hz, 1.0, nyquist * 0.95)
        self.high_hz = range_pair("filter high_hz", self.high_hz, self.low_hz[1], nyquist * 0.95)

    def _biquad(self, wave: torch.Tensor, cutoff: float, highpass: bool) -> torch.Tensor:
        # RBJ cookbook Butterworth biquad, run twice (4th order); lfilter without its clamp,
        # which would clip (torchaudio's *_biquad helpers clamp to [-1, 1]).
        w0 = 2 * math.pi * cutoff / self.sample_rate
        alpha, cos = math.sin(w0) / (2 * 0.7071), math.cos(w0)
        b = [(1 + cos) / 2, -(1 + cos), (1 + cos) / 2] if highpass else [(1 - cos) / 2, 1 - cos, (1 - cos) / 2]
        a = torch.tensor([1 + alpha, -2 * cos, 1 - alpha])
        for _ in range(2):
            wave = AF.lfilter(wave, a, torch.tensor(b), clamp=False)
        return wave

    def apply(self, wave, generator):
        kind = _choice(self.kinds, generator)
        low, high = _uniform(*self.low_hz, generator), _uniform(*self.high_hz, generator)
        if kind in ("highpass", "bandpass"):
            wave = self._biquad(wave, low, highpass=True)
        if kind in ("lowpass", "bandpass"):
            wave = self._biquad(wave, high, highpass=False)
        return wave


@dataclass(kw_only=True)
class Shift(Augmentation):
    """A different start point: shift by up to ``max_ms`` (zero-padded or circular), same length."""

    name: ClassVar[str] = "shift"
    max_ms: float = 100.0
    circular: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.max_ms <= 5000.0:
            raise ValueError(f"shift max_ms must be in [0, 5000], got {self.max_ms!r}")

    def apply(self, wave, generator):
        limit = int(self.max_ms * self.sample_rate / 1000)
        shift = int(torch.randint(-limit, limit + 1, (), generator=generator))
        if self.circular or shift == 0:
            return torch.roll(wave, shift)
        out = torch.zeros_like(wave)
        if shift > 0:
            out[shift:] = wave[:-shift]
        else:
            out[:shift] = wave[-shift:]
        return out


AUGMENTATIONS: dict[str, type[Augmentation]] = {
    cls.name: cls for cls in (Gain, Noise, Speed, Pitch, Reverb, Filter, Shift)
}

AUGMENTATION_NOTES: dict[str, str] = {
    "gain": "Recording level and mic distance; with per-utterance feature normalisation it mostly "
            "moves speech relative to the log floor, so expect little gain from it alone.",
    "noise": "Background noise (white hiss, pink babble-like, brown rumble) at a set SNR; the "
             "largest single help on noisy speech such as test-other.",
    "speed": "Speaking rate and vocal tract together (Ko et al. 2015, 0.9/1.0/1.1); a steady "
             "WER gain and more distinct training utterances.",
    "pitch": "Another voice at the same pace (higher or lower speaker); widens speaker variety.",
    "reverb": "A room: late reflections smear phonemes in time, as in far-field recordings.",
    "filter": "A channel: telephone band (300-3400 Hz), a dull mic, or no bass; the model learns "
              "not to rely on one frequency band.",
    "shift": "A different start offset; the model must not depend on where speech begins.",
}

PRESETS: dict[str, list[dict]] = {
    "none": [],
    "light": [  # cheap enough for 2 CPU cores; speed is the one that best covers unseen voices
        {"name": "speed", "p": 0.8, "factors": [0.85, 1.15]},
        {"name": "noise", "p": 0.3, "snr_db": [15, 35], "colors": ["white", "pink"]},
        {"name": "gain", "p": 0.5, "db": [-6, 6]},
        {"name": "shift", "p": 0.5, "max_ms": 100},
    ],
    "full": [
        {"name": "speed", "p": 0.5, "factors": [0.9, 1.1]},
        {"name": "pitch", "p": 0.2, "semitones": [-2, 2]},
        {"name": "reverb", "p": 0.3, "rt60": [0.2, 0.8], "wet": [0.2, 0.7]},
        {"name": "noise", "p": 0.5, "snr_db": [5, 30]},
        {"name": "filter", "p": 0.2},
        {"name": "gain", "p": 0.5, "db": [-10, 6]},
        {"name": "shift", "p": 0.5, "max_ms": 200},
    ],
}


def build_augmentation(spec: dict, sample_rate: int = 16000) -> Augmentation:
    """One augmentation from ``{"name": ..., "p": ..., <its parameters>}``; unknown keys are errors."""
    spec = dict(spec)
    name = spec.pop("name", None)
    if name not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {name!r}; choose from {sorted(AUGMENTATIONS)}")
    cls = AUGMENTATIONS[name]
    allowed = {f.name for f in fields(cls)} - {"sample_rate"}
    unknown = set(spec) - allowed
    if unknown:
        raise ValueError(f"{name}: unknown parameters {sorted(unknown)}; allowed {sorted(allowed)}")
    return cls(sample_rate=sample_rate, **spec)


class WaveAugment:
    """The train-time wave augmentations of one config, applied in order, each with its own p."""

    def __init__(self, augmentations: list[Augmentation]):
        self.augmentations = list(augmentations)

    @classmethod
    def from_config(cls, config: str | list[dict], sample_rate: int = 16000) -> WaveAugment:
        """A preset name (``"none"``, ``"light"``, ``"full"``) or a list of augmentation dicts."""
        if isinstance(config, str):
            if config not in PRESETS:
                raise ValueError(f"unknown augmentation preset {config!r}; choose from {sorted(PRESETS)}")
            config = PRESETS[config]
        return cls([build_augmentation(spec, sample_rate) for spec in config])

    @property
    def names(self) -> list[str]:
        """Augmentations that can fire (p > 0), in order."""
        return [aug.name for aug in self.augmentations if aug.p > 0]

    @property
    def max_speed_factor(self) -> float:
        """Largest speed-up applied: utterances may get this many times shorter."""
        return max([aug.max_factor for aug in self.augmentations if isinstance(aug, Speed) and aug.p > 0],
                   default=1.0)

    def describe(self) -> str:
        """A small table of name, probability and parameters for the notebook."""
        rows = [f"{'name':<8} {'p':>5}  parameters"]
        rows += [f"{aug.name:<8} {aug.p:>5.2f}  {aug.params()}" for aug in self.augmentations]
        return "\n".join(rows) if self.augmentations else "no wave augmentation"

    def __call__(self, wave: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if wave.dim() != 1:
            raise ValueError(f"expected a 1-D mono wave, got shape {tuple(wave.shape)}")
        wave = wave.to(torch.float32)
        for aug in self.augmentations:
            wave = aug(wave, generator)
        return wave

    def __repr__(self) -> str:
        return f"WaveAugment({self.names})"


def max_speed_factor(config: str | list[dict], sample_rate: int = 16000) -> float:
    """How many times shorter speed perturbation can make an utterance under ``config``.

    The dataset divides output frames by this when it checks that labels still fit CTC.
    """
    return WaveAugment.from_config(config, sample_rate).max_speed_factor


def single_augmentations(sample_rate: int = 16000) -> dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]]:
    """Each augmentation at p=1 with one representative setting, to hear and plot in the notebook."""
    return {aug.name: aug for aug in (
        Gain(db=-6.0, sample_rate=sample_rate),
        Noise(snr_db=10.0, colors="pink", sample_rate=sample_rate),
        Speed(factors=1.1, sample_rate=sample_rate),
        Pitch(semitones=2.0, sample_rate=sample_rate),
        Reverb(rt60=0.6, wet=0.5, sample_rate=sample_rate),
        Filter(kinds="bandpass", low_hz=300.0, high_hz=3400.0, sample_rate=sample_rate),
        Shift(max_ms=200.0, sample_rate=sample_rate),
    )}
