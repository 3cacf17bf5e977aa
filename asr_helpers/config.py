"""Every training tunable in one place, with the value used on a Kaggle GPU in the comment.

Unknown keys are an error (a typo must not silently fall back to a default).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

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
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {self.precision!r}")
        if self.augment not in AUGMENT_LEVELS:
            raise ValueError(f"augment must be one of {AUGMENT_LEVELS}, not {self.augment!r}")
        for name in ("epochs", "batch_seconds", "lr", "grad_accum", "max_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.max_seconds > self.batch_seconds:
            raise ValueError("max_seconds must not exceed batch_seconds (a batch must hold the longest utterance)")
        if isinstance(self.train_splits, str) or isinstance(self.dev_splits, str):
            raise ValueError("train_splits and dev_splits are lists of split names")

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training settings {unknown}; known: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)
