import numpy as np
import soundfile

from asr_helpers.data.manifest import index_split, load_splits, scan_split
from conftest import write_librispeech


def test_index_counts_and_fields(tiny_corpus):
    index = index_split(tiny_corpus, "train-clean-100")
    assert len(index.utterances) == 12 and not index.skipped
    utt = index.utterances[0]
    assert utt.speaker == utt.id.split("-")[0] and utt.split == "train-clean-100"
    assert abs(utt.seconds - soundfile.info(utt.path).duration) < 1e-6
    assert utt.text == utt.text.lower()


def test_bad_inputs_are_skipped_with_reasons(tmp_path):
    root = tmp_path / "LibriSpeech"
    write_librispeech(root, "dev-clean", speakers=1, utterances=5)
    chapter = next((root / "dev-clean").glob("*/*"))
    flacs = sorted(chapter.glob("*.flac"))
    flacs[0].write_bytes(b"not audio at all")                       # corrupt
    flacs[1].unlink()
    soundfile.write(flacs[1].with_suffix(".wav"), np.zeros(0, dtype=np.float32), 16000)  # empty
    flacs[2].unlink()                                                # transcript without audio
    trans = next(chapter.glob("*.trans.txt"))
    lines = trans.read_text().splitlines()
    lines[3] = lines[3].split()[0] + " CHAPTER 12"                  # digits
    lines.pop(4)                                                     # audio without transcript
    trans.write_text("\n".join(lines) + "\n")
    index = scan_split(root, "dev-clean")
    assert index.utterances == []
    assert index.skipped == {"unreadable audio": 1, "empty audio": 1, "transcript without audio": 1,
                             "text: unsupported characters '12'": 1, "audio without transcript": 1}
    assert "skipped" in index.summary()


def test_cache_is_reused_and_equal(tiny_corpus):
    first = index_split(tiny_corpus, "dev-clean")
    second = index_split(tiny_corpus, "dev-clean")
    assert first.utterances == second.utterances


def test_load_splits_applies_max_duration(tiny_corpus):
    everything = load_splits(tiny_corpus, ["train-clean-100", "dev-clean"])
    short = load_splits(tiny_corpus, ["train-clean-100", "dev-clean"], max_seconds=1.2)
    assert len(everything) == 15
    assert 0 < len(short) < len(everything) and all(u.seconds <= 1.2 for u in short)


def test_missing_split_is_a_clear_error(tmp_path):
    import pytest
    with pytest.raises(FileNotFoundError, match="LibriSpeech layout"):
        index_split(tmp_path, "dev-clean")
