import json

import pytest

from asr_helpers import paths, report


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
    with pytest.raises(report.NoRunsError, match="train one with notebooks/03_train.ipynb"):
        report.pick_run(None)
    with pytest.raises(report.NoRunsError, match="has not finished"):
        report.pick_run("missing")


def test_reads_runs_ablations_examples_and_bonuses():
    _fake_run("a")
    _fake_run("b", tokenizer="bpe")
    assert report.pick_run(None).name in {"a", "b"}
    table = report.runs_table()
    assert list(table.run) == ["a", "b"] and table["dev-clean CER"].tolist() == [0.2, 0.2]
    rows, missing = report.ablation(["a", "nope"])
    assert list(rows.run) == ["a"] and missing == ["nope"]
    examples = report.best_and_worst(paths.runs_dir() / "a", "test-clean", "beam", count=1)
    assert examples.kind.tolist() == ["best", "worst"] and examples.wer.tolist() == [0.0, pytest.approx(2 / 3)]
    done = report.bonus_tasks(paths.runs_dir() / "a", ["a", "b"])
    assert len(done) == 2 and "0.600 greedy -> 0.400 with LM" in done[0]


def test_audio_path_follows_the_librispeech_layout(tmp_path):
    _fake_run("a")
    assert report.audio_path(paths.runs_dir() / "a", "test-clean", "1-2-0000") is None
    from asr_helpers.corpora import synthetic_root
    flac = synthetic_root(1.0, 0) / "LibriSpeech" / "test-clean" / "1" / "2" / "1-2-0000.flac"
    flac.parent.mkdir(parents=True)
    flac.write_bytes(b"")
    assert report.audio_path(paths.runs_dir() / "a", "test-clean", "1-2-0000") == flac


def test_audio_path_finds_librispeech_on_a_kaggle_mount(tmp_path, monkeypatch):
    from asr_helpers import librispeech
    run = paths.runs_dir() / "ls"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"corpus": "librispeech", "data_root": None}))
    kaggle = tmp_path / "kaggle-input"
    monkeypatch.setattr(librispeech, "KAGGLE_INPUT", kaggle)
    assert report.audio_path(run, "test-clean", "1-2-0000") is None
    chapter = kaggle / "librispeech-clean" / "LibriSpeech" / "test-clean" / "1" / "2"
    chapter.mkdir(parents=True)
    (chapter / "1-2.trans.txt").write_text("1-2-0000 THE CAT\n")
    (chapter / "1-2-0000.flac").write_bytes(b"")
    assert report.audio_path(run, "test-clean", "1-2-0000") == chapter / "1-2-0000.flac"
    assert report.audio_path(run, "no-such-split", "1-2-0000") is None
    downloaded = tmp_path / "data" / "LibriSpeech" / "test-clean" / "1" / "2"  # ensure_split's download layout
    downloaded.mkdir(parents=True)
    (downloaded / "1-2.trans.txt").write_text("1-2-0000 THE CAT\n")
    (downloaded / "1-2-0000.flac").write_bytes(b"")
    (run / "config.json").write_text(json.dumps({"corpus": "librispeech", "data_root": str(tmp_path / "data")}))
    assert report.audio_path(run, "test-clean", "1-2-0000") == downloaded / "1-2-0000.flac"
    (run / "config.json").write_text(json.dumps({"corpus": "librispeech", "data_root": str(tmp_path / "elsewhere")}))
    assert report.audio_path(run, "test-clean", "1-2-0000") == chapter / "1-2-0000.flac"  # as prepare_corpus would
