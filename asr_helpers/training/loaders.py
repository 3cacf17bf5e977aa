"""Everything a training run reads, built from a ``TrainConfig``: corpus, manifests, tokenizer, loaders.

``build_data`` is the data half of a run (``registry.build_model`` is the model half and
``trainer.Trainer`` the loop); it knows nothing about the model except, through
``keep_learnable``, which utterances the model says it can learn.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils.data import DataLoader, Dataset

from asr_helpers.data.augment import WaveAugment
from asr_helpers.training.config import TrainConfig
from asr_helpers.data.corpora import prepare_corpus
from asr_helpers.data.dataset import LengthBucketSampler, SpeechDataset, collate
from asr_helpers.data.manifest import Utterance, load_splits
from asr_helpers.data.text import CharTokenizer


def build_tokenizer(config: TrainConfig, texts: list[str]):
    """The character tokenizer, or a BPE model trained on ``texts`` (the training transcripts)."""
    if config.tokenizer == "char":
        return CharTokenizer()
    if config.tokenizer == "bpe":
        from asr_helpers.data.text import train_bpe
        return train_bpe(texts, config.bpe_vocab_size)
    raise ValueError(f"tokenizer must be 'char' or 'bpe', not {config.tokenizer!r}")


def dev_subset(utterances: list[Utterance], limit: int, seed: int) -> list[Utterance]:
    """A fixed random subset (the same at every evaluation) that keeps evaluation cheap; 0 keeps all."""
    if not limit or len(utterances) <= limit:
        return utterances
    return sorted(random.Random(seed).sample(utterances, limit), key=lambda u: u.id)


def load_corpus(config: TrainConfig) -> tuple[list[Utterance], dict[str, list[Utterance]]]:
    """Training utterances and every dev split's utterances (the one place that finds the corpus)."""
    c = config
    roots = prepare_corpus(c.corpus, c.train_splits + c.dev_splits, c.data_root, c.synth_minutes, c.seed)
    train = load_splits(roots, c.train_splits, max_seconds=c.max_seconds)
    if not train:
        raise RuntimeError(f"no usable training utterances in {c.train_splits} ({roots})")
    return train, {split: load_splits(roots, [split]) for split in c.dev_splits}


@dataclass
class TrainData:
    """Training set, its batch sampler and loader settings, the dev subsets and the tokenizer."""
    tokenizer: object
    train_set: Dataset              # has ``set_epoch``; items go through ``collate``
    sampler: LengthBucketSampler    # batches of the training set; its position is checkpointed
    dev: dict[str, list[Utterance]]
    seed: int = 0
    num_workers: int = 0
    pin_memory: bool = False

    def loader(self, epoch: int) -> DataLoader:
        """The training batches still due in ``epoch`` (the sampler resumes mid-epoch)."""
        self.train_set.set_epoch(epoch)
        workers = self.num_workers
        # Its own generator, so creating the loader does not consume the global RNG (exact resume).
        generator = torch.Generator().manual_seed(self.seed * 1000 + epoch)
        return DataLoader(self.train_set, batch_sampler=self.sampler, collate_fn=collate, num_workers=workers,
                          pin_memory=self.pin_memory, prefetch_factor=4 if workers else None, generator=generator)

    @property
    def train_seconds(self) -> float:
        return sum(u.seconds for u in getattr(self.train_set, "utterances", []))

    def keep_learnable(self, learnable: Callable[[list[float], list[list[int]], float], list[bool]]) -> int:
        """Drop training utterances the model cannot learn (e.g. too short for CTC); returns how many."""
        dataset: SpeechDataset = self.train_set
        utterances = dataset.utterances
        speed = dataset.wave_augment.max_speed_factor if dataset.wave_augment is not None else 1.0
        keep = learnable([u.seconds for u in utterances], [self.tokenizer.encode(u.text) for u in utterances], speed)
        kept = [u for u, ok in zip(utterances, keep) if ok]
        sampler = self.sampler
        self.train_set = SpeechDataset(kept, self.tokenizer, dataset.wave_augment, seed=dataset.seed)
        self.sampler = LengthBucketSampler([u.seconds for u in kept], sampler.batch_seconds, sampler.max_batch_size,
                                           seed=sampler.seed, num_replicas=sampler.num_replicas, rank=sampler.rank)
        return len(utterances) - len(kept)


def build_data(config: TrainConfig, rank: int = 0, world: int = 1, pin_memory: bool = False) -> TrainData:
    """Corpus -> manifests -> tokenizer -> dataset, sampler (this rank's share) and dev subsets."""
    c = config
    train, dev = load_corpus(c)
    tokenizer = build_tokenizer(c, [u.text for u in train])
    dataset = SpeechDataset(train, tokenizer, WaveAugment.from_config(c.augment), seed=c.seed)
    sampler = LengthBucketSampler([u.seconds for u in train], c.batch_seconds, c.max_batch_size,
                                  seed=c.seed, num_replicas=world, rank=rank)
    dev = {split: dev_subset(utterances, c.eval_utterances, c.seed) for split, utterances in dev.items()}
    return TrainData(tokenizer, dataset, sampler, dev, c.seed, c.num_workers, pin_memory)


def describe(data: TrainData) -> str:
    """One line for the log: utterances, hours, batches per epoch, padding."""
    return (f"{len(data.train_set)} training utterances ({data.train_seconds / 3600:.2f} h), "
            f"{len(data.sampler)} batches/epoch, padding {data.sampler.padding_fraction():.1%}")

