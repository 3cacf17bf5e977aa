"""``python -m asr_helpers bench transcribe``: files per second of the ``transcribe`` command, per decoder.

Each decoder (and, for ``lm``, each engine of ``decoding.lm_engines``) is timed over the whole
command, run as its own process: Python and torch start-up, model and LM loading, reading,
features, model, decoding, writing; what a grader waits for. The table gives files per second,
the real-time factor (wall seconds per audio second) and the speed relative to greedy measured
in the same run. ``compare`` names a second checkout: its code (``PYTHONPATH=REF``) transcribes
the same files in the same run, each decoder right after this checkout's, side by side.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile

from asr_helpers import paths
from asr_helpers.decoding.decoders import spec
from asr_helpers.decoding.lm_engines import DEFAULT_ENGINE

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Row:
    """One timed configuration: a decoder and, for an LM decoder on the CTC head, its engine."""
    decoder: str
    engine: str = ""

    @property
    def name(self) -> str:
        return f"{self.decoder} ({self.engine})" if self.engine else self.decoder


def timed_rows(decoders: Sequence[str], lm_engines: Sequence[str]) -> list[Row]:
    """Greedy first (every ratio is to it), then each decoder; ``lm`` once per engine."""
    rows = [Row("greedy")]
    for decoder in decoders:
        spec(decoder)  # an unknown name: one line listing the known ones
        if decoder == "lm":
            rows += [Row("lm", engine) for engine in lm_engines]
        elif decoder != "greedy":
            rows.append(Row(decoder))
    return rows


LIBRISPEECH_TEST_SECONDS = (5.8, 0.7, 1.3, 35.0)  # test-clean: log-normal median, sigma, shortest, longest


def test_utterances(synth_minutes: float) -> list:
    """The offline corpus's test-clean and test-other utterances (rendered on first use)."""
    from asr_helpers.data.corpora import prepare_corpus
    from asr_helpers.data.manifest import load_splits
    splits = ["test-clean", "test-other"]
    return load_splits(prepare_corpus("synthetic", splits, synth_minutes=synth_minutes), splits)


def corpus_files(folder: Path, utterances: int, synth_minutes: float) -> Path:
    """``utterances`` copies of the offline corpus's test-clean and test-other files, in ``folder``
    (a small corpus repeats them, so lengths are those of real test audio)."""
    pool = test_utterances(synth_minutes)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(utterances):
        utterance = pool[i % len(pool)]
        shutil.copy(utterance.path, folder / f"{i:04d}-{utterance.id}.flac")
    return folder


def librispeech_lengths(utterances: int, seed: int = 0) -> np.ndarray:
    """``utterances`` lengths in seconds drawn like LibriSpeech test-clean's: log-normal, mean ~7.4 s, 1.3-35 s."""
    median, sigma, shortest, longest = LIBRISPEECH_TEST_SECONDS
    rng = np.random.default_rng(seed)
    return np.clip(median * np.exp(sigma * rng.standard_normal(utterances)), shortest, longest)


def librispeech_length_files(folder: Path, utterances: int, synth_minutes: float, seed: int = 0) -> Path:
    """``utterances`` files of the lengths ``librispeech_lengths`` draws: the offline corpus's short test
    utterances joined in turn, with 0.2 s of silence between, cut at the drawn length (the last word
    may be cut: these files time the decoders, they are not scored)."""
    from asr_helpers.data.audio import load_audio
    pool = test_utterances(synth_minutes)
    waves = [load_audio(u.path).numpy() for u in pool]
    gap, next_wave = np.zeros(SAMPLE_RATE // 5, np.float32), 0
    folder.mkdir(parents=True, exist_ok=True)
    for i, seconds in enumerate(librispeech_lengths(utterances, seed)):
        target, parts, length = round(seconds * SAMPLE_RATE), [], 0
        while length < target:
            wave = waves[next_wave % len(waves)]
            parts += [wave, gap]
            length, next_wave = length + len(wave) + len(gap), next_wave + 1
        soundfile.write(folder / f"{i:04d}.flac", np.concatenate(parts)[:target], SAMPLE_RATE)
    return folder


def audio_seconds(folder: Path) -> tuple[int, float]:
    """How many audio files ``transcribe`` would read under ``folder``, and their total length."""
    from asr_helpers.inference.transcribe import AUDIO_SUFFIXES
    count, seconds = 0, 0.0
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in AUDIO_SUFFIXES and path.is_file():
            try:
                info = soundfile.info(str(path))
            except Exception:  # transcribe reports it; it adds no audio here
                continue
            count, seconds = count + 1, seconds + info.frames / info.samplerate
    return count, seconds


def run_transcribe(checkout: Path, row: Row, command: list[str], output: Path) -> dict:
    """Run one ``transcribe`` with ``checkout``'s code; its wall seconds and transcripts, or why it failed."""
    extra = ["--lm-engine", row.engine] if row.engine and row.engine != DEFAULT_ENGINE else []
    env = dict(os.environ, PYTHONPATH=str(checkout))
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "asr_helpers", "transcribe", *command, "--output", str(output),
                           "--decoder", row.decoder, *extra], cwd=checkout, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return {"error": lines[-1] if lines else f"exit status {done.returncode}"}
    return {"seconds": seconds, "files": sum(1 for _ in output.rglob("*.txt"))}


def bench_transcribe(checkpoint: Path, utterances: int = 500, lm_path: Path | None = None,
                     decoders: Sequence[str] = ("greedy", "beam", "lm"), *, input_dir: Path | None = None,
                     compare: Path | None = None, lm_engines: Sequence[str] = (DEFAULT_ENGINE,),
                     synth_minutes: float = 20.0, pool_size: int = 2, beam_width: int = 32,
                     librispeech_lengths: bool = False) -> dict:
    """Time ``transcribe`` per decoder on ``input_dir`` (else ``utterances`` rendered test files, of
    LibriSpeech test-clean's lengths with ``librispeech_lengths``); the result holds every number and
    ``table``, the printed comparison."""
    if checkpoint is None or not Path(checkpoint).is_file():
        raise ValueError(f"bench transcribe needs --checkpoint PATH (a model to time), got {checkpoint}")
    if input_dir is not None and not Path(input_dir).is_dir():
        raise ValueError(f"--input {input_dir} is not a folder")
    if compare is not None and not (Path(compare) / "asr_helpers").is_dir():
        raise ValueError(f"--compare {compare} is not a checkout of this project (no asr_helpers/ in it)")
    rows = timed_rows(decoders, lm_engines)
    sides = {"this": paths.REPO_ROOT} | ({"ref": Path(compare).resolve()} if compare else {})
    with tempfile.TemporaryDirectory() as tmp:
        make_files = librispeech_length_files if librispeech_lengths else corpus_files
        folder = Path(input_dir) if input_dir else make_files(Path(tmp) / "in", utterances, synth_minutes)
        files, seconds = audio_seconds(folder)
        if not files:
            raise ValueError(f"no audio files in {folder}")
        lm = None
        if any(spec(r.decoder).needs_lm for r in rows):
            from asr_helpers.decoding.lm import corpus_language_model
            lm = lm_path or corpus_language_model("synthetic")
        command = ["--checkpoint", str(Path(checkpoint).resolve()), "--input", str(folder.resolve()),
                   "--beam-width", str(beam_width), "--pool-size", str(pool_size)]
        timings: dict[str, dict[str, dict]] = {side: {} for side in sides}
        for row in rows:
            with_lm = command + (["--lm", str(Path(lm).resolve())] if spec(row.decoder).needs_lm else [])
            for side, checkout in sides.items():
                output = Path(tmp) / f"out-{side}-{row.decoder}-{row.engine}"
                timings[side][row.name] = run_transcribe(checkout, row, with_lm, output)
    result = {"benchmark": "transcribe", "files": files, "audio_seconds": round(seconds, 1),
              "mean_file_seconds": round(seconds / files, 2),
              "pool_size": pool_size, "beam_width": beam_width,
              "compare": str(sides["ref"]) if compare else None}
    for side, measured in timings.items():
        result[side] = with_rates(measured, seconds)
    result["table"] = table(result, [r.name for r in rows], list(sides))
    return result


def with_rates(measured: dict[str, dict], audio: float) -> dict[str, dict]:
    """Files/s, real-time factor and speed relative to greedy for each timed row (errors kept as they are)."""
    rated = {}
    for name, timing in measured.items():
        if "error" in timing:
            rated[name] = timing
            continue
        rated[name] = dict(timing, files_per_sec=timing["files"] / timing["seconds"], rtf=timing["seconds"] / audio)
    greedy = rated.get("greedy", {}).get("files_per_sec")
    for timing in rated.values():
        if "files_per_sec" in timing and greedy:
            timing["vs_greedy"] = timing["files_per_sec"] / greedy
    return rated


def table(result: dict, names: Sequence[str], sides: Sequence[str]) -> str:
    """The comparison as a Markdown table: per side, files/s, real-time factor and the ratio to greedy."""
    def cells(timing: dict) -> list[str]:
        if "error" in timing:
            return ["failed: " + timing["error"][:90], "", ""]
        ratio = f"{timing['vs_greedy']:.2f}x" if "vs_greedy" in timing else "?"
        return [f"{timing['files_per_sec']:.1f}", f"{timing['rtf']:.3f}", ratio]

    labels = {"this": "", "ref": " (REF)"}
    header = ["decoder"] + [f"{what}{labels[side]}" for side in sides for what in ("files/s", "RTF", "vs greedy")]
    lines = [f"{result['files']} files, {result['audio_seconds']} s of audio; whole `transcribe` command per cell; "
             f"beam width {result['beam_width']}, LM pool of {result['pool_size']}"
             + (f"; compare: {result['compare']}" if result["compare"] else ""),
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in names:
        lines.append("| " + " | ".join([name] + [c for side in sides for c in cells(result[side][name])]) + " |")
    return "\n".join(lines)
