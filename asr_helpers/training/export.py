"""A small checkpoint to publish: weights, model config, tokenizer and tuned LM weights.

``best.pt`` also carries the AdamW state (two more copies of the weights), RNG states and
the sampler position, which only resuming needs. The export keeps what inference needs, as
tensors and plain types in a weights-only torch file, so ``transcribe`` and ``load_model``
read it like any checkpoint and nobody has to trust it to load it.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from asr_helpers.training.checkpoint import load_checkpoint, save_atomic, tuned_params
from asr_helpers.data.download import file_digest
from asr_helpers.training.rundir import FUSION_PARAMS, JOINT_PARAMS, LM_PARAMS

EXPORT_FORMAT = "asr-workbook-export/1"
DTYPES = {"float32": torch.float32, "float16": torch.float16}


def export_checkpoint(checkpoint: Path, out: Path, dtype: str = "float32") -> Path:
    """Write the inference part of ``checkpoint`` to ``out``, with the tuned weights from ``lm_params.json``
    (and a joint model's ``joint_params.json`` and ``fusion_params.json``) next to it when there are
    some; floating weights are stored as ``dtype``."""
    from asr_helpers.decoding.lm import load_lm_params
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, not {dtype!r}")
    checkpoint, out = Path(checkpoint), Path(out)
    if checkpoint.resolve() == out.resolve():
        raise ValueError(f"export {checkpoint} to another file, not over itself")
    state = load_checkpoint(checkpoint)
    weights = {name: tensor.to(DTYPES[dtype]) if tensor.is_floating_point() else tensor
               for name, tensor in state["model"].items()}
    exported = {"format": EXPORT_FORMAT, "model": _one_buffer(weights), "model_config": state["model_config"],
                "tokenizer": state["tokenizer"], "train_config": state.get("train_config", {}),
                "step": state.get("step"), "best_wer": state.get("best_wer")}
    if "joint_config" in state:
        exported["joint_config"] = state["joint_config"]
    try:
        exported[Path(LM_PARAMS).stem] = asdict(load_lm_params(checkpoint))
    except FileNotFoundError:
        pass
    for name in (JOINT_PARAMS, FUSION_PARAMS):
        if (found := tuned_params(checkpoint, name)) is not None:
            exported[Path(name).stem] = found[0]
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
    lm = state.get("lm_params")
    lm_text = f"tuned LM alpha={lm['alpha']} beta={lm['beta']}" if lm else "no tuned LM weights"
    if joint := state.get("joint_params"):
        lm_text += f", joint ctc_weight={joint.get('ctc_weight')}"
    if fusion := state.get("fusion_params"):
        lm_text += (f", joint+lm ctc_weight={fusion.get('ctc_weight')} alpha={fusion.get('alpha')} "
                    f"beta={fusion.get('beta')}")
    return (f"{path}: {kind}, {train.get('model_size', '?')} model, {parameters / 1e6:.2f} M weights "
            f"({tensors[0].dtype if tensors else '?'}), {state.get('tokenizer', {}).get('kind', '?')} tokenizer, "
            f"step {state.get('step', '?')}, {lm_text}; {Path(path).stat().st_size / 1e6:.1f} MB, "
            f"sha256 {file_digest(path, 'sha256')}")
