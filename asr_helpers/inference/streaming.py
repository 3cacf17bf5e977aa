"""Streaming inference: audio chunks of any size in, the partial greedy transcript out after each chunk.

A ``Streamer`` holds a loaded ``ds2_stream`` recognizer and one stream's state: the samples of the
STFT window not yet complete, the model's ``StreamState`` (convolution caches, recurrent states,
frames awaiting their look-ahead) and the greedy transcript so far, extended only by the frames
each chunk makes final. ``finish`` flushes the last partial frames (zero padding, as the full
utterance's forward pads), rescores the whole stream's log-probs with the LM decoder when there
is one, returns everything and resets the streamer for the next stream. Bad chunks are one-line
``ValueError``s that leave the stream as it was.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from asr_helpers.decoding.ctc import LMDecoder
from asr_helpers.models.ds2_stream import StreamingRecognizer
from asr_helpers.training.checkpoint import load_recognizer, tuned_record

LM_DEFAULTS = {"alpha": 0.5, "beta": 1.0}  # the lm decoder's weights when 04 tuned none (as transcribe)
TRIM_EVERY_SECONDS = 10.0  # audio between two returns of the freed heap to the system (see release_free_heap)


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    """glibc's ``malloc_trim``, or ``None`` where the C library has none (macOS, musl, Windows)."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def release_free_heap() -> bool:
    """Hand the heap's free pages back to the system; ``False`` where the C library cannot.

    Each chunk allocates and frees tensors of a few sizes; glibc keeps the freed heap pages, so
    without this a 10-minute stream's resident memory grows by ~30 MB a minute although nothing it
    keeps grows that fast (PERFORMANCE.md, streaming memory). Trimming every ``TRIM_EVERY_SECONDS``
    of audio keeps it flat at no measurable cost.
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


@dataclass
class StreamResult:
    text: str                      # greedy transcript of everything fed
    lm_text: str | None            # LM-rescored transcript (None without an LM decoder)
    log_mel: np.ndarray            # [n_mels, frames] the features the model saw
    log_probs: np.ndarray          # [frames', vocab] per-frame CTC output
    seconds: float                 # audio seconds fed


class Streamer:
    """One stream at a time through a ``ds2_stream`` recognizer; ``lm_decoder`` rescores at ``finish``."""

    SAMPLE_RATE = 16000

    def __init__(self, recognizer, lm_decoder: LMDecoder | None = None):
        if not isinstance(recognizer, StreamingRecognizer):
            raise ValueError(f"a {type(recognizer).__name__} model cannot stream (its convolutions or recurrent "
                             "layers read the future): train one with model: ds2_stream")
        if not recognizer.can_stream:
            raise ValueError("this ds2_stream model normalises each utterance with its own statistics "
                             "(feature_norm: utterance, an ablation): it cannot stream; decode it whole with transcribe")
        self.recognizer = recognizer.eval()
        self.lm_decoder = lm_decoder
        self.device = next(recognizer.parameters()).device
        self._reset()

    @classmethod
    def from_checkpoint(cls, checkpoint: Path, lm_path: Path | None = None, beam_width: int = 32) -> "Streamer":
        """A streamer over a ``ds2_stream`` checkpoint or export; with ``lm_path``, an LM decoder with the
        alpha and beta 04 tuned for the checkpoint (else 0.5 and 1.0)."""
        recognizer, tokenizer, _ = load_recognizer(Path(checkpoint))
        lm_decoder = None
        if lm_path is not None:
            tuned = tuned_record(Path(checkpoint)).get("lm")
            weights = tuned.weights if tuned is not None else LM_DEFAULTS
            lm_decoder = LMDecoder(tokenizer.labels, Path(lm_path), alpha=weights["alpha"], beta=weights["beta"],
                                   beam_width=beam_width)
        return cls(recognizer, lm_decoder)

    def _reset(self) -> None:
        self._pending = torch.zeros(0, device=self.device)
        self._samples = 0
        self._trimmed_at = 0
        self._state = self.recognizer.net.initial_state(self.device)
        self._feats: list[torch.Tensor] = []
        self._log_probs: list[torch.Tensor] = []
        self._feature_frames = 0
        self._recent = None  # the frames the features' running mean still reads
        self._emitted = 0
        self._last = self.recognizer.tokenizer.blank_id
        self._text = ""

    @property
    def seconds(self) -> float:
        """Audio seconds fed so far."""
        return self._samples / self.SAMPLE_RATE

    @property
    def emitted_frames(self) -> int:
        """Output frames final so far (the greedy transcript covers them)."""
        return self._emitted

    def _check(self, samples) -> torch.Tensor:
        """The chunk as a float32 tensor; a one-line ``ValueError`` for anything but finite mono float samples."""
        if not isinstance(samples, np.ndarray):
            raise ValueError(f"a chunk must be a NumPy array of float32 samples, not {type(samples).__name__}")
        if samples.ndim != 1:
            raise ValueError(f"a chunk must be mono, 1-D [samples]; got shape {samples.shape} (mix stereo down first)")
        if not np.issubdtype(samples.dtype, np.floating):
            raise ValueError(f"a chunk must hold float samples in [-1, 1], not {samples.dtype} "
                             "(divide 16-bit PCM by 32768)")
        if not np.isfinite(samples).all():
            raise ValueError("the chunk holds NaN or infinite samples; it was not fed")
        return torch.from_numpy(samples.astype(np.float32, copy=False)).to(self.device)

    def feed(self, samples: np.ndarray) -> str:
        """Feed a float32 mono 16 kHz chunk of any size (0 samples too); the greedy transcript so far."""
        chunk = self._check(samples)
        with torch.inference_mode():
            self._pending = torch.cat([self._pending, chunk])
            self._samples += len(chunk)
            feats, used, self._recent = self.recognizer.features.stream(self._pending, final=False,
                                                                        recent=self._recent)
            self._pending = self._pending[used:]
            self._advance(feats, self.recognizer.net.stream_step(self._state, feats))
        if self._samples - self._trimmed_at >= TRIM_EVERY_SECONDS * self.SAMPLE_RATE:
            release_free_heap()
            self._trimmed_at = self._samples
        return self._text

    def _advance(self, feats: torch.Tensor, log_probs: torch.Tensor) -> None:
        """Keep the new frames and extend the greedy transcript by the final frames' best path (only the
        new labels are decoded, so a long stream costs the same per chunk at its end as at its start)."""
        if feats.shape[1]:
            self._feats.append(feats.cpu())
            self._feature_frames += feats.shape[1]
        if not len(log_probs):
            return
        self._log_probs.append(log_probs.cpu())
        self._emitted += len(log_probs)
        blank, new = self.recognizer.tokenizer.blank_id, []
        for token in log_probs.argmax(-1).tolist():
            if token != self._last and token != blank:
                new.append(token)
            self._last = token
        if new:
            self._text = self.recognizer.tokenizer.decode_more(self._text, new)

    def finish(self) -> StreamResult:
        """Flush the last partial frames, and return the stream's transcripts and outputs; the streamer resets."""
        features, net = self.recognizer.features, self.recognizer.net
        total = int(features.frame_lengths(torch.tensor(self._samples)))
        with torch.inference_mode():
            feats, _, _ = features.stream(self._pending, final=True, frames_left=total - self._feature_frames,
                                          recent=self._recent)
            self._advance(feats, net.stream_step(self._state, feats))
            self._advance(feats[:, :0], net.stream_finish(self._state))
        log_mel = torch.cat(self._feats, 1) if self._feats else torch.zeros(features.n_mels, 0)
        log_probs = (torch.cat(self._log_probs) if self._log_probs
                     else torch.zeros(0, net.config.vocab_size))
        lm_text = None
        if self.lm_decoder is not None:
            lm_text = self.lm_decoder.decode(log_probs.numpy()) if len(log_probs) else ""
        result = StreamResult(self._text, lm_text, log_mel.numpy(), log_probs.numpy(), self.seconds)
        self._reset()
        return result


def chunk_samples(chunk_ms: float, sample_rate: int = Streamer.SAMPLE_RATE) -> int:
    """Samples in a chunk of ``chunk_ms``; a one-line ``ValueError`` for a size that is not positive."""
    if not chunk_ms > 0:
        raise ValueError(f"--chunk-ms must be positive, not {chunk_ms}")
    return max(1, int(sample_rate * chunk_ms / 1000))


def changed_partials(feed: Callable[[np.ndarray], str], wave: np.ndarray, chunk_ms: float,
                     sample_rate: int = Streamer.SAMPLE_RATE) -> Iterator[tuple[float, str]]:
    """Feed ``wave`` to ``feed`` in chunks of ``chunk_ms``; yield (audio seconds heard, partial transcript)
    each time the partial changes: what a person watching the transcript would see, and when."""
    step, shown = chunk_samples(chunk_ms, sample_rate), ""
    for start in range(0, len(wave), step):
        text = feed(wave[start:start + step])
        if text != shown:
            yield min(start + step, len(wave)) / sample_rate, text
            shown = text


def stream_file(streamer: Streamer, wave: np.ndarray, chunk_ms: float, say=print) -> StreamResult:
    """Feed ``wave`` in chunks of ``chunk_ms``, saying each partial transcript when it changes
    (with the audio time it was heard at), then the final one (and the LM's, with an LM decoder)."""
    for seconds, text in changed_partials(streamer.feed, wave, chunk_ms, streamer.SAMPLE_RATE):
        say(f"  {seconds:7.2f} s  {text}")
    result = streamer.finish()
    say(f"  final ({result.seconds:.2f} s): {result.text}")
    if result.lm_text is not None:
        say(f"  final + LM: {result.lm_text}")
    return result


def stream_transcribe(checkpoint: Path, inputs: list[Path], output: Path, lm_path: Path | None = None,
                      chunk_ms: float = 160.0, say=print):
    """``transcribe --stream``: each audio file streamed through a ``ds2_stream`` checkpoint in ``chunk_ms``
    chunks, partials said as they change; the final transcript (the LM's, with ``lm_path``) written to
    ``output`` as ``transcribe`` names it. Unreadable files are skipped with the reason in the report."""
    from asr_helpers.data.audio import AudioError, load_audio
    from asr_helpers.inference.transcribe import TranscribeReport, find_audio, transcript_names
    streamer = Streamer.from_checkpoint(checkpoint, lm_path)
    report = TranscribeReport(output=Path(output))
    items = find_audio(inputs, report)
    names, report.mirrored = transcript_names([i.relative for i in items])
    for item, name in zip(items, names):
        try:
            wave = load_audio(item.path).numpy()
        except AudioError as error:
            report.skip(item.label, error.reason)
            continue
        except Exception as error:  # an odd file must not stop the others (as in transcribe)
            report.skip(item.label, f"unreadable audio ({type(error).__name__}: {error})")
            continue
        say(item.label)
        result = stream_file(streamer, wave, chunk_ms, say)
        (report.output / name).parent.mkdir(parents=True, exist_ok=True)
        (report.output / name).write_text((result.lm_text if result.lm_text is not None else result.text) + "\n",
                                          encoding="utf-8")
        report.written.append((item.label, name))
    return report
