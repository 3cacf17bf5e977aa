import json
import re
from pathlib import Path

import matplotlib.pyplot as plt
import nbformat
import numpy as np
import papermill
import pytest
import soundfile

from asr_helpers import paths
from asr_helpers.decoding.decoders import TABLE
from asr_helpers.decoding.tuned import Tuned, save_tuned
from asr_helpers.report import checklist
from asr_helpers.report import figures
from asr_helpers.report import stream_summary
from asr_helpers.report import summary
from asr_helpers.tools.notebooks import NOTEBOOKS_DIR, export_html
from asr_helpers.training.rundir import RunDir


def _fake_run(name: str, tokenizer: str = "char", decoders=("greedy", "beam", "lm")) -> None:
    run = paths.runs_dir() / name
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"model_size": "small", "tokenizer": tokenizer, "augment": "light",
                                                 "corpus": "synthetic", "synth_minutes": 1.0, "seed": 0}))
    (run / "train_summary.json").write_text(json.dumps({
        "epochs": 3, "steps": 30, "minutes": 2.0, "audio_hours": 0.5, "stop_reason": "time budget",
        "final": {"dev-clean": {"cer": 0.2, "wer": 0.5, "loss": 1.0}}}))
    (run / "decoding.json").write_text(json.dumps([
        {"split": "test-clean", "decoder": d, "wer": w, "cer": 0.2, "utterances": 2, "ms_per_utterance": 1.0}
        for d, w in zip(decoders, (0.6, 0.55, 0.4))]))
    (run / "recogs-test-clean-beam.txt").write_text(
        "1-2-0000\tref=the cat sat\thyp=the cat sat\n1-2-0001\tref=on a mat\thyp=in a hat\n")


def test_no_runs_gives_a_clear_message():
    with pytest.raises(summary.NoRunsError, match="train one with notebooks/03_train.ipynb"):
        summary.pick_run(None)
    with pytest.raises(summary.NoRunsError, match="has not finished"):
        summary.pick_run("missing")


def test_reads_runs_ablations_and_examples():
    _fake_run("a")
    _fake_run("b", tokenizer="bpe")
    assert summary.pick_run(None).name in {"a", "b"}
    table = summary.runs_table()
    assert list(table.run) == ["a", "b"] and table["dev-clean CER"].tolist() == [0.2, 0.2]
    rows, missing = summary.ablation(["a", "nope"])
    assert list(rows.run) == ["a"] and missing == ["nope"]
    examples = summary.best_and_worst(paths.runs_dir() / "a", "test-clean", "beam", count=1)
    assert examples.kind.tolist() == ["best", "worst"] and examples.wer.tolist() == [0.0, pytest.approx(2 / 3)]
    examples = summary.best_and_worst(paths.runs_dir() / "a", "test-clean", "beam", count=3)
    assert examples.id.tolist() == ["1-2-0000", "1-2-0001"]  # two utterances: each shown once, not as best and worst
    assert summary.analysed_decoder(summary.decoder_results(paths.runs_dir() / "a")) == ("test-clean", "lm")
    table = summary.decoder_table(summary.decoder_results(paths.runs_dir() / "a"))
    assert list(table.index) == ["greedy", "beam", "lm"] and table.loc["lm", "WER test-clean"] == 0.4
    assert list(table.columns[:1]) == ["WER test-clean"] and table.loc["lm", "label"] == TABLE["lm"].label
    decoding = summary.decoder_results(paths.runs_dir() / "a")
    assert summary.missing_decoders(paths.runs_dir() / "a", decoding) == []
    assert summary.missing_decoders(paths.runs_dir() / "a", decoding[decoding.decoder != "lm"]) == ["lm"]


def test_latest_attempt_drops_a_restarted_run_and_replaces_resumed_steps():
    def records(*steps):
        return [{"kind": "train", "step": s} for s in steps]
    assert [r["step"] for r in summary.latest_attempt(records(10, 20, 30, 10, 20))] == [10, 20]
    assert [r["step"] for r in summary.latest_attempt(records(10, 20, 30, 40, 30, 40, 50))] == [10, 20, 30, 40, 50]
    assert summary.latest_attempt([]) == []


def test_audio_path_follows_the_librispeech_layout(tmp_path):
    _fake_run("a")
    assert summary.audio_path(paths.runs_dir() / "a", "test-clean", "1-2-0000") is None
    from asr_helpers.data.corpora import synthetic_root
    flac = synthetic_root(1.0, 0) / "LibriSpeech" / "test-clean" / "1" / "2" / "1-2-0000.flac"
    flac.parent.mkdir(parents=True)
    flac.write_bytes(b"")
    assert summary.audio_path(paths.runs_dir() / "a", "test-clean", "1-2-0000") == flac


def test_audio_path_finds_librispeech_on_a_kaggle_mount(tmp_path, monkeypatch):
    from asr_helpers.data import librispeech
    run = paths.runs_dir() / "ls"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"corpus": "librispeech", "data_root": None}))
    kaggle = tmp_path / "kaggle-input"
    monkeypatch.setattr(librispeech, "KAGGLE_INPUT", kaggle)
    assert summary.audio_path(run, "test-clean", "1-2-0000") is None
    chapter = kaggle / "librispeech-clean" / "LibriSpeech" / "test-clean" / "1" / "2"
    chapter.mkdir(parents=True)
    (chapter / "1-2.trans.txt").write_text("1-2-0000 THE CAT\n")
    (chapter / "1-2-0000.flac").write_bytes(b"")
    assert summary.audio_path(run, "test-clean", "1-2-0000") == chapter / "1-2-0000.flac"
    assert summary.audio_path(run, "no-such-split", "1-2-0000") is None
    downloaded = tmp_path / "data" / "LibriSpeech" / "test-clean" / "1" / "2"  # ensure_split's download layout
    downloaded.mkdir(parents=True)
    (downloaded / "1-2.trans.txt").write_text("1-2-0000 THE CAT\n")
    (downloaded / "1-2-0000.flac").write_bytes(b"")
    (run / "config.json").write_text(json.dumps({"corpus": "librispeech", "data_root": str(tmp_path / "data")}))
    assert summary.audio_path(run, "test-clean", "1-2-0000") == downloaded / "1-2-0000.flac"
    (run / "config.json").write_text(json.dumps({"corpus": "librispeech", "data_root": str(tmp_path / "elsewhere")}))
    assert summary.audio_path(run, "test-clean", "1-2-0000") == chapter / "1-2-0000.flac"  # as prepare_corpus would


def _full_run(name: str, tokenizer: str = "char") -> Path:
    """A run folder holding every record the report reads: history of two attempts, samples, media, LM grid."""
    _fake_run(name, tokenizer)
    run = paths.runs_dir() / name
    history = []
    for attempt_minutes in (0.0, 5.0):  # a first attempt that was started again from scratch
        for step in (10, 20, 30):
            minutes = attempt_minutes + step / 10
            history.append({"kind": "train", "step": step, "loss": 3.0 / step, "grad_norm": 2.0, "lr": 1e-3,
                            "minutes": minutes, "audio_hours": step / 100})
            for split in ("dev-clean", "dev-other"):
                history.append({"kind": f"eval/{split}", "step": step, "loss": 2.0, "wer": 0.9 - step / 100,
                                "cer": 0.5 - step / 100, "minutes": minutes})
    (run / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
    (run / "samples.jsonl").write_text(json.dumps({"name": "samples/dev-clean", "step": 30, "rows": [
        {"id": "1-2-0000", "target": "the cat", "prediction": "the hat", "cer": 0.14, "wer": 0.5}]}) + "\n")
    files = RunDir(run)
    files.media.mkdir()
    for media_name in ("train/spectrogram", "train/spectrogram_augmented", "eval/dev-clean/spectrogram"):
        plt.imsave(files.media_file(media_name, 30, "png"), np.random.default_rng(0).random((8, 20)))
    soundfile.write(files.media_file("train/augmented_audio", 30, "wav"), np.zeros(1600, dtype=np.float32), 16000)
    (run / "lm_params.json").write_text(json.dumps({"alpha": 0.5, "beta": 1.0, "wer": 0.4, "alphas": [0.0, 0.5],
                                                    "betas": [0.0, 1.0], "grid": [[0.6, 0.55], [0.45, 0.4]], "lm": None}))
    (run / "recogs-test-clean-lm.txt").write_text(
        "1-2-0000\tref=the cat sat\thyp=the cat sat\n1-2-0001\tref=on a mat\thyp=in a hat\n"
        "7-8-0000\tref=by the fire\thyp=by the fir\n")
    return run


def test_reads_media_lm_grid_and_ablation_histories():
    run = _full_run("a")
    assert [r["minutes"] for r in summary.history(run) if r["kind"] == "train"] == [6.0, 7.0, 8.0]  # last attempt only
    assert list(summary.spectrogram_images(run)) == ["train utterance (features before SpecAugment)",
                                                    "the same train utterance after augmentation (SpecAugment masks)",
                                                    "dev utterance (dev-clean)"]
    assert summary.augmented_audio(run).name == "train_augmented_audio-0000030.wav"
    assert summary.attention_images(run) == {}
    assert summary.lm_grid(run).weights == {"alpha": 0.5, "beta": 1.0}, "an old run's lm_params.json still reads"
    assert summary.lm_grid(paths.runs_dir()) is None
    lm_line = "**lm** used alpha **0.5**, beta **1**, the lowest dev WER (40.0 %) of 4 tried."
    assert summary.tuned_weights_line(run) == lm_line, "a CTC-only run has no joint decoding"
    save_tuned(run, Tuned("joint", {"ctc_weight": 0.5}, "cer", 0.174, [{"weights": {"ctc_weight": w}, "score": c}
                                                                       for w, c in ((0.3, 0.192), (0.5, 0.174))]))
    assert summary.tuned_weights_line(run) == lm_line + (" **joint** used ctc_weight **0.5**, the lowest dev CER "
                                                         "(0.3: 19.2 %, 0.5: 17.4 %).")
    save_tuned(run, Tuned("joint+lm", {"ctc_weight": 0.9, "alpha": 0.8, "beta": 0.0}, "cer", 0.126, [{}, {}]))
    assert summary.tuned_weights_line(run).endswith("**joint+lm** used ctc_weight **0.9**, alpha **0.8**, beta **0**, "
                                                    "the lowest dev CER (12.6 %) of 2 tried.")
    samples = summary.latest_samples(run)
    assert samples[["split", "prediction", "wer"]].values.tolist() == [["dev-clean", "the hat", 0.5]]
    histories, labels, missing = summary.ablation_histories(["a", "nope", "a"])
    assert list(histories) == ["a"] and missing == ["nope"]
    assert labels["a"] == "a (tokenizer=char, augment=light)"
    speakers = summary.speaker_table(run, "test-clean", summary.recogs(run, "test-clean", "lm"))
    assert speakers.speaker.tolist() == ["1", "7"] and speakers.cer.tolist() == [pytest.approx(2 / 19), pytest.approx(1 / 11)]


def test_checklist_marks_every_course_item_from_the_run_files():
    full = _full_run("full")
    _full_run("bpe", tokenizer="bpe")
    checks = {c.item: c for c in checklist.course_checklist(full, ["full", "bpe", "missing"])}
    required = [c for c in checks.values() if c.kind == "required"]
    assert len(required) == 8 and all(c.present for c in required), [c for c in required if not c.present]
    assert checks["external LM at inference, shown to help (+1)"].present
    assert "test-clean 0.550 -> 0.400" in checks["external LM at inference, shown to help (+1)"].evidence
    assert checks["BPE tokenisation with an ablation against characters (+1)"].present
    attention = checks["LAS attention model with attention maps (up to +3)"]
    assert not attention.present and attention.evidence == "no attention decoder in this run"

    _fake_run("bare", decoders=("greedy",))
    (paths.runs_dir() / "bare" / "config.json").write_text(json.dumps({"augment": "none"}))
    bare = {c.item: c for c in checklist.course_checklist(paths.runs_dir() / "bare")}
    assert not any(c.present for c in bare.values())
    assert bare["own beam search better than argmax"].evidence == "no split decoded with both greedy and beam"
    html = checklist.checklist_html(bare.values())
    assert html.count(">missing<") == len(bare) and "Missing required items:" in html


def test_checklist_links_point_at_report_headings():
    notebook = nbformat.read(NOTEBOOKS_DIR / "05_report.ipynb", as_version=4)
    headings = {line[3:].strip() for c in notebook.cells if c.cell_type == "markdown"
                for line in c.source.splitlines() if line.startswith("## ")}
    assert set(checklist.SECTIONS) <= headings
    assert checklist.section_link("Training curves") == '<a href="#Training-curves">Training curves</a>'


def test_augmentation_types_of_the_presets():
    assert checklist.augmentation_types("none") == []
    assert len(checklist.augmentation_types("light")) >= 4 and "SpecAugment" in checklist.augmentation_types("full")
    assert checklist.augmentation_types([{"name": "speed"}, {"name": "noise"}]) == ["speed", "noise"]


def _render_report(tmp_path, run_name: str, **parameters) -> tuple[list, str]:
    """Execute 05 on the isolated artifacts; the outputs of its code cells and its no-code HTML."""
    executed = tmp_path / "05.ipynb"
    papermill.execute_notebook(str(NOTEBOOKS_DIR / "05_report.ipynb"), str(executed),
                               parameters={"run_name": run_name, **parameters},
                               cwd=str(paths.REPO_ROOT), kernel_name="python3", progress_bar=False)
    export_html(executed)
    outputs = [o for c in nbformat.read(executed, as_version=4).cells if c.cell_type == "code" for o in c.outputs]
    return outputs, (paths.artifacts_dir() / "report-no-code.html").read_text()


@pytest.mark.slow
def test_report_renders_every_section_with_figures_checklist_and_aligned_examples(tmp_path):
    _full_run("ablation-aug-none")
    _full_run("ablation-aug-full")
    _full_run("ablation-bpe", tokenizer="bpe")
    _full_run("main")
    outputs, html = _render_report(tmp_path, "main")
    assert not [o for o in outputs if o.output_type == "error" or o.get("name") == "stderr"]
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    # curves, 3 spectrograms, decoder bars, LM grid, 2 ablation figures, CER per speaker, frequent edits
    assert len(figures) >= 10 and html.count("data:image/png") >= 10
    assert "Course checklist" in html and html.count(">present<") >= 9
    assert html.count("<b>ref</b>") == 3 and "background:#fdd49e" in html  # best/worst aligned, a substitution coloured
    assert "Not recorded for this run" not in html and "No attention decoder in this run" in html
    anchors = set(re.findall(r'id="([^"]+)"', html))
    assert set(re.findall(r'href="#([^"]+)"', html)) <= anchors  # contents and checklist links


@pytest.mark.slow
def test_report_renders_a_run_without_records_with_a_note_per_section(tmp_path):
    run = paths.runs_dir() / "bare"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"corpus": "synthetic"}))
    (run / "train_summary.json").write_text(json.dumps({"epochs": 1, "steps": 1, "minutes": 0.1, "final": {}}))
    outputs, html = _render_report(tmp_path, "bare")
    assert not [o for o in outputs if o.output_type == "error"]
    for missing in ("the run logged no scalars", "sample tables are written", "no spectrograms in", "no decoding results",
                    "notebook 04 writes them", "ablation-aug-none", "no per-utterance results", "No attention decoder"):
        assert missing in html, missing
    assert "Course checklist" in html and html.count(">missing<") == 11


def test_unreadable_records_are_skipped_with_a_warning_naming_the_file(caplog):
    run = _full_run("a")
    with (run / "history.jsonl").open("a") as handle:
        handle.write('{"kind": "train", "ste')  # a run killed mid-write
    with (run / "recogs-test-clean-lm.txt").open("a") as handle:
        handle.write("no tabs on this line\n")
    (run / "decoding.json").write_text("[{\"split\": ")
    (run / "lm_params.json").write_text(json.dumps({"alpha": 0.5}))
    assert len(summary.history(run)) == 9
    assert summary.recogs(run, "test-clean", "lm").id.tolist() == ["1-2-0000", "1-2-0001", "7-8-0000"]
    assert summary.decoder_results(run).empty and summary.lm_grid(run) is None and summary.tuned_weights_line(run) == ""
    assert {c.item: c.present for c in checklist.course_checklist(run)}["gradient norm"]
    warnings = caplog.text
    for name in ("history.jsonl line 19", "recogs-test-clean-lm.txt line 4", "decoding.json skipped",
                 "tuned weights skipped: ", "lm_params.json: the tuned weights of 'lm' are malformed"):
        assert name in warnings, name
    (run / "decoding.json").write_text(json.dumps([{"split": "dev-clean"}]))
    assert summary.decoder_results(run).empty and "expected the fields split, decoder" in caplog.text


STREAM_RECORD = {"id": "1-2-0000", "reference": "the cat sat", "seconds": 1.2, "partial_chunk_ms": 160,
                 "partials": [[0.32, "th"], [0.48, "the c"], [0.8, "the cat s"], [1.2, "the cat sad"]],
                 "greedy": "the cat sad", "lm": "the cat sat", "lookahead_frames": 3, "frame_ms": 20.0,
                 "waits_beyond_chunk_ms": 82.0,
                 "latency": [{"chunk_ms": c, "chunks": 10, "rtf_mean": 0.05, "rtf_p95": 0.08, "compute_ms_per_chunk": 4.0,
                              "finish_ms": 2.0, "algorithmic_latency_ms": c + 82.0, "threads": 2} for c in (80, 160)]}


def _stream_run(name: str, record: dict | None = STREAM_RECORD) -> Path:
    """A finished ds2_stream run with a CER per decoder 10 points above ``_fake_run``'s and, unless None, a record."""
    _fake_run(name, decoders=("greedy", "lm"))
    run = paths.runs_dir() / name
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "model": "ds2_stream"}))
    decoding = json.loads((run / "decoding.json").read_text())
    (run / "decoding.json").write_text(json.dumps([{**row, "cer": 0.3} for row in decoding]))
    if record is not None:
        RunDir(run).streaming.write_text(json.dumps(record))
    return run


def test_the_words_of_the_partials_are_placed_where_they_first_showed():
    assert figures.word_onsets(STREAM_RECORD["partials"]) == [(0.32, 2, "the"), (0.48, 5, "cat"), (0.8, 9, "sad")]
    assert figures.word_onsets([]) == []
    figure = figures.partials_figure(STREAM_RECORD)
    texts = [t.get_text() for t in figure.axes[0].texts]
    assert texts == ["the", "cat", "sad"] and "reference: the cat sat" in figure.texts[0].get_text()
    assert "final + LM: the cat sat" in figure.texts[0].get_text()
    assert figure.axes[0].get_xlim()[1] > STREAM_RECORD["seconds"]  # the end of the audio is on the plot


def test_the_streaming_section_reads_the_record_latency_and_the_accuracy_cost(caplog):
    _fake_run("demo")
    decoding = paths.runs_dir() / "demo" / "decoding.json"
    rows = json.loads(decoding.read_text())
    decoding.write_text(json.dumps(rows + [{**row, "split": "test-other"} for row in rows]))  # a split only demo has
    stream = _stream_run("stream")
    record = stream_summary.stream_record(stream)
    table = stream_summary.latency_table(record)
    assert table["algorithmic latency (ms)"].tolist() == [162.0, 242.0] and table["RTF p95"].tolist() == [0.08, 0.08]
    line = stream_summary.latency_line(record)
    assert "3 output frames of 20 ms = 60 ms" in line and "STFT window (22 ms)" in line
    cost, missing = stream_summary.accuracy_cost("demo", "stream")
    assert missing == [] and list(cost.index) == ["greedy", "lm"]  # beam: only demo has it
    assert cost["test-clean cost (points)"].tolist() == [10.0, 10.0] and not cost.filter(like="test-other").columns.size
    assert cost["test-clean CER % demo"].tolist() == [20.0, 20.0] and cost["test-clean CER % stream"].tolist() == [30.0, 30.0]
    nothing, missing = stream_summary.accuracy_cost("demo", "nope")
    assert nothing.empty and missing == ["nope"]
    RunDir(stream).streaming.write_text('{"id": ')
    assert stream_summary.stream_record(stream) is None and "streaming.json skipped" in caplog.text


def test_a_run_without_a_streaming_record_says_what_is_missing_and_what_to_run():
    _fake_run("demo")
    bare = _stream_run("stream", record=None)
    assert stream_summary.stream_record(bare) is None and stream_summary.streams(bare)
    assert "no `streaming.json`" in stream_summary.missing_line(bare) and "04_lm_decoding" in stream_summary.missing_line(bare)
    demo = paths.runs_dir() / "demo"
    assert stream_summary.stream_record(demo) is None and not stream_summary.streams(demo)
    assert "./run_all.sh stream" in stream_summary.missing_line(demo)
    ablation = _stream_run("stream-utterance", record=None)
    config = json.loads((ablation / "config.json").read_text())
    (ablation / "config.json").write_text(json.dumps({**config, "feature_norm": "utterance"}))
    assert "cannot stream" in stream_summary.missing_line(ablation)


@pytest.mark.slow
def test_report_renders_the_streaming_section_of_a_streaming_run(tmp_path):
    _fake_run("demo")
    _stream_run("stream")
    outputs, html = _render_report(tmp_path, "stream", compare_runs=["demo", "stream"])
    assert not [o for o in outputs if o.output_type == "error"]
    section = html[html.index('id="Streaming"'):html.index('id="Language-model-weights"')]
    assert section.count("data:image/png") == 1 and "algorithmic latency (ms)" in section
    assert "test-clean cost (points)" in section and "Not recorded for this run" not in section
