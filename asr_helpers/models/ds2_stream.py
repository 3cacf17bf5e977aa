"""Streaming DeepSpeech2: causal convolutions, unidirectional RNNs and a look-ahead (row) convolution.

DeepSpeech2 was built to be deployed streaming (Amodei et al. 2016, section 7): recurrent layers
that only look back, and one "row" convolution over ``lookahead`` future frames of the top
recurrent layer's output, so each output frame waits for a bounded amount of future audio. Here
the time convolutions are causal too (zero padding on the left only), so the look-ahead is the
model's only future context.

``forward`` runs whole padded utterances (training, the CTC decoders); ``stream_step`` runs one
chunk of feature frames with a ``StreamState`` carrying each convolution's cache of past input
frames, each RNN's hidden state and the frames the row convolution still waits on, and returns
the log-probabilities of the frames that are now final. Fed any chunking of an utterance and
then ``stream_finish``, it returns what ``forward`` returns, up to float rounding (in eval mode:
BatchNorm then uses its frozen running statistics, frame by frame).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import torch
from torch import nn
from torch.nn import functional as F

from asr_helpers.data.features import StreamingLogMel
from asr_helpers.data.spec_augment import SpecAugment, spec_augment_from_preset
from asr_helpers.models.deepspeech2 import (RNN_TYPES, MaskedBatchNorm, ModelConfig, config_from_dict, config_to_dict,
                                            model_config, time_mask)
from asr_helpers.models.recognizer import CTCRecognizer, SpeechModel

LOOKAHEAD = 3  # default future output frames of the row convolution (90 ms at the small preset's 30 ms frames)
FEATURE_NORM = "global"  # the features' normalisation: training-set statistics, so a stream can compute them


def causal_output_length(lengths: torch.Tensor, stride: int) -> torch.Tensor:
    """Frames after a causal convolution of stride ``stride``: ceil(L / stride) (output j reads input j * stride)."""
    return torch.div(lengths + stride - 1, stride, rounding_mode="floor")


@dataclass
class StreamState:
    """What one stream carries between chunks: per convolution the input frames the next outputs still read,
    per RNN its hidden state (None before the first frame), and the top RNN frames awaiting their look-ahead."""
    conv_inputs: list[torch.Tensor]
    rnn_states: list = field(default_factory=list)
    waiting: torch.Tensor | None = None


class UniRNNLayer(nn.Module):
    """BatchNorm -> a unidirectional GRU or LSTM: padding comes after the real frames, so it is never read."""

    def __init__(self, input_size: int, config: ModelConfig, norm: bool):
        super().__init__()
        self.norm = MaskedBatchNorm(input_size) if norm else None
        self.rnn = RNN_TYPES[config.rnn_type](input_size, config.rnn_hidden, batch_first=True)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.norm is not None:
            x = self.norm(x, mask)
        return self.rnn(x)[0] * mask[:, :, None]

    def step(self, x: torch.Tensor, state):
        """One chunk ``[1, n, features]`` of a stream (eval mode) -> its outputs and the new hidden state."""
        if self.norm is not None:
            x = self.norm.norm(x[0])[None]
        return self.rnn(x, state)


class DS2Stream(nn.Module):
    """Log-mel ``[B, n_mels, T]`` -> log-probabilities ``[B, T', vocab]`` with ``lookahead`` future frames."""

    rnn_directions = 1  # one-way recurrent layers (the FLOPs count reads it)

    def __init__(self, config: ModelConfig, lookahead: int):
        super().__init__()
        if lookahead < 0:
            raise ValueError(f"lookahead must be 0 or more frames, not {lookahead}")
        if any(kernel[1] < stride[1] for kernel, stride in zip(config.conv_kernels, config.conv_strides)):
            raise ValueError("each time kernel must be at least its stride (a stream would skip frames)")
        self.config, self.lookahead = config, lookahead
        convs, channels, freq = [], 1, config.n_mels
        for out_channels, kernel, stride in zip(config.conv_channels, config.conv_kernels, config.conv_strides):
            conv = nn.Conv2d(channels, out_channels, kernel, stride, (kernel[0] // 2, 0), bias=False)
            convs.append(nn.ModuleList([conv, nn.BatchNorm2d(out_channels), nn.Hardtanh(0, 20, inplace=True)]))
            channels, freq = out_channels, (freq + 2 * (kernel[0] // 2) - kernel[0]) // stride[0] + 1
        self.convs = nn.ModuleList(convs).to(memory_format=torch.channels_last)  # as DeepSpeech2's, for speed
        self.rnns = nn.ModuleList(UniRNNLayer(channels * freq if i == 0 else config.rnn_hidden, config, norm=i > 0)
                                  for i in range(config.rnn_layers))
        self.row = nn.Conv1d(config.rnn_hidden, config.rnn_hidden, lookahead + 1, groups=config.rnn_hidden, bias=False)
        with torch.no_grad():  # starts as the identity: training first sees the causal model, then learns to look ahead
            self.row.weight.zero_()
            self.row.weight[:, 0, 0] = 1.0
        self.head_norm = MaskedBatchNorm(config.rnn_hidden)
        self.head = nn.Linear(config.rnn_hidden, config.vocab_size)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        for _, (_, stride) in zip(self.convs, self.config.conv_strides):
            lengths = causal_output_length(lengths, stride)
        return lengths

    def _conv_block(self, block: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
        conv, norm, act = block
        return act(norm(conv(x.contiguous(memory_format=torch.channels_last))))

    def _flatten(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, F, T]`` -> ``[B, T, C * F]``, the RNN input."""
        batch, channels, freq, frames = x.shape
        return x.permute(0, 3, 1, 2).reshape(batch, frames, channels * freq)

    def _head(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.head_norm(x, mask)).float().log_softmax(-1)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities ``[B, T', vocab]`` (float32) and their valid lengths, for whole utterances."""
        x = (features * time_mask(lengths, features.shape[-1])[:, None, :]).unsqueeze(1)
        for block in self.convs:
            x = self._conv_block(block, F.pad(x, (block[0].kernel_size[1] - 1, 0)))
            lengths = causal_output_length(lengths, block[0].stride[1])
            x = x * time_mask(lengths, x.shape[-1])[:, None, None, :]
        x = self._flatten(x)
        mask = time_mask(lengths, x.shape[1])
        for rnn in self.rnns:
            x = rnn(x, mask)
        x = self.row(F.pad(x.transpose(1, 2), (0, self.lookahead))).transpose(1, 2)
        return self._head(x, mask), lengths

    def initial_state(self, device: torch.device | str = "cpu") -> StreamState:
        """A fresh stream: each convolution's cache is its left zero padding."""
        caches, channels, freq = [], 1, self.config.n_mels
        for block in self.convs:
            conv = block[0]
            caches.append(torch.zeros(1, channels, freq, conv.kernel_size[1] - 1, device=device))
            channels = conv.out_channels
            freq = (freq + 2 * conv.padding[0] - conv.kernel_size[0]) // conv.stride[0] + 1
        return StreamState(caches, [None] * len(self.rnns), torch.zeros(1, 0, self.config.rnn_hidden, device=device))

    def _stream_convs(self, state: StreamState, x: torch.Tensor) -> torch.Tensor | None:
        """Each convolution over its cache plus the new frames (None: no output frame yet); the cache keeps
        the input frames that later outputs read."""
        for i, block in enumerate(self.convs):
            kernel, stride = block[0].kernel_size[1], block[0].stride[1]
            frames = torch.cat([state.conv_inputs[i], x], dim=-1)
            count = max(0, (frames.shape[-1] - kernel) // stride + 1)
            state.conv_inputs[i] = frames[..., count * stride:]
            if count == 0:
                return None
            x = self._conv_block(block, frames[..., : (count - 1) * stride + kernel])
        return x

    def _released(self, state: StreamState, top: torch.Tensor, final: bool) -> torch.Tensor:
        """Row-convolution outputs of the frames whose ``lookahead`` future frames are now known (all at the end)."""
        waiting = torch.cat([state.waiting, top], dim=1)
        if final:
            waiting = F.pad(waiting, (0, 0, 0, self.lookahead))
        ready = waiting.shape[1] - self.lookahead
        if ready <= 0:
            state.waiting = waiting
            return top.new_zeros(1, 0, top.shape[-1])
        state.waiting = waiting[:, ready:]
        return self.row(waiting.transpose(1, 2)).transpose(1, 2)

    @torch.no_grad()
    def stream_step(self, state: StreamState, features: torch.Tensor) -> torch.Tensor:
        """Log-probabilities ``[n, vocab]`` of the frames that ``features [n_mels, frames]`` (normalised
        log-mel, the next frames of the stream) make final; ``state`` is updated in place. Eval mode only."""
        if self.training:
            raise RuntimeError("stream_step needs eval mode (BatchNorm must use its frozen statistics)")
        x = self._stream_convs(state, features[None, None])
        if x is None:
            return features.new_zeros(0, self.config.vocab_size)
        top = self._flatten(x)
        for i, rnn in enumerate(self.rnns):
            top, state.rnn_states[i] = rnn.step(top, state.rnn_states[i])
        return self._emit(self._released(state, top, final=False))

    @torch.no_grad()
    def stream_finish(self, state: StreamState) -> torch.Tensor:
        """Log-probabilities of the last frames, whose look-ahead runs past the end (zeros there, as in ``forward``)."""
        empty = state.waiting.new_zeros(1, 0, self.config.rnn_hidden)
        return self._emit(self._released(state, empty, final=True))

    def _emit(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 0:
            return x.new_zeros(0, self.config.vocab_size)
        return self._head(x, torch.ones(x.shape[:2], dtype=torch.bool, device=x.device))[0]

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


class StreamingRecognizer(CTCRecognizer):
    """Streamable log-mel (``StreamingLogMel``: no centring, training-set normalisation) -> SpecAugment
    (training only) -> ``DS2Stream`` -> CTC loss: the DeepSpeech2 recognizer with a model a stream can run.

    Its checkpoint holds the whole recognizer's state (the features' normalisation statistics too),
    the encoder preset's settings and ``stream_config`` (the look-ahead and the features' normalisation).
    """

    SETTINGS = ("lookahead", "feature_norm")

    def __init__(self, net: DS2Stream, tokenizer, spec_augment: SpecAugment | None = None,
                 feature_norm: str = "global"):
        SpeechModel.__init__(self)
        self.features = StreamingLogMel.for_model(net.config, feature_norm)
        self.net = net
        self.spec_augment = spec_augment
        self.tokenizer = tokenizer

    @classmethod
    def build(cls, tokenizer, model_size: str, settings: Mapping[str, object], *, rnn_mode: str = "masked",
              augment: str = "none", encoder: Mapping[str, object] | None = None) -> "StreamingRecognizer":
        """``settings``: ``lookahead``, the future output frames the row convolution reads (default 3), and
        ``feature_norm``: ``global`` (training-set statistics, streamable; default), ``running`` (a causal
        running mean first: blind to the recording's level; streamable) or ``utterance`` (the ablation: each
        utterance's own, as DeepSpeech2's features; cannot stream)."""
        config = model_config(model_size, tokenizer.vocab_size, **(encoder or {}), rnn_mode=rnn_mode)
        net = DS2Stream(config, int(settings.get("lookahead", LOOKAHEAD)))
        return cls(net, tokenizer, spec_augment_from_preset(augment, config.n_mels),
                   str(settings.get("feature_norm", FEATURE_NORM)))

    @classmethod
    def from_checkpoint(cls, state: dict, tokenizer) -> "StreamingRecognizer":
        config = config_from_dict(state["model_config"])
        stream = state["stream_config"]
        recognizer = cls(DS2Stream(config, int(stream["lookahead"])), tokenizer,
                         feature_norm=stream.get("feature_norm", FEATURE_NORM))
        recognizer.restore(state)
        return recognizer

    @classmethod
    def check_settings(cls, settings: Mapping[str, object]) -> None:
        lookahead = settings.get("lookahead", LOOKAHEAD)
        if isinstance(lookahead, bool) or not isinstance(lookahead, int) or lookahead < 0:
            raise ValueError(f"lookahead must be a whole number of frames, 0 or more, not {lookahead!r}")
        norm = settings.get("feature_norm", FEATURE_NORM)
        if norm not in StreamingLogMel.NORMS:
            raise ValueError(f"feature_norm must be one of {', '.join(StreamingLogMel.NORMS)}, not {norm!r}")

    def checkpoint_entries(self) -> dict:
        return {"model": self.state_dict(), "model_config": config_to_dict(self.net.config),
                "stream_config": {"lookahead": self.net.lookahead,
                                  "feature_norm": self.features.norm_name}}

    @property
    def can_stream(self) -> bool:
        """False for the ``feature_norm: utterance`` ablation, whose features need the whole utterance."""
        return self.features.can_stream

    def restore(self, state: dict) -> None:
        self.load_state_dict(state["model"])

    def latency_ms(self) -> float:
        """Audio past the end of an output frame's own stretch that the model must hear before emitting it.

        Output frame j stands for the audio up to log-mel frame ``stride * j``'s hop; it is emitted once
        log-mel frame ``stride * (j + lookahead)`` is complete: the look-ahead's frames plus the rest of that
        frame's STFT window (``n_fft - hop``). ``bench_stream`` adds the chunk (a sample waits for its chunk).
        """
        hop_ms = 1000 * self.features.hop_length / self.features.sample_rate
        window_ms = 1000 * (self.features.mel.n_fft - self.features.hop_length) / self.features.sample_rate
        return self.net.lookahead * self.net.config.time_stride * hop_ms + window_ms
