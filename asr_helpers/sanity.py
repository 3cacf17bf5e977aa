"""The one-batch test: a model that cannot memorise one batch will not learn a corpus."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from asr_helpers.dataset import SpeechDataset, collate
from asr_helpers.decoding import greedy_decode
from asr_helpers.recognizer import ctc_loss
from asr_helpers.features import LogMelFeatures
from asr_helpers.manifest import index_split
from asr_helpers.model import DeepSpeech2, model_config
from asr_helpers.text import CharTokenizer


@dataclass
class OverfitResult:
    losses: list[float]
    targets: list[str]
    predictions: list[str]
    seconds: float


def overfit_one_batch(root: Path, split: str, model_size: str = "small", batch_size: int = 6,
                      max_steps: int = 400, lr: float = 2e-3, target_loss: float = 0.1,
                      seed: int = 0) -> OverfitResult:
    """Train on the ``batch_size`` shortest utterances until the loss is below ``target_loss`` and
    greedy decoding reproduces them (or ``max_steps`` run out)."""
    torch.manual_seed(seed)
    tokenizer = CharTokenizer()
    utterances = sorted(index_split(root, split).utterances, key=lambda u: (u.seconds, u.id))[:batch_size]
    batch = collate([SpeechDataset(utterances, tokenizer)[i] for i in range(len(utterances))])
    config = model_config(model_size, tokenizer.vocab_size)
    features, model = LogMelFeatures.for_model(config), DeepSpeech2(config)
    feats, lengths = features(batch.waves, batch.wave_lengths)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses, predictions, started = [], [], time.monotonic()
    model.train()
    # Stop once the loss is below the target and greedy decoding of the same forward pass
    # (training mode, as fitted) reproduces every transcript.
    while len(losses) < max_steps and (not losses or losses[-1] >= target_loss or predictions != batch.texts):
        log_probs, out_lengths = model(feats, lengths)
        loss = ctc_loss(log_probs, out_lengths, batch.targets, batch.target_lengths, tokenizer.blank_id)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        losses.append(float(loss.detach()))
        predictions = greedy_decode(log_probs.detach(), out_lengths, tokenizer)
    return OverfitResult(losses, batch.texts, predictions, time.monotonic() - started)
