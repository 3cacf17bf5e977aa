"""Matplotlib figures shown by the notebooks and logged by the trainer."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np


def spectrogram_figure(features, title: str = "", ax=None):
    """A log-mel ``[n_mels, frames]`` as an image, low frequencies at the bottom."""
    features = np.asarray(features)
    figure = None
    if ax is None:
        figure, ax = plt.subplots(figsize=(10, 2.6))
    ax.imshow(features, origin="lower", aspect="auto", cmap="magma", interpolation="nearest")
    ax.set_xlabel("frame (10 ms)")
    ax.set_ylabel("mel bin")
    if title:
        ax.set_title(title if len(title) < 90 else title[:87] + "...", fontsize=9)
    if figure is not None:
        figure.tight_layout()
        plt.close(figure)
    return figure or ax.figure


def waveform_figure(wave, sample_rate: int, title: str = "", ax=None):
    wave = np.asarray(wave)
    figure = None
    if ax is None:
        figure, ax = plt.subplots(figsize=(10, 1.8))
    ax.plot(np.arange(len(wave)) / sample_rate, wave, linewidth=0.5)
    ax.set_xlabel("seconds")
    ax.set_xlim(0, len(wave) / sample_rate)
    if title:
        ax.set_title(title, fontsize=9)
    if figure is not None:
        figure.tight_layout()
        plt.close(figure)
    return figure or ax.figure


def curves_figure(history: list[dict], x: str = "step"):
    """Training loss, grad norm and LR, and dev WER/CER per split, from ``history.jsonl`` records.

    With ``x="minutes"`` (or ``"step"``) each panel also gets the audio hours seen on a top axis,
    so runs of different speed compare by how much speech they heard.
    """
    train = [r for r in history if r["kind"] == "train"]
    evals = [r for r in history if r["kind"].startswith("eval/")]
    figure, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    panels = [("loss", "loss (train line, dev dots)"), ("grad_norm", "gradient norm"), ("lr", "learning rate")]
    for ax, (key, title) in zip(axes, panels):
        ax.plot([r[x] for r in train], [r[key] for r in train], linewidth=1, label="train")
        ax.set_title(title)
        ax.set_xlabel(x)
        if not train:
            ax.text(0.5, 0.5, "no train records yet\n(one every log_every steps)", ha="center", va="center",
                    transform=ax.transAxes, fontsize=8, color="grey")
    for split in sorted({r["kind"][5:] for r in evals}):
        rows = [r for r in evals if r["kind"] == f"eval/{split}"]
        axes[0].plot([r[x] for r in rows], [r["loss"] for r in rows], "o-", label=f"{split} loss")
        axes[3].plot([r[x] for r in rows], [r["cer"] for r in rows], "o-", label=f"{split} CER")
        axes[3].plot([r[x] for r in rows], [r["wer"] for r in rows], "s--", label=f"{split} WER")
    axes[0].legend(fontsize=7)
    axes[0].set_yscale("log")
    axes[3].set_title("dev error rates (greedy)")
    axes[3].set_xlabel(x)
    axes[3].legend(fontsize=7)
    axes[3].set_ylim(0, max([1.05] + [r[k] + 0.05 for r in evals for k in ("cer", "wer")]))
    if x != "audio_hours":
        for ax in axes:
            _audio_hours_axis(ax, train, x)
    figure.tight_layout()
    plt.close(figure)
    return figure


def _audio_hours_axis(ax, train: list[dict], x: str) -> None:
    """A top axis in audio hours seen, mapped from ``x`` by the train records (needs two of them)."""
    points = sorted((r[x], r["audio_hours"]) for r in train if r.get("audio_hours") is not None and r.get(x) is not None)
    if len(points) < 2:
        return
    xs, hours = np.maximum.accumulate(np.asarray(points, dtype=float), axis=0).T
    if xs[-1] <= xs[0] or hours[-1] <= hours[0]:
        return
    axis = ax.secondary_xaxis("top", functions=(lambda v: np.interp(v, xs, hours), lambda h: np.interp(h, hours, xs)))
    axis.set_xlabel("audio hours seen", fontsize=8)
    axis.tick_params(labelsize=7)


def augmentation_figure(original, augmented, features, title: str):
    """Waveform and log-mel of an utterance before and after an augmentation."""
    import torch
    figure, axes = plt.subplots(2, 2, figsize=(13, 4.2), gridspec_kw={"height_ratios": [1, 1.6]})
    for column, (wave, label) in enumerate([(original, "original"), (augmented, title)]):
        wave = torch.as_tensor(wave)
        logmel, _ = features(wave[None], torch.tensor([len(wave)]))
        waveform_figure(wave.numpy(), features.sample_rate, f"{label} ({len(wave) / features.sample_rate:.2f} s)",
                        ax=axes[0, column])
        axes[0, column].set_ylim(-1, 1)
        spectrogram_figure(logmel[0].numpy(), ax=axes[1, column])
    figure.tight_layout()
    plt.close(figure)
    return figure


def alignment_figure(log_probs, labels: list[str], frame_ms: float, title: str = ""):
    """Per-frame output probabilities with the argmax symbol of each non-blank frame written on top.

    This is what CTC learns: mostly blank, with a sharp spike where each character is heard.
    """
    probs = np.exp(np.asarray(log_probs)).T
    shown = ["\u2205" if not label else "\u2423" if label == " " else label for label in labels]
    figure, ax = plt.subplots(figsize=(min(10, 3 + probs.shape[1] / 12), 4.2))  # wider is shrunk to the cell
    ax.imshow(probs, origin="lower", aspect="auto", cmap="Greys", interpolation="nearest", vmin=0, vmax=1)
    ax.set_yticks(range(len(shown)), shown, fontsize=6)
    best = probs.argmax(0)
    for frame, token in enumerate(best):
        if token != 0:
            ax.text(frame, len(shown) - 0.3, shown[token], ha="center", va="bottom", fontsize=8, color="tab:red")
    ax.set(xlabel=f"output frame ({frame_ms:g} ms)", ylabel="symbol", title=title or "CTC output (argmax in red)")
    ax.set_ylim(-0.5, len(shown) + 1)
    figure.tight_layout()
    plt.close(figure)
    return figure
