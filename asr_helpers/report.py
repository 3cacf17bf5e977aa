"""Read finished runs back for the report: summaries, curves, decoder tables, ablations, examples.

Only reads ``artifacts/runs/``; it never trains or decodes, so the report renders in seconds.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from asr_helpers import paths
from asr_helpers.metrics import utterance_errors
from asr_helpers.rundir import RunDir


class NoRunsError(FileNotFoundError):
    """No finished run to report on."""


def finished_runs() -> list[Path]:
    """Run folders with a ``train_summary.json``, oldest first."""
    runs = [p for p in paths.runs_dir().iterdir() if RunDir(p).finished] if paths.runs_dir().is_dir() else []
    return sorted(runs, key=lambda p: RunDir(p).summary.stat().st_mtime)


def pick_run(name: str | None) -> Path:
    """The named run, or the most recent finished one; a clear error when there is none."""
    runs = finished_runs()
    if name:
        run = RunDir.named(name)
        if not run.finished:
            known = [r.name for r in runs]
            raise NoRunsError(f"run {name!r} has not finished (no {run.summary}); finished runs: {known}")
        return run.path
    if not runs:
        raise NoRunsError(f"no finished run under {paths.runs_dir()}: train one with notebooks/03_train.ipynb "
                          "(or ./run_all.sh) first")
    return runs[-1]


def run_row(run: Path) -> dict:
    """One line per run: what was set and what came out (final greedy dev metrics)."""
    config, summary = RunDir(run).read_config(), RunDir(run).read_summary()
    row = {"run": run.name, "model": config.get("model_size"), "tokenizer": config.get("tokenizer"),
           "augment": config.get("augment"), "corpus": config.get("corpus"), "epochs_done": summary.get("epochs"),
           "steps": summary.get("steps"), "minutes": round(summary.get("minutes", float("nan")), 1),
           "audio_hours_seen": round(summary.get("audio_hours", float("nan")), 2), "stop": summary.get("stop_reason")}
    for split, metrics in summary.get("final", {}).items():
        row[f"{split} CER"] = round(metrics["cer"], 4)
        row[f"{split} WER"] = round(metrics["wer"], 4)
    return row


def runs_table() -> pd.DataFrame:
    return pd.DataFrame([run_row(r) for r in finished_runs()])


def ablation(names: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """Rows for the named runs that exist, and the names still missing."""
    present = [n for n in names if RunDir.named(n).finished]
    return pd.DataFrame([run_row(RunDir.named(n).path) for n in present]), [n for n in names if n not in present]


def decoder_results(run: Path) -> pd.DataFrame:
    path = RunDir(run).decoding
    return pd.read_json(path) if path.exists() else pd.DataFrame()


def read_recogs(path: Path) -> pd.DataFrame:
    """An icefall-style ``recogs-*.txt`` with per-utterance WER and CER."""
    rows = []
    for line in path.read_text().splitlines():
        utt_id, ref, hyp = line.split("\t")
        ref, hyp = ref.removeprefix("ref="), hyp.removeprefix("hyp=")
        rows.append({"id": utt_id, "reference": ref, "hypothesis": hyp, **utterance_errors(ref, hyp)})
    return pd.DataFrame(rows)


def best_and_worst(run: Path, split: str, decoder: str = "beam", count: int = 3) -> pd.DataFrame:
    path = RunDir(run).recogs(split, decoder)
    if not path.exists():
        return pd.DataFrame()
    frame = read_recogs(path).sort_values(["wer", "cer"])
    return pd.concat([frame.head(count).assign(kind="best"), frame.tail(count).assign(kind="worst")])


def bonus_tasks(run: Path, bpe_runs: list[str]) -> list[str]:
    """Bonus tasks of the course that the recorded artifacts show as done."""
    done = []
    decoding = decoder_results(run)
    if not decoding.empty and "lm" in set(decoding.decoder):
        lm_wer = decoding[decoding.decoder == "lm"].wer.mean()
        greedy_wer = decoding[decoding.decoder == "greedy"].wer.mean()
        done.append(f"external n-gram LM with pyctcdecode + KenLM (mean WER {greedy_wer:.3f} greedy -> {lm_wer:.3f} with LM)")
    if any(RunDir.named(n).read_config().get("tokenizer") == "bpe" for n in bpe_runs):
        done.append("BPE tokenisation with a characters-vs-BPE ablation")
    return done


def audio_path(run: Path, split: str, utt_id: str) -> Path | None:
    """Where an utterance's audio lives, found from the run's settings and the LibriSpeech
    layout (nothing is rendered or downloaded); None when that corpus is not on this machine."""
    from asr_helpers.corpora import find_corpus_root
    config = RunDir(run).read_config()
    try:
        root = find_corpus_root(config.get("corpus", "synthetic"), split, config.get("data_root"),
                                config.get("synth_minutes", 60.0), config.get("seed", 0))
    except ValueError:  # a split name the corpus does not have
        return None
    if root is None:
        return None
    speaker, chapter, _ = utt_id.split("-")
    path = root / split / speaker / chapter / f"{utt_id}.flac"
    return path if path.exists() else None
