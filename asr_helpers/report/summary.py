"""Read finished runs back for the report: summaries, curves, decoders, ablations, media, examples.

Only reads ``artifacts/runs/``; it never trains or decodes, so the report renders in seconds.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from asr_helpers import paths
from asr_helpers.report.error_analysis import speaker_cer, speaker_names
from asr_helpers.decoding.decoders import DECODERS, TABLE
from asr_helpers.decoding.metrics import utterance_errors
from asr_helpers.decoding.tuned import Tuned, read_record
from asr_helpers.training.rundir import RunDir
from asr_helpers.training.tracking import read_jsonl

log = logging.getLogger(__name__)
RECOGS_COLUMNS = ["id", "reference", "hypothesis", "wer", "cer"]
DECODER_COLUMNS = {"wer": "WER", "cer": "CER", "ms_per_utterance": "ms/utt"}  # decoding.json field -> shown name


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
    from asr_helpers.models.registry import MODEL_NAMES, model_spec
    kind = config.get("model", "deepspeech2")
    section = model_spec(kind).section if kind in MODEL_NAMES else ()
    model = ", ".join([f"{kind} {config.get('model_size')}"] + [f"{name} {config[name]}" for name in section
                                                                 if name in config])
    row = {"run": run.name, "model": model, "tokenizer": config.get("tokenizer"),
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
    """``decoding.json`` as a table (empty, with a warning naming the file, when it is missing or unreadable)."""
    path = RunDir(run).decoding
    if not path.exists():
        return pd.DataFrame()
    try:
        frame = pd.read_json(path)
    except ValueError as error:
        log.warning("%s skipped: %s", path, error)
        return pd.DataFrame()
    if not {"split", "decoder", *DECODER_COLUMNS} <= set(frame.columns):
        log.warning("%s skipped: expected the fields split, decoder, %s", path, ", ".join(DECODER_COLUMNS))
        return pd.DataFrame()
    return frame


def decoder_table(decoding: pd.DataFrame) -> pd.DataFrame:
    """One row per decoder (in run order): WER, CER and milliseconds per utterance on each split, and what it is.

    Rows, not columns, per decoder: a joint CTC/attention run has seven decoders, which as
    columns times three metrics would not fit a page.
    """
    splits = list(dict.fromkeys(decoding.split))
    wide = decoding.pivot(index="decoder", columns="split", values=list(DECODER_COLUMNS))
    columns = [(metric, split) for metric in DECODER_COLUMNS for split in splits]
    table = wide[columns].round(4)
    table.columns = [f"{DECODER_COLUMNS[metric]} {split}" for metric, split in columns]
    table = table.reindex(list(dict.fromkeys(decoding.decoder)))
    return table.assign(label=[TABLE[d].label if d in TABLE else "" for d in table.index])


def runs_by_decoder(names: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """CER and WER of every decoder of the named runs per split (one row per run and decoder), and
    the names without ``decoding.json``: CTC-only against joint CTC/attention, like for like."""
    frames, missing = [], []
    for name in dict.fromkeys(names):
        decoding = decoder_results(RunDir.named(name).path)
        if decoding.empty:
            missing.append(name)
            continue
        frames.append(decoding.assign(run=name))
    if not frames:
        return pd.DataFrame(), missing
    both = pd.concat(frames)
    order = list(dict.fromkeys(both.split))
    table = both.pivot_table(index=["run", "decoder"], columns="split", values=["cer", "wer"], sort=False)
    table = table[[(metric, split) for metric in ("cer", "wer") for split in order]].round(4)
    table.columns = [f"{metric.upper()} {split}" for metric, split in table.columns]
    return table, missing


def read_recogs(path: Path) -> pd.DataFrame:
    """An icefall-style ``recogs-*.txt`` with per-utterance WER and CER (empty when the file is missing)."""
    rows = []
    if not path.exists():
        return pd.DataFrame(rows, columns=RECOGS_COLUMNS)
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split("\t")
        if len(fields) != 3 or not fields[1].startswith("ref=") or not fields[2].startswith("hyp="):
            log.warning("%s line %d skipped: expected <id>\\tref=<text>\\thyp=<text>", path, number)
            continue
        utt_id, ref, hyp = fields[0], fields[1].removeprefix("ref="), fields[2].removeprefix("hyp=")
        rows.append({"id": utt_id, "reference": ref, "hypothesis": hyp, **utterance_errors(ref, hyp)})
    return pd.DataFrame(rows, columns=RECOGS_COLUMNS)


def best_and_worst(run: Path, split: str, decoder: str = "beam", count: int = 3) -> pd.DataFrame:
    """The ``count`` best and worst utterances of a split by WER, then CER (each shown once)."""
    frame = recogs(run, split, decoder).sort_values(["wer", "cer"], ignore_index=True)
    best = min(count, (len(frame) + 1) // 2)  # each utterance shown once when there are fewer than 2 * count
    worst = min(count, len(frame) - best)
    return pd.concat([frame.head(best).assign(kind="best"), frame.tail(worst).iloc[::-1].assign(kind="worst")])


def history(run: Path) -> list[dict]:
    """The run's ``history.jsonl`` records of its latest attempt (empty when the run logged none)."""
    return latest_attempt(read_jsonl(RunDir(run).history))


def latest_attempt(records: list[dict]) -> list[dict]:
    """The records of the last attempt of a run whose history a re-run appended to.

    A record whose step falls back to the first step logged starts a fresh attempt (earlier
    records are dropped); one that falls back less far is a resume from a checkpoint, whose
    records replace those logged after that step.
    """
    kept: list[dict] = []
    for record in records:
        if kept and record["step"] < kept[-1]["step"]:
            kept = [] if record["step"] <= kept[0]["step"] else [r for r in kept if r["step"] < record["step"]]
        kept.append(record)
    return kept


def ablation_histories(names: list[str]) -> tuple[dict[str, list[dict]], dict[str, str], list[str]]:
    """Histories of the named runs that logged dev evaluations, a legend label for each
    (name, tokenizer, augmentation and ``ctc_weight`` when set), and the names not recorded."""
    found, labels = {}, {}
    for name in dict.fromkeys(names):
        records = history(RunDir.named(name).path)
        if any(r["kind"].startswith("eval/") for r in records):
            found[name] = records
            config = RunDir.named(name).read_config()
            settings = {k: config[k] for k in ("tokenizer", "augment", "ctc_weight") if config.get(k) is not None}
            labels[name] = f"{name} ({', '.join(f'{k}={v}' for k, v in settings.items())})"
    return found, labels, [n for n in dict.fromkeys(names) if n not in found]


def latest_samples(run: Path) -> pd.DataFrame:
    """The last logged sample table of each dev split: target, prediction, CER, WER."""
    tables = {}
    for table in read_jsonl(RunDir(run).samples):
        tables[table["name"]] = table
    frames = [pd.DataFrame(t["rows"]).assign(split=name.split("/")[-1], step=t["step"]) for name, t in tables.items()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _latest(files: list[Path]) -> Path | None:
    return files[-1] if files else None


def spectrogram_images(run: Path) -> dict[str, Path]:
    """Caption -> PNG of the last logged train spectrogram, the same after SpecAugment, and each dev split's."""
    files = RunDir(run)
    found = {"train utterance (features before SpecAugment)": _latest(files.media_files("train/spectrogram", "png")),
             "the same train utterance after augmentation (SpecAugment masks)":
                 _latest(files.media_files("train/spectrogram_augmented", "png"))}
    for path in files.media_files("eval/*/spectrogram", "png"):
        found[f"dev utterance ({path.stem.split('_')[1]})"] = path
    return {caption: path for caption, path in found.items() if path is not None}


def augmented_audio(run: Path) -> Path | None:
    """The last logged train audio after wave augmentation."""
    return _latest(RunDir(run).media_files("train/augmented_audio", "wav"))


def attention_images(run: Path) -> dict[str, Path]:
    """Caption -> the last PNG of each logged attention map (none for a CTC-only run)."""
    latest = {}
    for path in RunDir(run).media_files("*attention*", "png"):
        latest[path.stem.rsplit("-", 1)[0]] = path
    return latest


def tuned_record(run: Path) -> dict[str, Tuned]:
    """The weights notebook 04 tuned for the run's decoders (``decoding.tuned``); empty before 04 has run, and
    with a logged warning naming the file when the record is unreadable."""
    try:
        return read_record(run)
    except ValueError as error:
        log.warning("tuned weights skipped: %s", error)
        return {}


def lm_grid(run: Path) -> Tuned | None:
    """The lm decoder's alpha x beta grid notebook 04 tuned, or None when it has not run."""
    return tuned_record(run).get("lm")


def tuned_weights_line(run: Path) -> str:
    """What notebook 04 chose for each tuned decoder (its weights, the dev score, how many points it tried;
    every point when the grid tried one weight); empty before 04 has run."""
    return " ".join(_choice(tuned) for tuned in tuned_record(run).values())


def _choice(tuned: Tuned) -> str:
    weights = ", ".join(f"{name} **{value:g}**" for name, value in tuned.weights.items())
    metric = tuned.metric.upper()
    if len(tuned.weights) == 1:
        (name,) = tuned.weights
        tried = ", ".join(f"{p['weights'][name]:g}: {100 * p['score']:.1f} %" for p in tuned.grid)
        return f"**{tuned.decoder}** used {weights}, the lowest dev {metric} ({tried})."
    return (f"**{tuned.decoder}** used {weights}, the lowest dev {metric} ({100 * tuned.score:.1f} %) "
            f"of {len(tuned.grid)} tried.")


def missing_decoders(run: Path, decoding: pd.DataFrame) -> list[str]:
    """Decoders the run's model offers (with a word LM) that ``decoding.json`` has no result for."""
    from asr_helpers.models.registry import offered_decoders
    decoded = set(decoding.decoder) if not decoding.empty else set()
    return [d for d in offered_decoders(RunDir(run).read_config().get("model", "deepspeech2")) if d not in decoded]


def analysed_decoder(decoding: pd.DataFrame) -> tuple[str, str] | None:
    """The (split, decoder) the error analysis looks at: the last split decoded, by its best-informed decoder."""
    if decoding.empty:
        return None
    split = decoding.split.iloc[-1]
    decoders = set(decoding[decoding.split == split].decoder)
    ctc_first = [d for d in reversed(DECODERS) if TABLE[d].head == "ctc"]  # lm, beam, greedy: most informed first
    return split, next(d for d in (*ctc_first, *sorted(decoders)) if d in decoders)


def recogs(run: Path, split: str, decoder: str) -> pd.DataFrame:
    """The per-utterance results of one split and decoder (empty when not written)."""
    return read_recogs(RunDir(run).recogs(split, decoder))


def corpus_root(run: Path, split: str) -> Path | None:
    """The LibriSpeech root holding ``split`` for the run's corpus, or None when it is not on this machine."""
    from asr_helpers.data.corpora import find_corpus_root
    config = RunDir(run).read_config()
    try:
        return find_corpus_root(config.get("corpus", "synthetic"), split, config.get("data_root"),
                                config.get("synth_minutes", 60.0), config.get("seed", 0))
    except ValueError:  # a split name the corpus does not have
        return None


def speaker_table(run: Path, split: str, frame: pd.DataFrame) -> pd.DataFrame:
    """CER per speaker of ``frame``, named from the corpus' ``SPEAKERS.TXT`` when the corpus is on this machine."""
    return speaker_cer(frame, speaker_names(corpus_root(run, split)))


def audio_path(run: Path, split: str, utt_id: str) -> Path | None:
    """Where an utterance's audio lives, found from the run's settings and the LibriSpeech
    layout (nothing is rendered or downloaded); None when that corpus is not on this machine."""
    root = corpus_root(run, split)
    if root is None:
        return None
    speaker, chapter, _ = utt_id.split("-")
    path = root / split / speaker / chapter / f"{utt_id}.flac"
    return path if path.exists() else None
