"""Log-mel features computed per batch on the training device.

Computing features on the GPU per batch is far cheaper than per item in DataLoader workers,
and taking the log matters: a linear mel spectrogram has a huge dynamic range that the
network struggles with (a trap in the course template). Each utterance is normalised to zero
mean and unit variance per mel channel over its real frames; padding stays exactly zero.

``lifter=k`` keeps only the first k cepstral coefficients of each frame's log-mel (a DCT, cut,
inverse DCT): the smooth spectral envelope that carries the formants stays, the fine ripple of
pitch harmonics goes. Pitch says little about which sound is spoken but a lot about who speaks,
so a model trained on low voices then transfers better to a high one.
"""
from __future__ import annotations

import torch
import torchaudio
from torch import nn


class LogMelFeatures(nn.Module):
    """Waves ``[B, T]`` at 16 kHz -> normalised log-mel ``[B, n_mels, frames]`` and frame lengths."""

    def __init__(self, n_mels: int = 80, sample_rate: int = 16000, win_ms: float = 25.0, hop_ms: float = 10.0,
                 lifter: int = 0, center: bool = True):
        super().__init__()
        if not 0 <= lifter <= n_mels:
            raise ValueError(f"lifter must be between 0 (off) and n_mels={n_mels}, got {lifter}")
        self.n_mels, self.sample_rate, self.lifter = n_mels, sample_rate, lifter
        self.register_buffer("smoothing", _cepstral_smoothing(n_mels, lifter) if lifter else None, persistent=False)
        self.hop_length = int(sample_rate * hop_ms / 1000)
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=512, win_length=int(sample_rate * win_ms / 1000),
            hop_length=self.hop_length, n_mels=n_mels, power=2.0, center=center)

    @classmethod
    def for_model(cls, config) -> LogMelFeatures:
        """The features a model config was trained on (its ``n_mels`` and ``lifter``)."""
        return cls(config.n_mels, lifter=config.lifter)

    def frame_lengths(self, wave_lengths: torch.Tensor) -> torch.Tensor:
        """Frames produced by a centred STFT for each wave length."""
        return torch.div(wave_lengths, self.hop_length, rounding_mode="floor") + 1

    def log_mel(self, waves: torch.Tensor) -> torch.Tensor:
        """Un-normalised (liftered) log-mel ``[B, n_mels, frames]`` of ``waves [B, T]``."""
        feats = torch.log(self.mel(waves.float()) + 1e-6)
        if self.smoothing is not None:
            feats = torch.einsum("mn,bnt->bmt", self.smoothing, feats)
        return feats

    @torch.autocast("cuda", enabled=False)
    def forward(self, waves: torch.Tensor, wave_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = self.frame_lengths(wave_lengths)
        feats = self.log_mel(waves)
        mask = torch.arange(feats.shape[-1], device=feats.device)[None, :] < lengths[:, None]
        return utterance_normalise(feats, mask), lengths


def utterance_normalise(feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each utterance of ``feats [B, n_mels, frames]`` to zero mean and unit variance per mel over its frames
    under ``mask [B, frames]``; the other frames become exactly 0."""
    mask = mask[:, None, :].to(feats.dtype)
    count = mask.sum(-1, keepdim=True).clamp(min=1)
    mean = (feats * mask).sum(-1, keepdim=True) / count
    var = (((feats - mean) * mask) ** 2).sum(-1, keepdim=True) / count
    return (feats - mean) / torch.sqrt(var + 1e-5) * mask


def causal_window_mean(feats: torch.Tensor, window: int) -> torch.Tensor:
    """Per-mel mean of each frame of ``feats [..., n_mels, frames]`` and the ``window - 1`` frames before it
    (fewer at the start): what a stream knows at that frame. Summed in float64, so a stream that computes
    it over a shorter stretch gets the same values."""
    sums = feats.double().cumsum(-1)
    sums = torch.cat([sums[..., :window], sums[..., window:] - sums[..., :-window]], -1)  # slices, not a gather
    counts = torch.arange(1, feats.shape[-1] + 1, device=feats.device).clamp(max=window)
    return (sums / counts).to(feats.dtype)


def _cepstral_smoothing(n_mels: int, keep: int) -> torch.Tensor:
    """[n_mels, n_mels] matrix: orthonormal DCT-II, zero all but the first ``keep`` coefficients, invert."""
    n = torch.arange(n_mels, dtype=torch.float64)
    dct = torch.cos(torch.pi / n_mels * (n[:, None] + 0.5) * n[None, :]) * (2.0 / n_mels) ** 0.5
    dct[:, 0] /= 2 ** 0.5
    kept = dct[:, :keep]
    return (kept @ kept.T).float()


class StreamingLogMel(LogMelFeatures):
    """Waves ``[B, T]`` -> log-mel ``[B, n_mels, frames]`` that a stream computes exactly, chunk by chunk.

    Two changes from ``LogMelFeatures`` make every frame depend only on samples already heard:
    the STFT is not centred (frame ``t`` reads samples ``[t * hop, t * hop + n_fft)``, so no
    reflection of samples still to come), and normalisation uses per-mel mean and variance
    estimated on the training set (a BatchNorm without affine: batch statistics in training,
    running statistics frozen in eval, carried by the checkpoint) instead of the utterance's own.
    An utterance of L samples has ceil(L / hop) frames; the tail is padded with zeros, which is
    what a stream flushes at its end. The cost of ``norm="global"``: no adaptation to level or
    channel, so a recording much louder or quieter than the training audio shifts every feature.
    ``norm="running"`` first subtracts each frame's causal mean over the last ``RUNNING_WINDOW``
    frames (online cepstral mean normalisation, as Kaldi's online CMVN with its 600-frame window):
    a gain multiplies the power, so it adds one constant to every log-mel value, which that
    subtraction removes exactly; the training-set statistics then scale what is left.
    ``norm="utterance"`` keeps the utterance's own normalisation (the ablation that measures what
    a streamable one costs); such features cannot be streamed.
    """

    NORMS = ("global", "running", "utterance")
    RUNNING_WINDOW = 600  # frames (6 s) of the running mean

    def __init__(self, n_mels: int = 80, sample_rate: int = 16000, win_ms: float = 25.0, hop_ms: float = 10.0,
                 lifter: int = 0, norm: str = "global"):
        if norm not in self.NORMS:
            raise ValueError(f"feature_norm must be one of {', '.join(self.NORMS)}, not {norm!r}")
        super().__init__(n_mels, sample_rate, win_ms, hop_ms, lifter, center=False)
        self.norm_name = norm
        self.norm = nn.BatchNorm1d(n_mels, affine=False) if norm != "utterance" else None

    @classmethod
    def for_model(cls, config, norm: str = "global") -> StreamingLogMel:
        return cls(config.n_mels, lifter=config.lifter, norm=norm)

    def frame_lengths(self, wave_lengths: torch.Tensor) -> torch.Tensor:
        """ceil(L / hop) frames for L samples: every sample lies in at least one frame."""
        return torch.div(wave_lengths + self.hop_length - 1, self.hop_length, rounding_mode="floor")

    def samples_for(self, frames: int) -> int:
        """Samples ``frames`` frames read (from the first frame's start to the last one's end)."""
        return (frames - 1) * self.hop_length + self.mel.n_fft if frames > 0 else 0

    @property
    def can_stream(self) -> bool:
        """False for ``norm="utterance"``, whose statistics need the whole utterance."""
        return self.norm_name != "utterance"

    def normalise(self, feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-mel normalisation of the frames under ``mask [B, frames]`` (a prefix of each row; others become
        0): the training set's statistics, after the running mean with ``norm="running"``, or each
        utterance's own with ``norm="utterance"``."""
        if not self.can_stream:
            return utterance_normalise(feats, mask)
        if self.norm_name == "running":
            feats = self._less_running_mean(feats, feats[..., :0])[0]
        return self._scale(feats, mask)

    def _less_running_mean(self, feats: torch.Tensor, recent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``feats [..., n_mels, n]`` less each frame's causal mean over the frames heard before them (``recent``,
        un-normalised) and themselves, and the last ``RUNNING_WINDOW - 1`` frames heard (a stream's next ``recent``)."""
        heard = torch.cat([recent, feats], -1)
        means = causal_window_mean(heard, self.RUNNING_WINDOW)[..., recent.shape[-1]:]
        return feats - means, heard[..., -(self.RUNNING_WINDOW - 1):]

    def _scale(self, feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The training-set statistics (BatchNorm without affine) on the frames under ``mask``."""
        out = torch.zeros_like(feats)
        rows = feats.transpose(1, 2)[mask]
        if len(rows):
            out.transpose(1, 2)[mask] = self.norm(rows)
        return out

    @torch.autocast("cuda", enabled=False)
    def forward(self, waves: torch.Tensor, wave_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = self.frame_lengths(wave_lengths)
        frames = int(lengths.max()) if len(lengths) else 0
        if frames == 0:
            return waves.new_zeros(len(waves), self.n_mels, 0), lengths
        heard = torch.arange(waves.shape[-1], device=waves.device)[None, :] < wave_lengths[:, None]
        waves = nn.functional.pad(waves.float() * heard, (0, max(0, self.samples_for(frames) - waves.shape[-1])))
        feats = self.log_mel(waves[:, : self.samples_for(frames)])
        mask = torch.arange(frames, device=feats.device)[None, :] < lengths[:, None]
        return self.normalise(feats, mask), lengths

    def stream(self, pending: torch.Tensor, final: bool, frames_left: int = 0,
               recent: torch.Tensor | None = None) -> tuple[torch.Tensor, int, torch.Tensor]:
        """Normalised frames ``[n_mels, n]`` of the complete windows of ``pending`` (samples from the next
        frame's start), how many samples they consumed, and the un-normalised frames the running mean
        still needs (pass them back as ``recent`` with the next chunk; empty unless ``norm="running"``);
        ``final`` pads zeros for the ``frames_left`` last."""
        if not self.can_stream:
            raise ValueError("these features are normalised per utterance (feature_norm: utterance), which needs "
                             "the whole utterance: they cannot be streamed")
        recent = pending.new_zeros(self.n_mels, 0) if recent is None else recent
        count = frames_left if final else (len(pending) - self.mel.n_fft) // self.hop_length + 1
        if count <= 0:
            return pending.new_zeros(self.n_mels, 0), 0, recent
        needed = self.samples_for(count)
        window = nn.functional.pad(pending[:needed], (0, max(0, needed - len(pending))))
        feats = self.log_mel(window[None])[0]
        if self.norm_name == "running":
            feats, recent = self._less_running_mean(feats, recent)
        mask = torch.ones(1, count, dtype=torch.bool, device=feats.device)
        return self._scale(feats[None], mask)[0], min(count * self.hop_length, len(pending)), recent
