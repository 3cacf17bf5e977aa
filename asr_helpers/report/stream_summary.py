"""The report's Streaming section: the record notebook 04 wrote for a streaming run (``streaming.json``) as
tables, and what streaming costs in accuracy against a bidirectional run decoded the same way."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from asr_helpers.report.summary import runs_by_decoder
from asr_helpers.training.rundir import RunDir

log = logging.getLogger(__name__)
RECORD_FIELDS = {"id", "reference", "seconds", "partial_chunk_ms", "partials", "greedy", "lm", "latency",
                 "lookahead_frames", "frame_ms", "waits_beyond_chunk_ms"}
LATENCY_COLUMNS = {"chunk_ms": "chunk (ms)", "algorithmic_latency_ms": "algorithmic latency (ms)",
                   "rtf_mean": "RTF mean", "rtf_p95": "RTF p95", "compute_ms_per_chunk": "compute per chunk (ms)",
                   "threads": "threads"}
LATENCY_FORMAT = {"chunk (ms)": "{:.0f}", "algorithmic latency (ms)": "{:.0f}", "RTF mean": "{:.3f}",
                  "RTF p95": "{:.3f}", "compute per chunk (ms)": "{:.2f}"}  # how 05 shows the latency table


def stream_record(run: Path) -> dict | None:
    """The run's ``streaming.json``; ``None`` when it is missing, or (with a warning naming it) unreadable."""
    path = RunDir(run).streaming
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        log.warning("%s skipped: %s", path, error)
        return None
    if not isinstance(record, dict) or not RECORD_FIELDS <= set(record):
        log.warning("%s skipped: expected the fields %s", path, ", ".join(sorted(RECORD_FIELDS)))
        return None
    return record


def streams(run: Path) -> bool:
    """Whether the run's model is the streaming DeepSpeech2."""
    return RunDir(run).read_config().get("model") == "ds2_stream"


def missing_line(run: Path) -> str:
    """Why a run has no Streaming section, and what to run."""
    config = RunDir(run).read_config()
    if not streams(run):
        return (f"No streaming model in this run ({config.get('model', 'deepspeech2')} reads the whole utterance); "
                "the `stream` profile trains one that streams (`./run_all.sh stream`).")
    if config.get("feature_norm") == "utterance":
        return ("No streaming record: this ds2_stream run normalises each utterance with its own statistics "
                "(`feature_norm: utterance`, the ablation), so it cannot stream; its decoders are above.")
    return (f"no `{RunDir(run).streaming.name}` in `{run}`: run `notebooks/04_lm_decoding.ipynb` for this run "
            "(its \"Speak to it\" section records it).")


def latency_table(record: dict) -> pd.DataFrame:
    """One row per chunk size: algorithmic latency, compute per chunk as a real-time factor, threads used."""
    frame = pd.DataFrame(record["latency"])
    return frame[[c for c in LATENCY_COLUMNS if c in frame]].rename(columns=LATENCY_COLUMNS)


def latency_line(record: dict) -> str:
    """What the algorithmic latency is made of, with this model's numbers."""
    lookahead_ms = record["lookahead_frames"] * record["frame_ms"]
    window_ms = record["waits_beyond_chunk_ms"] - lookahead_ms
    return (f"Algorithmic latency = the chunk (a sample waits for its chunk to be sent) + the look-ahead "
            f"({record['lookahead_frames']} output frames of {record['frame_ms']:g} ms = {lookahead_ms:g} ms) + "
            f"the rest of the STFT window ({window_ms:g} ms). RTF = seconds of compute per second of audio, "
            f"per chunk, over {record['seconds']:g} s of audio repeated to about 20 s; below 1 keeps up.")


def accuracy_cost(offline: str, streaming: str) -> tuple[pd.DataFrame, list[str]]:
    """CER (%) of each decoder both runs have, on each split both decoded, side by side, and the streaming run's
    cost in points (CER difference; positive: streaming is worse); plus the runs without ``decoding.json``."""
    table, missing = runs_by_decoder([offline, streaming])
    if missing or table.empty:
        return pd.DataFrame(), missing
    before, after = table.loc[offline], table.loc[streaming]
    decoders = [d for d in before.index if d in after.index]
    columns = {}
    for column in [c for c in table.columns if c.startswith("CER ")]:
        split, old, new = column.removeprefix("CER "), before.loc[decoders, column], after.loc[decoders, column]
        if old.isna().all() or new.isna().all():  # a split only one run decoded
            continue
        columns[f"{split} CER % {offline}"] = (100 * old).round(1)
        columns[f"{split} CER % {streaming}"] = (100 * new).round(1)
        columns[f"{split} cost (points)"] = (100 * (new - old)).round(1)
    return pd.DataFrame(columns).rename_axis("decoder"), []
