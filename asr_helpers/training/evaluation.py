"""Run a model over utterances: dev loss, WER/CER of its quick decoding, and CTC log-probs.

``evaluate`` works for any ``SpeechModel`` (the training loop's dev evaluation). For a CTC model
``compute_outputs`` returns the log-probs once per utterance as arrays, so every decoder (greedy,
own beam search, beam + LM) and the alpha/beta search reuse them instead of re-running the net.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader

from asr_helpers.data.dataset import Batch, LengthBucketSampler, SpeechDataset, collate
from asr_helpers.decoding.ctc import Encoding
from asr_helpers.data.manifest import Utterance
from asr_helpers.models.recognizer import ModelOutput, SpeechModel


@dataclass
class ModelOutputs:
    ids: list[str]
    references: list[str]
    log_probs: list[np.ndarray]   # one [frames, vocab] float32 array per utterance
    loss: float                   # mean loss per utterance (nan if no targets)
    states: list[np.ndarray] | None = None  # [frames, D] encoder states per utterance (attention models)

    def encodings(self) -> list[Encoding]:
        """What the decoder registry decodes: log-probs, with the encoder states when there are any."""
        states = self.states or [None] * len(self.log_probs)
        return [Encoding(lp, st) for lp, st in zip(self.log_probs, states)]


def autocast_context(device: torch.device, precision: str):
    """Mixed precision for the network; features and the CTC loss stay in float32."""
    if precision in ("fp16", "bf16"):
        dtype = torch.float16 if precision == "fp16" else torch.bfloat16
        return torch.autocast(device.type, dtype=dtype)
    return contextlib.nullcontext()


def _outputs_by_batch(model, utterances: list[Utterance], tokenizer, device: torch.device, precision: str,
                      batch_seconds: float = 200.0, num_workers: int = 0) -> Iterator[tuple[Batch, ModelOutput]]:
    """The model's output for every readable utterance, in length-sorted batches, in eval mode."""
    model.eval()
    dataset = SpeechDataset(utterances, tokenizer)
    sampler = LengthBucketSampler([u.seconds for u in utterances], max(batch_seconds, max(u.seconds for u in utterances)),
                                  shuffle=False, sortagrad=False)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=num_workers,
                        generator=torch.Generator())  # leaves the global RNG untouched
    with torch.no_grad():
        for batch in loader:
            if batch is None:
                continue
            batch = batch.to(device)
            with autocast_context(device, precision):
                yield batch, model(batch)


def compute_outputs(model: SpeechModel, utterances: list[Utterance], tokenizer, device: torch.device,
                    precision: str = "fp32", batch_seconds: float = 200.0, num_workers: int = 0) -> ModelOutputs:
    """Log-probs (and encoder states, for a joint model) of every utterance in the given order, and the mean dev loss."""
    found: dict[str, tuple[str, np.ndarray, np.ndarray | None]] = {}
    losses = []
    for batch, output in _outputs_by_batch(model, utterances, tokenizer, device, precision, batch_seconds, num_workers):
        losses.append(float(output.loss))
        arrays = output.log_probs.float().cpu().numpy()
        states = None if output.states is None else output.states.float().cpu().numpy()
        for row, (utt_id, text, length) in enumerate(zip(batch.ids, batch.texts, output.lengths.tolist())):
            found[utt_id] = (text, arrays[row, :length], None if states is None else states[row, :length])
    ids = [u.id for u in utterances if u.id in found]
    with_states = bool(ids) and found[ids[0]][2] is not None
    return ModelOutputs(ids, [found[i][0] for i in ids], [found[i][1] for i in ids],
                        float(np.mean(losses)) if losses else float("nan"),
                        [found[i][2] for i in ids] if with_states else None)


def evaluate(model: SpeechModel, utterances: list[Utterance], tokenizer, device: torch.device,
             precision: str = "fp32") -> tuple[dict, list[list]]:
    """Dev loss, WER and CER of the model's own quick decoding, and rows (id, target, prediction, cer, wer).

    A model's further quick decodings add ``wer_<name>``/``cer_<name>``, and the numbers it reports
    per batch (``ModelOutput.metrics``: loss parts, lock-on) are averaged over utterances.
    """
    from asr_helpers.decoding.metrics import cer, utterance_errors, wer
    references, hypotheses, ids, losses = [], [], [], []
    others: dict[str, list[str]] = {}
    totals: dict[str, float] = {}
    for batch, output in _outputs_by_batch(model, utterances, tokenizer, device, precision):
        losses.append(float(output.loss))
        references += batch.texts
        hypotheses += model.transcribe(output)
        ids += batch.ids
        for name, texts in model.other_transcripts(output).items():
            others.setdefault(name, []).extend(texts)
        for name, value in output.metrics.items():
            totals[name] = totals.get(name, 0.0) + value * len(batch.ids)
    rows = []
    for utt_id, ref, hyp in zip(ids, references, hypotheses):
        errors = utterance_errors(ref, hyp)
        rows.append([utt_id, ref, hyp, round(errors["cer"], 4), round(errors["wer"], 4)])
    metrics = {"loss": float(np.mean(losses)) if losses else float("nan"), "wer": wer(references, hypotheses),
               "cer": cer(references, hypotheses), "utterances": len(rows)}
    for name, texts in others.items():
        metrics[f"wer_{name}"], metrics[f"cer_{name}"] = wer(references, texts), cer(references, texts)
    metrics.update({name: total / max(len(ids), 1) for name, total in totals.items()})
    return metrics, rows
