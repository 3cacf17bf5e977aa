"""The model registry: every model the workbook trains, by name, in one table.

A model name (``TrainConfig.model``) maps to the recognizer class that builds it, restores it
from a checkpoint and checks its own settings (its ``SETTINGS``, the ``TrainConfig`` fields only
that model reads: its config section); and to its output heads, from which ``decoding.decoders`` says which
decoders it offers. ``build_model``, checkpoints, exports, the one-batch test, the notebooks,
``transcribe`` and the report ask this table instead of testing a model's class.

Adding a model: a ``recognizer.SpeechModel`` subclass with ``build``, ``from_checkpoint``,
``check_settings`` and ``SETTINGS``, one row in ``TABLE``, and those settings' fields in ``training.config``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from asr_helpers.decoding.decoders import decoders_for
from asr_helpers.models.ds2_stream import StreamingRecognizer
from asr_helpers.models.recognizer import CTCRecognizer, JointRecognizer, SpeechModel


@dataclass(frozen=True)
class ModelSpec:
    """One model: ``recognizer`` is its class; ``heads`` the outputs its decoders read; ``one_batch`` the
    settings the one-batch test overrides (those that keep a memorised batch's loss above 0)."""
    name: str
    label: str
    recognizer: type[SpeechModel]
    heads: frozenset[str]
    one_batch: Mapping[str, object] = field(default_factory=dict)

    @property
    def section(self) -> tuple[str, ...]:
        """The training settings only this model reads (checked by ``check``, passed to ``build_model``)."""
        return self.recognizer.SETTINGS

    def check(self, settings: Mapping[str, object]) -> None:
        """One-line ``ValueError`` for a setting this model does not have or a value it cannot take."""
        known = self.recognizer.SETTINGS + self.recognizer.BUILD_SETTINGS
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise ValueError(f"model {self.name} has no settings {unknown}; it reads {list(known)}")
        self.recognizer.check_settings(settings)


TABLE: dict[str, ModelSpec] = {spec.name: spec for spec in (
    ModelSpec("deepspeech2", "DeepSpeech2 (CTC)", CTCRecognizer, frozenset({"ctc"})),
    ModelSpec("las", "joint CTC/attention (DeepSpeech2 encoder + attention decoder)", JointRecognizer,
              frozenset({"ctc", "attention"}), one_batch={"label_smoothing": 0.0}),
    ModelSpec("ds2_stream", "streaming DeepSpeech2 (causal convolutions, unidirectional RNN, look-ahead)",
              StreamingRecognizer, frozenset({"ctc"})),
)}
MODEL_NAMES: tuple[str, ...] = tuple(TABLE)


def model_spec(name: str) -> ModelSpec:
    """The model called ``name``; an unknown name is a one-line error listing the known ones."""
    if name not in TABLE:
        raise ValueError(f"model must be one of {MODEL_NAMES}, not {name!r}")
    return TABLE[name]


def model_name_of(recognizer: SpeechModel) -> str:
    """The registry name of a built or loaded recognizer (its exact class, not a parent's)."""
    for spec in TABLE.values():
        if type(recognizer) is spec.recognizer:
            return spec.name
    raise ValueError(f"{type(recognizer).__name__} is not a registered model ({MODEL_NAMES})")


def section_values(model: str, values: Mapping[str, object]) -> dict[str, object]:
    """The entries of ``values`` (a training config's fields, a notebook's parameters) in ``model``'s section."""
    return {name: values[name] for name in model_spec(model).section if name in values}


def offered_decoders(model: str, with_lm: bool = True) -> list[str]:
    """The decoder names model ``model`` offers (those needing a word LM only ``with_lm``)."""
    return decoders_for(model_spec(model).heads, with_lm)


def build_model(model: str, model_size: str, tokenizer, settings: Mapping[str, object] | None = None, *,
                rnn_mode: str = "masked", augment: str = "none", encoder: Mapping[str, object] | None = None
                ) -> SpeechModel:
    """Model ``model`` at preset ``model_size``, sized to the tokenizer's vocabulary, with the SpecAugment
    of ``augment``; ``settings`` is the model's own section (missing keys take the model's defaults);
    ``encoder`` overrides fields of the DeepSpeech2 encoder's preset (the benchmarks' ``rnn_type``, ``conv_strides``)."""
    spec = model_spec(model)
    settings = dict(settings or {})
    spec.check(settings)
    return spec.recognizer.build(tokenizer, model_size, settings, rnn_mode=rnn_mode, augment=augment,
                                 encoder=encoder or {})
