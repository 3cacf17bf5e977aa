"""The model the training loop plugs in: a batch of waves in, the loss and what decoding needs out.

The loop only calls ``model(batch)`` and reads ``output.loss``; everything CTC-specific (the
log-mel front end, SpecAugment, DeepSpeech2, the CTC loss, greedy decoding, which utterances
CTC can learn at all) lives here. A second model (say CTC + attention) subclasses
``SpeechModel`` with its own loss and decoding and trains in the same loop unchanged, as ESPnet's
models return their loss from ``forward`` and nanoGPT's ``forward`` returns the loss.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from asr_helpers.augment import SpecAugment, spec_augment_from_preset
from asr_helpers.dataset import Batch
from asr_helpers.decoding import greedy_decode
from asr_helpers.features import LogMelFeatures
from asr_helpers.model import DeepSpeech2, config_to_dict, model_config


@dataclass
class ModelOutput:
    """What a model returns for a batch: the loss to train on, and for CTC the per-frame outputs."""
    loss: torch.Tensor                        # scalar, float32
    log_probs: torch.Tensor | None = None     # [B, T', V] (CTC models)
    lengths: torch.Tensor | None = None       # [B] valid frames of log_probs


def ctc_loss(log_probs: torch.Tensor, out_lengths: torch.Tensor, targets: torch.Tensor,
             target_lengths: torch.Tensor, blank: int) -> torch.Tensor:
    """Mean over utterances of the per-utterance CTC loss divided by its target length, in float32."""
    return F.ctc_loss(log_probs.float().transpose(0, 1), targets, out_lengths, target_lengths,
                      blank=blank, reduction="mean", zero_infinity=True)


class SpeechModel(nn.Module):
    """What the training loop needs from a model; subclasses implement ``forward`` and ``transcribe``.

    ``checkpoint_entries``/``restore`` define how the weights sit in a checkpoint (by default the
    module's own state dict); ``spectrograms`` feeds the logged images (none by default).
    """

    def forward(self, batch: Batch) -> ModelOutput:
        raise NotImplementedError

    def transcribe(self, output: ModelOutput) -> list[str]:
        """Texts for the batch ``output`` came from (the cheap decoder used in dev evaluations)."""
        raise NotImplementedError

    def checkpoint_entries(self) -> dict:
        return {"model": self.state_dict()}

    def restore(self, state: dict) -> None:
        self.load_state_dict(state["model"])

    def spectrograms(self, waves: torch.Tensor, lengths: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named ``[features, frames]`` images of the first wave, for the logs."""
        return {}

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


class CTCRecognizer(SpeechModel):
    """Log-mel features -> SpecAugment (training only) -> DeepSpeech2 -> CTC loss."""

    def __init__(self, net: DeepSpeech2, tokenizer, spec_augment: SpecAugment | None = None):
        super().__init__()
        self.features = LogMelFeatures.for_model(net.config)
        self.net = net
        self.spec_augment = spec_augment
        self.tokenizer = tokenizer

    def _features(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-mel (float32 even under autocast, no gradient), SpecAugment-ed in training."""
        with torch.no_grad(), torch.autocast(waves.device.type, enabled=False):
            feats, frames = self.features(waves, lengths)
            if self.training and self.spec_augment is not None:
                feats = self.spec_augment(feats, frames)
        return feats, frames

    def forward(self, batch: Batch) -> ModelOutput:
        feats, frames = self._features(batch.waves, batch.wave_lengths)
        log_probs, out_lengths = self.net(feats, frames)
        loss = ctc_loss(log_probs, out_lengths, batch.targets, batch.target_lengths, self.tokenizer.blank_id)
        return ModelOutput(loss, log_probs, out_lengths)

    def transcribe(self, output: ModelOutput) -> list[str]:
        return greedy_decode(output.log_probs, output.lengths, self.tokenizer)

    def checkpoint_entries(self) -> dict:
        """The DeepSpeech2 weights and settings, as ``checkpoint.load_model`` reads them."""
        return {"model": self.net.state_dict(), "model_config": config_to_dict(self.net.config)}

    def restore(self, state: dict) -> None:
        self.net.load_state_dict(state["model"])

    def spectrograms(self, waves: torch.Tensor, lengths: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            feats, frames = self.features(waves[:1], lengths[:1])
            views = {"spectrogram": feats[0]}
            if self.spec_augment is not None:
                views["spectrogram_augmented"] = self.spec_augment(feats, frames)[0]
        return views

    def learnable(self, seconds: Sequence[float], token_ids: Sequence[Sequence[int]],
                  max_speed_factor: float = 1.0) -> list[bool]:
        """Whether CTC can align each transcript with its audio, after the strongest speed-up.

        CTC needs one frame per token plus a blank between repeated tokens; the frames come from
        the features' and the convolutions' own length rules, so there is no copy to drift.
        """
        samples = torch.tensor([int(s * self.features.sample_rate / max_speed_factor) for s in seconds])
        frames = self.net.output_lengths(self.features.frame_lengths(samples)).tolist()
        needed = [len(ids) + sum(a == b for a, b in zip(ids, ids[1:])) for ids in token_ids]
        return [need <= have for need, have in zip(needed, frames)]


def build_model(model_size: str, tokenizer, *, rnn_mode: str = "masked", augment: str = "none") -> CTCRecognizer:
    """A DeepSpeech2 preset sized to the tokenizer's vocabulary, with the SpecAugment of ``augment``."""
    config = model_config(model_size, tokenizer.vocab_size, rnn_mode=rnn_mode)
    net = DeepSpeech2(config)
    return CTCRecognizer(net, tokenizer, spec_augment_from_preset(augment, config.n_mels))


@torch.no_grad()
def pipeline_shapes(model: CTCRecognizer, batch: Batch) -> list[tuple[str, tuple[int, ...]]]:
    """The tensor shape after each stage of ``model`` on ``batch``: what the training loop runs."""
    shapes: list[tuple[str, tuple[int, ...]]] = [("wave [B, samples]", tuple(batch.waves.shape))]
    hooks = [(model.features, "log-mel [B, mels, frames]"), (model.net.convs[-1][-1], "convolutions [B, C, F, T']"),
             (model.net.rnns[-1], "recurrent layers [B, T', hidden]"), (model.net.head, "linear head [B, T', vocab]")]
    handles = [module.register_forward_hook(lambda _m, _i, out, name=name: shapes.append(
        (name, tuple((out[0] if isinstance(out, tuple) else out).shape)))) for module, name in hooks]
    was_training = model.training
    model.eval()
    try:
        output = model(batch)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    shapes.append(("log-probs [B, T', vocab]", tuple(output.log_probs.shape)))
    shapes.append(("CTC loss (scalar)", tuple(output.loss.shape)))
    return shapes
