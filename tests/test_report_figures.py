import numpy as np
import pandas as pd
from matplotlib.patches import Rectangle

from asr_helpers import plots
from asr_helpers.report import error_analysis
from asr_helpers.report import figures
from asr_helpers.decoding.tuned import Tuned


def _history():
    records = []
    for step in (10, 20, 30):
        records.append({"kind": "train", "step": step, "loss": 1.0 / step, "grad_norm": 1.0, "lr": 1e-3,
                        "minutes": step / 10, "audio_hours": step / 20})
        records.append({"kind": "eval/dev-clean", "step": step, "loss": 1.0, "wer": 1.2, "cer": 0.4, "minutes": step / 10})
    return records


def test_curves_show_audio_hours_on_a_top_axis_and_fit_error_rates_above_one():
    figure = plots.curves_figure(_history(), x="minutes")
    panels = figure.axes
    top_axes = [child for panel in panels for child in panel.child_axes]
    assert len(panels) == 4 and [axis.get_xlabel() for axis in top_axes] == ["audio hours seen"] * 4
    assert panels[3].get_ylim()[1] >= 1.25
    empty = plots.curves_figure([r for r in _history() if r["kind"] != "train"], x="minutes")
    assert "no train records yet" in empty.axes[1].texts[0].get_text()


def test_lm_grid_frames_the_chosen_cell():
    scores = {(0.0, 0.0): 0.6, (0.0, 1.0): 0.55, (0.5, 0.0): 0.45, (0.5, 1.0): 0.4}
    tuned = Tuned("lm", {"alpha": 0.5, "beta": 1.0}, "wer", 0.4,
                  [{"weights": {"alpha": a, "beta": b}, "score": s} for (a, b), s in scores.items()])
    ax = figures.alpha_beta_figure(tuned).axes[0]
    frames = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(frames) == 1 and frames[0].get_xy() == (0.5, 0.5)  # column 1 (beta 1.0), row 1 (alpha 0.5)
    assert [t.get_text() for t in ax.texts] == ["0.600", "0.550", "0.450", "0.400"]
    assert ax.get_title() == "dev WER; chosen alpha=0.5, beta=1 (WER 0.400)"


def test_decoder_bars_label_every_split_and_decoder():
    decoding = pd.DataFrame([{"split": s, "decoder": d, "wer": w, "cer": w / 2, "ms_per_utterance": 1.0}
                             for s in ("dev-clean", "test-clean") for d, w in (("greedy", 0.5), ("beam", 0.4), ("lm", 0.3))])
    figure = figures.decoder_bars_figure(decoding)
    wer_axis = figure.axes[0]
    assert [t.get_text() for t in wer_axis.get_xticklabels()] == ["dev-clean", "test-clean"]
    assert sorted(float(t.get_text()) for t in wer_axis.texts) == [0.3, 0.3, 0.4, 0.4, 0.5, 0.5]
    assert [[t.get_text() for t in legend.get_texts()] for legend in figure.legends] == [["greedy", "beam", "lm"]]
    assert all(ax.get_legend() is None for ax in figure.axes), "one legend for both plots, not one each"


def test_ablation_speaker_and_edit_figures_draw_what_they_are_given():
    histories = {"a": _history(), "b": [dict(r, cer=r.get("cer", 0) / 2) for r in _history()]}
    ablation = figures.ablation_curves_figure(histories, {"a": "a (augment=none)"})
    assert len(ablation.axes) == 2 and len(ablation.axes[0].lines) == 2
    assert np.allclose(ablation.axes[1].lines[0].get_xdata(), [0.5, 1.0, 1.5])  # audio hours at each evaluation
    assert [t.get_text() for t in ablation.axes[0].get_legend().get_texts()] == ["a (augment=none)", "b"]
    speakers = pd.DataFrame({"speaker": ["7", "1"], "name": ["flite slt", ""], "utterances": [2, 1], "cer": [0.5, 0.1]})
    labels = [t.get_text() for t in figures.speaker_cer_figure(speakers).axes[0].get_yticklabels()]
    assert labels == ["1", "7 flite slt"]  # worst at the top
    counts = error_analysis.edit_counts([("the cat", "the hat")])
    axes = figures.edit_counts_figure(error_analysis.top_edits(counts)).axes
    assert [t.get_text() for t in axes[0].get_yticklabels()] == ["'c\u2192h'"] and "no deletions" in axes[1].texts[0].get_text()
