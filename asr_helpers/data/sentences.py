"""The sentence list the offline corpus reads aloud: Jane Austen's six novels, normalised.

The text comes from Debian's ``r-cran-janeaustenr`` (an R lazy-load database), read without R
through the ``rdata`` package. Rebuild ``asr_helpers/data/sentences.txt`` with
``python -m asr_helpers.data.sentences``. Sentences a speech synthesiser would not read exactly as
written (digits, symbols, roman numerals, spelled-out initials) are dropped, so every
transcript matches its audio; the titles Mr/Mrs/Dr/St are written out as they are spoken.
"""
from __future__ import annotations

import argparse
import logging
import re
import struct
import warnings
import zlib
from collections import Counter
from pathlib import Path

from asr_helpers.paths import PACKAGE_DATA
from asr_helpers.data.text import TextError, normalize_transcript

log = logging.getLogger(__name__)

JANEAUSTENR_DATA = Path("/usr/lib/R/site-library/janeaustenr/data/Rdata")
SENTENCES_FILE = PACKAGE_DATA / "sentences.txt"
MIN_WORDS, MAX_WORDS = 4, 30
_TITLES = {"Mr": "Mister", "Mrs": "Missus", "Dr": "Doctor", "St": "Saint"}
_TITLE = re.compile(r"\b(Mrs|Mr|Dr|St)\b\.?")
_SENTENCE_END = re.compile(r"([.!?][\"')\]]*)\s+(?=[\"'(\[]*[A-Z])")
_ROMAN = re.compile(r"\b[IVXLC]{2,}\b")
_SPOKEN_LETTERS = {"a", "i", "o"}


def read_novels(rdata_base: Path = JANEAUSTENR_DATA) -> dict[str, list[str]]:
    """Novel name -> its text lines, straight from the R package's ``Rdata.rdx``/``.rdb`` pair."""
    import rdata  # only needed to rebuild the list, not to use it

    index_path, db_path = rdata_base.with_suffix(".rdx"), rdata_base.with_suffix(".rdb")
    if not index_path.exists() or not db_path.exists():
        raise FileNotFoundError(f"{index_path} not found: install the novels with "
                                "`apt-get install r-cran-janeaustenr`")
    blob = db_path.read_bytes()
    novels = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rdata warns that these records carry no file header
        index = rdata.conversion.convert(rdata.parser.parse_file(index_path))
        for name, (offset, length) in sorted(index["variables"].items()):
            # a record: 4-byte big-endian uncompressed size, then a zlib stream of R serialisation
            size = struct.unpack(">I", blob[offset:offset + 4])[0]
            raw = zlib.decompress(blob[offset + 4:offset + length])
            if len(raw) != size:
                raise ValueError(f"{db_path}: record {name} is damaged ({len(raw)} of {size} bytes)")
            novels[str(name)] = [str(line) for line in rdata.conversion.convert(rdata.parser.parse_data(raw))]
    return novels


def split_sentences(lines: list[str]) -> list[str]:
    """Sentences of a novel: paragraphs are blank-line separated, sentences end in . ! or ?"""
    paragraphs = " ".join(line.strip() or "\n" for line in lines).split("\n")
    found = []
    for paragraph in paragraphs:
        paragraph = " ".join(paragraph.replace("_", "").split())  # _underscores_ mark italics
        paragraph = _TITLE.sub(lambda m: _TITLES[m.group(1)], paragraph)
        found += [s for s in _SENTENCE_END.sub(r"\1\n", paragraph).split("\n") if s.strip()]
    return found


def clean_sentence(raw: str, min_words: int = MIN_WORDS, max_words: int = MAX_WORDS) -> str:
    """The normalised sentence, or ``TextError`` saying why a synthesiser could not read it as written."""
    if _ROMAN.search(raw):
        raise TextError("roman numeral")
    text = normalize_transcript(raw)
    words = text.split()
    if any(len(w) == 1 and w not in _SPOKEN_LETTERS for w in words):
        raise TextError("spelled-out initial")
    if not min_words <= len(words) <= max_words:
        raise TextError(f"not {min_words}-{max_words} words")
    return text


def build_sentences(rdata_base: Path = JANEAUSTENR_DATA, min_words: int = MIN_WORDS,
                    max_words: int = MAX_WORDS) -> list[str]:
    """Unique normalised sentences of all six novels, in reading order; logs what was dropped."""
    kept: dict[str, None] = {}
    dropped: Counter = Counter()
    for lines in read_novels(rdata_base).values():
        for raw in split_sentences(lines):
            try:
                text = clean_sentence(raw, min_words, max_words)
            except TextError as error:
                dropped[str(error).split(" '")[0]] += 1
                continue
            if text in kept:
                dropped["duplicate"] += 1
            kept[text] = None
    log.info("kept %d sentences; dropped %s", len(kept), dict(dropped.most_common()))
    return list(kept)


def load_sentences(path: Path = SENTENCES_FILE) -> list[str]:
    """The shipped sentence list, one normalised lower-case sentence per line."""
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: rebuild it with `python -m asr_helpers.data.sentences`")
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Rebuild the sentence list of the offline corpus.")
    parser.add_argument("--out", type=Path, default=SENTENCES_FILE, help="where to write the list")
    parser.add_argument("--rdata", type=Path, default=JANEAUSTENR_DATA,
                        help="janeaustenr's lazy-load database, without suffix")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sentences = build_sentences(args.rdata)
    args.out.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    log.info("wrote %s (%d sentences, %.1f MB)", args.out, len(sentences), args.out.stat().st_size / 1e6)


if __name__ == "__main__":
    main()
