"""Small ipywidgets panels for JupyterLab: controls above one output area.

A panel's first view is also written as plain cell output, so a headless run (papermill,
nbconvert) shows something; in a live notebook the first interaction removes that copy.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import torch
from IPython.display import Audio, Pretty, display

from asr_helpers.data.audio import load_audio
from asr_helpers.data.features import LogMelFeatures
from asr_helpers.decoding.decoders import TABLE
from asr_helpers.plots import alignment_figure, spectrogram_figure

WIDE = "460px"  # dropdowns wide enough for a LibriSpeech id plus its label
LABEL = "80px"  # ipywidgets' description width, so every label in a panel lines up


class Panel:
    """Controls over one output area that every interaction redraws."""

    def __init__(self, controls: list, first_view: list):
        import ipywidgets as widgets
        self.output = widgets.Output(layout=widgets.Layout(margin="8px 0 0 0"))
        display(widgets.VBox(controls + [self.output]))
        self._static = [display(item, display_id=True) for item in first_view]

    def show(self, views: list) -> None:
        """Replace what the output area shows (and drop the headless copy of the first view)."""
        for handle in self._static:
            handle.update(Pretty(""))
        self._static = []
        self.output.clear_output(wait=True)
        with self.output:
            display(*views)


def ctc_views(log_mel, log_probs, labels: list[str], frame_ms: float) -> list:
    """The log-mel ``[n_mels, frames]`` the model saw and its per-frame CTC output ``[frames', vocab]``."""
    return [spectrogram_figure(log_mel, "log-mel"), alignment_figure(log_probs, labels, frame_ms, "CTC output per frame")]


def utterance_views(row, features: LogMelFeatures) -> list:
    """Header (id, split, speaker, length, transcript), log-mel and player of one manifest row."""
    wave = load_audio(row.path)
    logmel, _ = features(wave[None], torch.tensor([len(wave)]))
    header = f"{row.id} | {row.split} | speaker {row.speaker} | {row.seconds:.2f} s\n{row.text}"
    return [Pretty(header), spectrogram_figure(logmel[0], "log-mel"), Audio(wave.numpy(), rate=16000)]


def utterance_browser(frame: pd.DataFrame) -> None:
    """Pick a split and an utterance; see its transcript and log-mel, hear it."""
    import ipywidgets as widgets

    features = LogMelFeatures()
    split_box = widgets.Dropdown(options=list(dict.fromkeys(frame.split)), description="split")
    utt_box = widgets.Dropdown(description="utterance", layout=widgets.Layout(width=WIDE))

    def refresh_utterances(*_):
        utt_box.options = list(frame[frame.split == split_box.value].id)
        utt_box.value = utt_box.options[0] if utt_box.options else None

    refresh_utterances()
    first = next(frame[frame.id == utt_box.value].itertuples())
    panel = Panel([widgets.HBox([split_box, utt_box])], utterance_views(first, features))

    def render(*_):
        if utt_box.value is not None:
            panel.show(utterance_views(next(frame[frame.id == utt_box.value].itertuples()), features))

    split_box.observe(refresh_utterances, names="value")
    utt_box.observe(render, names="value")


class TranscriptExplainer:
    """Transcribe one wave with a checkpoint and explain it: log-mel, CTC alignment, beams (for the panel;
    ``inference.transcribe.Transcriber`` is the one that transcribes files)."""

    def __init__(self, checkpoint, lm_decoder=None, beam_width: int = 16, attention=None):
        from asr_helpers.training.checkpoint import load_recognizer
        self.recognizer, self.tokenizer, _ = load_recognizer(checkpoint)
        self.features = self.recognizer.features
        self.lm_decoder, self.beam_width, self.attention = lm_decoder, beam_width, attention
        self.frame_ms = 10 * self.recognizer.net.config.time_stride

    @torch.no_grad()
    def views(self, wave: torch.Tensor, decoder: str = "beam", reference: str | None = None,
              name: str | None = None) -> tuple[str, list]:
        """The transcript, and what explains it: header, player, log-mel, CTC alignment, top beams."""
        from asr_helpers.decoding.ctc import build_decoder, prefix_beam_search
        feats, lengths = self.features(wave[None], torch.tensor([len(wave)]))
        encoding = self.recognizer.encodings(feats, lengths)[0]
        matrix = encoding.log_probs
        beams = prefix_beam_search(matrix, self.beam_width, self.tokenizer.blank_id)[:5]
        text = build_decoder(decoder, self.tokenizer, beam_width=self.beam_width, lm_decoder=self.lm_decoder,
                             attention=self.attention).decode([encoding])[0]
        header = [f"{label:<10}: {value}" for label, value in (("file", name), ("reference", reference)) if value]
        header.append(f"{decoder:<10}: {text}")
        beam_lines = [f"  {score:9.2f}  {self.tokenizer.decode(list(ids))}" for ids, score in beams]
        return text, [Pretty("\n".join(header)), Audio(wave.numpy(), rate=16000),
                      *ctc_views(feats[0], matrix, self.tokenizer.labels, self.frame_ms),
                      Pretty("\n".join(["top beams (own prefix beam search, log-probability):"] + beam_lines))]


def _uploaded_wave(item: dict) -> torch.Tensor:
    """The audio of one FileUpload item, decoded from a temporary file named like the upload."""
    with tempfile.NamedTemporaryFile(suffix=Path(item["name"]).suffix) as handle:
        handle.write(bytes(item["content"]))
        handle.flush()
        return load_audio(handle.name)


def transcription_panel(explainer: TranscriptExplainer, frame: pd.DataFrame) -> None:
    """Upload a file or pick a test utterance, choose a decoder, see the transcript and why."""
    import ipywidgets as widgets

    from asr_helpers.data.audio import AudioError
    from asr_helpers.decoding.ctc import available_decoders
    decoders = available_decoders(explainer.lm_decoder, explainer.attention)
    pick = widgets.Dropdown(options=list(frame.id), description="utterance", layout=widgets.Layout(width=WIDE))
    upload = widgets.FileUpload(accept="audio/*,.wav,.flac,.ogg", multiple=False, description="upload audio",
                                layout=widgets.Layout(width="160px"))
    decoder = widgets.ToggleButtons(options=decoders, value=decoders[-1], style={"button_width": "110px"},
                                    tooltips=[TABLE[name].label for name in decoders])
    # A Label beside the buttons: ToggleButtons' own description would sit on a line above them.
    decoder_label = widgets.Label("decoder", layout=widgets.Layout(width=LABEL, justify_content="flex-end"))
    first = next(frame.itertuples())
    shown = {"wave": load_audio(first.path), "reference": first.text, "name": None}  # picked or uploaded
    panel = Panel([widgets.HBox([pick, upload]), widgets.HBox([decoder_label, decoder])],
                  explainer.views(shown["wave"], decoder.value, shown["reference"])[1])

    def redraw(*_):
        panel.show(explainer.views(shown["wave"], decoder.value, shown["reference"], shown["name"])[1])

    def from_pick(*_):
        row = next(frame[frame.id == pick.value].itertuples())
        shown.update(wave=load_audio(row.path), reference=row.text, name=None)
        redraw()

    def from_upload(*_):
        if not upload.value:
            return
        item = upload.value[0]
        upload.value = ()  # the same file can be uploaded again
        try:
            shown.update(wave=_uploaded_wave(item), reference=None, name=item["name"])
        except AudioError as error:
            panel.show([Pretty(f"cannot read {item['name']}: {error}")])
            return
        redraw()

    pick.observe(from_pick, names="value")
    decoder.observe(redraw, names="value")
    upload.observe(from_upload, names="value")
