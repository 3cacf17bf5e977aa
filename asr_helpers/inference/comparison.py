"""Compare decoders on whole splits: greedy, own prefix beam search, beam search + LM (``lm``), and
for a joint CTC/attention model its attention decoders (``attention``, ``attention_beam``, ``joint``, ``joint+lm``).

The network runs once per split; its log-probs are cached next to the checkpoint, so tuning
alpha/beta and trying decoders costs decoding time only.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from asr_helpers.decoding.attention_decoding import ATTENTION_BEAM, AttentionSearch, search_settings
from asr_helpers.training.checkpoint import load_recognizer, tuned_record
from asr_helpers.decoding.ctc import available_decoders, build_decoder
from asr_helpers.training.evaluation import ModelOutputs, compute_outputs
from asr_helpers.data.manifest import Utterance
from asr_helpers.decoding.metrics import cer, utterance_errors, wer
from asr_helpers.training.rundir import RunDir


def cached_outputs(checkpoint: Path, utterances: list[Utterance], name: str, device: str | None = None) -> ModelOutputs:
    """Log-probs (and a joint model's encoder states) of ``utterances`` under ``checkpoint``, cached as
    ``RunDir.logprobs(name)`` beside it."""
    checkpoint = Path(checkpoint)
    cache = RunDir(checkpoint.parent).logprobs(name)
    stamp = f"{checkpoint.stat().st_mtime_ns}-{len(utterances)}"
    if cache.exists():
        data = np.load(cache, allow_pickle=False)
        if str(data["stamp"]) == stamp:
            count = len(data["ids"])
            states = [data[f"s{i}"] for i in range(count)] if "s0" in data else None
            return ModelOutputs(list(data["ids"]), list(data["references"]), [data[f"u{i}"] for i in range(count)],
                                float(data["loss"]), states)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    recognizer, tokenizer, _ = load_recognizer(checkpoint, dev)
    outputs = compute_outputs(recognizer, utterances, tokenizer, dev)
    states = {f"s{i}": a for i, a in enumerate(outputs.states or [])}
    np.savez(cache, stamp=stamp, ids=np.array(outputs.ids), references=np.array(outputs.references),
             loss=outputs.loss, **{f"u{i}": a for i, a in enumerate(outputs.log_probs)}, **states)
    return outputs


def attention_search(checkpoint: Path, beam: int = ATTENTION_BEAM, device: str | None = None) -> AttentionSearch | None:
    """The attention decoders of a joint CTC/attention checkpoint, with the weights tuned for it so far
    (else the defaults); None for a CTC-only one."""
    settings = search_settings(beam, tuned_record(checkpoint))
    return load_recognizer(checkpoint, device or "cpu")[0].attention_search(settings=settings)


@dataclass
class SplitDecodes:
    split: str
    ids: list[str]
    references: list[str]
    texts: dict[str, list[str]] = field(default_factory=dict)     # decoder -> hypotheses
    seconds: dict[str, float] = field(default_factory=dict)       # decoder -> wall seconds for the split


def decode_split(split: str, outputs: ModelOutputs, tokenizer, beam_width: int = 32, lm_decoder=None,
                 pool_size: int = 2, attention: AttentionSearch | None = None) -> SplitDecodes:
    """Hypotheses and timing of every available decoder on one split's cached outputs: ``lm`` with an
    LM, the attention decoders with an ``AttentionSearch`` (``joint+lm`` once it has a word LM)."""
    result = SplitDecodes(split, outputs.ids, outputs.references)
    items = outputs.encodings()
    for name in available_decoders(lm_decoder, attention):
        decoder = build_decoder(name, tokenizer, beam_width=beam_width, lm_decoder=lm_decoder, pool_size=pool_size,
                                attention=attention)
        started = time.perf_counter()
        result.texts[name] = decoder.decode(items)
        result.seconds[name] = time.perf_counter() - started
    return result


def decoder_table(results: list[SplitDecodes]) -> pd.DataFrame:
    """WER, CER and milliseconds per utterance for every split and decoder."""
    rows = []
    for result in results:
        for name, texts in result.texts.items():
            rows.append({"split": result.split, "decoder": name, "wer": wer(result.references, texts),
                         "cer": cer(result.references, texts), "utterances": len(texts),
                         "ms_per_utterance": 1000 * result.seconds[name] / max(len(texts), 1)})
    return pd.DataFrame(rows)


def lm_effects(result: SplitDecodes, base: str = "beam", with_lm: str = "lm", top: int = 5) -> pd.DataFrame:
    """Utterances where the LM fixed the most words, and where it broke the most."""
    rows = []
    for utt_id, ref, before, after in zip(result.ids, result.references, result.texts[base], result.texts[with_lm]):
        change = utterance_errors(ref, before)["wer"] - utterance_errors(ref, after)["wer"]
        if before != after:
            rows.append({"id": utt_id, "reference": ref, base: before, with_lm: after, "wer_gain": round(change, 3)})
    frame = pd.DataFrame(rows, columns=["id", "reference", base, with_lm, "wer_gain"])
    frame = frame.sort_values("wer_gain", ascending=False)
    return pd.concat([frame.head(top).assign(effect="fixed"), frame[frame.wer_gain < 0].tail(top).assign(effect="broke")])


def write_recogs(result: SplitDecodes, folder: Path) -> list[Path]:
    """``recogs-<split>-<decoder>.txt`` (id, reference, hypothesis), icefall style, for the report."""
    written = []
    for name, texts in result.texts.items():
        path = RunDir(Path(folder)).recogs(result.split, name)
        path.write_text("".join(f"{i}\tref={r}\thyp={h}\n" for i, r, h in zip(result.ids, result.references, texts)))
        written.append(path)
    return written
