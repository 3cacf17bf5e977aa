import numpy as np
import pytest
import soundfile
import torch

from asr_helpers.data.audio import AudioError, load_audio
from asr_helpers.data.dataset import LengthBucketSampler, SpeechDataset, collate
from asr_helpers.data.manifest import index_split
from asr_helpers.data.text import CharTokenizer


def test_load_audio_downmixes_and_resamples(tmp_path):
    stereo = np.stack([np.full(8000, 0.5), np.full(8000, -0.1)], axis=1).astype(np.float32)
    soundfile.write(tmp_path / "s.wav", stereo, 8000)
    wave = load_audio(tmp_path / "s.wav")
    assert wave.dtype == torch.float32 and wave.ndim == 1
    assert abs(len(wave) - 16000) <= 1
    assert abs(float(wave[4000:12000].mean()) - 0.2) < 1e-3


def test_load_audio_errors_are_clear(tmp_path):
    (tmp_path / "bad.flac").write_bytes(b"junk")
    with pytest.raises(AudioError, match="unreadable"):
        load_audio(tmp_path / "bad.flac")


def test_dataset_collate_pads_and_skips_unreadable(tiny_corpus):
    utts = index_split(tiny_corpus, "dev-clean").utterances
    dataset = SpeechDataset(utts, CharTokenizer())
    items = [dataset[i] for i in range(len(utts))]
    batch = collate(items + [None])
    assert batch.skipped == 1 and batch.waves.shape[0] == len(utts)
    assert batch.wave_lengths.max() == batch.waves.shape[1]
    assert batch.targets.numel() == batch.target_lengths.sum()
    shortest = int(batch.wave_lengths.argmin())
    assert torch.all(batch.waves[shortest, batch.wave_lengths[shortest]:] == 0)
    assert collate([None]) is None


def test_wave_augment_is_seeded_per_epoch_and_index(tiny_corpus):
    utts = index_split(tiny_corpus, "dev-clean").utterances
    noisy = lambda wave, gen: wave + 0.1 * torch.randn(len(wave), generator=gen)  # noqa: E731
    dataset = SpeechDataset(utts, CharTokenizer(), noisy, seed=3)
    a, b = dataset[0]["wave"], dataset[0]["wave"]
    dataset.set_epoch(1)
    assert torch.equal(a, b) and not torch.equal(a, dataset[0]["wave"])


def _seconds(n=300, seed=0):
    return list(np.random.default_rng(seed).uniform(1.0, 16.0, n))


@pytest.mark.parametrize("epoch", [0, 1, 2])
def test_sampler_covers_every_utterance_once_within_budget(epoch):
    seconds = _seconds()
    sampler = LengthBucketSampler(seconds, batch_seconds=60, max_batch_size=16, seed=1)
    sampler.set_epoch(epoch)
    batches = list(sampler)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(seconds)))
    assert all(len(b) * max(seconds[i] for i in b) <= 60 and len(b) <= 16 for b in batches)


def test_sortagrad_first_epoch_then_shuffled():
    seconds = _seconds()
    sampler = LengthBucketSampler(seconds, batch_seconds=60, seed=1)
    longest = [max(seconds[i] for i in b) for b in sampler]
    assert longest == sorted(longest)
    sampler.set_epoch(1)
    longest = [max(seconds[i] for i in b) for b in sampler]
    assert longest != sorted(longest)


def test_bucketing_keeps_padding_small():
    sampler = LengthBucketSampler(_seconds(2000), batch_seconds=200, max_batch_size=64)
    sampler.set_epoch(1)
    assert sampler.padding_fraction() < 0.10


def test_sampler_resumes_mid_epoch_and_shards_evenly():
    seconds = _seconds()
    full = LengthBucketSampler(seconds, 60, seed=2)
    full.set_epoch(1)
    expected = list(full)
    resumed = LengthBucketSampler(seconds, 60, seed=2)
    resumed.load_state_dict({"epoch": 1, "position": 5})
    assert list(resumed) == expected[5:]
    ranks = [LengthBucketSampler(seconds, 60, seed=2, num_replicas=2, rank=r) for r in range(2)]
    for r in ranks:
        r.set_epoch(1)
    assert len(ranks[0]) == len(ranks[1])
    assert {i for r in ranks for b in r for i in b} == set(range(len(seconds)))


def test_sampler_rejects_impossible_budget():
    with pytest.raises(ValueError, match="longer than batch_seconds"):
        LengthBucketSampler([5.0, 30.0], batch_seconds=20)
