"""Decoding benchmarks (``python -m asr_helpers bench decode``) and the synthetic log-probs they use.

Greedy, the own beam search and LM decoding at several pool sizes, on peaky log-probs shaped
like a trained CTC model's, so the decoders can be timed on any machine with no model or data.
With a checkpoint, ``bench_lm_engines`` instead runs each LM engine (``decoding.lm_engines``) on
the log-probs 04 saved beside it, with the same LM, unigrams, beam width and the weights 04 tuned
(or each engine's own, tuned on a dev split): WER, CER and utterances per second per split.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np

from asr_helpers.decoding.ctc import LMDecoder, greedy_decode, prefix_beam_search
from asr_helpers.decoding.lm import build_ngram
from asr_helpers.decoding.lm_engines import build_lm_decoder
from asr_helpers.decoding.metrics import cer, wer
from asr_helpers.data.text import CharTokenizer


def peaky_log_probs(ids: Sequence[int], frames: int, vocab: int, *, blank: int = 0, peak: float = 8.0,
                    noise: float = 1.0, rng: np.random.Generator | None = None) -> np.ndarray:
    """Log-probs [frames, vocab] shaped like a trained CTC model's: mostly blank, one spike per token.

    For benchmarks and tests: tokens sit at evenly spaced frames with blanks between (so
    repeats survive), and random noise keeps the runners-up plausible.
    """
    if frames < 2 * len(ids):
        raise ValueError(f"{len(ids)} tokens need at least {2 * len(ids)} frames, got {frames}")
    rng = rng or np.random.default_rng()
    logits = noise * rng.standard_normal((frames, vocab))
    path = np.full(frames, blank)
    if len(ids):
        path[np.linspace(0, frames - 1, 2 * len(ids) + 1).astype(int)[1::2]] = ids
    logits[np.arange(frames), path] += peak
    logits -= logits.max(axis=1, keepdims=True)
    return (logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))).astype(np.float32)


def bench_decode(log_probs_list: Sequence[np.ndarray], tokenizer, lm_path: Path | None = None,
                 pool_sizes: Sequence[int] = (1, 2), beam_width: int = 16, lm_beam_width: int = 64,
                 repeats: int = 3) -> dict:
    """Utterances per second of greedy, the own beam search and LM decoding at each pool size.

    LM decoding is timed in steady state: one untimed call per pool size first (it forks the
    pool and touches the LM's pages), then ``repeats`` rounds that alternate the pool sizes,
    reporting the median, so a busy second on a shared machine does not decide the ratio.
    Pool sizes above the number of CPU cores cannot speed anything up; the ratio of the
    largest pool to one process is reported as ``lm_pool_speedup``.
    """
    def rate(run) -> float:
        started = time.perf_counter()
        run()
        return len(log_probs_list) / (time.perf_counter() - started)

    result = {"utterances": len(log_probs_list), "frames": int(sum(len(m) for m in log_probs_list)),
              "greedy": rate(lambda: [greedy_decode(m[None], np.array([len(m)]), tokenizer) for m in log_probs_list]),
              "beam": rate(lambda: [prefix_beam_search(m, beam_width, tokenizer.blank_id) for m in log_probs_list])}
    rates: dict[int, list[float]] = {size: [] for size in pool_sizes}
    with LMDecoder(tokenizer.labels, lm_path, beam_width=lm_beam_width) as decoder:
        for size in pool_sizes:
            decoder.decode_batch(log_probs_list, pool_size=size)
        for _ in range(repeats):
            for size in pool_sizes:
                rates[size].append(rate(lambda: decoder.decode_batch(log_probs_list, pool_size=size)))
    for size, measured in rates.items():
        result[f"lm_pool{size}"] = float(np.median(measured))
    result["lm_pool_speedup"] = result[f"lm_pool{max(pool_sizes)}"] / result[f"lm_pool{min(pool_sizes)}"]
    return result


def bench_lm_decoding(out_dir: Path, utterances: int = 200, frames: int = 300, pool_sizes: Sequence[int] = (1, 2),
                      seed: int = 0) -> dict:
    """``decoding.bench_decode`` on synthetic peaky log-probs of random sentences, with a 3-gram of such text.

    Needs no model or data, so the pool's speed-up can be measured on any machine: the words
    are random letter strings, the LM is built from 3000 sentences of them, and every
    utterance spells a fresh sentence of up to ``frames // 2`` characters.
    """
    rng, tokenizer = np.random.default_rng(seed), CharTokenizer()
    words = ["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), int(rng.integers(2, 8)))) for _ in range(400)]

    def sentence(chars: int) -> str:
        picked: list[str] = []
        while len(" ".join(picked)) < chars - 8:
            picked.append(str(rng.choice(words)))
        return " ".join(picked)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench_corpus.txt").write_text("\n".join(sentence(120) for _ in range(3000)) + "\n")
    lm_path = build_ngram(out_dir / "bench_corpus.txt", 3, out_dir, name="bench")
    matrices = [peaky_log_probs(tokenizer.encode(sentence(frames // 2)), frames, tokenizer.vocab_size, rng=rng)
                for _ in range(utterances)]
    return bench_decode(matrices, tokenizer, lm_path=lm_path, pool_sizes=pool_sizes)


def compare_lm_engines(log_probs_list: Sequence[np.ndarray], references: Sequence[str], labels: Sequence[str],
                       lm_path: Path, weights: dict[str, tuple[float, float]], *, beam_width: int = 32,
                       pool_size: int = 2) -> dict[str, dict]:
    """Per engine (``weights``: engine -> alpha, beta): WER, CER, utterances per second (decoding only,
    on ``pool_size`` processes) and the seconds its LM took to load, on the same log-probs and beam."""
    found = {}
    for engine, (alpha, beta) in weights.items():
        started = time.perf_counter()
        with build_lm_decoder(engine, labels, lm_path, alpha=alpha, beta=beta, beam_width=beam_width) as decoder:
            loaded = time.perf_counter()
            texts = decoder.decode_batch(log_probs_list, pool_size)
            done = time.perf_counter()
        found[engine] = {"alpha": alpha, "beta": beta, "wer": wer(references, texts), "cer": cer(references, texts),
                         "utt_per_sec": len(texts) / (done - loaded), "load_seconds": loaded - started}
    return found


def saved_log_probs(checkpoint: Path, split: str) -> tuple[list[np.ndarray], list[str]]:
    """The log-probs and references of ``split`` that 04 saved beside ``checkpoint`` (``RunDir.logprobs``)."""
    from asr_helpers.training.rundir import RunDir
    saved = RunDir(Path(checkpoint).parent).logprobs(split)
    if not saved.is_file():
        raise ValueError(f"no saved log-probs of {split} at {saved}: run 04_lm_decoding on this run first")
    data = np.load(saved, allow_pickle=False)
    return [data[f"u{i}"] for i in range(len(data["ids"]))], [str(r) for r in data["references"]]


def engine_weights(checkpoint: Path, engines: Sequence[str], labels: Sequence[str], lm_path: Path,
                   tune_on: str | None, beam_width: int, pool_size: int) -> dict[str, tuple[float, float]]:
    """Alpha and beta per engine: the ones 04 tuned (pyctcdecode) for every engine, or with ``tune_on``
    each engine's own best on that split's log-probs over 04's grid (the points in ``tuned.json``)."""
    from asr_helpers.decoding.lm import tune_alpha_beta
    from asr_helpers.training.checkpoint import tuned_record
    tuned = tuned_record(checkpoint).get("lm")
    shared = (tuned.weights["alpha"], tuned.weights["beta"]) if tuned else (0.5, 1.0)
    if tune_on is None:
        return {engine: shared for engine in engines}
    grid = {"alphas": sorted({p["weights"]["alpha"] for p in tuned.grid}),
            "betas": sorted({p["weights"]["beta"] for p in tuned.grid})} if tuned and tuned.grid else {}
    matrices, references = saved_log_probs(checkpoint, tune_on)
    found = {}
    for engine in engines:
        best = tune_alpha_beta(matrices, references, labels, lm_path, beam_width=beam_width, pool_size=pool_size,
                               engine=engine, **grid)
        found[engine] = (best.weights["alpha"], best.weights["beta"])
    return found


def bench_lm_engines(checkpoint: Path, lm_path: Path, engines: Sequence[str], splits: Sequence[str],
                     beam_width: int = 32, pool_size: int = 2, tune_on: str | None = None) -> dict:
    """``compare_lm_engines`` on each split's saved log-probs, with the weights of ``engine_weights``;
    the result holds ``table``, a Markdown table of it all."""
    from asr_helpers.training.checkpoint import load_checkpoint
    from asr_helpers.data.text import tokenizer_from_dict
    checkpoint = Path(checkpoint)
    labels = tokenizer_from_dict(load_checkpoint(checkpoint)["tokenizer"]).labels
    weights = engine_weights(checkpoint, engines, labels, lm_path, tune_on, beam_width, pool_size)
    result = {"benchmark": "lm_engines", "checkpoint": str(checkpoint), "lm": str(lm_path), "tuned_on": tune_on,
              "beam_width": beam_width, "pool_size": pool_size}
    lines = ["| split | utterances | engine | alpha, beta | WER | CER | utt/s | LM load (s) |",
             "|---|---|---|---|---|---|---|---|"]
    for split in splits:
        matrices, references = saved_log_probs(checkpoint, split)
        result[split] = compare_lm_engines(matrices, references, labels, lm_path, weights, beam_width=beam_width,
                                           pool_size=pool_size)
        lines += [f"| {split} | {len(matrices)} | {engine} | {m['alpha']:g}, {m['beta']:g} | {m['wer']:.4f} "
                  f"| {m['cer']:.4f} | {m['utt_per_sec']:.1f} | {m['load_seconds']:.2f} |"
                  for engine, m in result[split].items()]
    result["table"] = "\n".join(lines)
    return result
