"""The offline TTS corpus: LibriSpeech layout, audio format, split hygiene, determinism, text."""
from __future__ import annotations

import hashlib
import logging
import re
import shutil
from concurrent.futures import Future
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
import soundfile

from asr_helpers.data import sentences
from asr_helpers.data import synthetic
from asr_helpers.data import tts
from asr_helpers.data.text import ALPHABET, normalize_transcript

SPLITS = list(synthetic.SPLIT_SHARES)
ENGINE_BINARIES = ("flite", "festival", "espeak-ng")
MISSING = [b for b in ENGINE_BINARIES if shutil.which(b) is None]
needs_engines = pytest.mark.skipif(bool(MISSING), reason=f"TTS engine not installed: {MISSING} "
                                   "(apt-get install flite festival espeak-ng festvox-kallpc16k "
                                   "festvox-kdlpc16k festvox-us-slt-hts)")
UTT_ID = re.compile(r"^(\d+)-(\d+)-(\d{4})$")
MINUTES = 0.5


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> dict:
    """Three tiny corpora: seed 0 twice (two worker counts) and seed 1."""
    runs = {}
    for name, seed, workers in (("a", 0, 2), ("b", 0, 1), ("c", 1, 2)):
        out = tmp_path_factory.mktemp(name)
        runs[name] = (out / "LibriSpeech", synthetic.synthesize_corpus(out, minutes=MINUTES, seed=seed,
                                                                       workers=workers))
    return runs


def _speakers(root: Path, split: str) -> set[int]:
    return {int(p.name) for p in (root / split).iterdir() if p.is_dir()}


def _transcripts(root: Path, split: str) -> dict[str, str]:
    lines = (line for t in (root / split).rglob("*.trans.txt") for line in t.read_text().splitlines())
    return dict(line.split(" ", 1) for line in lines)


def _table(path: Path, columns: int) -> list[list[str]]:
    rows = [[c.strip() for c in line.split("|")] for line in path.read_text().splitlines()
            if line and not line.startswith(";")]
    assert rows and all(len(r) == columns for r in rows), f"{path.name}: expected {columns} fields per row"
    return rows


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@needs_engines
def test_librispeech_layout(corpora):
    root, summary = corpora["a"]
    assert sorted(p.name for p in root.iterdir()) == sorted(SPLITS + ["SPEAKERS.TXT", "CHAPTERS.TXT"])
    for split in SPLITS:
        texts = _transcripts(root, split)
        flacs = list((root / split).rglob("*.flac"))
        assert flacs and len(flacs) == len(texts) == summary["splits"][split]["utterances"]
        for flac in flacs:
            speaker, chapter, _ = UTT_ID.match(flac.stem).groups()
            assert flac.parent == root / split / speaker / chapter
            assert (flac.parent / f"{speaker}-{chapter}.trans.txt").exists()
            assert flac.stem in texts
        for utt_id, text in texts.items():
            assert UTT_ID.match(utt_id) and text == text.upper()
            assert normalize_transcript(text) == text.lower()
        assert summary["splits"][split]["speakers"] == len(_speakers(root, split))


@needs_engines
def test_speaker_and_chapter_tables(corpora):
    root, _ = corpora["a"]
    speakers = _table(root / "SPEAKERS.TXT", 5)
    assert {(int(r[0]), r[2]) for r in speakers} == {(s, split) for split in SPLITS for s in _speakers(root, split)}
    assert {r[1] for r in speakers} <= {"M", "F"}
    chapters = _table(root / "CHAPTERS.TXT", 8)
    on_disk = {(int(p.name), int(p.parent.name), p.parent.parent.name)
               for p in root.glob("*/*/*") if p.is_dir()}
    assert {(int(r[0]), int(r[1]), r[3]) for r in chapters} == on_disk
    assert all(float(r[2]) > 0 for r in chapters)


@needs_engines
def test_audio_is_16k_mono_flac(corpora):
    root, summary = corpora["a"]
    total = 0.0
    for flac in root.rglob("*.flac"):
        info = soundfile.info(str(flac))
        assert (info.samplerate, info.channels, info.format, info.subtype) == (16000, 1, "FLAC", "PCM_16")
        assert info.duration > 0.3
        total += info.duration
    assert total == pytest.approx(summary["audio_seconds"], abs=0.5)
    assert summary["realtime_factor"] > 0 and summary["unavailable_voices"] == {}


@needs_engines
def test_splits_are_speaker_and_sentence_disjoint(corpora):
    root, _ = corpora["a"]
    for first, second in combinations(SPLITS, 2):
        assert not _speakers(root, first) & _speakers(root, second), (first, second)
        assert not set(_transcripts(root, first).values()) & set(_transcripts(root, second).values())


@needs_engines
def test_clean_eval_voices_unseen_in_training_but_engines_seen(corpora):
    root, _ = corpora["a"]
    voices = {row["speaker"]: row for row in synthetic.corpus_voices()}
    train = [voices[s] for s in _speakers(root, synthetic.TRAIN_SPLIT)]
    train_engines, train_sources = {v["engine"] for v in train}, {v["source"] for v in train}
    for split in ("dev-clean", "test-clean"):
        fresh = [voices[s] for s in _speakers(root, split)
                 if voices[s]["engine"] in train_engines
                 and (voices[s]["source"] not in train_sources or voices[s]["source"] == "formant synthesis")]
        assert len(fresh) >= 2, split
        assert len({v["engine"] for v in fresh}) >= 2, split


def test_voice_table_is_consistent():
    rows = synthetic.corpus_voices()
    assert len({r["speaker"] for r in rows}) == len({r["name"] for r in rows}) == len(rows)
    assert {r["split"] for r in rows} == set(SPLITS)
    train_sources = {r["source"] for r in rows if r["split"] == synthetic.TRAIN_SPLIT}
    recorded = {r["source"] for r in rows if r["split"] != synthetic.TRAIN_SPLIT} - {"formant synthesis"}
    assert not recorded & train_sources


@needs_engines
def test_same_seed_same_bytes_other_seed_differs(corpora):
    (root_a, _), (root_b, _), (root_c, _) = corpora["a"], corpora["b"], corpora["c"]
    assert _digests(root_a) == _digests(root_b)
    assert _transcripts(root_a, synthetic.TRAIN_SPLIT) != _transcripts(root_c, synthetic.TRAIN_SPLIT)


def test_sentence_partition_is_disjoint_and_stable():
    everything = sentences.load_sentences()
    parts = synthetic.sentences_by_split()
    assert sum(map(len, parts.values())) == len(everything)
    assert set().union(*map(set, parts.values())) == set(everything)
    assert len(parts[synthetic.TRAIN_SPLIT]) / len(everything) == pytest.approx(0.8, abs=0.02)
    assert synthetic.sentences_by_split(everything[::-1])["dev-clean"] == parts["dev-clean"][::-1]


def test_shipped_sentence_list():
    path = sentences.SENTENCES_FILE
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) > 10_000 and path.stat().st_size < 3_000_000
    assert len(set(lines)) == len(lines)
    assert set("".join(lines)) <= set(ALPHABET)
    assert all(lines) and all(line == " ".join(line.split()) for line in lines)
    assert all(sentences.MIN_WORDS <= len(line.split()) <= sentences.MAX_WORDS for line in lines)


def test_sentence_cleaning_rules():
    found = sentences.split_sentences(['"Mr. Darcy is come!" said she. "I saw _Mrs._ Bennet', "at 10 o'clock."])
    assert found == ['"Mister Darcy is come!" said she.', '"I saw Missus Bennet at 10 o\'clock.']
    assert sentences.clean_sentence(found[0]) == "mister darcy is come said she"
    with pytest.raises(sentences.TextError):
        sentences.clean_sentence(found[1])
    with pytest.raises(sentences.TextError):
        sentences.clean_sentence("He wrote to Henry VIII about it.")
    with pytest.raises(sentences.TextError):
        sentences.clean_sentence("It was signed by J. Thorpe himself.")


@pytest.mark.skipif(not sentences.JANEAUSTENR_DATA.with_suffix(".rdb").exists(),
                    reason="r-cran-janeaustenr not installed (apt-get install r-cran-janeaustenr)")
def test_rebuild_reproduces_shipped_list():
    assert sentences.build_sentences() == sentences.load_sentences()


@needs_engines
def test_engine_failure_is_a_logged_skip(tmp_path):
    ghost = tts.Voice("espeak-ghost", "espeak-ng", "xx-nosuch+m1", "M", "", "espeak-ng")
    assert "apt-get install espeak-ng" in tts.unavailable([ghost])[ghost.name]
    job = synthetic.ChapterJob(synthetic.CorpusVoice(9999, "dev-clean", ghost), 99991,
                               ("a sentence the engine cannot read",), 0, tmp_path)
    result = synthetic._render_chapter(job)
    assert result.utterances == 0 and len(result.skipped) == 1 and "espeak-ng exited" in result.skipped[0]
    assert not any(tmp_path.iterdir())


def test_resampling_keeps_frequency_and_pitch_shift_raises_it():
    rate = 22050
    tone = np.sin(2 * np.pi * 440 * np.arange(rate) / rate).astype(np.float32)
    for pitch in (1.0, 1.1):
        out = tts.to_sample_rate(tone, rate, pitch)
        assert len(out) == pytest.approx(tts.SAMPLE_RATE / pitch, rel=0.01)
        peak = np.argmax(np.abs(np.fft.rfft(out))) * tts.SAMPLE_RATE / len(out)
        assert peak == pytest.approx(440 * pitch, rel=0.01)
    out = tts.resample(tone, rate, 16000)
    exact = np.sin(2 * np.pi * 440 * np.arange(len(out)) / 16000)
    assert np.max(np.abs(out - exact)[1000:-1000]) < 1e-3


def test_resampling_removes_what_would_alias():
    rate = 22050
    above_nyquist = np.sin(2 * np.pi * 9000 * np.arange(rate) / rate).astype(np.float32)
    assert np.max(np.abs(tts.resample(above_nyquist, rate, 16000)[1000:-1000])) < 1e-3


def test_failed_chapter_is_counted_not_raised(tmp_path):
    cv = synthetic.VOICES[0]
    job = synthetic.ChapterJob(cv, cv.speaker * 10 + 1, ("one sentence", "another sentence"), 0, tmp_path)
    (tmp_path / str(cv.speaker) / str(job.chapter)).mkdir(parents=True)
    future = Future()
    future.set_exception(OSError("disk full"))
    result = synthetic._collect(job, future)
    assert result.utterances == 0 and len(result.skipped) == 2 and "disk full" in result.skipped[0]
    assert not (tmp_path / str(cv.speaker) / str(job.chapter)).exists()


@needs_engines
def test_missing_voice_is_reported_and_left_out(tmp_path, monkeypatch, caplog):
    gone = synthetic.VOICES[0].voice.name
    monkeypatch.setattr(tts, "unavailable", lambda voices: {gone: "flite has no voice rms (apt-get install flite)"})
    with caplog.at_level(logging.WARNING, logger="asr_helpers.data.synthetic"):
        summary = synthetic.synthesize_corpus(tmp_path, minutes=0.2, workers=1)
    assert gone in caplog.text and "apt-get install flite" in caplog.text
    assert summary["unavailable_voices"] == {gone: "flite has no voice rms (apt-get install flite)"}
    train_dir = tmp_path / "LibriSpeech" / synthetic.TRAIN_SPLIT
    assert str(synthetic.VOICES[0].speaker) not in {p.name for p in train_dir.iterdir()}
    assert summary["splits"][synthetic.TRAIN_SPLIT]["speakers"] == sum(
        cv.split == synthetic.TRAIN_SPLIT for cv in synthetic.VOICES) - 1
