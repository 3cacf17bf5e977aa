"""The one-batch test: a model that cannot memorise one batch will not learn a corpus."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import torch

from asr_helpers.data.dataset import SpeechDataset, collate
from asr_helpers.data.manifest import index_split
from asr_helpers.models.registry import build_model, model_spec
from asr_helpers.data.text import CharTokenizer


@dataclass
class OverfitResult:
    losses: list[float]
    targets: list[str]
    predictions: list[str]                 # the model's quick decoding (CTC greedy; attention greedy without CTC)
    seconds: float
    other_predictions: dict[str, list[str]] = field(default_factory=dict)  # the model's other quick decodings


def overfit_one_batch(root: Path, split: str, model_size: str = "small", batch_size: int = 6,
                      max_steps: int = 400, lr: float = 2e-3, target_loss: float = 0.1,
                      seed: int = 0, model: str = "deepspeech2",
                      settings: Mapping[str, object] | None = None) -> OverfitResult:
    """Train on the ``batch_size`` shortest utterances until the loss is below ``target_loss`` and
    every quick decoding reproduces them (or ``max_steps`` run out).

    The model is the one ``build_model`` gives training for ``model`` and its ``settings``, without
    SpecAugment and with the registry's ``one_batch`` overrides (e.g. no label smoothing, which keeps
    a memorised batch's loss above ~0.6): this test asks whether the loss can reach zero.
    """
    torch.manual_seed(seed)
    tokenizer = CharTokenizer()
    utterances = sorted(index_split(root, split).utterances, key=lambda u: (u.seconds, u.id))[:batch_size]
    batch = collate([SpeechDataset(utterances, tokenizer)[i] for i in range(len(utterances))])
    recognizer = build_model(model, model_size, tokenizer, {**(settings or {}), **model_spec(model).one_batch})
    optimizer = torch.optim.Adam(recognizer.parameters(), lr=lr)
    losses, decoded, started = [], {}, time.monotonic()
    recognizer.train()
    # Stop once the loss is below the target and every quick decoding of the same forward pass
    # (training mode, as fitted) reproduces every transcript.
    while len(losses) < max_steps and (not losses or losses[-1] >= target_loss
                                       or any(texts != batch.texts for texts in decoded.values())):
        output = recognizer(batch)
        optimizer.zero_grad()
        output.loss.backward()
        torch.nn.utils.clip_grad_norm_(recognizer.parameters(), 5.0)
        optimizer.step()
        losses.append(float(output.loss.detach()))
        with torch.no_grad():
            decoded = {"": recognizer.transcribe(output), **recognizer.other_transcripts(output)}
    others = {name: texts for name, texts in decoded.items() if name}
    return OverfitResult(losses, batch.texts, decoded.get("", []), time.monotonic() - started, others)
