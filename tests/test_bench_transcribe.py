"""bench transcribe times the real command per decoder, rates it against greedy, sets a second checkout beside it."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile

from asr_helpers import paths
from asr_helpers.tools.bench_transcribe import Row, bench_transcribe, corpus_files, timed_rows, with_rates
from conftest import run_cli

PINNED = Path(__file__).parent / "fixtures" / "pinned"


@pytest.fixture
def broken_checkout(tmp_path) -> Path:
    """A checkout whose every command fails with one error line (a REF that cannot transcribe)."""
    package = tmp_path / "ref" / "asr_helpers"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text("import sys\nprint('error: no such option', file=sys.stderr)\nsys.exit(2)\n")
    return package.parent


def test_rows_put_greedy_first_and_time_lm_once_per_engine():
    assert timed_rows(["beam", "lm", "greedy"], ["pyctcdecode", "flashlight"]) == [
        Row("greedy"), Row("beam"), Row("lm", "pyctcdecode"), Row("lm", "flashlight")]
    assert Row("lm", "flashlight").name == "lm (flashlight)"
    with pytest.raises(ValueError, match="unknown decoder 'fast'"):
        timed_rows(["fast"], ["pyctcdecode"])


def test_rates_are_relative_to_greedy_of_the_same_side():
    rated = with_rates({"greedy": {"seconds": 2.0, "files": 10}, "beam": {"seconds": 4.0, "files": 10},
                        "lm (flashlight)": {"error": "boom"}}, audio=40.0)
    assert rated["greedy"] == {"seconds": 2.0, "files": 10, "files_per_sec": 5.0, "rtf": 0.05, "vs_greedy": 1.0}
    assert rated["beam"]["files_per_sec"] == 2.5 and rated["beam"]["rtf"] == 0.1 and rated["beam"]["vs_greedy"] == 0.5
    assert rated["lm (flashlight)"] == {"error": "boom"}


def test_a_folder_is_timed_beside_a_second_checkout(broken_checkout, tmp_path, capsys):
    """This checkout's code transcribes the pinned files; the REF side's failures land in the table, not a traceback."""
    result = bench_transcribe(PINNED / "model.pt", input_dir=PINNED / "audio", decoders=("greedy",),
                              compare=broken_checkout, pool_size=1)
    assert result["files"] == 3 and result["audio_seconds"] > 0 and result["compare"] == str(broken_checkout)
    this, ref = result["this"]["greedy"], result["ref"]["greedy"]
    assert this["files"] == 3 and this["vs_greedy"] == 1.0
    assert this["rtf"] == pytest.approx(this["seconds"] / result["audio_seconds"], rel=0.01)
    assert ref == {"error": "error: no such option"}
    lines = result["table"].splitlines()
    assert lines[1].startswith("| decoder | files/s | RTF | vs greedy | files/s (REF) |")
    assert lines[3].startswith("| greedy |") and lines[3].endswith("| failed: error: no such option |  |  |")


def test_the_command_prints_the_table_then_one_json_line(monkeypatch, capsys):
    from asr_helpers.tools import bench_transcribe as module
    monkeypatch.setattr(module, "run_transcribe", lambda checkout, row, command, output: {"seconds": 1.0, "files": 3})
    code, out, err = run_cli(capsys, "bench", "transcribe", "--checkpoint", str(PINNED / "model.pt"),
                             "--input", str(PINNED / "audio"), "--decoders", "greedy", "lm",
                             "--lm", str(PINNED / "3-gram.arpa"), "--lm-engines", "pyctcdecode", "flashlight",
                             "--compare", str(paths.REPO_ROOT))
    assert code == 0, err
    lines = out.strip().splitlines()
    assert [line.split(" | ")[0] for line in lines[3:6]] == ["| greedy", "| lm (pyctcdecode)", "| lm (flashlight)"]
    found = json.loads(lines[-1])
    assert found["compare"] == str(paths.REPO_ROOT) and found["ref"]["lm (flashlight)"]["vs_greedy"] == 1.0


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    code, _, err = run_cli(capsys, "bench", "transcribe", "--input", str(PINNED / "audio"))
    assert code == 2 and "needs --checkpoint PATH" in err
    code, _, err = run_cli(capsys, "bench", "transcribe", "--checkpoint", str(PINNED / "model.pt"),
                           "--input", str(PINNED / "audio"), "--compare", str(tmp_path))
    assert code == 2 and "is not a checkout of this project" in err
    code, _, err = run_cli(capsys, "bench", "transcribe", "--checkpoint", str(PINNED / "model.pt"),
                           "--input", str(tmp_path))
    assert code == 2 and "no audio files in" in err


def test_the_default_files_are_copies_of_the_rendered_test_sets(tiny_corpus, monkeypatch, tmp_path):
    from asr_helpers.data import corpora
    from conftest import write_librispeech
    for seed, split in enumerate(("test-clean", "test-other")):
        write_librispeech(tiny_corpus, split, speakers=1, utterances=2, seed=seed + 5)
    monkeypatch.setattr(corpora, "prepare_corpus", lambda corpus, splits, **_: {s: tiny_corpus for s in splits})
    folder = corpus_files(tmp_path / "in", 6, synth_minutes=1.0)
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == 6 and len({name.split("-", 1)[1] for name in names}) == 4  # 4 distinct, repeated
    shutil.rmtree(folder)


def test_librispeech_length_files_join_corpus_utterances_to_drawn_lengths(tiny_corpus, monkeypatch, tmp_path):
    from asr_helpers.data import corpora
    from asr_helpers.tools.bench_transcribe import librispeech_length_files, librispeech_lengths
    from conftest import write_librispeech
    for seed, split in enumerate(("test-clean", "test-other")):
        write_librispeech(tiny_corpus, split, speakers=1, utterances=2, seed=seed + 5)
    monkeypatch.setattr(corpora, "prepare_corpus", lambda corpus, splits, **_: {s: tiny_corpus for s in splits})
    folder = librispeech_length_files(tmp_path / "in", 40, synth_minutes=1.0)
    lengths = [soundfile.info(str(p)).frames for p in sorted(folder.iterdir())]
    assert lengths == [round(s * 16000) for s in librispeech_lengths(40)]  # each file cut at its drawn length
    assert librispeech_length_files(tmp_path / "again", 40, synth_minutes=1.0) is not None
    assert [soundfile.info(str(p)).frames for p in sorted((tmp_path / "again").iterdir())] == lengths  # seeded
    test_clean = librispeech_lengths(2620)  # LibriSpeech test-clean: 2,620 files, 5.4 h (7.42 s each), 1.3-35 s
    assert 7.2 < test_clean.mean() < 7.7 and test_clean.min() >= 1.3 and test_clean.max() <= 35.0
    assert 5.2 < test_clean.sum() / 3600 < 5.6
