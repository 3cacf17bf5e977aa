"""One entry point for every corpus: returns a LibriSpeech-layout root holding the splits.

``synthetic`` renders the offline TTS corpus on first use; ``librispeech`` and
``mini_librispeech`` use a mounted copy (Kaggle input) when present, else download.
"""
from __future__ import annotations

from pathlib import Path

from asr_helpers import paths

CORPORA = ("synthetic", "librispeech", "mini_librispeech")
SYNTHETIC_SPLITS = ("train-clean-100", "dev-clean", "test-clean", "dev-other", "test-other")


def synthetic_root(minutes: float, seed: int) -> Path:
    """Where the offline corpus of a given size and seed lives (one folder per recipe)."""
    return paths.data_dir() / f"synthetic-{minutes:g}min-seed{seed}"


def find_corpus_root(corpus: str, split: str, root: str | Path | None = None,
                     synth_minutes: float = 60.0, seed: int = 0) -> Path | None:
    """The LibriSpeech root already holding ``split`` for ``corpus``, or None; renders and downloads nothing.

    Looks where ``prepare_corpus`` would: ``root`` itself, then the synthetic corpus's folder,
    or for LibriSpeech ``librispeech.locate_split`` (``root/LibriSpeech``, then a Kaggle mount).
    """
    if root is not None and (Path(root) / split).is_dir():
        return Path(root)
    if corpus == "synthetic":
        librispeech_root = synthetic_root(synth_minutes, seed) / "LibriSpeech"
        return librispeech_root if root is None and (librispeech_root / split).is_dir() else None
    from asr_helpers.librispeech import locate_split
    return locate_split(split, Path(root) if root is not None else None)


def prepare_corpus(corpus: str, splits: list[str], root: str | Path | None = None,
                   synth_minutes: float = 60.0, seed: int = 0) -> Path:
    """The LibriSpeech root (the folder holding ``<split>/``) for ``corpus``, ready to index.

    A ``root`` that already holds every split is used as it is, whatever the corpus.
    """
    if corpus not in CORPORA:
        raise ValueError(f"unknown corpus {corpus!r}; choose from {CORPORA}")
    if root is not None and all((Path(root) / split).is_dir() for split in splits):
        return Path(root)
    if corpus == "synthetic":
        unknown = sorted(set(splits) - set(SYNTHETIC_SPLITS))
        if unknown:
            raise ValueError(f"the synthetic corpus has no split {unknown}; it has {SYNTHETIC_SPLITS}")
        if root is not None:
            raise FileNotFoundError(f"{root} does not hold the splits {splits}; use root=None to render the corpus")
        out = synthetic_root(synth_minutes, seed)
        librispeech_root = out / "LibriSpeech"
        if not (out / ".complete").exists():
            from asr_helpers.synthetic import synthesize_corpus
            print(f"rendering the offline corpus ({synth_minutes:g} min of speech) into {out} ...")
            print(synthesize_corpus(out, minutes=synth_minutes, seed=seed))
            (out / ".complete").touch()
        return librispeech_root
    from asr_helpers.librispeech import ensure_split
    roots = {ensure_split(split, root=Path(root) if root else None) for split in splits}
    if len(roots) > 1:
        raise RuntimeError(f"splits were found under different roots {sorted(map(str, roots))}; pass root=")
    return roots.pop()
