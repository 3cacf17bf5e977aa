"""Joint CTC/attention: the DeepSpeech2 encoder with its CTC head plus an attention decoder.

Kim, Hori and Watanabe (2017) train one encoder with two heads and the loss
``ctc_weight * CTC + (1 - ctc_weight) * CE``: CTC forces monotonic alignments and makes the
attention converge quickly; the attention decoder models the output sequence as a whole. ESPnet
uses ``ctc_weight = 0.3``. An optional diagonal prior (``guided_attention``) speeds up finding the
alignment on short budgets. ``ctc_weight = 1.0`` is exactly DeepSpeech2 (no decoder is built),
``0.0`` is pure Listen-Attend-Spell (the CTC head stays, with zero gradient, for logging). Every
parameter that exists takes part in the loss, as DistributedDataParallel requires.

The network works on log-mel features like ``DeepSpeech2``; the log-mel front end and
SpecAugment stay with the training core's model wrapper.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from asr_helpers.models.attention import (DecoderConfig, EncoderMemory, attention_decoder, check_attention_kind,
                                          label_smoothed_cross_entropy, teacher_forcing_pairs)
from asr_helpers.models.deepspeech2 import (DeepSpeech2, ModelConfig, config_from_dict, config_to_dict, ctc_loss, model_config,
                               time_mask)

DECODER_PRESETS: dict[str, dict] = {
    "tiny": dict(embed_dim=32, hidden=96, attention_dim=64, location_channels=4, location_width=15),
    "small": dict(embed_dim=128, hidden=320, attention_dim=128),
    "base": dict(embed_dim=256, hidden=512, layers=2, attention_dim=256),
}


@dataclass(frozen=True)
class JointConfig:
    encoder: ModelConfig
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    ctc_weight: float = 0.3          # 1.0: DeepSpeech2 (CTC only); 0.0: attention only
    label_smoothing: float = 0.1     # of the attention cross-entropy
    guided_attention: float = 0.0    # weight of the diagonal prior on attention (``guided_attention_loss``)

    def __post_init__(self):
        check_joint_settings(self.ctc_weight, self.label_smoothing, self.guided_attention)

    def to_dict(self) -> dict:
        return {"encoder": config_to_dict(self.encoder), "decoder": self.decoder.to_dict(),
                "ctc_weight": self.ctc_weight, "label_smoothing": self.label_smoothing,
                "guided_attention": self.guided_attention}

    @classmethod
    def from_dict(cls, values: dict) -> "JointConfig":
        """Inverse of ``to_dict`` (checkpoints and YAML)."""
        return cls(config_from_dict(values["encoder"]), DecoderConfig(**values["decoder"]),
                   values["ctc_weight"], values["label_smoothing"], values.get("guided_attention", 0.0))


def check_joint_settings(ctc_weight: float = 0.3, label_smoothing: float = 0.1, guided_attention: float = 0.0,
                         attention: str = "location") -> None:
    """The joint model's own settings, checked here only (a training config and ``JointConfig`` both ask)."""
    if not 0.0 <= ctc_weight <= 1.0:
        raise ValueError(f"ctc_weight must lie in [0, 1], got {ctc_weight!r}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must lie in [0, 1), got {label_smoothing!r}")
    if guided_attention < 0.0:
        raise ValueError(f"guided_attention must not be negative, got {guided_attention!r}")
    check_attention_kind(attention)


def joint_config(preset: str, vocab_size: int, ctc_weight: float = 0.3, label_smoothing: float = 0.1,
                 guided_attention: float = 0.0, attention: str = "location", **encoder_overrides) -> JointConfig:
    """The DeepSpeech2 preset of the same name for the encoder, with a decoder sized to match."""
    encoder = model_config(preset, vocab_size, **encoder_overrides)
    return JointConfig(encoder, DecoderConfig(**DECODER_PRESETS[preset], attention=attention), ctc_weight,
                       label_smoothing, guided_attention)


def guided_attention_loss(attention: torch.Tensor, symbol_lengths: torch.Tensor, frame_lengths: torch.Tensor,
                          width: float = 0.2) -> torch.Tensor:
    """Attention mass away from the diagonal, per real output symbol (Tachibana et al. 2018).

    Read speech advances at a roughly steady rate, so symbol ``u`` of ``U`` sits near frame
    ``u / U`` of the utterance: each weight is charged ``1 - exp(-(t/T - u/U)^2 / (2 width^2))``.
    A smeared map costs about 0.6, a diagonal one close to 0. As a small extra loss it lets a
    decoder that has seen a few hundred batches find the alignment that CTC already learns.
    """
    _, symbols, frames = attention.shape
    position = torch.arange(symbols, device=attention.device)[None, :, None] / symbol_lengths[:, None, None]
    time = torch.arange(frames, device=attention.device)[None, None, :] / frame_lengths[:, None, None].clamp(min=1)
    penalty = 1.0 - torch.exp(-((time - position) ** 2) / (2 * width ** 2))
    per_symbol = (attention.float() * penalty).sum(-1)  # attention is exactly 0 on padded frames
    return per_symbol.masked_select(time_mask(symbol_lengths, symbols)).mean()


@dataclass
class Encoded:
    """Encoder states for attention and the CTC head's log-probs, with valid frames per utterance."""
    states: torch.Tensor     # [B, T', rnn_hidden]
    log_probs: torch.Tensor  # [B, T', vocab] float32
    lengths: torch.Tensor    # [B]


@dataclass
class JointOutput:
    """What a batch gives the loop (the loss), the CTC decoders (log-probs) and the logs (both losses, attention maps)."""
    loss: torch.Tensor                    # the weighted sum to train on
    ctc_loss: torch.Tensor                # detached, for logging
    attention_loss: torch.Tensor | None   # detached; None when ctc_weight == 1 (no decoder)
    log_probs: torch.Tensor               # CTC head [B, T', vocab]
    lengths: torch.Tensor                 # [B] valid frames
    states: torch.Tensor                  # encoder states [B, T', rnn_hidden], what attention decoding reads
    attention: torch.Tensor | None        # [B, U + 1, T'] weights per output symbol (targets + end)
    attention_lengths: torch.Tensor | None  # [B] output symbols per utterance (targets + end)


class JointCTCAttention(nn.Module):
    """Log-mel ``[B, n_mels, T]`` -> shared encoder -> CTC head and attention decoder."""

    def __init__(self, config: JointConfig, blank: int = 0):
        super().__init__()
        self.config = config
        self.blank = blank
        self.encoder = DeepSpeech2(config.encoder)  # convolutions, recurrent stack and the CTC head
        self.decoder = (None if config.ctc_weight == 1.0 else
                        attention_decoder(config.encoder.vocab_size, config.encoder.rnn_hidden, config.decoder, blank))

    @property
    def eos(self) -> int:
        """The decoder's end (and start) symbol: one past the tokenizer's ids."""
        return self.config.encoder.vocab_size

    def encode(self, features: torch.Tensor, lengths: torch.Tensor) -> Encoded:
        states, frames, mask = self.encoder.encode(features, lengths)
        logits = self.encoder.head(self.encoder.head_norm(states, mask))
        return Encoded(states, logits.float().log_softmax(-1), frames)

    def memory(self, encoded: Encoded) -> EncoderMemory:
        return self.memory_of(encoded.states, encoded.lengths)

    def memory_of(self, states: torch.Tensor, lengths: torch.Tensor) -> EncoderMemory:
        """What attention reads, from encoder states ``[B, T', D]`` and their valid frames."""
        if self.decoder is None:
            raise ValueError("this model has no attention decoder (ctc_weight=1.0): use the CTC decoders")
        return self.decoder.memory(states, lengths)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor,
                target_lengths: torch.Tensor) -> JointOutput:
        """Loss for CTC-style targets (concatenated ids, as ``dataset.collate`` makes them)."""
        encoded = self.encode(features, lengths)
        ctc = ctc_loss(encoded.log_probs, encoded.lengths, targets, target_lengths, self.blank)
        if self.decoder is None:
            return JointOutput(ctc, ctc.detach(), None, encoded.log_probs, encoded.lengths, encoded.states, None, None)
        inputs, outputs, output_lengths = teacher_forcing_pairs(targets, target_lengths, self.eos)
        logits, attention = self.decoder(self.memory(encoded), inputs)
        attention_loss = label_smoothed_cross_entropy(logits, outputs, output_lengths, self.config.label_smoothing,
                                                      excluded_class=self.blank)
        weight = self.config.ctc_weight
        loss = weight * ctc + (1.0 - weight) * attention_loss
        if self.config.guided_attention:
            loss = loss + self.config.guided_attention * guided_attention_loss(attention, output_lengths, encoded.lengths)
        return JointOutput(loss, ctc.detach(), attention_loss.detach(), encoded.log_probs, encoded.lengths,
                           encoded.states, attention.detach(), output_lengths)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())
