"""The model the training loop plugs in: a batch of waves in, the loss and what decoding needs out.

The loop only calls ``model(batch)`` and reads ``output.loss``; everything CTC-specific (the
log-mel front end, SpecAugment, DeepSpeech2, the CTC loss, greedy decoding, which utterances
CTC can learn at all) lives here. ``JointRecognizer`` (CTC + attention, ``las.JointCTCAttention``)
subclasses it with its own loss, quick decoding and attention maps, and trains in the same loop
unchanged, as ESPnet's models return their loss from ``forward`` and nanoGPT's ``forward`` returns the loss.
Which class a model name means is ``registry``'s business; each class builds itself (``build``),
restores itself from a checkpoint (``from_checkpoint``) and checks its own settings.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch
from torch import nn

from asr_helpers.decoding.attention_decoding import AttentionSearch, attention_greedy
from asr_helpers.models.attention_maps import attention_figure, lock_on
from asr_helpers.data.spec_augment import SpecAugment, spec_augment_from_preset
from asr_helpers.data.dataset import Batch
from asr_helpers.decoding.ctc import Encoding, greedy_decode
from asr_helpers.data.features import LogMelFeatures
from asr_helpers.models.las import JointConfig, JointCTCAttention, check_joint_settings, joint_config
from asr_helpers.models.deepspeech2 import DeepSpeech2, config_from_dict, config_to_dict, ctc_loss, model_config


@dataclass
class ModelOutput:
    """What a model returns for a batch: the loss to train on, the CTC outputs, and for attention models more."""
    loss: torch.Tensor                        # scalar, float32
    log_probs: torch.Tensor | None = None     # [B, T', V] (CTC head)
    lengths: torch.Tensor | None = None       # [B] valid frames of log_probs
    states: torch.Tensor | None = None        # [B, T', D] encoder states (attention models)
    attention: torch.Tensor | None = None     # [B, U + 1, T'] teacher-forced attention weights
    attention_lengths: torch.Tensor | None = None  # [B] rows of each utterance's map (symbols + end)
    metrics: dict[str, float] = field(default_factory=dict)  # extra numbers for the logs (loss parts, lock-on)


class SpeechModel(nn.Module):
    """What the training loop needs from a model; subclasses implement ``forward`` and ``transcribe``.

    ``checkpoint_entries``/``restore`` define how the weights sit in a checkpoint (by default the
    module's own state dict); ``spectrograms`` and ``media`` feed the logged images (none by default).
    ``SETTINGS`` names the model's own settings that ``build`` reads and ``check_settings`` checks: its
    section of the training config (``registry.ModelSpec.section``). ``BUILD_SETTINGS`` are further ones
    ``build`` takes that no training config sets (the one-batch test's overrides).
    """

    SETTINGS: tuple[str, ...] = ()
    BUILD_SETTINGS: tuple[str, ...] = ()

    @classmethod
    def build(cls, tokenizer, model_size: str, settings: Mapping[str, object], *, rnn_mode: str = "masked",
              augment: str = "none", encoder: Mapping[str, object] | None = None) -> "SpeechModel":
        """A new model at preset ``model_size`` for the tokenizer's vocabulary (``registry.build_model``)."""
        raise NotImplementedError

    @classmethod
    def from_checkpoint(cls, state: dict, tokenizer) -> "SpeechModel":
        """The model ``checkpoint_entries`` wrote into ``state``, without SpecAugment."""
        raise NotImplementedError

    @classmethod
    def check_settings(cls, settings: Mapping[str, object]) -> None:
        """One-line ``ValueError`` for a value of ``SETTINGS`` the model cannot take (none by default)."""

    def forward(self, batch: Batch) -> ModelOutput:
        raise NotImplementedError

    def transcribe(self, output: ModelOutput) -> list[str]:
        """Texts for the batch ``output`` came from (the cheap decoder used in dev evaluations)."""
        raise NotImplementedError

    def other_transcripts(self, output: ModelOutput) -> dict[str, list[str]]:
        """Further cheap decodings, by name, logged as ``wer_<name>``/``cer_<name>`` (none by default)."""
        return {}

    def learnable(self, seconds: Sequence[float], token_ids: Sequence[Sequence[int]],
                  max_speed_factor: float = 1.0) -> list[bool]:
        """Whether the model can learn each (audio seconds, transcript) pair; training drops the rest (all by default)."""
        return [True] * len(seconds)

    def media(self, batch: Batch, step: int) -> dict[str, object]:
        """Figures only this model has, by name, for the loop to log under ``train/`` or ``eval/<split>/``
        (none by default); ``step`` goes into their titles."""
        return {}

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

    @classmethod
    def build(cls, tokenizer, model_size: str, settings: Mapping[str, object], *, rnn_mode: str = "masked",
              augment: str = "none", encoder: Mapping[str, object] | None = None) -> "CTCRecognizer":
        config = model_config(model_size, tokenizer.vocab_size, **(encoder or {}), rnn_mode=rnn_mode)
        return cls(DeepSpeech2(config), tokenizer, spec_augment_from_preset(augment, config.n_mels))

    @classmethod
    def from_checkpoint(cls, state: dict, tokenizer) -> "CTCRecognizer":
        recognizer = cls(DeepSpeech2(config_from_dict(state["model_config"])), tokenizer)
        recognizer.restore(state)
        return recognizer

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

    @torch.no_grad()
    def encodings(self, feats: torch.Tensor, frames: torch.Tensor) -> list[Encoding]:
        """What the decoders need per utterance, from log-mel features ``[B, mels, T]`` (inference)."""
        log_probs, lengths = self.net(feats, frames)
        return [Encoding(lp[:n].float().cpu().numpy()) for lp, n in zip(log_probs, lengths.tolist())]

    def attention_search(self, **options) -> AttentionSearch | None:
        """The table's attention decoders for this model (None: a CTC-only model has none); ``options``
        (``settings``, ``lm``) go to ``AttentionSearch``."""
        return None

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


class JointRecognizer(CTCRecognizer):
    """Log-mel -> SpecAugment (training only) -> ``las.JointCTCAttention``: the DeepSpeech2 encoder
    with its CTC head and an attention decoder, trained on ``w * CTC + (1 - w) * cross-entropy``.

    Its quick decoding is CTC greedy (attention greedy when ``ctc_weight`` is 0, which leaves the
    CTC head untrained); the other one is logged beside it. In evaluation it also scores how
    well attention has locked on (``attention_maps.lock_on``, averaged over the batch).
    """

    SETTINGS = ("ctc_weight", "guided_attention", "attention")
    BUILD_SETTINGS = ("label_smoothing",)

    def __init__(self, joint: JointCTCAttention, tokenizer, spec_augment: SpecAugment | None = None):
        SpeechModel.__init__(self)
        self.features = LogMelFeatures.for_model(joint.config.encoder)
        self.joint = joint
        self.spec_augment = spec_augment
        self.tokenizer = tokenizer

    @classmethod
    def build(cls, tokenizer, model_size: str, settings: Mapping[str, object], *, rnn_mode: str = "masked",
              augment: str = "none", encoder: Mapping[str, object] | None = None) -> "JointRecognizer":
        """``settings``: ``ctc_weight`` on the CTC loss, ``label_smoothing`` on the cross-entropy,
        ``guided_attention`` on ``las.guided_attention_loss``, ``attention`` ``location`` or ``dot``."""
        config = joint_config(model_size, tokenizer.vocab_size, **settings, **(encoder or {}), rnn_mode=rnn_mode)
        augmentation = spec_augment_from_preset(augment, config.encoder.n_mels)
        return cls(JointCTCAttention(config, tokenizer.blank_id), tokenizer, augmentation)

    @classmethod
    def from_checkpoint(cls, state: dict, tokenizer) -> "JointRecognizer":
        recognizer = cls(JointCTCAttention(JointConfig.from_dict(state["joint_config"]), tokenizer.blank_id), tokenizer)
        recognizer.restore(state)
        return recognizer

    @classmethod
    def check_settings(cls, settings: Mapping[str, object]) -> None:
        check_joint_settings(**settings)

    @property
    def net(self) -> DeepSpeech2:
        """The encoder with its CTC head (what the CTC decoders, ``learnable`` and the figures use)."""
        return self.joint.encoder

    def forward(self, batch: Batch) -> ModelOutput:
        feats, frames = self._features(batch.waves, batch.wave_lengths)
        out = self.joint(feats, frames, batch.targets, batch.target_lengths)
        metrics = {"ctc_loss": float(out.ctc_loss)}
        if out.attention_loss is not None:
            metrics["attention_loss"] = float(out.attention_loss)
            if not self.training:
                maps = [a[:u, :t] for a, u, t in zip(out.attention, out.attention_lengths.tolist(), out.lengths.tolist())]
                metrics["lock_on"] = sum(lock_on(m) for m in maps) / len(maps)
        return ModelOutput(out.loss, out.log_probs, out.lengths, out.states, out.attention, out.attention_lengths, metrics)

    @torch.no_grad()
    def encodings(self, feats: torch.Tensor, frames: torch.Tensor) -> list[Encoding]:
        encoded = self.joint.encode(feats, frames)
        return [Encoding(lp[:n].cpu().numpy(), st[:n].float().cpu().numpy())
                for lp, st, n in zip(encoded.log_probs, encoded.states, encoded.lengths.tolist())]

    def _attention_greedy(self, output: ModelOutput) -> list[str]:
        memory = self.joint.memory_of(output.states, output.lengths)
        return [self.tokenizer.decode(ids) for ids in attention_greedy(self.joint.decoder, memory, output.lengths)]

    def transcribe(self, output: ModelOutput) -> list[str]:
        if self.joint.config.ctc_weight == 0.0:
            return self._attention_greedy(output)
        return super().transcribe(output)

    def other_transcripts(self, output: ModelOutput) -> dict[str, list[str]]:
        if self.joint.decoder is None:
            return {}
        if self.joint.config.ctc_weight == 0.0:
            return {"ctc": super().transcribe(output)}
        return {"attention": self._attention_greedy(output)}

    def attention_map(self, batch: Batch) -> tuple[torch.Tensor, list[str], int] | None:
        """The teacher-forced attention ``[symbols, frames]`` of the batch's shortest transcript (the most
        readable map), its symbol labels and its row in the batch (None: no decoder, ``ctc_weight`` 1)."""
        if self.joint.decoder is None:
            return None
        row = int(batch.target_lengths.argmin())
        one = batch.row(row)
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                output = self(one)
        finally:
            self.train(was_training)
        symbols = [self.tokenizer.decode([i]) for i in one.targets.tolist()] + ["<eos>"]
        return output.attention[0, : len(symbols), : int(output.lengths[0])].float().cpu(), symbols, row

    def media(self, batch: Batch, step: int) -> dict[str, object]:
        """The attention map of the batch's shortest transcript, titled with its lock-on score."""
        view = self.attention_map(batch)
        if view is None:
            return {}
        weights, symbols, row = view
        title = f"step {step}, lock-on {lock_on(weights):.2f}: {batch.texts[row]}"
        return {"attention": attention_figure(weights, symbols, title)}

    def attention_search(self, **options) -> AttentionSearch | None:
        if self.joint.decoder is None:  # trained with ctc_weight 1.0
            return None
        return AttentionSearch(self.joint, self.tokenizer, **options)

    def checkpoint_entries(self) -> dict:
        """Both heads' weights, the encoder's settings (read by the CTC tools) and the joint settings."""
        return {"model": self.joint.state_dict(), "model_config": config_to_dict(self.joint.config.encoder),
                "joint_config": self.joint.config.to_dict()}

    def restore(self, state: dict) -> None:
        self.joint.load_state_dict(state["model"])


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
