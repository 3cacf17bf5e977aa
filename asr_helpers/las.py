"""Joint CTC/attention: the DeepSpeech2 encoder with its CTC head plus an attention decoder.

Kim, Hori and Watanabe (2017) train one encoder with two heads and the loss
``ctc_weight * CTC + (1 - ctc_weight) * CE``: CTC forces monotonic alignments and makes the
attention converge quickly; the attention decoder models the output sequence as a whole. ESPnet
uses ``ctc_weight = 0.3``. ``ctc_weight = 1.0`` is exactly DeepSpeech2 (no decoder is built),
``0.0`` is pure Listen-Attend-Spell (the CTC head stays, with zero gradient, for logging). Every
parameter that exists takes part in the loss, as DistributedDataParallel requires.

The network works on log-mel features like ``DeepSpeech2``; the log-mel front end and
SpecAugment stay with the training core's model wrapper.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from asr_helpers.attention import (AttentionDecoder, DecoderConfig, EncoderMemory, label_smoothed_cross_entropy,
                                   teacher_forcing_pairs)
from asr_helpers.model import DeepSpeech2, ModelConfig, config_from_dict, config_to_dict, model_config
from asr_helpers.recognizer import ctc_loss

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

    def __post_init__(self):
        if not 0.0 <= self.ctc_weight <= 1.0:
            raise ValueError(f"ctc_weight must lie in [0, 1], got {self.ctc_weight}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must lie in [0, 1), got {self.label_smoothing}")

    def to_dict(self) -> dict:
        return {"encoder": config_to_dict(self.encoder), "decoder": self.decoder.to_dict(),
                "ctc_weight": self.ctc_weight, "label_smoothing": self.label_smoothing}

    @classmethod
    def from_dict(cls, values: dict) -> "JointConfig":
        """Inverse of ``to_dict`` (checkpoints and YAML)."""
        return cls(config_from_dict(values["encoder"]), DecoderConfig(**values["decoder"]),
                   values["ctc_weight"], values["label_smoothing"])


def joint_config(preset: str, vocab_size: int, ctc_weight: float = 0.3, label_smoothing: float = 0.1,
                 **encoder_overrides) -> JointConfig:
    """The DeepSpeech2 preset of the same name for the encoder, with a decoder sized to match."""
    encoder = model_config(preset, vocab_size, **encoder_overrides)
    return JointConfig(encoder, DecoderConfig(**DECODER_PRESETS[preset]), ctc_weight, label_smoothing)


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
                        AttentionDecoder(config.encoder.vocab_size, config.encoder.rnn_hidden, config.decoder, blank))

    @property
    def eos(self) -> int:
        """The decoder's end (and start) symbol: one past the tokenizer's ids."""
        return self.config.encoder.vocab_size

    def encode(self, features: torch.Tensor, lengths: torch.Tensor) -> Encoded:
        states, frames, mask = self.encoder.encode(features, lengths)
        logits = self.encoder.head(self.encoder.head_norm(states, mask))
        return Encoded(states, logits.float().log_softmax(-1), frames)

    def memory(self, encoded: Encoded) -> EncoderMemory:
        if self.decoder is None:
            raise ValueError("this model has no attention decoder (ctc_weight=1.0): use the CTC decoders")
        return self.decoder.memory(encoded.states, encoded.lengths)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor,
                target_lengths: torch.Tensor) -> JointOutput:
        """Loss for CTC-style targets (concatenated ids, as ``dataset.collate`` makes them)."""
        encoded = self.encode(features, lengths)
        ctc = ctc_loss(encoded.log_probs, encoded.lengths, targets, target_lengths, self.blank)
        if self.decoder is None:
            return JointOutput(ctc, ctc.detach(), None, encoded.log_probs, encoded.lengths, None, None)
        inputs, outputs, output_lengths = teacher_forcing_pairs(targets, target_lengths, self.eos)
        logits, attention = self.decoder(self.memory(encoded), inputs)
        attention_loss = label_smoothed_cross_entropy(logits, outputs, output_lengths, self.config.label_smoothing,
                                                      excluded_class=self.blank)
        weight = self.config.ctc_weight
        loss = weight * ctc + (1.0 - weight) * attention_loss
        return JointOutput(loss, ctc.detach(), attention_loss.detach(), encoded.log_probs, encoded.lengths,
                           attention.detach(), output_lengths)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())
