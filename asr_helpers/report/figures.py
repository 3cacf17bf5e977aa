"""Figures of the report (05): ablation curves, decoder bars, the LM weight grid, CER per speaker, frequent edits,
dev scalars, a streaming run's transcript growing over the audio.

Each takes records the report already read (history, ``decoding.json``, recogs) and returns a
closed matplotlib figure, so the notebook only displays it.
"""
from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from asr_helpers.decoding.tuned import Tuned
from asr_helpers.report.error_analysis import EDIT_KINDS


def ablation_curves_figure(histories: dict[str, list[dict]], labels: dict[str, str] | None = None, metric: str = "cer"):
    """Dev ``metric`` of several runs overlaid, one panel per dev split, against minutes and audio hours."""
    labels = labels or {}
    splits = sorted({r["kind"][5:] for h in histories.values() for r in h if r["kind"].startswith("eval/")})
    figure, axes = plt.subplots(len(splits), 2, figsize=(13, 3.2 * len(splits)), squeeze=False)
    for row, split in enumerate(splits):
        for name, history in histories.items():
            points = [r for r in history if r["kind"] == f"eval/{split}"]
            label = labels.get(name, name)
            axes[row, 0].plot([r["minutes"] for r in points], [r[metric] for r in points], "o-", label=label)
            hours = _audio_hours_at(history, [r["step"] for r in points])
            axes[row, 1].plot(hours, [r[metric] for r in points], "o-", label=label)
        for column, xlabel in enumerate(("minutes of training", "audio hours seen")):
            axes[row, column].set(xlabel=xlabel, ylabel=f"{split} {metric.upper()} (greedy)", ylim=(0, None))
            axes[row, column].grid(alpha=0.3)
        axes[row, 0].legend(fontsize=8)
    figure.tight_layout()
    plt.close(figure)
    return figure


def _audio_hours_at(history: list[dict], steps: list[int]) -> np.ndarray:
    """Audio hours seen at each step, interpolated from the train records (NaN without them)."""
    train = sorted((r["step"], r["audio_hours"]) for r in history if r["kind"] == "train" and "audio_hours" in r)
    if not train:
        return np.full(len(steps), np.nan)
    known_steps, hours = np.asarray(train, dtype=float).T
    return np.interp(steps, known_steps, hours)


def decoder_bars_figure(decoding: pd.DataFrame):
    """WER and CER of each decoder side by side for every split (decoders in run order), values written on the bars."""
    decoders = list(dict.fromkeys(decoding.decoder))
    splits = list(dict.fromkeys(decoding.split))
    figure, axes = plt.subplots(1, 2, figsize=(13, 3.6))
    width = 0.8 / len(decoders)
    crowded = len(decoders) > 4  # a joint model's seven decoders: upright labels would run into each other
    for ax, metric in zip(axes, ("wer", "cer")):
        for k, decoder in enumerate(decoders):
            rows = decoding[decoding.decoder == decoder].set_index("split").reindex(splits)
            bars = ax.bar(np.arange(len(splits)) + (k - (len(decoders) - 1) / 2) * width, rows[metric], width, label=decoder)
            ax.bar_label(bars, fmt="%.3f", fontsize=6 if crowded else 7, padding=1, rotation=90 if crowded else 0)
        ax.set_xticks(range(len(splits)), splits)
        ax.set(ylabel=metric.upper(), title=f"{metric.upper()} per split and decoder (lower is better)")
        ax.margins(y=0.3 if crowded else 0.15)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, fontsize=8, ncol=len(decoders), loc="lower center", frameon=False)
    figure.tight_layout(rect=(0, 0.08, 1, 1))  # room for the one legend under both plots
    plt.close(figure)
    return figure


def alpha_beta_figure(tuned: Tuned):
    """Dev score of the lm decoder over the alpha (LM weight) x beta (word bonus) grid 04 tried, chosen cell framed."""
    alphas = list(dict.fromkeys(p["weights"]["alpha"] for p in tuned.grid))  # in the order tried
    betas = list(dict.fromkeys(p["weights"]["beta"] for p in tuned.grid))
    grid = np.full((len(alphas), len(betas)), np.nan)
    for point in tuned.grid:
        grid[alphas.index(point["weights"]["alpha"]), betas.index(point["weights"]["beta"])] = point["score"]
    metric, alpha, beta = tuned.metric.upper(), tuned.weights["alpha"], tuned.weights["beta"]
    figure, ax = plt.subplots(figsize=(1.1 * len(betas) + 2.5, 0.6 * len(alphas) + 1.8))
    image = ax.imshow(grid, cmap="viridis_r", aspect="auto")
    ax.set_xticks(range(len(betas)), [f"{b:g}" for b in betas])
    ax.set_yticks(range(len(alphas)), [f"{a:g}" for a in alphas])
    ax.set(xlabel="beta (word bonus)", ylabel="alpha (LM weight)",
           title=f"dev {metric}; chosen alpha={alpha:g}, beta={beta:g} ({metric} {tuned.score:.3f})")
    middle = np.nanmin(grid) + 0.5 * (np.nanmax(grid) - np.nanmin(grid))
    for (i, j), value in np.ndenumerate(grid):
        ax.text(j, i, f"{value:.3f}", ha="center", va="center", fontsize=7,
                color="black" if value <= middle else "white")
    if alpha in alphas and beta in betas:
        row, column = alphas.index(alpha), betas.index(beta)
        ax.add_patch(Rectangle((column - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2.5))
    figure.colorbar(image, ax=ax, label=metric)
    figure.tight_layout()
    plt.close(figure)
    return figure


def speaker_cer_figure(speakers: pd.DataFrame, title: str = ""):
    """Horizontal bars of CER per speaker, worst at the top, labelled with the reader's (voice's) name."""
    shown = speakers.sort_values("cer")
    labels = [f"{s} {n}".strip() for s, n in zip(shown.speaker, shown.name)]
    figure, ax = plt.subplots(figsize=(9, 0.35 * len(shown) + 1.4))
    bars = ax.barh(labels, shown.cer, color="tab:purple")
    ax.bar_label(bars, [f"{c:.3f} ({n} utt.)" for c, n in zip(shown.cer, shown.utterances)], fontsize=7, padding=2)
    ax.set(xlabel="CER", title=title or "CER per speaker")
    ax.margins(x=0.2)
    ax.tick_params(axis="y", labelsize=8)
    figure.tight_layout()
    plt.close(figure)
    return figure


def edit_counts_figure(top: dict[str, pd.DataFrame], title: str = ""):
    """The most frequent character substitutions, deletions and insertions, one panel each."""
    figure, axes = plt.subplots(1, len(EDIT_KINDS), figsize=(14, 3.8))
    for ax, kind, color in zip(axes, EDIT_KINDS, ("tab:orange", "tab:red", "tab:green")):
        frame = top.get(kind, pd.DataFrame(columns=["edit", "count"])).iloc[::-1]
        if frame.empty:
            ax.text(0.5, 0.5, f"no {kind}s", ha="center", va="center", transform=ax.transAxes)
        else:
            ax.barh([f"'{e}'" for e in frame.edit], frame["count"], color=color)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(title=f"{kind}s (reference \u2192 hypothesis)" if kind == "substitution" else f"{kind}s", xlabel="count")
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    plt.close(figure)
    return figure


def metric_curve_figure(history: list[dict], key: str, title: str):
    """One dev scalar (e.g. an attention lock-on score) per split against training minutes."""
    figure, ax = plt.subplots(figsize=(7, 3))
    for split in sorted({r["kind"][5:] for r in history if r["kind"].startswith("eval/") and key in r}):
        rows = [r for r in history if r["kind"] == f"eval/{split}" and key in r]
        ax.plot([r["minutes"] for r in rows], [r[key] for r in rows], "o-", label=split)
    ax.set(xlabel="minutes of training", ylabel=key, title=title)
    ax.legend(fontsize=8)
    figure.tight_layout()
    plt.close(figure)
    return figure


def word_onsets(partials: list) -> list[tuple[float, int, str]]:
    """(seconds heard, characters shown then, word) when each word of the last partial first showed (begun)."""
    final = partials[-1][1].split() if partials else []
    onsets: list[tuple[float, int, str]] = []
    for seconds, text in partials:
        for number in range(len(onsets), min(len(text.split()), len(final))):
            onsets.append((seconds, len(text), final[number]))
    return onsets


def partials_figure(record: dict):
    """A streaming run's transcript growing while the audio is heard: characters shown against audio seconds (a
    step at each partial), each word written where it first showed, the end of the audio marked, the texts below."""
    partials, end = record["partials"], record["seconds"]
    characters = [0] + [len(text) for _, text in partials]
    figure, ax = plt.subplots(figsize=(12, min(12.0, 2.4 + 0.045 * max(characters))))
    ax.step([0.0] + [t for t, _ in partials], characters, where="post", color="tab:blue", alpha=0.5,
            label=f"characters in the partial transcript ({record['partial_chunk_ms']} ms chunks)")
    right = end * 1.03 + 0.05
    for seconds, shown, word in word_onsets(partials):
        before = seconds / right * 10.5 > 0.075 * len(word) + 0.1  # room on the left (inches, 8 pt characters)?
        ax.annotate(word, (seconds, shown), xytext=(-3 if before else 3, 0), textcoords="offset points",
                    ha="right" if before else "left", va="center", fontsize=8, family="monospace")
        ax.plot(seconds, shown, "o", color="tab:blue", markersize=3)
    ax.axvline(end, color="tab:red", linestyle="--", label=f"end of the audio ({end:.2f} s): the final transcript")
    ax.set(xlabel="audio heard (seconds)", ylabel="characters shown", xlim=(0, right),
           ylim=(0, max(characters) * 1.06 + 1), title=f"Partial transcripts over time, {record['id']}")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    texts = [("reference", record["reference"]), ("final greedy", record["greedy"])]
    texts += [("final + LM", record["lm"])] if record.get("lm") is not None else []
    caption = "\n".join(textwrap.fill(f"{name}: {text}", 150, subsequent_indent="    ") for name, text in texts)
    figure.text(0.01, 0.01, caption, fontsize=9, family="monospace", va="bottom")
    figure.tight_layout(rect=(0, min(0.5, (caption.count("\n") + 1.5) * 0.16 / figure.get_figheight()), 1, 1))
    plt.close(figure)
    return figure
