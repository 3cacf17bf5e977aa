"""Tables and a small browser for looking at a corpus before training on it."""
from __future__ import annotations

from collections import Counter

import matplotlib.pyplot as plt
import pandas as pd

from asr_helpers.data.manifest import Utterance


def manifest_frame(utterances: list[Utterance]) -> pd.DataFrame:
    """One row per utterance with words, characters and speaking rate added."""
    frame = pd.DataFrame([u.__dict__ for u in utterances])
    frame["words"] = frame.text.str.split().str.len()
    frame["chars"] = frame.text.str.len()
    frame["words_per_second"] = frame.words / frame.seconds
    return frame


def split_summary(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.groupby("split", sort=False).agg(
        utterances=("id", "count"), hours=("seconds", lambda s: s.sum() / 3600), speakers=("speaker", "nunique"),
        mean_seconds=("seconds", "mean"), max_seconds=("seconds", "max"), vocabulary=("text", _vocabulary_size),
        words_per_second=("words_per_second", "mean")).round(3)


def _vocabulary_size(texts: pd.Series) -> int:
    return len({w for t in texts for w in t.split()})


def character_frequencies(frame: pd.DataFrame) -> pd.Series:
    counts = Counter("".join(frame.text))
    return pd.Series(counts).sort_values(ascending=False) / sum(counts.values())


def word_frequencies(frame: pd.DataFrame, top: int = 20) -> pd.Series:
    return pd.Series(Counter(w for t in frame.text for w in t.split())).sort_values(ascending=False).head(top)


def distribution_figure(frame: pd.DataFrame):
    """Histograms of durations and speaking rates per split."""
    figure, axes = plt.subplots(1, 2, figsize=(13, 3.4))
    for split, rows in frame.groupby("split", sort=False):
        axes[0].hist(rows.seconds, bins=40, alpha=0.5, label=split)
        axes[1].hist(rows.words_per_second, bins=40, alpha=0.5, label=split)
    axes[0].set(title="utterance duration", xlabel="seconds", ylabel="utterances")
    axes[1].set(title="speaking rate", xlabel="words per second")
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    plt.close(figure)
    return figure


def character_figure(frequencies: pd.Series):
    figure, ax = plt.subplots(figsize=(12, 2.6))
    labels = ["space" if c == " " else c for c in frequencies.index]
    ax.bar(labels, frequencies.values)
    ax.set(title="character frequencies (the model's output alphabet)", ylabel="share")
    figure.tight_layout()
    plt.close(figure)
    return figure
