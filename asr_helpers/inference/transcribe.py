"""Transcribe audio files with a checkpoint: the grader's entry point.

Reads any file soundfile understands (wav, flac, ogg; any rate; mono or multi-channel) and
writes one transcript per input. One bad file never stops the run: it is named in the summary
with the reason, and the rest go on. What counts as readable:
- unreadable, empty (0 samples) and NaN/inf-holding files are skipped with the reason (no
  transcript of corrupt samples can be trusted);
- any file with at least one sample is transcribed: audio shorter than the STFT window is
  padded with silence, so a 1-sample file gets a (probably empty) transcript;
- a batch that fails in the model or decoder is retried file by file, so only the file that
  fails is reported.
Files are sorted by length and batched by padded audio seconds, as in training.
"""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import soundfile
import torch
from torch.nn.utils.rnn import pad_sequence
from tqdm.auto import tqdm

from asr_helpers.data.audio import AudioError, load_audio
from asr_helpers.training.checkpoint import load_recognizer
from asr_helpers.decoding.ctc import build_decoder
from asr_helpers.decoding.decoders import spec
from asr_helpers.decoding.lm_engines import DEFAULT_ENGINE, build_lm_decoder
from asr_helpers.decoding.tuned import TUNED_FILE

log = logging.getLogger(__name__)
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif"}


@dataclass
class AudioInput:
    """One file to transcribe: where it is, how the summary names it, where its transcript goes."""

    path: Path
    label: str
    relative: Path
    transcript: Path = Path()
    seconds: float = 0.0


@dataclass
class TranscribeReport:
    written: list[tuple[str, Path]] = field(default_factory=list)   # (input label, transcript path)
    skipped: list[tuple[str, str]] = field(default_factory=list)    # (input label, reason)
    output: Path | None = None
    mirrored: bool = False

    def skip(self, label: str, reason: str) -> None:
        self.skipped.append((label, reason))
        log.info("skip %s: %s", label, reason)

    def summary(self) -> str:
        lines = [f"wrote {len(self.written)} transcripts to {self.output}"]
        if self.mirrored:
            lines.append("file names repeat, so transcripts mirror the input folders (<folder>/<stem>.txt)")
            renamed = [f"  {label} -> {path}" for label, path in self.written if Path(label).with_suffix(".txt") != path]
            if renamed:
                lines += ["renamed to keep every transcript:", *renamed]
        lines += [f"skipped {label}: {why}" for label, why in self.skipped]
        return "\n".join(lines)


def find_audio(inputs: Sequence[Path], report: TranscribeReport) -> list[AudioInput]:
    """Audio files named directly or found (recursively) in folders, in a stable order.

    Files inside a folder are labelled by their path relative to it; a missing input is
    recorded in ``report`` and the others go on.
    """
    found: list[AudioInput] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files = sorted(p for p in item.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
            found += [AudioInput(p, str(p.relative_to(item)), p.relative_to(item)) for p in files]
        elif item.is_file():
            found.append(AudioInput(item, str(item), Path(item.name)))
        else:
            report.skip(str(item), "no such file or folder")
    return found


def transcript_names(relatives: Sequence[Path]) -> tuple[list[Path], bool]:
    """Transcript path per input (relative to the output folder), and whether folders are mirrored.

    Unique stems give flat ``<stem>.txt`` (LibriSpeech ids, as the course's scoring expects).
    Otherwise the input folders are mirrored, files sharing a stem in one folder keep their
    extension (``jfk.wav.txt``, ``jfk.ogg.txt``), and any clash left gets ``-2``, ``-3``.
    """
    if len(set(r.stem for r in relatives)) == len(relatives):
        return [Path(f"{r.stem}.txt") for r in relatives], False
    per_folder = Counter(r.parent / r.stem for r in relatives)
    names = [r.parent / (f"{r.name}.txt" if per_folder[r.parent / r.stem] > 1 else f"{r.stem}.txt")
             for r in relatives]
    taken, unique, unique_set = set(names), [], set()
    for name in names:
        if name in unique_set:
            number = 2
            while (candidate := name.with_name(f"{name.stem}-{number}.txt")) in taken:
                number += 1
            taken.add(candidate)
            name = candidate
        unique.append(name)
        unique_set.add(name)
    return unique, True


def length_batches(items: Sequence[AudioInput], batch_seconds: float, max_batch_size: int) -> Iterator[list[AudioInput]]:
    """Items sorted by length, grouped so each batch's padded audio stays within ``batch_seconds``."""
    batch: list[AudioInput] = []
    for item in sorted(items, key=lambda i: i.seconds):
        if batch and ((len(batch) + 1) * item.seconds > batch_seconds or len(batch) == max_batch_size):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


class Transcriber:
    """A checkpoint's model, features and decoder, turning batches of waves into texts.

    ``ctc_weight`` (None: the one 04 tuned) is the CTC prefix score's weight in the search of ``decoder``
    (``joint`` or ``joint+lm``), not the loss weight the model trained with. ``lm_engine`` runs the ``lm``
    decoder (``decoding.lm_engines``: pyctcdecode or flashlight) with the same tuned weights.
    """

    def __init__(self, checkpoint: Path, decoder: str, lm_path: Path | None, beam_width: int, pool_size: int,
                 device: str | None = None, attention_beam: int = 8, ctc_weight: float | None = None,
                 lm_engine: str = DEFAULT_ENGINE):
        found = spec(decoder)  # an unknown name: one line listing the known ones
        if found.needs_lm and lm_path is None:
            raise ValueError(f"--decoder {decoder} needs --lm PATH (a KenLM arpa/binary built by `python -m asr_helpers lm ...`)")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.recognizer, self.tokenizer, _ = load_recognizer(checkpoint, self.device)
        self.features = self.recognizer.features
        self.min_samples = self.features.mel.n_fft  # a centred STFT reflects n_fft/2 samples each side
        self.lm_decoder = (_lm_decoder(Path(checkpoint), self.tokenizer, lm_path, beam_width, lm_engine)
                           if decoder == "lm" else None)
        self.attention = None
        if found.head == "attention":
            self.attention = _attention_search(Path(checkpoint), self.recognizer, decoder, attention_beam, ctc_weight,
                                               lm_path if found.needs_lm else None)
        self.decoder = build_decoder(decoder, self.tokenizer, beam_width=beam_width, lm_decoder=self.lm_decoder,
                                     pool_size=pool_size, attention=self.attention)

    @torch.no_grad()
    def texts(self, waves: Sequence[torch.Tensor]) -> list[str]:
        """Features per utterance (so a neighbour's padding never changes a transcript), one model batch."""
        feats, frame_lengths = [], []
        for wave in waves:
            wave = torch.nn.functional.pad(wave, (0, max(0, self.min_samples - len(wave)))).to(self.device)
            one, length = self.features(wave[None], torch.tensor([len(wave)], device=self.device))
            feats.append(one[0].T)
            frame_lengths.append(length)
        batch = pad_sequence(feats, batch_first=True).transpose(1, 2)
        return self.decoder.decode(self.recognizer.encodings(batch, torch.cat(frame_lengths)))

    def close(self) -> None:
        if self.lm_decoder is not None:
            self.lm_decoder.close()


def _tuned_alpha_beta(checkpoint: Path) -> tuple[float, float]:
    """The lm decoder's alpha and beta from the record 04 wrote for ``checkpoint``, else 0.5 and 1.0."""
    from asr_helpers.training.checkpoint import tuned_record
    tuned = tuned_record(checkpoint).get("lm")
    if tuned is None:
        _say_untuned(checkpoint, "lm", {"alpha": 0.5, "beta": 1.0})
        return 0.5, 1.0
    return tuned.weights["alpha"], tuned.weights["beta"]


def _say_untuned(checkpoint: Path, decoder: str, defaults: dict[str, float]) -> None:
    """One line: ``decoder`` has no weights tuned in 04 for ``checkpoint`` and decodes with ``defaults``."""
    used = " ".join(f"{name}={value:g}" for name, value in defaults.items())
    print(f"no tuned weights of the {decoder} decoder in {TUNED_FILE} next to {checkpoint} (or inside it); "
          f"it decodes with {used}")


def _lm_decoder(checkpoint: Path, tokenizer, lm_path: Path, beam_width: int, engine: str):
    alpha, beta = _tuned_alpha_beta(checkpoint)
    return build_lm_decoder(engine, tokenizer.labels, lm_path, alpha=alpha, beta=beta, beam_width=beam_width)


def _attention_search(checkpoint: Path, recognizer, decoder: str, beam: int, ctc_weight: float | None,
                      lm_path: Path | None):
    """The attention decoders of a joint checkpoint with the weights 04 tuned (``ctc_weight``, when given,
    replaces the joint search's and the LM fusion's); with ``lm_path``, the word LM fused into the search."""
    from asr_helpers.decoding.attention_decoding import DEFAULT_WEIGHTS, search_settings
    from asr_helpers.training.checkpoint import tuned_record
    if ctc_weight is not None and not 0.0 <= ctc_weight <= 1.0:
        raise ValueError(f"--ctc-weight must lie in [0, 1], not {ctc_weight}")
    record = tuned_record(checkpoint)
    search = recognizer.attention_search(settings=search_settings(beam, record, ctc_weight))
    if search is None:
        raise ValueError(f"{checkpoint} has no attention decoder (a DeepSpeech2 run): use --decoder greedy, beam or lm")
    if spec(decoder).tuned and decoder not in record:
        _say_untuned(checkpoint, decoder, DEFAULT_WEIGHTS[decoder])
    return search if lm_path is None else search.with_lm(lm_path)


def _measure(items: list[AudioInput], report: TranscribeReport) -> list[AudioInput]:
    """Items whose header gives a length (for sorting); the others are reported as unreadable."""
    measured = []
    for item in items:
        try:
            info = soundfile.info(str(item.path))
            item.seconds = info.frames / info.samplerate
            measured.append(item)
        except Exception as error:  # libsndfile raises several types on garbage; each is one skipped file
            report.skip(item.label, f"unreadable audio ({error})")
    return measured


def _load(item: AudioInput, report: TranscribeReport) -> torch.Tensor | None:
    try:
        return load_audio(item.path)
    except AudioError as error:
        report.skip(item.label, error.reason)
    except Exception as error:  # an odd file must not stop the others
        report.skip(item.label, f"unreadable audio ({type(error).__name__}: {error})")
    return None


def _write(item: AudioInput, text: str, output: Path, report: TranscribeReport) -> None:
    try:
        (output / item.transcript).parent.mkdir(parents=True, exist_ok=True)
        (output / item.transcript).write_text(text + "\n", encoding="utf-8")
        report.written.append((item.label, item.transcript))
    except OSError as error:
        report.skip(item.label, f"could not write {item.transcript} ({error})")


def transcribe(checkpoint: Path, inputs: Sequence[Path], output: Path, decoder: str = "beam",
               lm_path: Path | None = None, beam_width: int = 32, device: str | None = None,
               batch_seconds: float = 120.0, max_batch_size: int = 32, pool_size: int = 1,
               attention_beam: int = 8, ctc_weight: float | None = None,
               lm_engine: str = DEFAULT_ENGINE) -> TranscribeReport:
    """Write a transcript for every readable audio file under ``inputs``; report the others (``ctc_weight``
    None: the joint search's weight tuned in 04, as for the LM weights; ``lm_engine``: see ``Transcriber``)."""
    output = Path(output)
    report = TranscribeReport(output=output)
    transcriber = Transcriber(Path(checkpoint), decoder, lm_path, beam_width, pool_size, device, attention_beam,
                              ctc_weight, lm_engine)
    items = find_audio(inputs, report)
    names, report.mirrored = transcript_names([i.relative for i in items])
    for item, name in zip(items, names):
        item.transcript = name
    output.mkdir(parents=True, exist_ok=True)
    items = _measure(items, report)
    try:
        with tqdm(total=len(items), unit="file", desc="transcribe", disable=None) as progress:
            for batch in length_batches(items, batch_seconds, max_batch_size):
                loaded = [(item, wave) for item in batch if (wave := _load(item, report)) is not None]
                for item, text in _transcribe_batch(transcriber, loaded, report):
                    _write(item, text, output, report)
                progress.update(len(batch))
    finally:
        transcriber.close()
    return report


def _transcribe_batch(transcriber: Transcriber, loaded: list[tuple[AudioInput, torch.Tensor]],
                      report: TranscribeReport) -> list[tuple[AudioInput, str]]:
    """(item, text) for the batch; if the batch fails, each file is retried alone and only failures are reported."""
    if not loaded:
        return []
    try:
        return list(zip([item for item, _ in loaded], transcriber.texts([wave for _, wave in loaded])))
    except Exception as error:  # the model or decoder failed on something in this batch
        if len(loaded) == 1:
            report.skip(loaded[0][0].label, f"model error ({type(error).__name__}: {error})")
            return []
        return [pair for one in loaded for pair in _transcribe_batch(transcriber, [one], report)]
