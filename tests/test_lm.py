"""KenLM tools, n-gram building, LM fusion that demonstrably uses the LM, tuning, OpenSLR download.

Tests marked ``slow`` need KenLM's lmplz/build_binary: the first run compiles them into
``.tools/kenlm`` (about 80 s on two cores), later runs reuse them.
"""
from __future__ import annotations

import gzip
import logging
import time

import numpy as np
import pytest

from asr_helpers.decoding import lm
from asr_helpers.tools.bench_decode import bench_lm_decoding
from asr_helpers.decoding.ctc import LMDecoder, greedy_decode
from asr_helpers.decoding.tuned import read_record, save_tuned
from asr_helpers.data.download import DownloadError
from asr_helpers.data.text import CharTokenizer
from fixtures_http import checksums, file_server  # noqa: F401 - file_server is a fixture
from conftest import spelled

TOK = CharTokenizer()
CORPUS = """THE CAT SAT ON THE MAT.
The dog sat on the log
a cat and a dog sat on the mat
the cat ate the rat in room 101
the cat sat on the hat
her sister sat on the mat by the fire
"""
UNIGRAM_WARNINGS = ("No known unigrams", "don't seem to agree", "found in kenlm model")


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory):
    """A 3-gram built with the compiled lmplz from a handful of sentences."""
    folder = tmp_path_factory.mktemp("tiny_lm")
    (folder / "corpus.txt").write_text(CORPUS)
    return lm.build_ngram(folder / "corpus.txt", 3, folder / "lm")


def ambiguous(sentence: str, word: str, wrong: str, p_wrong: float = 0.6) -> np.ndarray:
    """``sentence`` with the first letter of ``word`` acoustically leaning to ``wrong``."""
    start = sentence.index(word)
    spec: list = list(sentence)
    spec[start] = {wrong: p_wrong, word[0]: 1 - p_wrong}
    return spelled(spec)


def uppercase_arpa(text: str) -> str:
    """An ARPA file cased like OpenSLR's: upper-case words, ``<UNK>``, lower-case keywords."""
    lines = []
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) >= 2:
            fields[1] = " ".join(w if w in ("<s>", "</s>") else w.upper() for w in fields[1].split())
        lines.append("\t".join(fields))
    return "\n".join(lines) + "\n"


def ngram_count(arpa: str, order: int) -> int:
    """The ``ngram <order>=<count>`` header value of an ARPA text."""
    return int(arpa.split(f"ngram {order}=")[1].split()[0])


def assert_no_unigram_warnings(caplog) -> None:
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if any(w in m for w in UNIGRAM_WARNINGS)], messages


# ----------------------------------------------------------------------------- tools and building

@pytest.mark.slow
def test_kenlm_tools_are_built_once_and_reused():
    lmplz, build_binary = lm.ensure_kenlm_tools()
    assert lmplz.is_file() and build_binary.is_file()
    started = time.monotonic()
    assert lm.ensure_kenlm_tools() == (lmplz, build_binary)
    assert time.monotonic() - started < 1.0


def test_missing_build_tools_name_the_apt_packages(tmp_path, monkeypatch):
    monkeypatch.setenv("ASR_TOOLS_DIR", str(tmp_path / "tools"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(lm.ToolsError, match="apt-get install .*libboost-program-options-dev"):
        lm.ensure_kenlm_tools()


@pytest.mark.slow
def test_build_ngram_writes_lower_case_model_and_unigrams(tiny_lm):
    import kenlm

    folder = tiny_lm.parent
    assert tiny_lm.name == "3-gram.bin" and (folder / "3-gram.arpa").is_file()
    unigrams = (folder / "unigrams.txt").read_text().split()
    assert unigrams[0] == "the" and "101" not in unigrams and "room" not in unigrams  # digit line dropped
    assert all(w == w.lower() for w in unigrams)
    model = kenlm.Model(str(tiny_lm))
    assert model.order == 3
    assert "the" in model and "THE" not in model
    assert model.score("the cat sat on the mat") > model.score("the cat sat on the nat")


@pytest.mark.slow
def test_build_ngram_explains_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError):
        lm.build_ngram(tmp_path / "missing.txt", 3, tmp_path)
    (tmp_path / "digits.txt").write_text("123 456\n")
    with pytest.raises(ValueError, match="no line that normalises"):
        lm.build_ngram(tmp_path / "digits.txt", 3, tmp_path / "out")
    with pytest.raises(ValueError, match="order must be between"):
        lm.build_ngram(tmp_path / "digits.txt", 9, tmp_path / "out")
    with pytest.raises(ValueError, match="non-decreasing"):
        lm.build_ngram(tmp_path / "digits.txt", 3, tmp_path / "out", prune=(0, 2, 1))


@pytest.mark.slow
def test_build_ngram_prunes_rare_ngrams(tmp_path):
    (tmp_path / "corpus.txt").write_text(CORPUS)
    full = (lm.build_ngram(tmp_path / "corpus.txt", 3, tmp_path / "full").parent / "3-gram.arpa").read_text()
    pruned = lm.build_ngram(tmp_path / "corpus.txt", 3, tmp_path / "pruned", prune=(0, 1, 1), name="small")
    assert pruned.name == "small.bin"
    small = (tmp_path / "pruned" / "small.arpa").read_text()
    assert ngram_count(small, 3) < ngram_count(full, 3) and ngram_count(small, 1) == ngram_count(full, 1)


# ----------------------------------------------------------------------------- fusion uses the LM

@pytest.mark.slow
def test_lm_turns_an_acoustic_near_miss_into_a_known_word(tiny_lm, caplog):
    log_probs = ambiguous("the cat sat on the mat", "mat", "n")
    assert greedy_decode(log_probs[None], [len(log_probs)], TOK) == ["the cat sat on the nat"]
    with caplog.at_level(logging.WARNING):
        with LMDecoder(TOK.labels, tiny_lm, alpha=0.0, beta=0.0, beam_width=16) as decoder:
            assert decoder.decode(log_probs) == "the cat sat on the nat"  # alpha 0: acoustics only
            decoder.set_params(alpha=2.0, beta=0.0)
            assert decoder.decode(log_probs) == "the cat sat on the mat"
            batch = [log_probs, ambiguous("the dog sat on the log", "dog", "b")]
            expected = ["the cat sat on the mat", "the dog sat on the log"]
            assert decoder.decode_batch(batch) == expected
            assert decoder.decode_batch(batch, pool_size=2) == expected
            decoder.set_params(alpha=0.0, beta=0.0)  # the pool's workers, already forked, must follow
            assert decoder.decode_batch(batch, pool_size=2)[0] == "the cat sat on the nat"
    assert_no_unigram_warnings(caplog)


@pytest.mark.slow
def test_lm_decoder_refuses_mismatched_casing(tiny_lm, tmp_path):
    upper = tmp_path / "upper.arpa"
    upper.write_text(uppercase_arpa((tiny_lm.parent / "3-gram.arpa").read_text()))
    with pytest.raises(ValueError, match="UPPER-case"):
        LMDecoder(TOK.labels, upper)  # unigrams read from the ARPA itself
    with pytest.raises(ValueError, match="disagree"):
        LMDecoder(TOK.labels, upper, unigrams=["the", "cat", "sat"])
    lonely = tmp_path / "alone" / "model.bin"
    lonely.parent.mkdir()
    lonely.write_bytes(tiny_lm.read_bytes())
    with pytest.raises(ValueError, match="binary LM"):
        LMDecoder(TOK.labels, lonely)


@pytest.mark.slow
def test_tune_alpha_beta_finds_the_lm_weight_and_round_trips(tiny_lm, tmp_path):
    dev = [ambiguous("the cat sat on the mat", "mat", "n"), ambiguous("a cat and a dog", "dog", "b"),
           ambiguous("the cat sat on the hat", "cat", "k")]
    refs = ["the cat sat on the mat", "a cat and a dog", "the cat sat on the hat"]
    result = lm.tune_alpha_beta(dev, refs, TOK.labels, tiny_lm, alphas=(0.0, 2.0), betas=(0.0, 1.0),
                                beam_width=16, pool_size=2)
    assert result.decoder == "lm" and result.metric == "wer"
    assert result.weights["alpha"] == 2.0 and result.score == 0.0
    assert [p["weights"] for p in result.grid] == [{"alpha": a, "beta": b} for a in (0.0, 2.0) for b in (0.0, 1.0)]
    assert min(p["score"] for p in result.grid[:2]) > 0  # without the LM every sentence keeps its near miss
    saved = save_tuned(tmp_path, result)
    assert saved == tmp_path / "tuned.json" and read_record(tmp_path) == {"lm": result}


# ----------------------------------------------------------------------------- OpenSLR download

def serve_openslr(server, tiny_lm, monkeypatch, archive: bytes | None = None) -> str:
    """Serve an OpenSLR-like resources/11 folder (upper case, identical names); register its checksums."""
    arpa = uppercase_arpa((tiny_lm.parent / "3-gram.arpa").read_text()).encode()
    archive = gzip.compress(arpa) if archive is None else archive
    vocab = "\n".join(w.upper() for w in (tiny_lm.parent / "unigrams.txt").read_text().split()).encode() + b"\n"
    server.files["resources/11/3-gram.pruned.1e-7.arpa.gz"] = archive
    server.files["resources/11/librispeech-vocab.txt"] = vocab
    lm_sums, vocab_sums = checksums(archive), checksums(vocab)
    monkeypatch.setitem(lm.OPENSLR_LMS, "3-gram.pruned.1e-7",
                        lm.Resource("3-gram.pruned.1e-7.arpa.gz", lm_sums["md5"], lm_sums["sha256"]))
    monkeypatch.setattr(lm, "OPENSLR_VOCAB", lm.Resource("librispeech-vocab.txt", vocab_sums["md5"], None))
    return server.url("resources/11/")


@pytest.mark.slow
def test_download_lm_converts_openslr_files_to_a_lower_case_binary(tiny_lm, file_server, monkeypatch, tmp_path,
                                                                   caplog):
    import kenlm

    base = serve_openslr(file_server, tiny_lm, monkeypatch)
    out = tmp_path / "lm"
    binary = lm.download_lm("3-gram.pruned.1e-7", out, base_url=base)
    assert binary == out / "3-gram.pruned.1e-7.bin"
    assert (out / "3-gram.pruned.1e-7.arpa.gz").is_file() and (out / "librispeech-vocab.txt").is_file()
    assert not (out / "3-gram.pruned.1e-7.arpa").exists()  # the big text ARPA is not kept
    model = kenlm.Model(str(binary))
    assert "the" in model and "THE" not in model
    assert (out / "unigrams.txt").read_text().split()[0] == "the"
    requests = len(file_server.requests)
    assert lm.download_lm("3-gram.pruned.1e-7", out, base_url=base) == binary
    assert len(file_server.requests) == requests  # cached: no network
    with caplog.at_level(logging.WARNING):
        with LMDecoder(TOK.labels, binary, alpha=2.0, beta=0.0, beam_width=16) as decoder:
            assert decoder.decode(ambiguous("the cat sat on the mat", "mat", "n")) == "the cat sat on the mat"
    assert_no_unigram_warnings(caplog)


@pytest.mark.slow
def test_download_lm_can_keep_the_arpa(tiny_lm, file_server, monkeypatch, tmp_path):
    base = serve_openslr(file_server, tiny_lm, monkeypatch)
    lm.download_lm("3-gram.pruned.1e-7", tmp_path, base_url=base, keep_arpa=True)
    text = (tmp_path / "3-gram.pruned.1e-7.arpa").read_text()
    assert "\tthe" in text and "<unk>" in text and "THE" not in text and "<UNK>" not in text


@pytest.mark.slow
def test_download_lm_deletes_a_corrupt_archive(tiny_lm, file_server, monkeypatch, tmp_path):
    base = serve_openslr(file_server, tiny_lm, monkeypatch, archive=b"\x1f\x8b this is not gzip")
    with pytest.raises(ValueError, match="not a valid gzip file"):
        lm.download_lm("3-gram.pruned.1e-7", tmp_path, base_url=base)
    assert not (tmp_path / "3-gram.pruned.1e-7.arpa.gz").exists()
    assert not list(tmp_path.glob("*.arpa*"))


def test_download_lm_rejects_unknown_names_and_wrong_checksums(file_server, tmp_path):
    with pytest.raises(ValueError, match="4-gram"):
        lm.download_lm("5-gram", tmp_path)
    file_server.files["resources/11/librispeech-vocab.txt"] = b"NOT THE REAL VOCABULARY\n"
    with pytest.raises(DownloadError, match="md5"):
        lm.download_lm("3-gram.pruned.1e-7", tmp_path, base_url=file_server.url("resources/11/"))


@pytest.mark.slow
def test_bench_lm_decoding_runs_on_synthetic_input(tmp_path):
    result = bench_lm_decoding(tmp_path, utterances=4, frames=60, pool_sizes=(1, 2))
    assert result["utterances"] == 4 and result["frames"] == 240
    assert (tmp_path / "bench.bin").is_file()
    assert all(result[key] > 0 for key in ("greedy", "beam", "lm_pool1", "lm_pool2", "lm_pool_speedup"))
