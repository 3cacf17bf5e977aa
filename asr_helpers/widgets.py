"""Small ipywidgets panels; each also prints a static view so headless runs show something."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from IPython.display import Audio, display

from asr_helpers.audio import load_audio
from asr_helpers.features import LogMelFeatures
from asr_helpers.plots import spectrogram_figure


def show_utterance(row, features: LogMelFeatures) -> None:
    wave = load_audio(row.path)
    logmel, _ = features(wave[None], torch.tensor([len(wave)]))
    print(f"{row.id} | {row.split} | speaker {row.speaker} | {row.seconds:.2f} s\n{row.text}")
    display(spectrogram_figure(logmel[0], row.text), Audio(wave.numpy(), rate=16000))


def utterance_browser(frame: pd.DataFrame):
    """Pick a split and an utterance; see its transcript and log-mel, hear it."""
    import ipywidgets as widgets

    features = LogMelFeatures()
    splits = list(dict.fromkeys(frame.split))
    split_box = widgets.Dropdown(options=splits, description="split")
    utt_box = widgets.Dropdown(description="utterance", layout=widgets.Layout(width="420px"))
    output = widgets.Output()

    def refresh_utterances(*_):
        utt_box.options = list(frame[frame.split == split_box.value].id)

    def render(*_):
        output.clear_output(wait=True)
        if utt_box.value is None:
            return
        with output:
            show_utterance(next(frame[frame.id == utt_box.value].itertuples()), features)

    split_box.observe(refresh_utterances, names="value")
    utt_box.observe(render, names="value")
    refresh_utterances()
    show_utterance(next(frame.itertuples()), features)
    return widgets.VBox([widgets.HBox([split_box, utt_box]), output])


class Transcriber:
    """Transcribe one wave with a checkpoint and show every step: log-mel, CTC alignment, beams."""

    def __init__(self, checkpoint, lm_decoder=None, beam_width: int = 16):
        from asr_helpers.checkpoint import load_model
        self.model, self.tokenizer, _ = load_model(checkpoint)
        self.features = LogMelFeatures.for_model(self.model.config)
        self.lm_decoder, self.beam_width = lm_decoder, beam_width
        self.frame_ms = 10 * self.model.config.time_stride

    @torch.no_grad()
    def show(self, wave: torch.Tensor, decoder: str = "beam", reference: str | None = None) -> str:
        from asr_helpers.decoding import build_decoder, prefix_beam_search
        from asr_helpers.plots import alignment_figure
        feats, lengths = self.features(wave[None], torch.tensor([len(wave)]))
        log_probs, out_lengths = self.model(feats, lengths)
        matrix = log_probs[0, : out_lengths[0]].numpy()
        beams = prefix_beam_search(matrix, self.beam_width, self.tokenizer.blank_id)[:5]
        text = build_decoder(decoder, self.tokenizer, beam_width=self.beam_width,
                             lm_decoder=self.lm_decoder).decode([matrix])[0]
        if reference:
            print(f"reference : {reference}")
        print(f"{decoder:<10}: {text}")
        display(Audio(wave.numpy(), rate=16000), spectrogram_figure(feats[0], "log-mel"),
                alignment_figure(matrix, self.tokenizer.labels, self.frame_ms))
        print("top beams (own prefix beam search, log-probability):")
        for ids, score in beams:
            print(f"  {score:9.2f}  {self.tokenizer.decode(list(ids))}")
        return text


def transcription_panel(transcriber: Transcriber, frame: pd.DataFrame):
    """Upload a file or pick a test utterance, choose a decoder, see the transcript and why."""
    import tempfile

    import ipywidgets as widgets

    from asr_helpers.audio import AudioError
    from asr_helpers.decoding import available_decoders
    decoders = available_decoders(transcriber.lm_decoder)
    pick = widgets.Dropdown(options=list(frame.id), description="utterance", layout=widgets.Layout(width="420px"))
    upload = widgets.FileUpload(accept="audio/*,.wav,.flac,.ogg", multiple=False, description="upload audio")
    decoder = widgets.ToggleButtons(options=decoders, value=decoders[-1], description="decoder")
    output = widgets.Output()

    def from_pick(*_):
        row = next(frame[frame.id == pick.value].itertuples())
        output.clear_output(wait=True)
        with output:
            transcriber.show(load_audio(row.path), decoder.value, row.text)

    def from_upload(*_):
        if not upload.value:
            return
        item = upload.value[0]
        output.clear_output(wait=True)
        with output, tempfile.NamedTemporaryFile(suffix=Path(item["name"]).suffix) as handle:
            handle.write(bytes(item["content"]))
            handle.flush()
            try:
                transcriber.show(load_audio(handle.name), decoder.value)
            except AudioError as error:
                print(f"cannot read {item['name']}: {error}")

    pick.observe(from_pick, names="value")
    decoder.observe(from_pick, names="value")
    upload.observe(from_upload, names="value")
    row = next(frame.itertuples())
    transcriber.show(load_audio(row.path), decoder.value, row.text)
    return widgets.VBox([widgets.HBox([pick, upload]), decoder, output])
