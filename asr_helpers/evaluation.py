"""Run a model over utterances: log-probs, dev loss, greedy WER/CER and sample rows.

Log-probs are computed once per utterance and returned as arrays, so every decoder (greedy,
own beam search, beam + LM) and the alpha/beta search reuse them instead of re-running the net.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader

from asr_helpers.dataset import LengthBucketSampler, SpeechDataset, collate
from asr_helpers.manifest import Utterance


@dataclass
class ModelOutputs:
    ids: list[str]
    references: list[str]
    log_probs: list[np.ndarray]   # one [frames, vocab] float32 array per utterance
    loss: float                   # mean CTC loss per utterance (nan if no targets)


def autocast_context(device: torch.device, precision: str):
    """Mixed precision for the network; features and the CTC loss stay in float32."""
    if precision in ("fp16", "bf16"):
        dtype = torch.float16 if precision == "fp16" else torch.bfloat16
        return torch.autocast(device.type, dtype=dtype)
    return contextlib.nullcontext()


def ctc_loss(log_probs: torch.Tensor, out_lengths: torch.Tensor, targets: torch.Tensor,
             target_lengths: torch.Tensor, blank: int) -> torch.Tensor:
    """Mean over utterances of the per-utterance CTC loss divided by its target length, in float32."""
    return F.ctc_loss(log_probs.float().transpose(0, 1), targets, out_lengths, target_lengths,
                      blank=blank, reduction="mean", zero_infinity=True)


@torch.no_grad()
def compute_outputs(model, features, utterances: list[Utterance], tokenizer, device: torch.device,
                    precision: str = "fp32", batch_seconds: float = 200.0, num_workers: int = 0) -> ModelOutputs:
    """Log-probs for every utterance (in the given order) and the mean dev loss."""
    model.eval()
    dataset = SpeechDataset(utterances, tokenizer)
    sampler = LengthBucketSampler([u.seconds for u in utterances], max(batch_seconds, max(u.seconds for u in utterances)),
                                  shuffle=False, sortagrad=False)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=num_workers,
                        generator=torch.Generator())  # leaves the global RNG untouched
    found: dict[str, tuple[str, np.ndarray]] = {}
    losses = []
    for batch in loader:
        if batch is None:
            continue
        batch = batch.to(device)
        feats, lengths = features(batch.waves, batch.wave_lengths)
        with autocast_context(device, precision):
            log_probs, out_lengths = model(feats, lengths)
        losses.append(float(ctc_loss(log_probs, out_lengths, batch.targets, batch.target_lengths, tokenizer.blank_id)))
        arrays = log_probs.float().cpu().numpy()
        for row, (utt_id, text, length) in enumerate(zip(batch.ids, batch.texts, out_lengths.tolist())):
            found[utt_id] = (text, arrays[row, :length])
    ids = [u.id for u in utterances if u.id in found]
    return ModelOutputs(ids, [found[i][0] for i in ids], [found[i][1] for i in ids],
                        float(np.mean(losses)) if losses else float("nan"))


def greedy_texts(outputs: ModelOutputs, tokenizer) -> list[str]:
    from asr_helpers.decoding import greedy_decode
    texts = []
    for log_probs in outputs.log_probs:
        texts += greedy_decode(torch.from_numpy(log_probs)[None], torch.tensor([len(log_probs)]), tokenizer)
    return texts


def evaluate(model, features, utterances: list[Utterance], tokenizer, device: torch.device,
             precision: str = "fp32") -> tuple[dict, list[list]]:
    """Dev loss, greedy WER and CER, and rows (id, target, prediction, cer, wer) for sample tables."""
    from asr_helpers.metrics import cer, utterance_errors, wer
    outputs = compute_outputs(model, features, utterances, tokenizer, device, precision)
    hypotheses = greedy_texts(outputs, tokenizer)
    rows = []
    for utt_id, ref, hyp in zip(outputs.ids, outputs.references, hypotheses):
        errors = utterance_errors(ref, hyp)
        rows.append([utt_id, ref, hyp, round(errors["cer"], 4), round(errors["wer"], 4)])
    metrics = {"loss": outputs.loss, "wer": wer(outputs.references, hypotheses),
               "cer": cer(outputs.references, hypotheses), "utterances": len(rows)}
    return metrics, rows
