"""The microphone panel's kernel half, driven as the browser drives it, with a fake Streamer of the same API."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib.figure
import numpy as np
import pytest
import soundfile
from IPython.display import Audio

from asr_helpers.report.mic_widget import MicPanel, MicRecorder, mic_panel

LABELS = ["", " ", "a", "b", "!"]
PINNED_MODEL = Path(__file__).parent / "fixtures" / "pinned" / "model.pt"


@dataclass
class FakeResult:
    text: str
    lm_text: str | None
    log_mel: np.ndarray
    log_probs: np.ndarray
    seconds: float


class FakeStreamer:
    """One "a" per 100 ms fed; refuses what the real Streamer refuses, with a one-line ValueError."""
    SAMPLE_RATE = 16000

    def __init__(self, with_lm: bool = False):
        self.samples, self.with_lm = 0, with_lm

    @property
    def seconds(self) -> float:
        return self.samples / self.SAMPLE_RATE

    def feed(self, samples: np.ndarray) -> str:
        if samples.dtype != np.float32 or samples.ndim != 1:
            raise ValueError(f"a chunk must be 1-D float32, not {samples.dtype} {samples.shape}")
        if not np.isfinite(samples).all():
            raise ValueError("the chunk holds NaN or infinite samples")
        self.samples += len(samples)
        return "a" * int(self.seconds * 10)

    def finish(self) -> FakeResult:
        frames = int(self.seconds * 100) + 1
        result = FakeResult("a" * int(self.seconds * 10) + "b", "ab" if self.with_lm else None,
                            np.zeros((80, frames), np.float32), np.log(np.full((frames // 3 + 1, len(LABELS)), 0.2)),
                            self.seconds)
        self.samples = 0
        return result


class Browser:
    """Sends what mic_widget.js sends (numbered messages, chunks as float32 buffers); keeps the kernel's answers."""

    def __init__(self, panel: MicPanel, monkeypatch):
        self.panel, self.seq, self.answers = panel, 0, []
        monkeypatch.setattr(panel.recorder, "send", lambda content, buffers=None: self.answers.append(content))

    def send(self, kind: str, samples: np.ndarray | None = None) -> dict:
        self.seq += 1
        buffers = [memoryview(samples.tobytes())] if samples is not None else []
        self.panel._on_message(self.panel.recorder, {"type": kind, "seq": self.seq}, buffers)
        return self.answers[-1]


def chunk(seconds: float, value: float = 0.1) -> np.ndarray:
    return np.full(int(16000 * seconds), value, np.float32)


@pytest.fixture
def browser(monkeypatch) -> Browser:
    return Browser(MicPanel(FakeStreamer(with_lm=True), LABELS), monkeypatch)


def test_each_chunk_is_acknowledged_and_grows_the_partial_transcript(browser):
    assert browser.send("start") == {"type": "ack", "seq": 1, "final": False}
    partials = []
    for _ in range(5):
        assert browser.send("chunk", chunk(0.16))["seq"] == browser.seq
        partials.append(browser.panel.recorder.partial)
    assert partials == ["a", "aaa", "aaaa", "aaaaaa", "aaaaaaaa"]
    assert browser.panel.streamer.seconds == pytest.approx(0.8)
    assert browser.panel.recorder.error == ""


def test_stop_gives_the_final_transcripts_and_the_figures(browser):
    browser.send("start")
    for _ in range(4):
        browser.send("chunk", chunk(0.25))
    assert browser.send("stop") == {"type": "ack", "seq": 6, "final": True}
    recorder = browser.panel.recorder
    assert recorder.final == "greedy    : aaaaaaaaaab\nlm        : ab"
    assert recorder.partial == "" and "1.0 s heard" in recorder.status
    assert browser.panel.streamer.seconds == 0  # reset for the next recording
    views = browser.panel.views(FakeStreamer().finish())
    assert sum(isinstance(v, matplotlib.figure.Figure) for v in views) == 2
    assert isinstance(views[0], Audio)  # what the microphone heard, to listen to


def test_a_refused_chunk_is_one_line_and_the_recording_goes_on(browser):
    browser.send("start")
    browser.send("chunk", chunk(0.2))
    bad = chunk(0.2)
    bad[5] = np.nan
    assert browser.send("chunk", bad)["seq"] == 3  # still acknowledged: the browser must not time out
    assert browser.panel.recorder.error == "chunk refused: the chunk holds NaN or infinite samples"
    assert browser.panel.recorder.partial == "aa"
    browser.send("chunk", chunk(0.2))
    assert browser.panel.recorder.partial == "aaaa"
    browser.send("stop")
    assert browser.panel.recorder.final.startswith("greedy    : aaaab")


def test_a_new_recording_drops_an_unfinished_one(browser):
    browser.send("start")
    browser.send("chunk", chunk(0.5))
    browser.send("chunk", np.full(100, np.inf, np.float32))
    browser.send("start")  # the page was reloaded mid-recording, or Record pressed again
    recorder = browser.panel.recorder
    assert browser.panel.streamer.seconds == 0
    assert (recorder.partial, recorder.final, recorder.error) == ("", "", "")
    browser.send("chunk", chunk(0.1))
    assert recorder.partial == "a"


def test_an_empty_chunk_message_is_fed_as_zero_samples(browser):
    browser.send("start")
    browser.send("chunk")
    assert browser.panel.recorder.partial == "" and browser.panel.recorder.error == ""


def test_stream_file_takes_the_same_path_and_prints_partials_as_they_change(tmp_path, capsys, monkeypatch):
    panel = MicPanel(FakeStreamer(), LABELS)
    path = tmp_path / "speech.wav"
    soundfile.write(path, np.full(8000, 0.1, np.float32), 8000)  # 1 s at 8 kHz: resampled to 16 kHz
    shown = []
    monkeypatch.setattr("asr_helpers.report.mic_widget.display", lambda *views: shown.extend(views))
    result = panel.stream_file(path, chunk_ms=250)
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["  0.25 s  aa", "  0.50 s  aaaaa", "  0.75 s  aaaaaaa", "  1.00 s  aaaaaaaaaa"]
    assert result.seconds == pytest.approx(1.0) and panel.recorder.final == "greedy    : aaaaaaaaaab"
    assert sum(isinstance(v, matplotlib.figure.Figure) for v in shown) == 2
    assert shown[0].data == "greedy    : aaaaaaaaaab"  # headless runs see the transcript as plain output


def test_stream_file_on_a_file_that_is_not_audio_is_one_line(tmp_path, capsys):
    path = tmp_path / "notes.wav"
    path.write_text("not audio")
    assert MicPanel(FakeStreamer(), LABELS).stream_file(path) is None
    out = capsys.readouterr().out
    assert out.startswith("cannot stream ") and "notes.wav" in out and out.count("\n") == 1


def test_a_model_that_does_not_stream_gets_one_line_naming_the_profile(capsys):
    assert mic_panel(PINNED_MODEL) is None
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "(las) does not stream" in out and "stream profile" in out.replace("`", "")


def test_the_browser_half_ships_with_the_package():
    module = MicRecorder()._esm
    assert "export default" in module and "getUserMedia" in module and "sampleRate: RATE" in module


def test_a_real_streamer_behind_the_panel_gives_what_one_whole_feed_gives(monkeypatch):
    import torch

    from asr_helpers.data.text import CharTokenizer
    from asr_helpers.inference.streaming import Streamer
    from asr_helpers.models.registry import build_model
    torch.manual_seed(0)
    tokenizer = CharTokenizer()
    streamer = Streamer(build_model("ds2_stream", "tiny", tokenizer))
    audio = (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)
    streamer.feed(audio)
    whole = streamer.finish()
    browser = Browser(MicPanel(streamer, tokenizer.labels), monkeypatch)
    browser.send("start")
    for begin in range(0, len(audio), 2560):
        browser.send("chunk", audio[begin:begin + 2560])
    assert browser.send("stop")["final"]
    assert browser.panel.recorder.final == f"greedy    : {whole.text}" and browser.panel.recorder.error == ""
    figures = browser.panel.views(whole)
    assert isinstance(figures[0], Audio) and len(figures) == 3
