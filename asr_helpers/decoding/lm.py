"""Word n-gram language models: KenLM tools, building from text, OpenSLR's LibriSpeech LMs, tuning.

Casing, decided once: everything is lower case, like the model's labels. Text given to
``build_ngram`` is normalised with ``text.normalize_transcript``; OpenSLR's upper-case ARPA
files and vocabulary are lower-cased while they are converted. Each LM folder holds the ARPA
(or not, see ``download_lm``), a KenLM binary and ``unigrams.txt`` in the same casing, which
``decoding.LMDecoder`` picks up next to the model.
"""
from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import tempfile
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from asr_helpers import paths
from asr_helpers.decoding.ctc import UNIGRAMS_FILE
from asr_helpers.decoding.lm_engines import DEFAULT_ENGINE, build_lm_decoder
from asr_helpers.decoding.metrics import wer
from asr_helpers.decoding.tuned import Tuned
from asr_helpers.data.text import TextError, normalize_transcript

# KenLM's PyPI sdist carries the full C++ source, lmplz and build_binary included.
KENLM_SDIST = ("https://files.pythonhosted.org/packages/02/6e/"
               "f4e159cef39ea4ef2244b4aa32857d447d60a5d0ee269e1b1f8d3723c03e/kenlm-0.3.0.tar.gz")
KENLM_SDIST_SHA256 = "c4628bb9fb63c8a6f9240035b8b037385cfc404cb72e933cf48878291edac1e8"
KENLM_SOURCE = "kenlm-0.3.0"
APT_PACKAGES = ("build-essential cmake libboost-program-options-dev libboost-system-dev libboost-thread-dev "
                "libboost-test-dev zlib1g-dev libbz2-dev liblzma-dev")

OPENSLR_MIRRORS = ("https://www.openslr.org/resources/11/", "https://us.openslr.org/resources/11/",
                   "https://openslr.elda.org/resources/11/")


@dataclass(frozen=True)
class Resource:
    """One OpenSLR file with the checksums published for it (None where none could be found)."""

    file: str
    md5: str | None
    sha256: str | None


# md5: the FILE2MD5 table of sdrobert/pytorch-database-prep (librispeech.py).
# sha256 of 4-gram and 3-gram: rwth-i6/i6_experiments common/datasets/librispeech/language_model.py.
# Byte sizes: no published value was found, so none is checked; the md5 covers integrity.
OPENSLR_LMS = {
    "3-gram.pruned.1e-7": Resource("3-gram.pruned.1e-7.arpa.gz", "9a0f1325bcaf3a0f7b7be4be10823c2a", None),
    "3-gram.pruned.3e-7": Resource("3-gram.pruned.3e-7.arpa.gz", "8f67ec741827742eee05799ab7605b50", None),
    "3-gram": Resource("3-gram.arpa.gz", "74cbb837e582378c26c602e1c8cbcb9c",
                       "263649573475c2991d3e755eb4e690c9d2656f2b3283a1eb589e1e4e174bf874"),
    "4-gram": Resource("4-gram.arpa.gz", "6abdcd5b055bd482e4f9defe91d40408",
                       "f2b2d1507637ddf459d3579159f7e8099ed7d77452ff1059aeeeaea33d274613"),
}
OPENSLR_VOCAB = Resource("librispeech-vocab.txt", "bf3cc7a50112831ed8b0afa40cae96a5", None)
_BLOCK = 1 << 24


class ToolsError(RuntimeError):
    """KenLM's programs could not be built or failed to run."""


def ensure_kenlm_tools() -> tuple[Path, Path]:
    """Paths of KenLM's ``lmplz`` and ``build_binary``, compiled once into ``paths.tools_dir()``.

    The pip ``kenlm`` package only queries models; building them needs these two programs,
    which no wheel ships. They are compiled from the pinned PyPI sdist (about a minute on
    two cores) and reused afterwards.
    """
    root = paths.tools_dir() / "kenlm"
    lmplz, build_binary = root / "bin" / "lmplz", root / "bin" / "build_binary"
    if lmplz.is_file() and build_binary.is_file():
        return lmplz, build_binary
    missing = [tool for tool in ("cmake", "make", "c++") if shutil.which(tool) is None]
    if missing:
        raise ToolsError(f"building KenLM needs {', '.join(missing)}: sudo apt-get install {APT_PACKAGES}")
    from asr_helpers.data.download import fetch

    fetch(KENLM_SDIST, root / "src", sha256=KENLM_SDIST_SHA256, extract=True, progress=False)
    with tempfile.TemporaryDirectory(dir=root) as build:
        _run(["cmake", "-S", str(root / "src" / KENLM_SOURCE), "-B", build, "-DCMAKE_BUILD_TYPE=Release",
              "-DENABLE_INTERPOLATE=OFF"], "configuring KenLM")
        _run(["cmake", "--build", build, "--target", "lmplz", "build_binary", "-j", str(os.cpu_count() or 1)],
             "compiling KenLM")
        (root / "bin").mkdir(exist_ok=True)
        for tool in (lmplz, build_binary):
            staged = tool.with_suffix(".part")
            shutil.copy2(Path(build) / "bin" / tool.name, staged)
            os.replace(staged, tool)
    return lmplz, build_binary


def _run(command: list[str], what: str) -> None:
    """Run a tool; on failure raise with the tail of its output (and the apt hint for build errors)."""
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        output = "\n".join(((done.stdout or "") + (done.stderr or "")).strip().splitlines()[-25:])
        hint = f"\nInstall the build dependencies: sudo apt-get install {APT_PACKAGES}" if "KenLM" in what else ""
        raise ToolsError(f"{what} failed (exit {done.returncode}):\n{output}{hint}")


def _atomic_write(path: Path, lines: Sequence[str]) -> None:
    staged = path.with_suffix(path.suffix + ".part")
    staged.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    os.replace(staged, path)


def build_ngram(text_file: Path, order: int, out_dir: Path, prune: Sequence[int] | None = None,
                name: str | None = None) -> Path:
    """Train a word n-gram on a text file; return the KenLM binary ``<out_dir>/<name>.bin``.

    Lines are normalised like transcripts (lower case; lines with digits or symbols are
    dropped) and written next to the model, so the LM, ``unigrams.txt`` and the labels share
    one spelling. ``--discount_fallback`` lets lmplz estimate from corpora too small for its
    Kneser-Ney discounts. ``prune`` gives count thresholds per order (e.g. ``(0, 1, 1)``).
    Not cached: every call rebuilds.
    """
    text_file, out_dir = Path(text_file), Path(out_dir)
    if not text_file.is_file():
        raise FileNotFoundError(f"text file {text_file} not found")
    if not 1 <= order <= 6:
        raise ValueError(f"order must be between 1 and 6 (KenLM's compiled maximum), got {order}")
    if prune is not None and (len(prune) > order or list(prune) != sorted(prune)):
        raise ValueError(f"prune needs at most {order} non-decreasing thresholds, got {list(prune)}")
    name = name or f"{order}-gram"
    out_dir.mkdir(parents=True, exist_ok=True)
    lmplz, build_binary = ensure_kenlm_tools()
    corpus, counts = out_dir / f"{name}.corpus.txt", Counter()
    with text_file.open(encoding="utf-8", errors="replace") as source, corpus.open("w", encoding="utf-8") as sink:
        for line in source:
            try:
                sentence = normalize_transcript(line)
            except TextError:
                continue
            counts.update(sentence.split())
            sink.write(sentence + "\n")
    if not counts:
        raise ValueError(f"{text_file} holds no line that normalises to letters, space and apostrophe")
    arpa, binary = out_dir / f"{name}.arpa", out_dir / f"{name}.bin"
    command = [str(lmplz), "-o", str(order), "--discount_fallback", "-S", _lmplz_memory(corpus.stat().st_size),
               "-T", f"{out_dir}{os.sep}", "--text", str(corpus), "--arpa", str(arpa)]
    if prune:
        command += ["--prune", *map(str, prune)]
    _run(command, "lmplz")
    _build_binary(build_binary, arpa, binary)
    _atomic_write(out_dir / UNIGRAMS_FILE, [word for word, _ in counts.most_common()])
    return binary


def _lmplz_memory(corpus_bytes: int) -> str:
    """lmplz's sorting memory: ten times the corpus, at least 64 MiB, at most half the RAM.

    lmplz claims all of it up front, so a fixed share of RAM costs seconds on a toy corpus
    and starves neighbours on a shared machine.
    """
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return f"{min(ram // 2, max(64 << 20, 10 * corpus_bytes)) >> 20}M"


def _build_binary(build_binary: Path, arpa: Path, binary: Path) -> None:
    """ARPA -> KenLM trie binary (smaller and far faster to load than the ARPA text)."""
    staged = binary.with_suffix(".bin.part")
    _run([str(build_binary), "trie", str(arpa), str(staged)], "build_binary")
    os.replace(staged, binary)


def _lowercase_gunzip(archive: Path, out: Path) -> None:
    """Stream a gzipped ARPA to ``out`` in lower case (bytes.lower touches ASCII A-Z only).

    Lower-casing the whole file is safe: ARPA keywords are already lower case, and OpenSLR's
    ``<UNK>`` becomes the ``<unk>`` KenLM expects. A corrupt or truncated archive is deleted
    so the next call downloads it again.
    """
    staged = out.with_suffix(out.suffix + ".part")
    try:
        with gzip.open(archive, "rb") as source, staged.open("wb") as sink:
            for block in iter(lambda: source.read(_BLOCK), b""):
                sink.write(block.lower())
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:  # not disk errors: those keep the archive
        staged.unlink(missing_ok=True)
        archive.unlink(missing_ok=True)
        raise ValueError(f"{archive.name} is not a valid gzip file ({error}); deleted it, run again") from None
    os.replace(staged, out)


def download_lm(name: str = "3-gram.pruned.1e-7", out_dir: Path | None = None, *,
                base_url: str | None = None, keep_arpa: bool = False) -> Path:
    """Download an OpenSLR resource 11 LM and its vocabulary; return a lower-case KenLM binary.

    Files keep OpenSLR's names, so ``out_dir`` mirrors the site. The ARPA is gunzipped and
    lower-cased, turned into ``<name>.bin`` and then deleted unless ``keep_arpa`` (the 4-gram's
    ARPA is several GB); the vocabulary becomes ``unigrams.txt``. A finished folder is reused
    without touching the network. Without a C++ toolchain, pass ``keep_arpa=True`` and give
    the ``.arpa`` to ``LMDecoder`` (slower to load). ``base_url`` replaces the OpenSLR mirrors.
    """
    if name not in OPENSLR_LMS:
        raise ValueError(f"unknown LM {name!r}; OpenSLR resource 11 has {', '.join(OPENSLR_LMS)}")
    out_dir = Path(out_dir) if out_dir is not None else paths.artifacts_dir() / "lm" / "librispeech"
    out_dir.mkdir(parents=True, exist_ok=True)
    binary, arpa, unigrams = out_dir / f"{name}.bin", out_dir / f"{name}.arpa", out_dir / UNIGRAMS_FILE
    if not unigrams.is_file():
        vocab = _fetch_openslr(OPENSLR_VOCAB, out_dir, base_url)
        _atomic_write(unigrams, vocab.read_text(encoding="utf-8").lower().split())
    if binary.is_file() and (arpa.is_file() or not keep_arpa):
        return binary
    archive = _fetch_openslr(OPENSLR_LMS[name], out_dir, base_url)
    if not arpa.is_file():
        _lowercase_gunzip(archive, arpa)
    try:
        _, build_binary = ensure_kenlm_tools()
    except ToolsError:
        if keep_arpa:
            return arpa
        raise
    _build_binary(build_binary, arpa, binary)
    if not keep_arpa:
        arpa.unlink()
    return binary


def _fetch_openslr(resource: Resource, out_dir: Path, base_url: str | None) -> Path:
    """Fetch from ``base_url`` or else from each OpenSLR mirror in turn until one works."""
    from asr_helpers.data.download import DownloadError, fetch

    errors = []
    for base in [base_url] if base_url else OPENSLR_MIRRORS:
        try:
            return fetch(base.rstrip("/") + "/" + resource.file, out_dir, md5=resource.md5, sha256=resource.sha256)
        except DownloadError as error:
            errors.append(str(error))
    raise DownloadError(f"could not download {resource.file}:\n" + "\n".join(errors))


def tune_alpha_beta(log_probs_list: Sequence[np.ndarray], references: Sequence[str], labels: Sequence[str],
                    lm_path: Path, *, alphas: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5),
                    betas: Sequence[float] = (0.0, 0.5, 1.0, 2.0, 3.0), unigrams: Sequence[str] | Path | None = None,
                    beam_width: int = 32, pool_size: int = 2, engine: str = DEFAULT_ENGINE) -> Tuned:
    """Grid-search the LM weight and word bonus by corpus WER on dev log-probs (cached model outputs).

    One decoder of ``engine`` (``lm_engines``) is loaded and re-weighted per grid cell; ties go to the
    first alpha, then the first beta, in the order given. Tune on dev only: the test sets (and
    undisclosed data) must stay unseen. The result is the ``lm`` decoder's entry of the run's record (``tuned.save_tuned``).
    """
    if len(log_probs_list) != len(references) or not references:
        raise ValueError(f"need as many references as log-prob matrices (>0), got {len(references)} "
                         f"and {len(log_probs_list)}")
    if not alphas or not betas:
        raise ValueError("alphas and betas need at least one value each")
    grid = np.zeros((len(alphas), len(betas)))
    with build_lm_decoder(engine, labels, lm_path, unigrams, beam_width=beam_width) as decoder:
        for i, alpha in enumerate(alphas):
            for j, beta in enumerate(betas):
                decoder.set_params(alpha, beta)
                grid[i, j] = wer(references, decoder.decode_batch(log_probs_list, pool_size))
    i, j = np.unravel_index(np.argmin(grid), grid.shape)
    points = [{"weights": {"alpha": float(a), "beta": float(b)}, "score": float(grid[m, n])}
              for m, a in enumerate(alphas) for n, b in enumerate(betas)]
    return Tuned("lm", {"alpha": float(alphas[i]), "beta": float(betas[j])}, "wer", float(grid[i, j]), points)


def corpus_language_model(corpus: str, order: int = 3, name: str = "3-gram.pruned.1e-7") -> Path:
    """A KenLM binary (lower case, ``unigrams.txt`` beside it) that suits ``corpus``.

    LibriSpeech: OpenSLR resource 11's LM (``name``), trained on books that exclude the test
    sets. Offline corpus: an ``order``-gram built from the sentences assigned to its training
    split only, so no dev or test sentence can leak into the LM.
    """
    from asr_helpers.data.corpora import CORPORA
    if corpus in ("librispeech", "mini_librispeech"):
        return download_lm(name)
    if corpus != "synthetic":
        raise ValueError(f"unknown corpus {corpus!r}; choose from {CORPORA}")
    from asr_helpers.data.synthetic import TRAIN_SPLIT, sentences_by_split
    out_dir = paths.artifacts_dir() / "lm" / f"synthetic-{order}gram"
    binary = out_dir / f"{order}-gram.bin"
    if not binary.exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        text = out_dir / "train-sentences.txt"
        text.write_text("\n".join(sentences_by_split()[TRAIN_SPLIT]) + "\n")
        binary = build_ngram(text, order, out_dir)
    return binary

