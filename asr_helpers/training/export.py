"""A small checkpoint to publish: weights, model config, tokenizer and tuned decoding weights.

``best.pt`` also carries the AdamW state (two more copies of the weights), RNG states and
the sampler position, which only resuming needs. The export keeps what inference needs, as
tensors and plain types in a weights-only torch file, so ``transcribe`` and ``load_model``
read it like any checkpoint and nobody has to trust it to load it.
"""
from __future__ import annotations

from pathlib import Path

import torch

from asr_helpers.training.checkpoint import load_checkpoint, recognizer_from_state, save_atomic, tuned_record
from asr_helpers.data.download import file_digest
from asr_helpers.decoding.tuned import record_from_state

EXPORT_FORMAT = "asr-workbook-export/1"
DTYPES = {"float32": torch.float32, "float16": torch.float16}


def export_checkpoint(checkpoint: Path, out: Path, dtype: str = "float32") -> Path:
    """Write the inference part of ``checkpoint`` to ``out``, with the decoding weights tuned for it (the
    record ``tuned.json`` beside it, as ``tuned``); floating weights are stored as ``dtype``."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, not {dtype!r}")
    checkpoint, out = Path(checkpoint), Path(out)
    if checkpoint.resolve() == out.resolve():
        raise ValueError(f"export {checkpoint} to another file, not over itself")
    state = load_checkpoint(checkpoint)
    entries = recognizer_from_state(state, checkpoint)[0].checkpoint_entries()  # the model's weights and settings
    weights = {name: tensor.to(DTYPES[dtype]) if tensor.is_floating_point() else tensor
               for name, tensor in entries.pop("model").items()}
    exported = {"format": EXPORT_FORMAT, "model": _one_buffer(weights), **entries, "tokenizer": state["tokenizer"],
                "train_config": state.get("train_config", {}), "step": state.get("step"),
                "best_wer": state.get("best_wer")}
    if tuned := tuned_record(checkpoint):
        exported["tuned"] = {decoder: entry.to_dict() for decoder, entry in tuned.items()}
    save_atomic(exported, out)
    return out


def _one_buffer(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The floating tensors as views of one contiguous buffer, laid out as safetensors does.

    ``torch.save`` writes one zip record per storage; one record instead of fifty saves about
    9 KB, which keeps a float32 export of the small model under a third of ``best.pt``.
    """
    floating = [name for name, tensor in weights.items() if tensor.is_floating_point()]
    if not floating:
        return weights
    buffer = torch.cat([weights[name].reshape(-1) for name in floating])
    views = buffer.split([weights[name].numel() for name in floating])
    return {**weights, **{name: view.view(weights[name].shape) for name, view in zip(floating, views)}}


def describe(path: Path) -> str:
    """One line on what a checkpoint holds, read without running code, and its SHA-256."""
    state = load_checkpoint(path, mmap=True)
    kind = "export" if state.get("format") == EXPORT_FORMAT else "training checkpoint"
    tensors = [t for t in state["model"].values() if t.is_floating_point()]
    parameters = sum(t.numel() for t in tensors)
    train = state.get("train_config", {})
    try:
        tuned = record_from_state(state)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    tuned_text = ("tuned " + ", ".join(f"{decoder} {entry.settings()}" for decoder, entry in tuned.items())
                  if tuned else "no tuned decoding weights")
    return (f"{path}: {kind}, {train.get('model_size', '?')} model, {parameters / 1e6:.2f} M weights "
            f"({tensors[0].dtype if tensors else '?'}), {state.get('tokenizer', {}).get('kind', '?')} tokenizer, "
            f"step {state.get('step', '?')}, {tuned_text}; {Path(path).stat().st_size / 1e6:.1f} MB, "
            f"sha256 {file_digest(path, 'sha256')}")
