"""DeepSpeech2: a 2-D convolution front end, bidirectional GRUs or LSTMs and a linear CTC head.

Padding must never reach a recurrent state. Two ways are offered and give the same result:
``packed`` sequences (cuDNN handles them well on a GPU) and ``masked``, which runs the
backward direction on each utterance reversed within its own length so padding always comes
last and is never read (on CPU this is several times faster than packing at large batches).
On CPU an LSTM is faster than a GRU of the same width: PyTorch runs it as one fused oneDNN
kernel per layer, while a GRU runs cell by cell (measured in PERFORMANCE.md).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


RNN_TYPES: dict[str, type[nn.RNNBase]] = {"gru": nn.GRU, "lstm": nn.LSTM}


@dataclass(frozen=True)
class ModelConfig:
    n_mels: int = 80
    conv_channels: tuple[int, ...] = (32, 32)
    conv_kernels: tuple[tuple[int, int], ...] = ((41, 11), (21, 11))  # (frequency, time)
    conv_strides: tuple[tuple[int, int], ...] = ((2, 2), (2, 1))
    rnn_layers: int = 3
    rnn_hidden: int = 256
    rnn_mode: str = "masked"  # "masked" or "packed": same maths, different speed per device
    rnn_type: str = "gru"     # "gru" or "lstm"
    vocab_size: int = 29
    lifter: int = 0  # cepstral coefficients kept by LogMelFeatures (0: plain log-mel)

    def __post_init__(self):
        if not (len(self.conv_channels) == len(self.conv_kernels) == len(self.conv_strides)):
            raise ValueError("conv_channels, conv_kernels and conv_strides need the same length")
        if self.rnn_mode not in ("masked", "packed"):
            raise ValueError(f"rnn_mode must be 'masked' or 'packed', not {self.rnn_mode!r}")
        if self.rnn_type not in RNN_TYPES:
            raise ValueError(f"rnn_type must be one of {sorted(RNN_TYPES)}, not {self.rnn_type!r}")

    @property
    def time_stride(self) -> int:
        stride = 1
        for _, t in self.conv_strides:
            stride *= t
        return stride


PRESETS: dict[str, dict] = {
    "tiny": dict(n_mels=40, conv_channels=(8, 8), conv_kernels=((11, 5), (11, 5)), rnn_layers=2, rnn_hidden=96),
    "small": dict(n_mels=64, conv_channels=(32, 32), conv_kernels=((21, 11), (11, 11)), conv_strides=((2, 3), (2, 1)),
                  rnn_layers=3, rnn_hidden=320, lifter=20, rnn_type="lstm"),
    "base": dict(n_mels=80, conv_channels=(32, 32, 96), conv_kernels=((41, 11), (21, 11), (21, 11)),
                 conv_strides=((2, 2), (2, 1), (2, 1)), rnn_layers=5, rnn_hidden=768, rnn_mode="packed"),
}


def model_config(preset: str, vocab_size: int, **overrides) -> ModelConfig:
    """A preset (``tiny``, ``small``, ``base``) with optional overrides."""
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; choose from {sorted(PRESETS)}")
    return config_from_dict({**PRESETS[preset], **overrides, "vocab_size": vocab_size})


def conv_output_length(lengths: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Frames after one conv layer in time: floor((L + 2*pad - kernel) / stride) + 1."""
    return torch.div(lengths + 2 * (kernel // 2) - kernel, stride, rounding_mode="floor") + 1


def conv_output_lengths(lengths: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """Frames after the whole conv stack: the lengths CTC must be given."""
    for (_, kernel), (_, stride) in zip(config.conv_kernels, config.conv_strides):
        lengths = conv_output_length(lengths, kernel, stride)
    return lengths


def time_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """``[B, frames]`` True on the first ``lengths[b]`` frames of each row."""
    return torch.arange(frames, device=lengths.device)[None, :] < lengths[:, None]


def reverse_within_lengths(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence of ``x [B, T, C]`` inside its length; padding stays at the end."""
    frames = x.shape[1]
    steps = torch.arange(frames, device=x.device)[None, :]
    index = torch.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)
    return x.gather(1, index[:, :, None].expand_as(x))


class MaskedBatchNorm(nn.Module):
    """Sequence-wise BatchNorm over real frames only, so padding does not skew the statistics."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.BatchNorm1d(channels)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(x)
        out[mask] = self.norm(x[mask]).to(out.dtype)
        return out


class BiRNNLayer(nn.Module):
    """BatchNorm -> bidirectional GRU or LSTM, directions summed (as in DeepSpeech2)."""

    def __init__(self, input_size: int, config: ModelConfig, norm: bool):
        super().__init__()
        self.mode = config.rnn_mode
        self.norm = MaskedBatchNorm(input_size) if norm else None
        rnn = RNN_TYPES[config.rnn_type]
        self.forward_rnn = rnn(input_size, config.rnn_hidden, batch_first=True)
        self.backward_rnn = rnn(input_size, config.rnn_hidden, batch_first=True)

    def _run(self, rnn: nn.RNNBase, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.mode == "masked":
            return rnn(x)[0]
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        return pad_packed_sequence(rnn(packed)[0], batch_first=True, total_length=x.shape[1])[0]

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.norm is not None:
            x = self.norm(x, mask)
        ahead = self._run(self.forward_rnn, x, lengths)
        behind = reverse_within_lengths(self._run(self.backward_rnn, reverse_within_lengths(x, lengths), lengths), lengths)
        return (ahead + behind) * mask[:, :, None]


class DeepSpeech2(nn.Module):
    """Log-mel ``[B, n_mels, T]`` -> log-probabilities ``[B, T', vocab]`` and output lengths."""

    rnn_directions = 2  # bidirectional recurrent layers (the FLOPs count reads it)

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        convs, channels, freq = [], 1, config.n_mels
        for out_channels, kernel, stride in zip(config.conv_channels, config.conv_kernels, config.conv_strides):
            padding = (kernel[0] // 2, kernel[1] // 2)
            convs.append(nn.ModuleList([nn.Conv2d(channels, out_channels, kernel, stride, padding, bias=False),
                                        nn.BatchNorm2d(out_channels), nn.Hardtanh(0, 20, inplace=True)]))
            channels, freq = out_channels, (freq + 2 * padding[0] - kernel[0]) // stride[0] + 1
        # channels-last weights and inputs: oneDNN's CPU convolutions run 2.6x faster so (PERFORMANCE.md)
        self.convs = nn.ModuleList(convs).to(memory_format=torch.channels_last)
        rnn_input = channels * freq
        self.rnns = nn.ModuleList(
            BiRNNLayer(rnn_input if i == 0 else config.rnn_hidden, config, norm=i > 0)
            for i in range(config.rnn_layers))
        self.head_norm = MaskedBatchNorm(config.rnn_hidden)
        self.head = nn.Linear(config.rnn_hidden, config.vocab_size)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return conv_output_lengths(lengths, self.config)

    def encode(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """States after the recurrent stack ``[B, T', rnn_hidden]``, their valid lengths and mask.

        The part an attention decoder shares with the CTC head (``las.JointCTCAttention``).
        """
        frame_lengths = lengths
        x = (features * time_mask(lengths, features.shape[-1])[:, None, :]).unsqueeze(1)
        for (_, stride), (conv, norm, act) in zip(self.config.conv_strides, self.convs):
            x = act(norm(conv(x)))
            frame_lengths = conv_output_length(frame_lengths, conv.kernel_size[1], stride)
            x = x * time_mask(frame_lengths, x.shape[-1])[:, None, None, :]
        batch, channels, freq, frames = x.shape
        x = x.permute(0, 3, 1, 2).reshape(batch, frames, channels * freq)
        mask = time_mask(frame_lengths, frames)
        for rnn in self.rnns:
            x = rnn(x, frame_lengths, mask)
        return x, frame_lengths, mask

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities ``[B, T', vocab]`` (float32) and their valid lengths."""
        x, frame_lengths, mask = self.encode(features, lengths)
        logits = self.head(self.head_norm(x, mask))
        return logits.float().log_softmax(-1), frame_lengths

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


def ctc_loss(log_probs: torch.Tensor, out_lengths: torch.Tensor, targets: torch.Tensor,
             target_lengths: torch.Tensor, blank: int) -> torch.Tensor:
    """Mean over utterances of the per-utterance CTC loss divided by its target length, in float32."""
    return F.ctc_loss(log_probs.float().transpose(0, 1), targets, out_lengths, target_lengths,
                      blank=blank, reduction="mean", zero_infinity=True)


def config_to_dict(config: ModelConfig) -> dict:
    return asdict(config)


def _as_tuples(value):
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def config_from_dict(values: dict) -> ModelConfig:
    """Inverse of ``config_to_dict`` (YAML and JSON turn tuples into lists)."""
    unknown = set(values) - set(ModelConfig.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown model settings {sorted(unknown)}")
    return ModelConfig(**{k: _as_tuples(v) for k, v in values.items()})


def training_flops_per_audio_second(config: ModelConfig, frames_per_second: float = 100.0,
                                    rnn_directions: int = 2) -> float:
    """Matrix FLOPs of one training step (forward + backward = 3 x forward) per second of audio.

    Counted from the shapes (convolutions, the RNNs' ``rnn_directions``, the head), as nanoGPT's
    ``estimate_mfu`` does, because PyTorch's flop counter does not see fused cuDNN/oneDNN RNNs.
    """
    forward, channels, freq, frames = 0.0, 1, config.n_mels, frames_per_second
    for out_channels, (kf, kt), (sf, st) in zip(config.conv_channels, config.conv_kernels, config.conv_strides):
        freq, frames = (freq + 2 * (kf // 2) - kf) // sf + 1, frames / st
        forward += 2 * out_channels * channels * kf * kt * freq * frames
        channels = out_channels
    gates = 4 if config.rnn_type == "lstm" else 3
    size = channels * freq
    for _ in range(config.rnn_layers):
        forward += 2 * rnn_directions * gates * (size + config.rnn_hidden) * config.rnn_hidden * frames
        size = config.rnn_hidden
    forward += 2 * config.rnn_hidden * config.vocab_size * frames
    return 3 * forward
