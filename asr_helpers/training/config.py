"""Every training tunable in one place, with the value used on a Kaggle GPU in the comment.

Unknown keys are an error (a typo must not silently fall back to a default), and so is a
value of the wrong type: ``check_parameters`` compares each value with its annotation and
names the parameter, the value and the expected type in one line. ``model`` names a model of
``models.registry``; the settings only one model reads (its section) are checked by that model.
"""
from __future__ import annotations

import types
import typing
from dataclasses import asdict, dataclass, field, fields

from asr_helpers.models.registry import TABLE, model_spec, section_values

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
AUGMENT_LEVELS = ("none", "light", "full")


@dataclass
class TrainConfig:
    run_name: str = "demo"                  # folder under artifacts/runs/
    corpus: str = "synthetic"               # synthetic | librispeech | mini_librispeech
    data_root: str | None = None            # LibriSpeech root; None = default place for the corpus
    synth_minutes: float = 60.0             # size of the offline corpus (synthetic only)
    train_splits: list[str] = field(default_factory=lambda: ["train-clean-100"])  # kaggle: + train-clean-360
    dev_splits: list[str] = field(default_factory=lambda: ["dev-clean", "dev-other"])
    max_seconds: float = 20.0               # drop longer training utterances (kaggle: 20)
    tokenizer: str = "char"                 # char | bpe
    bpe_vocab_size: int = 128               # BPE only
    model: str = "deepspeech2"              # deepspeech2 (CTC) | las (+ attention decoder, joint loss) | ds2_stream (streaming)
    ctc_weight: float = 0.3                 # las only: w * CTC + (1 - w) * attention (1.0: CTC only, 0.0: attention only)
    guided_attention: float = 0.0           # las only: weight of a diagonal prior on attention (helps short runs lock on)
    attention: str = "location"             # las only: location (one symbol at a time) | dot (all at once: fast on CPU)
    lookahead: int = 3                      # ds2_stream only: future output frames the look-ahead convolution reads
    feature_norm: str = "global"            # ds2_stream only: global (training-set statistics) | running (causal mean first: level-blind) | utterance (ablation: cannot stream)
    model_size: str = "small"               # tiny | small | base (kaggle: base)
    rnn_mode: str = "auto"                  # auto | masked | packed (auto: packed on GPU, masked on CPU)
    epochs: int = 10                        # kaggle: 50
    batch_seconds: float = 160.0            # padded audio seconds per batch (kaggle T4: 400 with fp16)
    max_batch_size: int = 64
    grad_accum: int = 1                     # optimizer step every N batches
    lr: float = 1.5e-3                      # OneCycle peak (kaggle: 1e-3)
    weight_decay: float = 1e-2
    warmup_fraction: float = 0.15           # OneCycle share of steps spent warming up
    grad_clip: float = 5.0
    precision: str = "auto"                 # auto | fp32 | fp16 | bf16 (auto: bf16/fp16 on GPU, fp32 on CPU)
    augment: str = "light"                  # none | light | full
    num_workers: int = 1                    # DataLoader workers (kaggle: 4)
    time_budget_minutes: float | None = None  # save and stop cleanly before this (kaggle: 11.5 * 60)
    max_steps: int | None = None            # stop after this many optimizer steps (tests, smoke runs)
    checkpoint_minutes: float = 10.0        # write last.pt this often
    resume: bool = False                    # continue from artifacts/runs/<run_name>/last.pt
    eval_utterances: int = 200              # per dev split and evaluation (0 = all)
    evals_per_epoch: int = 1                # dev evaluations per epoch
    log_every: int = 10                     # steps between scalar logs
    media_every_epochs: int = 1             # spectrograms, augmented audio and sample tables
    wandb_mode: str = "auto"                # auto | online | offline | disabled
    seed: int = 0
    device: str = "auto"                    # auto | cpu | cuda

    def __post_init__(self):
        check_parameters(typing.get_type_hints(type(self)), {f.name: getattr(self, f.name) for f in fields(self)})
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {self.precision!r}")
        model_spec(self.model)
        for spec in TABLE.values():  # every model's section, so a typo is caught whichever model trains
            spec.check(section_values(spec.name, self.to_dict()))
        if self.augment not in AUGMENT_LEVELS:
            raise ValueError(f"augment must be one of {AUGMENT_LEVELS}, not {self.augment!r}")
        for name in ("epochs", "batch_seconds", "lr", "grad_accum", "max_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.max_seconds > self.batch_seconds:
            raise ValueError("max_seconds must not exceed batch_seconds (a batch must hold the longest utterance)")

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training settings {unknown}; known: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)

    def model_settings(self) -> dict:
        """The section of ``model``: the settings only that model reads, as ``build_model`` takes them."""
        return section_values(self.model, self.to_dict())


_TYPE_NAMES = {float: "a number", int: "an integer", str: "a string", bool: "true or false", list: "a list",
               dict: "a mapping", type(None): "None"}


def check_parameters(annotations: dict, values: dict) -> None:
    """Raise ``ValueError`` for the first value that does not fit its annotation.

    Ints accept ints, floats accept ints and floats (never bools), ``Optional`` accepts None,
    ``list[X]`` accepts lists of X. A notebook calls it with its ``__annotations__`` and ``globals()``.
    """
    for name, hint in annotations.items():
        if name in values and not _fits(values[name], hint):
            raise ValueError(f"{name} must be {_describe(hint)}, got {values[name]!r}")


def _fits(value, hint) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in args)
    if origin is list or hint is list:
        return isinstance(value, list) and (not args or all(_fits(item, args[0]) for item in value))
    if hint is typing.Any:
        return True
    if isinstance(value, bool):
        return hint is bool
    if hint is float:
        return isinstance(value, (int, float))
    return isinstance(value, origin or hint)


def _describe(hint) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in args)
    if (origin is list or hint is list) and args:
        return f"a list of {_describe(args[0]).removeprefix('a ').removeprefix('an ')}s"
    return _TYPE_NAMES.get(origin or hint, getattr(hint, "__name__", str(hint)))
