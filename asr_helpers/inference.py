"""Transcribe audio files with a checkpoint: the grader's entry point.

Reads any file soundfile understands (wav, flac, ogg; any rate; mono or stereo), writes one
``<name>.txt`` per input, and reports files it could not read instead of stopping on them.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from asr_helpers.audio import AudioError, load_audio
from asr_helpers.checkpoint import load_model
from asr_helpers.decoding import beam_decode, greedy_decode
from asr_helpers.features import LogMelFeatures

log = logging.getLogger(__name__)
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif"}
DECODERS = ("greedy", "beam", "lm")


@dataclass
class TranscribeReport:
    written: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    output: Path | None = None

    def summary(self) -> str:
        lines = [f"wrote {self.written} transcripts to {self.output}"]
        lines += [f"skipped {name}: {why}" for name, why in self.skipped.items()]
        return "\n".join(lines)


def audio_files(inputs: list[Path]) -> list[Path]:
    """Audio files named directly or found (recursively) in folders, in a stable order."""
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found += sorted(p for p in item.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
        elif item.exists():
            found.append(item)
        else:
            raise FileNotFoundError(f"input {item} does not exist")
    return found


def _lm_decoder(checkpoint: Path, tokenizer, lm_path: Path | None, beam_width: int):
    from asr_helpers.decoding import LMDecoder
    from asr_helpers.lm import load_lm_params
    try:
        params = load_lm_params(checkpoint)
        alpha, beta = params.alpha, params.beta
    except FileNotFoundError:
        alpha, beta = 0.5, 1.0
        print(f"no tuned lm_params.json next to {checkpoint}; using alpha={alpha}, beta={beta}")
    if lm_path is None:
        raise ValueError("--decoder lm needs --lm PATH (a KenLM arpa/binary built by `python -m asr_helpers lm ...`)")
    return LMDecoder(tokenizer.labels, lm_path, alpha=alpha, beta=beta, beam_width=beam_width)


@torch.no_grad()
def transcribe(checkpoint: Path, inputs: list[Path], output: Path, decoder: str = "beam",
               lm_path: Path | None = None, beam_width: int = 32, device: str | None = None) -> TranscribeReport:
    """Write ``<stem>.txt`` for every readable audio file under ``inputs``."""
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {DECODERS}, not {decoder!r}")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, tokenizer, _ = load_model(checkpoint, device)
    features = LogMelFeatures.for_model(model.config).to(device)
    lm_decoder = _lm_decoder(Path(checkpoint), tokenizer, lm_path, beam_width) if decoder == "lm" else None
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    report = TranscribeReport(output=output)
    for path in audio_files(inputs):
        try:
            wave = load_audio(path)
        except AudioError as error:
            report.skipped[path.name] = str(error)
            log.warning("skip %s", error)
            continue
        feats, lengths = features(wave[None].to(device), torch.tensor([len(wave)], device=device))
        log_probs, out_lengths = model(feats, lengths)
        if lm_decoder is not None:
            text = lm_decoder.decode(log_probs[0, : out_lengths[0]].cpu().numpy())
        elif decoder == "beam":
            text = beam_decode(log_probs.cpu(), out_lengths.cpu(), tokenizer, beam_width)[0]
        else:
            text = greedy_decode(log_probs.cpu(), out_lengths.cpu(), tokenizer)[0]
        (output / f"{path.stem}.txt").write_text(text + "\n")
        report.written += 1
    if lm_decoder is not None:
        lm_decoder.close()
    return report
