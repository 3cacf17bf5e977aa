"""Dataset, collate and the length-bucketed batch sampler.

Batches are filled by audio seconds rather than by count: with LibriSpeech's 1-35 s
utterances a fixed batch size either wastes memory on short ones or runs out on long ones,
and sorting by length keeps padding (wasted compute) small. The first epoch can go shortest
first (SortaGrad), which helps CTC leave the all-blank plateau early.
"""
from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
from torch.utils.data import Dataset, Sampler

from asr_helpers.data.audio import SAMPLE_RATE, AudioError, load_audio
from asr_helpers.data.manifest import Utterance
from asr_helpers.data.text import TextError

log = logging.getLogger(__name__)
WaveAugment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclass
class Batch:
    waves: torch.Tensor          # [B, T] float32, zero padded
    wave_lengths: torch.Tensor   # [B] samples
    targets: torch.Tensor        # [sum of target lengths] token ids, concatenated (CTC format)
    target_lengths: torch.Tensor  # [B]
    texts: list[str]
    ids: list[str]
    skipped: int = 0             # items dropped from this batch (unreadable audio)

    @property
    def audio_seconds(self) -> float:
        return float(self.wave_lengths.sum()) / SAMPLE_RATE

    def to(self, device: torch.device | str, non_blocking: bool = True) -> "Batch":
        move = lambda t: t.to(device, non_blocking=non_blocking)  # noqa: E731
        return Batch(move(self.waves), move(self.wave_lengths), move(self.targets),
                     move(self.target_lengths), self.texts, self.ids, self.skipped)

    def row(self, index: int) -> "Batch":
        """Utterance ``index`` alone, its padding cut off (a batch of one)."""
        start = int(self.target_lengths[:index].sum())
        end = start + int(self.target_lengths[index])
        return Batch(self.waves[index:index + 1, : int(self.wave_lengths[index])], self.wave_lengths[index:index + 1],
                     self.targets[start:end], self.target_lengths[index:index + 1], self.texts[index:index + 1],
                     self.ids[index:index + 1])

    def pin_memory(self) -> "Batch":
        return Batch(self.waves.pin_memory(), self.wave_lengths.pin_memory(), self.targets.pin_memory(),
                     self.target_lengths.pin_memory(), self.texts, self.ids, self.skipped)


class SpeechDataset(Dataset):
    """Utterances -> (wave, token ids); wave augmentation seeded per (seed, epoch, index)."""

    def __init__(self, utterances: Sequence[Utterance], tokenizer, wave_augment: WaveAugment | None = None,
                 seed: int = 0):
        self.utterances = list(utterances)
        self.tokenizer = tokenizer
        self.wave_augment = wave_augment
        self.seed, self.epoch = seed, 0

    def __len__(self) -> int:
        return len(self.utterances)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict | None:
        utt = self.utterances[index]
        try:
            wave = load_audio(utt.path)
            tokens = self.tokenizer.encode(utt.text)
        except (AudioError, TextError) as error:
            log.warning("skip %s: %s", utt.id, error)
            return None
        if self.wave_augment is not None:
            generator = torch.Generator().manual_seed(hash((self.seed, self.epoch, index)) & 0x7FFF_FFFF)
            wave = self.wave_augment(wave, generator)
        return {"wave": wave, "tokens": torch.tensor(tokens, dtype=torch.long), "text": utt.text, "id": utt.id}


def collate(items: list[dict | None]) -> Batch | None:
    """Pad waves, concatenate targets; drop items that failed to load (counted in ``skipped``)."""
    good = [item for item in items if item is not None]
    if not good:
        return None
    lengths = torch.tensor([len(item["wave"]) for item in good])
    waves = torch.zeros(len(good), int(lengths.max()))
    for row, item in enumerate(good):
        waves[row, : len(item["wave"])] = item["wave"]
    return Batch(waves, lengths, torch.cat([item["tokens"] for item in good]),
                 torch.tensor([len(item["tokens"]) for item in good]),
                 [item["text"] for item in good], [item["id"] for item in good], len(items) - len(good))


class LengthBucketSampler(Sampler[list[int]]):
    """Batches of similar length whose padded size stays within ``batch_seconds``.

    Cost of a batch = count x longest utterance (what the GPU really computes). Compositions are
    re-drawn each epoch from a jittered sort; batch order is shuffled, except in the first epoch
    with ``sortagrad`` (shortest first). With ``num_replicas`` > 1 (DDP) every rank gets the same
    number of batches. The position within the epoch is part of the state, so a resumed run
    continues with exactly the batches it had not seen.
    """

    def __init__(self, seconds: Sequence[float], batch_seconds: float, max_batch_size: int = 256,
                 shuffle: bool = True, sortagrad: bool = True, seed: int = 0, jitter: float = 0.1,
                 num_replicas: int = 1, rank: int = 0):
        if batch_seconds <= 0:
            raise ValueError("batch_seconds must be positive")
        too_long = [s for s in seconds if s > batch_seconds]
        if too_long:
            raise ValueError(f"{len(too_long)} utterances are longer than batch_seconds={batch_seconds}; "
                             "raise batch_seconds or filter with max_seconds")
        self.seconds = list(seconds)
        self.batch_seconds, self.max_batch_size = batch_seconds, max_batch_size
        self.shuffle, self.sortagrad, self.seed, self.jitter = shuffle, sortagrad, seed, jitter
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch, self.position = 0, 0

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.position = epoch, 0

    def _all_batches(self) -> list[list[int]]:
        rng = random.Random(self.seed * 100_003 + self.epoch)
        ordered_by_length = self.epoch == 0 and self.sortagrad
        if self.shuffle and not ordered_by_length:
            keys = [s * (1 + rng.uniform(-self.jitter, self.jitter)) for s in self.seconds]
        else:
            keys = self.seconds
        order = sorted(range(len(self.seconds)), key=keys.__getitem__)
        batches, current, longest = [], [], 0.0
        for index in order:
            longest_if_added = max(longest, self.seconds[index])
            if current and (longest_if_added * (len(current) + 1) > self.batch_seconds
                            or len(current) >= self.max_batch_size):
                batches.append(current)
                current, longest_if_added = [], self.seconds[index]
            current.append(index)
            longest = longest_if_added
        if current:
            batches.append(current)
        if self.shuffle and not ordered_by_length:
            rng.shuffle(batches)
        return batches

    def _my_batches(self) -> list[list[int]]:
        batches = self._all_batches()
        if self.num_replicas == 1:
            return batches
        per_rank = math.ceil(len(batches) / self.num_replicas)
        padded = batches + batches[: per_rank * self.num_replicas - len(batches)]
        return padded[self.rank::self.num_replicas]

    def __len__(self) -> int:
        return len(self._my_batches())

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._my_batches()
        while self.position < len(batches):
            batch = batches[self.position]
            self.position += 1
            yield batch

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position = state["epoch"], state["position"]

    def padding_fraction(self) -> float:
        """Share of each epoch's padded compute that is padding."""
        batches = self._all_batches()
        real = sum(self.seconds[i] for batch in batches for i in batch)
        padded = sum(len(batch) * max(self.seconds[i] for i in batch) for batch in batches)
        return 1 - real / padded
