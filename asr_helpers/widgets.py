"""Small ipywidgets panels; each also prints a static view so headless runs show something."""
from __future__ import annotations

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
