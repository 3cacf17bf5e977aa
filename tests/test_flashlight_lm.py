"""The flashlight LM engines decode like pyctcdecode where they can, differ where documented, and refuse bad input.

A hand-written word bigram (no KenLM build needed) and log-probs spelled frame by frame.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from asr_helpers.data.text import CharTokenizer
from asr_helpers.decoding.lm import tune_alpha_beta
from asr_helpers.decoding.lm_engines import LM_ENGINES, build_lm_decoder
from conftest import spelled

TOK = CharTokenizer()
needs_flashlight = pytest.mark.skipif(importlib.util.find_spec("flashlight") is None,
                                      reason="flashlight-text is not installed: the flashlight engines cannot run")
ARPA = """
\\data\\
ngram 1=9
ngram 2=6

\\1-grams:
-1.0\t<unk>\t0
0\t<s>\t-0.3
-0.7\t</s>\t0
-0.6\tthe\t-0.3
-1.0\tcat\t-0.3
-1.0\tsat\t-0.3
-1.0\ton\t-0.3
-1.2\tmat\t-0.3
-1.5\that\t-0.3

\\2-grams:
-0.2\t<s> the
-0.2\tthe cat
-0.2\tcat sat
-0.2\tsat on
-0.2\ton the
-0.3\tthe mat

\\end\\
"""
SENTENCE = "the cat sat on the mat"


@pytest.fixture(scope="module")
def bigram(tmp_path_factory):
    path = tmp_path_factory.mktemp("bigram") / "2-gram.arpa"
    path.write_text(ARPA)
    return path


def near_miss() -> np.ndarray:
    """SENTENCE with the m of "mat" acoustically leaning to h ("hat", a word the bigram finds unlikely there)."""
    spec: list = list(SENTENCE)
    spec[SENTENCE.rindex("m")] = {"h": 0.6, "m": 0.4}
    return spelled(spec)


@needs_flashlight
@pytest.mark.parametrize("engine", LM_ENGINES)
def test_every_engine_lets_the_lm_fix_a_near_miss_and_follows_new_weights(engine, bigram):
    with build_lm_decoder(engine, TOK.labels, bigram, alpha=0.0, beta=0.0, beam_width=16) as decoder:
        assert decoder.decode(near_miss()) == "the cat sat on the hat"  # no LM weight: the acoustics win
        decoder.set_params(1.0, 0.0)
        assert decoder.decode(near_miss()) == SENTENCE
        assert decoder.decode_batch([near_miss(), spelled("the cat")], pool_size=2) == [SENTENCE, "the cat"]
        decoder.set_params(0.0, 0.0)  # the forked workers follow
        assert decoder.decode_batch([near_miss(), near_miss()], pool_size=2) == ["the cat sat on the hat"] * 2
        assert decoder.decode(near_miss()[:0]) == ""


@needs_flashlight
def test_only_the_lexicon_engine_cannot_write_a_word_outside_the_unigrams(bigram):
    """pyctcdecode and the lexicon-free search write "dog" and "thecat" (charged the unknown-word
    offset); the lexicon search has no spelling for them and skips their letters through blanks:
    a word ends only at a space, as in pyctcdecode, so "thecat" does not become "the cat"."""
    texts = {}
    for engine in LM_ENGINES:
        with build_lm_decoder(engine, TOK.labels, bigram, alpha=1.0, beta=2.0, beam_width=16) as decoder:
            texts[engine] = [decoder.decode(spelled(text)) for text in ("the dog sat", "thecat sat", " the  cat ")]
    assert texts == {"pyctcdecode": ["the dog sat", "thecat sat", "the cat"],
                     "flashlight-lexfree": ["the dog sat", "thecat sat", "the cat"],
                     "flashlight": ["the sat", "the sat", "the cat"]}


@needs_flashlight
def test_tuning_runs_on_the_flashlight_engine(bigram):
    tuned = tune_alpha_beta([near_miss()], [SENTENCE], TOK.labels, bigram, alphas=(0.0, 1.0), betas=(0.0,),
                            beam_width=16, pool_size=1, engine="flashlight")
    assert tuned.weights == {"alpha": 1.0, "beta": 0.0} and tuned.score == 0.0


@needs_flashlight
@pytest.mark.parametrize("engine", ["flashlight", "flashlight-lexfree"])
def test_flashlight_engines_refuse_bad_input_in_one_line(engine, bigram, tmp_path):
    with pytest.raises(ValueError, match="character labels"):
        build_lm_decoder(engine, ["", "\u2581the", "\u2581cat"], bigram)
    with pytest.raises(ValueError, match="need a language model"):
        build_lm_decoder(engine, TOK.labels, None)
    with pytest.raises(FileNotFoundError, match="not found"):
        build_lm_decoder(engine, TOK.labels, tmp_path / "missing.arpa")
    with pytest.raises(ValueError, match="UPPER-case"):
        build_lm_decoder(engine, TOK.labels, bigram, unigrams=["THE", "CAT", "SAT"])
    with build_lm_decoder(engine, TOK.labels, bigram) as decoder:
        with pytest.raises(ValueError, match=r"expected log-probs \[frames, 29\]"):
            decoder.decode(np.zeros((4, 5), dtype=np.float32))
        broken = near_miss()
        broken[3] = np.nan
        with pytest.raises(ValueError, match="NaN"):
            decoder.decode_batch([broken])


def test_an_unknown_or_missing_engine_is_a_one_line_error(bigram, monkeypatch):
    with pytest.raises(ValueError, match="unknown LM engine 'kaldi'; choose from pyctcdecode, flashlight"):
        build_lm_decoder("kaldi", TOK.labels, bigram)
    monkeypatch.delitem(sys.modules, "asr_helpers.decoding.flashlight_lm", raising=False)
    for name in ("flashlight", "flashlight.lib.text"):  # what a machine without flashlight-text sees
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match="--lm-engine flashlight needs flashlight-text"):
        build_lm_decoder("flashlight", TOK.labels, bigram)


@needs_flashlight
def test_bench_lm_engines_decodes_the_saved_log_probs_with_every_engine(bigram, tmp_path):
    import shutil

    from asr_helpers.tools.bench_decode import bench_lm_engines
    from asr_helpers.training.rundir import RunDir
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    shutil.copy(Path(__file__).parent / "fixtures" / "pinned" / "model.pt", run.checkpoint())
    np.savez(run.logprobs("dev-clean"), ids=np.array(["a", "b"]), references=np.array([SENTENCE, "the cat"]),
             u0=near_miss(), u1=spelled("the cat"))
    result = bench_lm_engines(run.checkpoint(), bigram, ["pyctcdecode", "flashlight"], ["dev-clean"], beam_width=16,
                              pool_size=1)
    for engine in ("pyctcdecode", "flashlight"):  # no tuned.json: the defaults, 0.5 and 1
        found = result["dev-clean"][engine]
        assert (found["alpha"], found["beta"], found["wer"]) == (0.5, 1.0, 0.0) and found["utt_per_sec"] > 0
    assert "| dev-clean | 2 | flashlight | 0.5, 1 | 0.0000 | 0.0000 |" in result["table"]
    tuned = bench_lm_engines(run.checkpoint(), bigram, ["flashlight-lexfree"], ["dev-clean"], beam_width=16,
                             pool_size=1, tune_on="dev-clean")
    assert tuned["dev-clean"]["flashlight-lexfree"]["alpha"] > 0  # alpha 0 writes "hat": tuning found the LM
    with pytest.raises(ValueError, match="no saved log-probs of test-clean"):
        bench_lm_engines(run.checkpoint(), bigram, ["flashlight"], ["test-clean"])


@needs_flashlight
def test_transcribe_runs_the_lm_decoder_on_the_chosen_engine(tmp_path, capsys):
    from conftest import run_cli
    pinned = Path(__file__).parent / "fixtures" / "pinned"
    code, out, err = run_cli(capsys, "transcribe", "--checkpoint", str(pinned / "model.pt"), "--input",
                             str(pinned / "audio"), "--output", str(tmp_path), "--decoder", "lm", "--lm",
                             str(pinned / "3-gram.arpa"), "--beam-width", "8", "--pool-size", "1",
                             "--lm-engine", "flashlight")
    assert code == 0, err
    words = {w for p in tmp_path.glob("*.txt") for w in p.read_text().split()}
    assert len(list(tmp_path.glob("*.txt"))) == 3 and words  # the lexicon search writes only listed words
    assert words <= set((pinned / "unigrams.txt").read_text().split())
    code, _, err = run_cli(capsys, "transcribe", "--checkpoint", str(pinned / "model.pt"), "--input",
                           str(pinned / "audio"), "--output", str(tmp_path), "--lm-engine", "kaldi")
    assert code == 2 and "invalid choice: 'kaldi'" in err


@needs_flashlight
def test_the_lexicon_engine_is_what_torchaudios_ctc_decoder_runs(bigram, tmp_path):
    """torchaudio's wrapper, given the same lexicon (words spelled with their trailing space), scale and
    pruning, finds the same words: the engine only skips its lexicon file and tensors."""
    import torch
    from torchaudio.models.decoder import ctc_decoder

    from asr_helpers.decoding.flashlight_lm import LN10
    tokens = ["-", "|"] + TOK.labels[2:]
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text("".join(f"{w} {' '.join(w)} |\n" for w in ("the", "cat", "sat", "on", "mat", "hat")))
    wrapped = ctc_decoder(str(lexicon), tokens, str(bigram), beam_size=16, beam_threshold=10.0, lm_weight=LN10,
                          word_score=0.0, log_add=True, blank_token="-", sil_token="|")
    with build_lm_decoder("flashlight", TOK.labels, bigram, alpha=1.0, beta=0.0, beam_width=16) as decoder:
        for matrix in (near_miss(), spelled("the cat sat on the hat")):
            masked = np.vstack([decoder._masked(matrix), decoder._closing_frame])
            best = wrapped(torch.from_numpy(masked)[None])[0][0]
            assert " ".join(best.words) == decoder.decode(matrix)
