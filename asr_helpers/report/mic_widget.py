"""The microphone panel of notebook 04: speak to a streaming model and watch the transcript grow.

The browser half (``mic_widget.js``, an anywidget module) records at 16 kHz and sends float32
chunks; this half feeds them to an ``inference.streaming.Streamer`` and answers each with the
partial transcript so far. Stop gives the final transcript (and the LM's) with the log-mel and
per-frame CTC output drawn as the transcription panel draws them. ``MicPanel.stream_file`` sends
a file through the same start / feed / stop path, for headless runs and for people without a
microphone. Failures (no permission, no microphone, a kernel that stopped answering, a chunk the
streamer refuses) end as one line in the panel's status.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import anywidget
import numpy as np
import traitlets
from IPython.display import Audio, Pretty, display

from asr_helpers.data.audio import AudioError, load_audio
from asr_helpers.report.widgets import Panel, ctc_views

if TYPE_CHECKING:
    from asr_helpers.inference.streaming import Streamer, StreamResult

SAMPLE_RATE = 16000
STREAMING_MODELS = ("ds2_stream",)  # registry names of the models a Streamer runs
FEATURE_HOP_MS = 10  # the log-mel's frame step


class MicRecorder(anywidget.AnyWidget):
    """Record / Stop, a status line and the growing transcript, in the browser (``mic_widget.js``)."""

    _esm = Path(__file__).with_name("mic_widget.js")
    status = traitlets.Unicode("press Record and speak").tag(sync=True)
    partial = traitlets.Unicode("").tag(sync=True)
    final = traitlets.Unicode("").tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)
    chunk_ms = traitlets.Int(160).tag(sync=True)  # audio per message: ~6 partial transcripts a second
    ack_timeout_s = traitlets.Float(10.0).tag(sync=True)  # a message unanswered this long: kernel gone


def one_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


class MicPanel:
    """A ``Streamer`` behind a ``MicRecorder``: chunks in, partial transcripts out, Stop -> final result.

    ``labels`` are the tokenizer's (for the CTC figure). Display the panel to get the recorder
    and, below it, the area the final figures go to.
    """

    def __init__(self, streamer: Streamer, labels: list[str]):
        self.streamer, self.labels = streamer, labels
        self.recorder = MicRecorder()
        self.recorder.on_msg(self._on_message)
        self._panel: Panel | None = None
        self._heard: list[np.ndarray] = []  # this recording's chunks, for the player under the result

    def _ipython_display_(self) -> None:
        self._panel = Panel([self.recorder], [])

    def _on_message(self, _widget, content: dict, buffers: list) -> None:
        """The browser's start / chunk / stop; every message is acknowledged (the browser times out on none)."""
        kind = content.get("type")
        if kind == "start":
            self.start()
        elif kind == "chunk":
            self.feed(np.frombuffer(buffers[0], dtype=np.float32).copy() if buffers else np.zeros(0, np.float32))
        elif kind == "stop":
            result = self.stop()
            if result is not None and self._panel is not None:
                self._panel.show(self.views(result))
        self.recorder.send({"type": "ack", "seq": content.get("seq"), "final": kind == "stop"})

    def start(self) -> None:
        """A new recording: what an unfinished one left in the streamer is dropped."""
        if self.streamer.seconds > 0:
            self.streamer.finish()
        self._heard = []
        with self.recorder.hold_sync():
            self.recorder.partial = self.recorder.final = self.recorder.error = self.recorder.status = ""

    def feed(self, samples: np.ndarray) -> str:
        """One chunk (float32, 16 kHz) into the streamer; the partial transcript, or the refusal as the error line."""
        try:
            self.recorder.partial = self.streamer.feed(samples)
        except ValueError as error:
            self.recorder.error = f"chunk refused: {one_line(error)}"
        else:
            self._heard.append(samples)
        return self.recorder.partial

    def stop(self) -> StreamResult | None:
        """The final result (the streamer is then reset); ``None``, with the reason as the error line, if it fails."""
        try:
            result = self.streamer.finish()
        except ValueError as error:
            self.recorder.error = f"cannot finish: {one_line(error)}"
            return None
        lines = [f"{'greedy':<10}: {result.text}"]
        if result.lm_text is not None:
            lines.append(f"{'lm':<10}: {result.lm_text}")
        with self.recorder.hold_sync():
            self.recorder.partial = ""
            self.recorder.final = "\n".join(lines)
            self.recorder.status = f"{result.seconds:.1f} s heard; press Record to speak again"
        return result

    def views(self, result: StreamResult) -> list:
        """What the model heard (a player), the log-mel and the per-frame CTC output (the text is in the recorder)."""
        heard = np.concatenate(self._heard) if self._heard else np.zeros(0, np.float32)
        player = [Audio(heard, rate=SAMPLE_RATE)] if heard.size else []
        frames = max(1, len(result.log_probs))
        frame_ms = FEATURE_HOP_MS * max(1, round(result.log_mel.shape[1] / frames))  # the model's time stride
        return [*player, *ctc_views(result.log_mel, result.log_probs, self.labels, frame_ms)]

    def stream_file(self, path: str | Path, chunk_ms: int = 160) -> StreamResult | None:
        """Send an audio file (any format and rate ``load_audio`` reads) through start / feed / stop in
        ``chunk_ms`` chunks, printing the partial transcript whenever it changes, then show the result."""
        try:
            wave = load_audio(path).numpy().astype(np.float32)
        except AudioError as error:
            print(f"cannot stream {one_line(error)}")
            return None
        from asr_helpers.inference.streaming import changed_partials
        self.start()
        for seconds, text in changed_partials(self.feed, wave, chunk_ms, SAMPLE_RATE):
            print(f"{seconds:6.2f} s  {text}")
        result = self.stop()
        if result is None:
            print(self.recorder.error)
        else:
            display(Pretty(self.recorder.final), *self.views(result))
        return result


def mic_panel(checkpoint: Path, lm_path: Path | None = None) -> MicPanel | None:
    """The panel for a streaming checkpoint (LM rescoring at Stop with ``lm_path``); for any other model
    one line saying which profile trains one that streams, and ``None``."""
    from asr_helpers.data.text import tokenizer_from_dict
    from asr_helpers.training.checkpoint import checkpoint_model, load_checkpoint
    state = load_checkpoint(Path(checkpoint), mmap=True)
    model = checkpoint_model(state)
    if model not in STREAMING_MODELS:
        print(f"no microphone panel: this run's model ({model}) does not stream; the `stream` profile trains one "
              f"that does (./run_all.sh stream, or notebooks 03-04 with -f notebooks/params/stream.yaml)")
        return None
    from asr_helpers.inference.streaming import Streamer
    try:
        streamer = Streamer.from_checkpoint(Path(checkpoint), lm_path)
    except ValueError as error:  # a ds2_stream ablation whose features need the whole utterance
        print(f"no microphone panel: {one_line(error)}")
        return None
    return MicPanel(streamer, tokenizer_from_dict(state["tokenizer"]).labels)
