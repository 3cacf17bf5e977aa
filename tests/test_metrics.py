"""WER/CER with exact expected values, empty references, and folder scoring."""
from __future__ import annotations

import pytest

from asr_helpers.decoding.metrics import cer, score_folders, utterance_errors, wer


def test_wer_counts_substitutions_deletions_insertions_over_reference_words():
    # "sat"->"sit" (1 substitution), "the" deleted, "now" inserted: 3 edits over 6 words
    assert wer(["the cat sat", "on the mat"], ["the cat sit", "on mat now"]) == pytest.approx(3 / 6)


def test_corpus_rate_is_total_edits_over_total_length_not_a_mean():
    refs, hyps = ["a", "b c d e"], ["x", "b c d e"]
    assert wer(refs, hyps) == pytest.approx(1 / 5)  # the mean of per-utterance rates would be 0.5


def test_cer_counts_characters_including_spaces():
    assert cer(["ab cd"], ["ab d"]) == pytest.approx(1 / 5)
    assert cer(["abc"], ["abd"]) == pytest.approx(1 / 3)


def test_runs_of_spaces_do_not_count_as_errors():
    assert wer(["a  b "], [" a b"]) == 0.0
    assert cer(["a  b "], [" a b"]) == 0.0


def test_utterance_errors_returns_both_rates():
    assert utterance_errors("the cat", "the hat") == {"wer": 0.5, "cer": pytest.approx(1 / 7)}


def test_empty_reference_counts_hypothesis_as_insertions():
    assert utterance_errors("", "") == {"wer": 0.0, "cer": 0.0}
    assert utterance_errors("", "a b") == {"wer": 2.0, "cer": 3.0}
    # in a corpus the empty reference adds edits but no length
    assert wer(["", "a b"], ["x", "a b"]) == pytest.approx(1 / 2)
    assert wer(["", ""], ["", ""]) == 0.0


def test_empty_hypothesis_is_all_deletions():
    assert wer(["a b c"], [""]) == 1.0


def test_bad_arguments_are_explained():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        wer(["a", "b"], ["a"])
    with pytest.raises(TypeError, match="utterance_errors"):
        wer("a b", "a b")


def _write(folder, files: dict[str, str]):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / f"{name}.txt").write_text(text)
    return folder


def test_score_folders_normalises_and_lists_unmatched_files(tmp_path):
    refs = _write(tmp_path / "refs", {"u1": "HELLO WORLD\n", "u2": "THE CAT'S HAT", "u3": "MISSING ONE"})
    preds = _write(tmp_path / "preds", {"u1": "hello world", "u2": "the cats hat", "u9": "extra"})
    report = score_folders(refs, preds)
    assert report.utterances == 2
    assert report.reference_words == 5
    assert report.wer == pytest.approx(1 / 5)
    assert report.cer == pytest.approx(1 / (11 + 13))
    assert report.missing == ["u3"]
    assert report.extra == ["u9"]
    summary = report.summary()
    assert "WER 20.00%" in summary and "u3" in summary and "u9" in summary


def test_score_folders_keeps_unspellable_and_empty_references(tmp_path):
    refs = _write(tmp_path / "refs", {"a": "ROOM 101", "b": ""})
    preds = _write(tmp_path / "preds", {"a": "room 101", "b": "noise"})
    report = score_folders(refs, preds)
    assert report.reference_words == 2
    assert report.wer == pytest.approx(1 / 2)  # "room 101" matches; "noise" is one insertion


def test_score_folders_without_common_names_is_an_error(tmp_path):
    refs = _write(tmp_path / "refs", {"a": "x"})
    preds = _write(tmp_path / "preds", {"b": "x"})
    with pytest.raises(ValueError, match="no file name appears in both"):
        score_folders(refs, preds)


def test_score_folders_missing_folder_is_named(tmp_path):
    refs = _write(tmp_path / "refs", {"a": "x"})
    with pytest.raises(FileNotFoundError, match="predictions folder"):
        score_folders(refs, tmp_path / "nowhere")
